internal import CSodium

/// Initialises libsodium once per process; every entry point of this module calls it first.
enum Sodium {
    /// `true` once `sodium_init` has succeeded (it is idempotent and thread-safe).
    static let isReady: Bool = sodium_init() >= 0

    /// Traps if libsodium cannot be initialised: no cryptography would be trustworthy.
    static func ensureReady() {
        precondition(isReady, "libsodium failed to initialise")
    }
}

/// Why a key, signature or sealed box was refused.
public enum CryptoError: Error, Equatable, Sendable {
    /// The bytes have the wrong length for this kind of value.
    case wrongLength(expected: Int, actual: Int)
    /// The text is not valid base64.
    case invalidBase64
    /// A sealed box could not be opened (wrong key or altered ciphertext).
    case cannotOpen
    /// libsodium reported a failure while creating a key.
    case keyGenerationFailed
}

extension CryptoError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .wrongLength(let expected, let actual):
            return "expected \(expected) bytes, got \(actual)"
        case .invalidBase64:
            return "not valid base64"
        case .cannotOpen:
            return "sealed box cannot be opened with this key"
        case .keyGenerationFailed:
            return "libsodium could not generate a key"
        }
    }
}

/// Constant-time comparison of two byte arrays (libsodium `sodium_memcmp`).
public func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    Sodium.ensureReady()
    guard a.count == b.count else { return false }
    if a.isEmpty { return true }
    return sodium_memcmp(a, b, a.count) == 0
}

/// Cryptographically secure random bytes (libsodium `randombytes_buf`).
public func secureRandomBytes(count: Int) -> [UInt8] {
    Sodium.ensureReady()
    var bytes = [UInt8](repeating: 0, count: count)
    randombytes_buf(&bytes, count)
    return bytes
}

/// A uniformly random 64-bit value from libsodium, for seeding deterministic generators in the shell.
public func secureRandomUInt64() -> UInt64 {
    let bytes = secureRandomBytes(count: 8)
    return bytes.reduce(0) { ($0 << 8) | UInt64($1) }
}

/// A 64-bit keyed-free digest (BLAKE2b via `crypto_generichash`) of `bytes`, for compact identifiers.
public func shortHash(_ bytes: [UInt8]) -> UInt64 {
    Sodium.ensureReady()
    // On the stack: this runs for every record that arrives.
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 8) { out -> UInt64 in
        out.initialize(repeating: 0)
        guard let base = out.baseAddress else { return 0 }
        _ = crypto_generichash(base, 8, bytes, UInt64(bytes.count), nil, 0)
        return out.reduce(0) { ($0 << 8) | UInt64($1) }
    }
}

/// Base64 through libsodium: standard (with padding), or URL-safe without padding for tokens that must
/// survive shells, URLs and chat clients.
public enum Base64 {
    /// Decodes standard base64 (with padding).
    public static func decode(_ text: String) throws(CryptoError) -> [UInt8] {
        try decode(text, variant: Int32(sodium_base64_VARIANT_ORIGINAL))
    }

    /// Encodes bytes as standard base64 with padding.
    public static func encode(_ bytes: [UInt8]) -> String {
        encode(bytes, variant: Int32(sodium_base64_VARIANT_ORIGINAL))
    }

    /// Decodes URL-safe base64 without padding.
    public static func decodeURLSafe(_ text: String) throws(CryptoError) -> [UInt8] {
        try decode(text, variant: Int32(sodium_base64_VARIANT_URLSAFE_NO_PADDING))
    }

    /// Encodes bytes as URL-safe base64 without padding.
    public static func encodeURLSafe(_ bytes: [UInt8]) -> String {
        encode(bytes, variant: Int32(sodium_base64_VARIANT_URLSAFE_NO_PADDING))
    }

    private static func decode(_ text: String, variant: Int32) throws(CryptoError) -> [UInt8] {
        Sodium.ensureReady()
        let input = Array(text.utf8).map { CChar(bitPattern: $0) }
        guard !input.isEmpty else { throw .invalidBase64 }
        var output = [UInt8](repeating: 0, count: input.count * 3 / 4 + 3)
        var length = 0
        let capacity = output.count
        let status = sodium_base642bin(&output, capacity, input, input.count, nil, &length, nil, variant)
        guard status == 0 else { throw .invalidBase64 }
        return Array(output.prefix(length))
    }

    private static func encode(_ bytes: [UInt8], variant: Int32) -> String {
        Sodium.ensureReady()
        let size = sodium_base64_encoded_len(bytes.count, variant)
        var output = [CChar](repeating: 0, count: size)
        _ = sodium_bin2base64(&output, size, bytes, bytes.count, variant)
        return String(decoding: output.prefix(size - 1).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The Poly1305 (`crypto_onetimeauth`) tag of `prefix` followed by `message` (streamed, not joined),
/// under `key`'s 32 bytes: 16 bytes, as two words in memory order, so that making and checking one
/// allocates nothing. Several times faster than BLAKE2b, but a one-time authenticator: a key used for
/// more than one message protects nothing, so only stand-ins for signatures in simulations use it.
public func oneTimeAuthenticatorTag(
    prefix: [UInt8] = [], _ message: ArraySlice<UInt8>, key: VerifyingKey
) -> (UInt64, UInt64) {
    Sodium.ensureReady()
    var state = crypto_onetimeauth_state()
    var keyBytes = (key.words.0.bigEndian, key.words.1.bigEndian, key.words.2.bigEndian, key.words.3.bigEndian)
    withUnsafeBytes(of: &keyBytes) { raw in
        guard let key = raw.bindMemory(to: UInt8.self).baseAddress else { return }
        _ = crypto_onetimeauth_init(&state, key)
    }
    _ = crypto_onetimeauth_update(&state, prefix, UInt64(prefix.count))
    message.withUnsafeBufferPointer { buffer in
        _ = crypto_onetimeauth_update(&state, buffer.baseAddress, UInt64(buffer.count))
    }
    var tag: (UInt64, UInt64) = (0, 0)
    withUnsafeMutableBytes(of: &tag) { raw in
        guard let out = raw.bindMemory(to: UInt8.self).baseAddress else { return }
        _ = crypto_onetimeauth_final(&state, out)
    }
    return tag
}

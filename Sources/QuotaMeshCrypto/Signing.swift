internal import CSodium

/// An Ed25519 public key (libsodium `crypto_sign`): a peer's identity in the trust store and on the wire.
public struct VerifyingKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The size of the raw key in bytes.
    public static let byteCount = 32

    /// The key as four big-endian words: the only storage, so a key is copied, hashed and compared
    /// (for every record and packet) without touching the heap.
    public let words: (UInt64, UInt64, UInt64, UInt64)

    /// The raw 32 key bytes.
    public var rawRepresentation: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.byteCount)
        append(to: &bytes)
        return bytes
    }

    /// Creates a key from its raw bytes.
    /// - Throws: `CryptoError.wrongLength` unless exactly 32 bytes are given.
    public init(rawRepresentation: [UInt8]) throws(CryptoError) {
        guard rawRepresentation.count == Self.byteCount else {
            throw .wrongLength(expected: Self.byteCount, actual: rawRepresentation.count)
        }
        func word(_ index: Int) -> UInt64 {
            rawRepresentation[(index * 8)..<(index * 8 + 8)].reduce(0) { ($0 << 8) | UInt64($1) }
        }
        self.words = (word(0), word(1), word(2), word(3))
    }

    /// Creates a key from its four big-endian words (as read straight off the wire).
    public init(words: (UInt64, UInt64, UInt64, UInt64)) {
        self.words = words
    }

    public static func == (lhs: VerifyingKey, rhs: VerifyingKey) -> Bool {
        lhs.words.0 == rhs.words.0 && lhs.words.1 == rhs.words.1 && lhs.words.2 == rhs.words.2
            && lhs.words.3 == rhs.words.3
    }

    /// Hashes the first word only: keys are uniformly random, so eight bytes spread them as well as 32
    /// do, and a key is hashed for every packet and record. Equality still compares all four words.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
    }

    /// Appends the raw 32 key bytes to `bytes`.
    public func append(to bytes: inout [UInt8]) {
        var bigEndian = (words.0.bigEndian, words.1.bigEndian, words.2.bigEndian, words.3.bigEndian)
        withUnsafeBytes(of: &bigEndian) { bytes.append(contentsOf: $0) }
    }

    /// Creates a key from standard base64 text.
    /// - Throws: `CryptoError.invalidBase64` or `CryptoError.wrongLength`.
    public init(base64: String) throws(CryptoError) {
        try self.init(rawRepresentation: Base64.decode(base64))
    }

    /// The key in standard base64, as written in peer files.
    public var base64: String { Base64.encode(rawRepresentation) }

    /// A short printable fingerprint (first 8 base64 characters) for logs.
    public var shortID: String { String(base64.prefix(8)) }

    /// The first eight bytes as an integer, used as a compact origin identifier in digests.
    public var prefix64: UInt64 { words.0 }

    public var description: String { shortID }

    public static func < (lhs: VerifyingKey, rhs: VerifyingKey) -> Bool {
        (lhs.words.0, lhs.words.1, lhs.words.2, lhs.words.3) < (rhs.words.0, rhs.words.1, rhs.words.2, rhs.words.3)
    }

    /// Checks an Ed25519 detached signature over `message`.
    /// - Returns: `true` only if `signature` was made over exactly these bytes by this key's secret.
    public func isValidSignature(_ signature: Signature, for message: [UInt8]) -> Bool {
        Sodium.ensureReady()
        return crypto_sign_verify_detached(
            signature.rawRepresentation, message, UInt64(message.count), rawRepresentation) == 0
    }
}

/// An Ed25519 detached signature: 64 bytes.
public struct Signature: Hashable, Sendable {
    /// The size of a signature in bytes.
    public static let byteCount = 64

    /// The raw 64 signature bytes.
    public let rawRepresentation: [UInt8]

    /// Wraps raw signature bytes.
    /// - Throws: `CryptoError.wrongLength` unless exactly 64 bytes are given.
    public init(rawRepresentation: [UInt8]) throws(CryptoError) {
        guard rawRepresentation.count == Self.byteCount else {
            throw .wrongLength(expected: Self.byteCount, actual: rawRepresentation.count)
        }
        self.rawRepresentation = rawRepresentation
    }
}

/// An Ed25519 secret key. Its bytes live in a class so they can be wiped when the last copy goes away.
public struct SigningKey: Sendable {
    /// The size of libsodium's secret key (seed followed by public key) in bytes.
    public static let byteCount = 64

    private final class Storage: @unchecked Sendable {
        // Immutable after init; only `deinit` writes (zeroes) the bytes, when no other reference exists.
        var bytes: [UInt8]
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        deinit {
            Sodium.ensureReady()
            bytes.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) }
        }
    }

    private let storage: Storage

    /// The matching public key.
    public let publicKey: VerifyingKey

    /// Generates a fresh key pair (`crypto_sign_keypair`).
    public init() {
        Sodium.ensureReady()
        var pk = [UInt8](repeating: 0, count: VerifyingKey.byteCount)
        var sk = [UInt8](repeating: 0, count: Self.byteCount)
        let status = crypto_sign_keypair(&pk, &sk)
        precondition(status == 0, "crypto_sign_keypair failed")
        self.storage = Storage(sk)
        // 32 bytes by construction.
        self.publicKey = try! VerifyingKey(rawRepresentation: pk)
    }

    /// Derives a key pair deterministically from a 32-byte seed (`crypto_sign_seed_keypair`); for tests
    /// and simulations that must replay exactly.
    /// - Throws: `CryptoError.wrongLength` unless the seed has 32 bytes.
    public init(seed: [UInt8]) throws(CryptoError) {
        Sodium.ensureReady()
        guard seed.count == 32 else { throw .wrongLength(expected: 32, actual: seed.count) }
        var pk = [UInt8](repeating: 0, count: VerifyingKey.byteCount)
        var sk = [UInt8](repeating: 0, count: Self.byteCount)
        guard crypto_sign_seed_keypair(&pk, &sk, seed) == 0 else { throw .keyGenerationFailed }
        self.storage = Storage(sk)
        self.publicKey = try VerifyingKey(rawRepresentation: pk)
    }

    /// Restores a secret key from its 64 raw bytes, checking that it is consistent.
    /// - Throws: `CryptoError.wrongLength` for a wrong size, `.keyGenerationFailed` if the embedded public
    ///   key does not match the seed.
    public init(rawRepresentation: [UInt8]) throws(CryptoError) {
        Sodium.ensureReady()
        guard rawRepresentation.count == Self.byteCount else {
            throw .wrongLength(expected: Self.byteCount, actual: rawRepresentation.count)
        }
        let seed = Array(rawRepresentation.prefix(32))
        let rebuilt = try SigningKey(seed: seed)
        guard constantTimeEqual(rebuilt.storage.bytes, rawRepresentation) else { throw .keyGenerationFailed }
        self = rebuilt
    }

    /// The raw 64 secret bytes, for writing to the identity file only.
    public var rawRepresentation: [UInt8] { storage.bytes }

    /// The 32-byte seed, for deriving subkeys in this module (``InvitationSecrets``).
    var seed: [UInt8] { Array(storage.bytes.prefix(32)) }

    /// Signs `message` with a detached Ed25519 signature.
    public func signature(for message: [UInt8]) -> Signature {
        Sodium.ensureReady()
        var sig = [UInt8](repeating: 0, count: Signature.byteCount)
        _ = crypto_sign_detached(&sig, nil, message, UInt64(message.count), storage.bytes)
        // 64 bytes by construction.
        return try! Signature(rawRepresentation: sig)
    }
}

/// Anonymous public-key encryption to a peer's Ed25519 identity (libsodium sealed boxes over the
/// X25519 keys converted from Ed25519). Used for anything sent to one peer that others must not read.
public enum SealedBox {
    /// Encrypts `message` so that only the holder of `recipient`'s secret key can read it.
    public static func seal(_ message: [UInt8], to recipient: VerifyingKey) throws(CryptoError) -> [UInt8] {
        Sodium.ensureReady()
        var curvePK = [UInt8](repeating: 0, count: Int(crypto_box_PUBLICKEYBYTES))
        guard crypto_sign_ed25519_pk_to_curve25519(&curvePK, recipient.rawRepresentation) == 0 else {
            throw .keyGenerationFailed
        }
        var out = [UInt8](repeating: 0, count: message.count + crypto_box_sealbytes())
        let status = crypto_box_seal(&out, message, UInt64(message.count), curvePK)
        guard status == 0 else { throw .keyGenerationFailed }
        return out
    }

    /// Opens a sealed box addressed to `key`'s public key.
    /// - Throws: `CryptoError.cannotOpen` if it was not sealed to this key or was altered.
    public static func open(_ box: [UInt8], with key: SigningKey) throws(CryptoError) -> [UInt8] {
        Sodium.ensureReady()
        guard box.count >= crypto_box_sealbytes() else { throw .cannotOpen }
        var curvePK = [UInt8](repeating: 0, count: Int(crypto_box_PUBLICKEYBYTES))
        var curveSK = [UInt8](repeating: 0, count: Int(crypto_box_SECRETKEYBYTES))
        defer { curveSK.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) } }
        guard crypto_sign_ed25519_pk_to_curve25519(&curvePK, key.publicKey.rawRepresentation) == 0,
              crypto_sign_ed25519_sk_to_curve25519(&curveSK, key.rawRepresentation) == 0
        else { throw .cannotOpen }
        var out = [UInt8](repeating: 0, count: box.count - crypto_box_sealbytes())
        let status = crypto_box_seal_open(&out, box, UInt64(box.count), curvePK, curveSK)
        guard status == 0 else { throw .cannotOpen }
        return out
    }
}

import QuotaMeshCrypto

/// How records and packets are signed and checked. Nodes always use `Ed25519Signatures` (libsodium);
/// the protocol takes the scheme as a parameter so that the simulator can run thousands of real protocol
/// cores without paying for public-key operations whose cost the micro-benchmarks measure separately.
public protocol SignatureScheme: Sendable {
    /// Signs `message` with `key`.
    func sign(_ message: [UInt8], with key: SigningKey) -> Signature
    /// `true` if `signature` is `key`'s over exactly `message`.
    func isValid(_ signature: Signature, for message: [UInt8], by key: VerifyingKey) -> Bool
    /// Signs `prefix` followed by `message`. The default joins them and calls `sign(_:with:)`; a scheme
    /// that can stream its input signs them in place (a packet is signed and checked this way, so its
    /// bytes need not be copied behind its domain prefix).
    func sign(prefix: [UInt8], _ message: ArraySlice<UInt8>, with key: SigningKey) -> Signature
    /// `true` if `signature` is `key`'s over `prefix` followed by `message`. The default joins them.
    func isValid(_ signature: Signature, prefix: [UInt8], _ message: ArraySlice<UInt8>, by key: VerifyingKey) -> Bool
}

extension SignatureScheme {
    /// Joins `prefix` and `message` and signs the result.
    public func sign(prefix: [UInt8], _ message: ArraySlice<UInt8>, with key: SigningKey) -> Signature {
        sign(Self.joined(prefix, message), with: key)
    }

    /// Joins `prefix` and `message` and checks `signature` over the result.
    public func isValid(
        _ signature: Signature, prefix: [UInt8], _ message: ArraySlice<UInt8>, by key: VerifyingKey
    ) -> Bool {
        isValid(signature, for: Self.joined(prefix, message), by: key)
    }

    private static func joined(_ prefix: [UInt8], _ message: ArraySlice<UInt8>) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(prefix.count + message.count)
        bytes += prefix
        bytes += message
        return bytes
    }
}

/// Lets instances that run in one process hold one copy of each record between them (a simulator's
/// thousands of nodes each hold every record). Records are immutable values, so sharing one changes
/// nothing any instance decides or sends. Nodes have none.
public protocol RecordSharing: AnyObject, Sendable {
    /// A record equal to `record` (same wire bytes) that is already shared, or `record`, now shared.
    func share(_ record: SignedRecord) -> SignedRecord
}

/// Ed25519 through libsodium (`crypto_sign_detached` / `crypto_sign_verify_detached`).
public struct Ed25519Signatures: SignatureScheme {
    /// Creates the scheme.
    public init() {}

    public func sign(_ message: [UInt8], with key: SigningKey) -> Signature { key.signature(for: message) }

    public func isValid(_ signature: Signature, for message: [UInt8], by key: VerifyingKey) -> Bool {
        key.isValidSignature(signature, for: message)
    }
}

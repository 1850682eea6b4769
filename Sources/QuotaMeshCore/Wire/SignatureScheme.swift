import QuotaMeshCrypto

/// How records and packets are signed and checked. Nodes always use `Ed25519Signatures` (libsodium);
/// the protocol takes the scheme as a parameter so that the simulator can run thousands of real protocol
/// cores without paying for public-key operations whose cost the micro-benchmarks measure separately.
public protocol SignatureScheme: Sendable {
    /// Signs `message` with `key`.
    func sign(_ message: [UInt8], with key: SigningKey) -> Signature
    /// `true` if `signature` is `key`'s over exactly `message`.
    func isValid(_ signature: Signature, for message: [UInt8], by key: VerifyingKey) -> Bool
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

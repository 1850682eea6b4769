import QuotaMeshCore
import QuotaMeshCrypto

/// A signature scheme for simulations only: a Poly1305 authenticator keyed by the signer's public key. It
/// has the same shape and sizes as Ed25519 (so packets and records have their real sizes and every check
/// runs), costs well under a microsecond per packet instead of tens, and counts how often it is asked to
/// verify. Anyone can forge
/// it, which is why nodes never use it: `MeshConfiguration` defaults to `Ed25519Signatures`.
public final class SimulatedSignatures: SignatureScheme, @unchecked Sendable {
    // The counters are written by the single simulation thread only; `@unchecked` because the scheme is
    // stored in a `Sendable` configuration.
    /// Verifications performed.
    public private(set) var verifications = 0
    /// Signatures made.
    public private(set) var signatures = 0

    /// Creates the scheme.
    public init() {}

    public func sign(_ message: [UInt8], with key: SigningKey) -> Signature {
        signatures += 1
        return Self.mac(message[...], key: key.publicKey)
    }

    public func isValid(_ signature: Signature, for message: [UInt8], by key: VerifyingKey) -> Bool {
        verifications += 1
        return Self.mac(message[...], key: key) == signature
    }

    public func sign(prefix: [UInt8], _ message: ArraySlice<UInt8>, with key: SigningKey) -> Signature {
        signatures += 1
        return Self.mac(prefix: prefix, message, key: key.publicKey)
    }

    public func isValid(
        _ signature: Signature, prefix: [UInt8], _ message: ArraySlice<UInt8>, by key: VerifyingKey
    ) -> Bool {
        verifications += 1
        return Self.mac(prefix: prefix, message, key: key) == signature
    }

    static func mac(prefix: [UInt8] = [], _ message: ArraySlice<UInt8>, key: VerifyingKey) -> Signature {
        // 64 bytes by construction.
        try! Signature(
            rawRepresentation: oneTimeAuthenticator(
                prefix: prefix, message, key: key.rawRepresentation, outputCount: Signature.byteCount))
    }
}

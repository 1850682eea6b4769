import QuotaMeshCore
import QuotaMeshCrypto

/// A signature scheme for simulations only: a Poly1305 tag keyed by the signer's public key, four times
/// over. It has the same shape and sizes as Ed25519 (so packets and records have their real sizes and
/// every check runs), costs about a microsecond per kilobyte instead of tens of microseconds, and counts
/// how often it is asked to verify. Anyone can forge it, which is why nodes never use it:
/// `MeshConfiguration` defaults to `Ed25519Signatures`.
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
        sign(prefix: [], message[...], with: key)
    }

    public func isValid(_ signature: Signature, for message: [UInt8], by key: VerifyingKey) -> Bool {
        isValid(signature, prefix: [], message[...], by: key)
    }

    public func sign(prefix: [UInt8], _ message: ArraySlice<UInt8>, with key: SigningKey) -> Signature {
        signatures += 1
        var tag = oneTimeAuthenticatorTag(prefix: prefix, message, key: key.publicKey)
        // The 16-byte tag four times: 64 bytes, an Ed25519 signature's size.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Signature.byteCount)
        withUnsafeBytes(of: &tag) { raw in
            for _ in 0..<(Signature.byteCount / raw.count) { bytes.append(contentsOf: raw) }
        }
        return try! Signature(rawRepresentation: bytes)
    }

    public func isValid(
        _ signature: Signature, prefix: [UInt8], _ message: ArraySlice<UInt8>, by key: VerifyingKey
    ) -> Bool {
        verifications += 1
        var tag = oneTimeAuthenticatorTag(prefix: prefix, message, key: key)
        return withUnsafeBytes(of: &tag) { raw in
            let stored = signature.rawRepresentation
            return stored.count == 4 * raw.count && stored.indices.allSatisfy { stored[$0] == raw[$0 % raw.count] }
        }
    }
}

internal import CSodium

/// The secrets behind invitations to join a mesh (`quotamesh invite`). An invitation's secret is derived
/// from the inviter's signing key (libsodium's `crypto_kdf` for a subkey, then keyed BLAKE2b over the
/// invitation's nonce and expiry), so a node checks a join without keeping a list of the invitations it
/// gave. A joiner proves it holds the secret with a keyed hash of its own key and address, so the secret
/// itself never crosses the network.
public enum InvitationSecrets {
    /// Bytes of a secret, a nonce and a proof.
    public static let secretBytes = 32
    public static let nonceBytes = 16
    public static let proofBytes = 32

    /// The secret of the invitation `key` gave with `nonce`, expiring at `expires` (Unix seconds).
    public static func secret(of key: SigningKey, nonce: [UInt8], expires: Int64) -> [UInt8] {
        Sodium.ensureReady()
        var subkey = [UInt8](repeating: 0, count: Int(crypto_kdf_KEYBYTES))
        defer { subkey.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) } }
        let context = Array("qminvite".utf8).map { CChar(bitPattern: $0) }
        var seed = key.seed
        defer { seed.withUnsafeMutableBytes { sodium_memzero($0.baseAddress, $0.count) } }
        let status = crypto_kdf_derive_from_key(&subkey, subkey.count, 1, context, seed)
        precondition(status == 0, "crypto_kdf_derive_from_key failed")
        var message = nonce
        withUnsafeBytes(of: expires.bigEndian) { message.append(contentsOf: $0) }
        return keyedHash(message, key: subkey, length: secretBytes)
    }

    /// The joiner's proof that it holds `secret`: keyed BLAKE2b of its key and the address it gives.
    public static func proof(secret: [UInt8], joiner: VerifyingKey, endpoint: String) -> [UInt8] {
        keyedHash(Array("quotamesh/join/v1".utf8) + [0] + joiner.rawRepresentation + Array(endpoint.utf8),
            key: secret, length: proofBytes)
    }

    /// Whether `proof` is the proof of `joiner` at `endpoint` for `secret` (compared in constant time).
    public static func isValid(proof: [UInt8], secret: [UInt8], joiner: VerifyingKey, endpoint: String) -> Bool {
        constantTimeEqual(proof, self.proof(secret: secret, joiner: joiner, endpoint: endpoint))
    }

    static func keyedHash(_ message: [UInt8], key: [UInt8], length: Int) -> [UInt8] {
        Sodium.ensureReady()
        var digest = [UInt8](repeating: 0, count: length)
        let status = crypto_generichash(&digest, length, message, UInt64(message.count), key, key.count)
        precondition(status == 0, "crypto_generichash failed")
        return digest
    }
}

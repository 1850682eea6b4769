internal import CSodium

/// A stable account label derived from an API key with a keyed hash (libsodium's `crypto_generichash`,
/// BLAKE2b), so that agents can name the account a key belongs to without the node ever seeing the key.
///
/// The label is `fp-` and 32 hex digits: BLAKE2b with a 16-byte digest, keyed with a salt that the agents of
/// one team share and keep to themselves (16 to 64 bytes). Any language computes the same label, e.g.
/// Python's `"fp-" + hashlib.blake2b(secret, key=salt, digest_size=16).hexdigest()`. Without the salt the
/// label says nothing about the key; with it, only someone who already holds the key can test a guess.
public enum AccountFingerprint {
    /// The shortest salt accepted, in bytes.
    public static let minimumSaltBytes = 16
    /// The longest salt accepted, in bytes (BLAKE2b's key size limit).
    public static let maximumSaltBytes = 64

    /// The label for `secret` under `salt`.
    public static func label(secret: [UInt8], salt: [UInt8]) throws(CryptoError) -> String {
        Sodium.ensureReady()
        guard (minimumSaltBytes...maximumSaltBytes).contains(salt.count) else {
            throw .wrongLength(expected: salt.count < minimumSaltBytes ? minimumSaltBytes : maximumSaltBytes, actual: salt.count)
        }
        var digest = [UInt8](repeating: 0, count: 16)
        let status = crypto_generichash(&digest, digest.count, secret, UInt64(secret.count), salt, salt.count)
        precondition(status == 0, "crypto_generichash failed")
        return "fp-" + digest.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

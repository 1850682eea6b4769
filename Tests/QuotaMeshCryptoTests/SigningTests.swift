import Testing
@testable import QuotaMeshCrypto

@Suite struct SigningTests {
    @Test func signatureVerifiesOnlyForTheSignedBytesAndKey() {
        let key = SigningKey()
        let other = SigningKey()
        let message: [UInt8] = Array("remaining=40".utf8)
        let signature = key.signature(for: message)
        #expect(key.publicKey.isValidSignature(signature, for: message))
        #expect(!other.publicKey.isValidSignature(signature, for: message))
        var altered = message
        altered[0] ^= 1
        #expect(!key.publicKey.isValidSignature(signature, for: altered))
        #expect(key.publicKey.isValidSignature(key.signature(for: []), for: []))
    }

    @Test func seededKeysAreDeterministic() throws {
        let seed = [UInt8](repeating: 7, count: 32)
        let a = try SigningKey(seed: seed)
        let b = try SigningKey(seed: seed)
        #expect(a.publicKey == b.publicKey)
        #expect(a.signature(for: [1, 2, 3]) == b.signature(for: [1, 2, 3]))
    }

    @Test func secretKeyRoundTripsAndRejectsMismatch() throws {
        let key = SigningKey()
        let restored = try SigningKey(rawRepresentation: key.rawRepresentation)
        #expect(restored.publicKey == key.publicKey)
        var corrupted = key.rawRepresentation
        corrupted[40] ^= 0xFF  // the embedded public key no longer matches the seed
        #expect(throws: CryptoError.keyGenerationFailed) { try SigningKey(rawRepresentation: corrupted) }
    }

    @Test(arguments: [0, 31, 33, 64])
    func wrongKeyLengthsThrowTypedErrors(length: Int) {
        #expect(throws: CryptoError.wrongLength(expected: 32, actual: length)) {
            try VerifyingKey(rawRepresentation: [UInt8](repeating: 1, count: length))
        }
    }

    @Test func base64RoundTripsAndRejectsGarbage() throws {
        let key = SigningKey().publicKey
        #expect(try VerifyingKey(base64: key.base64) == key)
        #expect(throws: CryptoError.invalidBase64) { try VerifyingKey(base64: "not base64 at all!") }
        #expect(throws: CryptoError.invalidBase64) { try VerifyingKey(base64: "") }
        #expect(throws: CryptoError.wrongLength(expected: 32, actual: 3)) { try VerifyingKey(base64: "AAAA") }
    }

    @Test func sealedBoxOpensOnlyForTheRecipient() throws {
        let recipient = SigningKey()
        let stranger = SigningKey()
        let box = try SealedBox.seal(Array("hello".utf8), to: recipient.publicKey)
        #expect(try SealedBox.open(box, with: recipient) == Array("hello".utf8))
        #expect(throws: CryptoError.cannotOpen) { try SealedBox.open(box, with: stranger) }
        var tampered = box
        tampered[tampered.count - 1] ^= 1
        #expect(throws: CryptoError.cannotOpen) { try SealedBox.open(tampered, with: recipient) }
        #expect(throws: CryptoError.cannotOpen) { try SealedBox.open([1, 2, 3], with: recipient) }
    }

    @Test func constantTimeEqualityComparesContents() {
        #expect(constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEqual([1, 2], [1, 2, 3]))
        #expect(shortHash([1, 2, 3]) == shortHash([1, 2, 3]))
        #expect(shortHash([1, 2, 3]) != shortHash([1, 2, 4]))
    }
}

/// Account labels derived from API keys with a keyed hash.
@Suite struct AccountFingerprintTests {
    @Test func labelsAreStableKeyedAndValidLabels() throws {
        let salt = [UInt8](repeating: 7, count: 32)
        let secret = Array("sk-live-abc".utf8)
        let label = try AccountFingerprint.label(secret: secret, salt: salt)
        #expect(label == (try AccountFingerprint.label(secret: secret, salt: salt)))
        #expect(label.hasPrefix("fp-") && label.count == 3 + 32)
        #expect(label.dropFirst(3).allSatisfy { $0.isHexDigit && !$0.isUppercase })
        #expect(label != (try AccountFingerprint.label(secret: secret, salt: [UInt8](repeating: 8, count: 32))))
        #expect(label != (try AccountFingerprint.label(secret: Array("sk-live-abd".utf8), salt: salt)))
        #expect(!label.contains("sk-live"))
        #expect(throws: CryptoError.self) { try AccountFingerprint.label(secret: secret, salt: [1, 2, 3]) }
        #expect(throws: CryptoError.self) { try AccountFingerprint.label(secret: secret, salt: [UInt8](repeating: 0, count: 65)) }
    }
}

import QuotaMeshCrypto

/// What a node remembers of joins and introductions between two loads of its trust store: peers it asked
/// the shell to trust (so that one introduction repeated every few seconds asks once), and the
/// introductions its `vouching` set aside (reported once each).
struct IntroductionBook: Sendable {
    /// Peers the shell was asked to trust and the trust store does not list yet.
    var requested: Set<VerifyingKey> = []
    /// Introduced keys already reported as not trusted (bounded: a flood of names is reported in part).
    var ignored: Set<VerifyingKey> = []

    /// The most introduced keys remembered as reported.
    static let maxIgnored = 1024

    /// Whether to report `key` as introduced and not trusted (the first time only).
    mutating func noteIgnored(_ key: VerifyingKey) -> Bool {
        guard ignored.count < Self.maxIgnored else { return false }
        return ignored.insert(key).inserted
    }

    /// The trust store was loaded again: what it lists is trusted, and what was requested and is not
    /// listed may be requested again.
    mutating func trustStoreReloaded() {
        requested = []
    }
}

extension PeerInfo {
    /// A trust store name for a peer added by a join or an introduction rather than by hand: `prefix`, a
    /// dash, and the key's first four bytes in hex (`joined-1a2b3c4d`).
    public static func derivedName(_ prefix: String, for key: VerifyingKey) -> String {
        let hex = key.rawRepresentation.prefix(4).map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }
        return prefix + "-" + hex.joined()
    }
}

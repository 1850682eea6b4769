import QuotaMeshCrypto

/// Which members an origin splits each window's rights among (itself and every peer in its trust store):
/// how many, and a digest of their sorted keys. Nodes whose trust stores differ would each split the limit
/// their own way, and those parts need not add up to the limit; a node that sees a member sign another set
/// stops spending rights until they agree.
public struct MembersDigest: Hashable, Sendable, Codable {
    /// How many members.
    public var count: UInt32
    /// BLAKE2b (64 bits) of the members' sorted public keys.
    public var hash: UInt64

    /// Creates a digest from its fields.
    public init(count: UInt32, hash: UInt64) {
        self.count = count
        self.hash = hash
    }

    /// The digest of `members` (sorted and deduplicated first).
    public init(members: [VerifyingKey]) {
        let sorted = Array(Set(members)).sorted()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(sorted.count * VerifyingKey.byteCount)
        for key in sorted { key.append(to: &bytes) }
        self.init(count: UInt32(clamping: sorted.count), hash: shortHash(bytes))
    }
}

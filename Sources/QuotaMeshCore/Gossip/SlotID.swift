import QuotaMeshCrypto

/// A record slot of one origin, with a 64-bit hash used in digests.
struct SlotID: Hashable, Sendable {
    let origin: VerifyingKey
    let slot: RecordSlot
    let hash: UInt64

    init(origin: VerifyingKey, slot: RecordSlot) {
        self.origin = origin
        self.slot = slot
        // One allocation, sized up front: a slot identity is made for every record that arrives.
        var bytes: [UInt8] = []
        switch slot {
        case .heartbeat:
            bytes.reserveCapacity(VerifyingKey.byteCount + 1)
            origin.append(to: &bytes)
            bytes.append(0)
        case .quota(let key):
            bytes.reserveCapacity(
                VerifyingKey.byteCount + 3 + key.service.utf8.count + key.account.utf8.count + key.dimension.utf8.count)
            origin.append(to: &bytes)
            bytes.append(1)
            bytes.append(contentsOf: key.service.utf8)
            bytes.append(0)
            bytes.append(contentsOf: key.account.utf8)
            if key.dimension != QuotaKey.requests {
                bytes.append(0)
                bytes.append(contentsOf: key.dimension.utf8)
            }
        }
        self.hash = shortHash(bytes)
    }

    static func == (lhs: SlotID, rhs: SlotID) -> Bool { lhs.hash == rhs.hash && lhs.origin == rhs.origin && lhs.slot == rhs.slot }
    func hash(into hasher: inout Hasher) { hasher.combine(hash) }
}

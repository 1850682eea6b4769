import QuotaMeshCrypto

/// The newest record a node holds per (origin, slot), each at a dense index that never changes while
/// the slot is held.
///
/// Everything that walks the table every round — the push queue, digests, the recent-update list —
/// names a slot by its index, so a round reads arrays instead of hashing slot identities, and checks a
/// queued entry against its version and pushes left (side by side in `meta`) without touching the
/// record itself. Only a record arriving from the wire, or a digest naming a slot by its 64-bit hash, is
/// looked up by hash.
struct RecordTable: Sendable {
    /// What every round reads of a held record, packed together.
    struct SlotMeta: Sendable {
        /// The held record's version.
        var version: RecordVersion
        /// Pushes left for it (memberlist's transmit limit); 0: it is no longer pushed.
        var transmitsLeft: Int
    }

    /// How many peers known to hold a record are remembered.
    static let knownByCap = 32

    /// Slot identities, by index, in the order they were first held (digests rotate over this order).
    private(set) var ids: [SlotID] = []
    /// The held records, by index.
    private(set) var records: [SignedRecord] = []
    /// Each held record's version and pushes left, by index.
    private(set) var meta: [SlotMeta] = []
    /// Peers known to hold each record's version (they sent it to us, or said so in a digest; a push may
    /// be lost, so sending is no evidence), by `VerifyingKey.prefix64`; pushes skip them. Capped, and
    /// dropped with the last push, so memory stays bounded in large clusters. Eight bytes of a key name a
    /// peer here: it is a hint that saves pushes, and a collision (which 64 random bits make vanishingly
    /// rare) only skips one push that digests make up.
    private var knownBy = HolderRings()
    /// The first slot held for each 64-bit slot hash.
    private var indexByHash = SlotHashIndex()
    /// Slots whose hash another held slot already has (a 64-bit collision: in practice never).
    private var collided: [SlotID: Int] = [:]
    /// The last slot held for each origin, by the origin's number (its index in the peer directory),
    /// and for each slot the one held before it of the same origin (-1: none): a chain through an
    /// origin's few slots, to recognise a copy without reading it. Arrays, not a dictionary, because
    /// this is read for every record that arrives.
    private var lastOfOrigin: [Int32] = []
    private var previousOfOrigin: [Int32] = []

    /// The number of slots held.
    var count: Int { ids.count }
    /// Whether no slot is held.
    var isEmpty: Bool { ids.isEmpty }

    /// The version held at `index`.
    func version(at index: Int) -> RecordVersion { meta[index].version }
    /// The pushes left for the record at `index`.
    func transmitsLeft(at index: Int) -> Int { meta[index].transmitsLeft }

    /// The index of `id`, if it is held.
    func index(of id: SlotID) -> Int? {
        if let index = indexByHash.index(of: id.hash), ids[index] == id { return index }
        return collided.isEmpty ? nil : collided[id]
    }

    /// The index of the first slot held with `hash`, as digests name slots.
    func index(ofHash hash: UInt64) -> Int? { indexByHash.index(of: hash) }

    /// The index of the held record whose wire form is exactly `wire` (of the origin numbered
    /// `originNumber`, at `version`), if any.
    func index(ofCopy wire: ArraySlice<UInt8>, originNumber: Int, version: RecordVersion) -> Int? {
        var index = originNumber < lastOfOrigin.count ? Int(lastOfOrigin[originNumber]) : -1
        while index >= 0 {
            // An origin signs one record per version: at most one slot can match it.
            if meta[index].version == version { return bytesEqual(records[index].wire[...], wire) ? index : nil }
            index = Int(previousOfOrigin[index])
        }
        return nil
    }

    /// The index of the slot `slot` of the origin numbered `originNumber`, found through that origin's
    /// few held slots: no slot identity (a hash) needs computing for a record whose slot is already held.
    func index(ofSlot slot: RecordSlot, originNumber: Int) -> Int? {
        var index = originNumber < lastOfOrigin.count ? Int(lastOfOrigin[originNumber]) : -1
        while index >= 0 {
            if ids[index].slot == slot { return index }
            index = Int(previousOfOrigin[index])
        }
        return nil
    }

    /// Renumbers the origins (after the peer directory changed): `number` gives an origin's number, or
    /// `nil` for one whose copies need not be recognised.
    mutating func renumberOrigins(_ number: (VerifyingKey) -> Int?) {
        lastOfOrigin = []
        previousOfOrigin = []
        for (index, id) in ids.enumerated() { link(index, originNumber: number(id.origin)) }
    }

    private mutating func link(_ index: Int, originNumber: Int?) {
        guard let number = originNumber, number >= 0 else {
            previousOfOrigin.append(-1)
            return
        }
        if lastOfOrigin.count <= number {
            lastOfOrigin.append(contentsOf: repeatElement(-1, count: number + 1 - lastOfOrigin.count))
        }
        previousOfOrigin.append(lastOfOrigin[number])
        lastOfOrigin[number] = Int32(index)
    }

    /// Holds `record` for `id`, in place of the record held before, if any, with `transmits` pushes
    /// left and `holder` (if any) known to hold it. `originNumber` numbers the origin for recognising
    /// copies (see `renumberOrigins`).
    /// - Returns: the slot's index.
    @discardableResult
    mutating func put(
        _ record: SignedRecord, for id: SlotID, transmits: Int, knownBy holder: UInt64?, originNumber: Int?
    ) -> Int {
        if let index = index(of: id) {
            records[index] = record
            meta[index] = SlotMeta(version: record.version, transmitsLeft: transmits)
            // A slot updated while still pushed keeps its ring.
            knownBy.clear(at: index)
            if let holder { knownBy.insert(holder, at: index) }
            return index
        }
        let index = ids.count
        ids.append(id)
        records.append(record)
        meta.append(SlotMeta(version: record.version, transmitsLeft: transmits))
        knownBy.appendSlot()
        if let holder { knownBy.insert(holder, at: index) }
        link(index, originNumber: originNumber)
        if indexByHash.index(of: id.hash) == nil {
            indexByHash.insert(id.hash, index: index)
        } else {
            collided[id] = index
        }
        return index
    }

    /// Takes `pushes` off the pushes left at `index`; the list of peers known to hold the record is
    /// dropped with the last push (nothing reads it after that), so that the records a node holds for
    /// every peer cost no more than the records themselves.
    /// - Returns: the pushes left.
    @discardableResult
    mutating func spend(at index: Int, pushes: Int) -> Int {
        let left = max(0, meta[index].transmitsLeft - pushes)
        meta[index].transmitsLeft = left
        if left == 0 { knownBy.release(at: index) }
        return left
    }

    /// Notes that `peer` holds the version at `index`.
    mutating func noteKnown(at index: Int, by peer: VerifyingKey) {
        let name = peer.prefix64
        guard !knownBy.contains(name, at: index) else { return }
        knownBy.insert(name, at: index)
    }

    /// Whether `peer` is known to hold the version at `index`.
    func isKnown(at index: Int, by peer: VerifyingKey) -> Bool { knownBy.contains(peer.prefix64, at: index) }

    /// Drops the slots `isDropped` names. Indices change: callers rebuild whatever holds them, and
    /// renumber the origins.
    /// - Returns: for each old index, its new one, or `nil` if it was dropped.
    mutating func removeAll(where isDropped: (SlotID) -> Bool) -> [Int?] {
        var remap: [Int?] = Array(repeating: nil, count: ids.count)
        var kept = RecordTable()
        for index in ids.indices where !isDropped(ids[index]) {
            let next = kept.put(
                records[index], for: ids[index], transmits: meta[index].transmitsLeft, knownBy: nil, originNumber: nil)
            for name in knownBy.names(at: index) { kept.knownBy.insert(name, at: next) }
            remap[index] = next
        }
        self = kept
        return remap
    }
}

/// Who is known to hold each slot's record: per slot, a ring of up to `RecordTable.knownByCap` names
/// (the oldest makes room for a new one), in blocks of one flat array. A slot takes a block when its first
/// holder is noted and gives it back with its last push, so only records still being pushed cost one.
/// Noting a holder (for most records that arrive) touches flat arrays, not an array of arrays.
struct HolderRings: Sendable {
    private static let capacity = RecordTable.knownByCap
    /// Each slot's block, or -1.
    private var blockOfSlot: [Int32] = []
    /// The blocks' names, `capacity` per block.
    private var names: [UInt64] = []
    /// Where each block's oldest name is.
    private var heads: [Int] = []
    /// How many names each block holds.
    private var counts: [Int] = []
    /// Blocks given back, to hand out again.
    private var freeBlocks: [Int32] = []

    /// Adds a slot with no holders.
    mutating func appendSlot() { blockOfSlot.append(-1) }

    /// Whether `name` is among the holders of `slot`.
    func contains(_ name: UInt64, at slot: Int) -> Bool {
        let block = Int(blockOfSlot[slot])
        guard block >= 0 else { return false }
        // Order does not matter here: the ring's names are at most two runs of the block, read without
        // wrapping arithmetic or bounds checks per name (every copy and digest entry that arrives asks).
        let base = block * Self.capacity
        let head = heads[block]
        let count = counts[block]
        let first = min(count, Self.capacity - head)
        return names.withUnsafeBufferPointer { names in
            for position in (base + head)..<(base + head + first) where names[position] == name { return true }
            for position in base..<(base + count - first) where names[position] == name { return true }
            return false
        }
    }

    /// Adds `name` (not already there) to the holders of `slot`, dropping the oldest if full.
    mutating func insert(_ name: UInt64, at slot: Int) {
        var block = Int(blockOfSlot[slot])
        if block < 0 {
            if let free = freeBlocks.popLast() {
                block = Int(free)
            } else {
                block = heads.count
                names.append(contentsOf: repeatElement(0, count: Self.capacity))
                heads.append(0)
                counts.append(0)
            }
            blockOfSlot[slot] = Int32(block)
            heads[block] = 0
            counts[block] = 0
        }
        if counts[block] == Self.capacity {
            heads[block] = (heads[block] + 1) % Self.capacity
            counts[block] -= 1
        }
        names[block * Self.capacity + (heads[block] + counts[block]) % Self.capacity] = name
        counts[block] += 1
    }

    /// Forgets the holders of `slot`, keeping its block.
    mutating func clear(at slot: Int) {
        let block = Int(blockOfSlot[slot])
        guard block >= 0 else { return }
        heads[block] = 0
        counts[block] = 0
    }

    /// Forgets the holders of `slot` and gives its block back.
    mutating func release(at slot: Int) {
        let block = blockOfSlot[slot]
        guard block >= 0 else { return }
        blockOfSlot[slot] = -1
        freeBlocks.append(block)
    }

    /// The holders of `slot`, oldest first.
    func names(at slot: Int) -> [UInt64] {
        let block = Int(blockOfSlot[slot])
        guard block >= 0 else { return [] }
        return (0..<counts[block]).map { names[block * Self.capacity + (heads[block] + $0) % Self.capacity] }
    }
}

/// Slot hashes to the first slot held for each: an open-addressing table (linear probing, at most half
/// full). The hashes are BLAKE2b output, so their low bits spread the slots as they are; every digest
/// entry looks one up, and a dictionary's own hashing of them cost more than the look-up.
struct SlotHashIndex: Sendable {
    private var hashes: [UInt64] = Array(repeating: 0, count: 16)
    /// The slot for each entry, or -1 where the entry is empty.
    private var slots: [Int32] = Array(repeating: -1, count: 16)
    private var count = 0

    /// The slot held for `hash`, if any.
    func index(of hash: UInt64) -> Int? {
        let mask = slots.count - 1
        var position = Int(truncatingIfNeeded: hash) & mask
        while true {
            let slot = slots[position]
            if slot < 0 { return nil }
            if hashes[position] == hash { return Int(slot) }
            position = (position + 1) & mask
        }
    }

    /// Maps `hash` (not yet present) to `index`.
    mutating func insert(_ hash: UInt64, index: Int) {
        if 2 * (count + 1) > slots.count { grow() }
        let mask = slots.count - 1
        var position = Int(truncatingIfNeeded: hash) & mask
        while slots[position] >= 0 { position = (position + 1) & mask }
        hashes[position] = hash
        slots[position] = Int32(index)
        count += 1
    }

    private mutating func grow() {
        let old = zip(hashes, slots).filter { $0.1 >= 0 }
        hashes = Array(repeating: 0, count: 2 * slots.count)
        slots = Array(repeating: -1, count: hashes.count)
        count = 0
        for (hash, slot) in old { insert(hash, index: Int(slot)) }
    }
}

import QuotaMeshCrypto

/// The newest record a node holds per (origin, slot), each at a dense index that never changes while
/// the slot is held.
///
/// Everything that walks the table every round — the push queue, digests, the recent-update list —
/// names a slot by its index, so a round reads arrays instead of hashing slot identities, and checks a
/// queued entry against `versions` and `transmitsLeft` without touching the record itself. Only a
/// record arriving from the wire, or a digest naming a slot by its 64-bit hash, is looked up by hash.
struct RecordTable: Sendable {
    /// Slot identities, by index, in the order they were first held (digests rotate over this order).
    private(set) var ids: [SlotID] = []
    /// The held records, by index.
    private(set) var entries: [StoredRecord] = []
    /// `entries[i].record.version`, kept beside it so that queue and digest checks read plain words.
    private(set) var versions: [RecordVersion] = []
    /// The first slot held for each 64-bit slot hash.
    private var indexByHash: [UInt64: Int] = [:]
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

    /// The index of `id`, if it is held.
    func index(of id: SlotID) -> Int? {
        if let index = indexByHash[id.hash], ids[index] == id { return index }
        return collided.isEmpty ? nil : collided[id]
    }

    /// The index of the first slot held with `hash`, as digests name slots.
    func index(ofHash hash: UInt64) -> Int? { indexByHash[hash] }

    /// The index of the held record whose wire form is exactly `wire` (of the origin numbered
    /// `originNumber`, at `version`), if any.
    func index(ofCopy wire: ArraySlice<UInt8>, originNumber: Int, version: RecordVersion) -> Int? {
        var index = originNumber < lastOfOrigin.count ? Int(lastOfOrigin[originNumber]) : -1
        while index >= 0 {
            // An origin signs one record per version: at most one slot can match it.
            if versions[index] == version { return bytesEqual(entries[index].record.wire[...], wire) ? index : nil }
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

    /// Holds `stored` for `id`, in place of the record held before, if any. `originNumber` numbers the
    /// origin for recognising copies (see `renumberOrigins`).
    /// - Returns: the slot's index.
    @discardableResult
    mutating func put(_ stored: StoredRecord, for id: SlotID, originNumber: Int?) -> Int {
        if let index = index(of: id) {
            entries[index] = stored
            versions[index] = stored.record.version
            return index
        }
        let index = ids.count
        ids.append(id)
        entries.append(stored)
        versions.append(stored.record.version)
        link(index, originNumber: originNumber)
        if indexByHash[id.hash] == nil {
            indexByHash[id.hash] = index
        } else {
            collided[id] = index
        }
        return index
    }

    /// Applies `change` to the held record at `index` (its version must stay the same).
    mutating func update<Result>(at index: Int, _ change: (inout StoredRecord) -> Result) -> Result {
        change(&entries[index])
    }

    /// Drops the slots `isDropped` names. Indices change: callers rebuild whatever holds them, and
    /// renumber the origins.
    /// - Returns: for each old index, its new one, or `nil` if it was dropped.
    mutating func removeAll(where isDropped: (SlotID) -> Bool) -> [Int?] {
        var remap: [Int?] = Array(repeating: nil, count: ids.count)
        var kept = RecordTable()
        for index in ids.indices where !isDropped(ids[index]) {
            remap[index] = kept.put(entries[index], for: ids[index], originNumber: nil)
        }
        self = kept
        return remap
    }
}

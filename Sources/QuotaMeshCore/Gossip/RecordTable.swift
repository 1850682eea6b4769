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
    private var knownBy: [[UInt64]] = []
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

    /// The version held at `index`.
    func version(at index: Int) -> RecordVersion { meta[index].version }
    /// The pushes left for the record at `index`.
    func transmitsLeft(at index: Int) -> Int { meta[index].transmitsLeft }

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
            // A slot updated while still pushed keeps its list's buffer.
            knownBy[index].removeAll(keepingCapacity: true)
            if let holder { knownBy[index].append(holder) }
            return index
        }
        var known: [UInt64] = []
        if let holder {
            // Room for the whole list at once: it fills within a record's first rounds.
            known.reserveCapacity(Self.knownByCap)
            known.append(holder)
        }
        let index = ids.count
        ids.append(id)
        records.append(record)
        meta.append(SlotMeta(version: record.version, transmitsLeft: transmits))
        knownBy.append(known)
        link(index, originNumber: originNumber)
        if indexByHash[id.hash] == nil {
            indexByHash[id.hash] = index
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
        if left == 0 { knownBy[index] = [] }
        return left
    }

    /// Notes that `peer` holds the version at `index`.
    mutating func noteKnown(at index: Int, by peer: VerifyingKey) {
        let name = peer.prefix64
        guard !knownBy[index].contains(name) else { return }
        // Room for the whole list at once: it fills within a record's first rounds.
        if knownBy[index].capacity < Self.knownByCap { knownBy[index].reserveCapacity(Self.knownByCap) }
        if knownBy[index].count >= Self.knownByCap { knownBy[index].removeFirst() }
        knownBy[index].append(name)
    }

    /// Whether `peer` is known to hold the version at `index`.
    func isKnown(at index: Int, by peer: VerifyingKey) -> Bool { knownBy[index].contains(peer.prefix64) }

    /// Drops the slots `isDropped` names. Indices change: callers rebuild whatever holds them, and
    /// renumber the origins.
    /// - Returns: for each old index, its new one, or `nil` if it was dropped.
    mutating func removeAll(where isDropped: (SlotID) -> Bool) -> [Int?] {
        var remap: [Int?] = Array(repeating: nil, count: ids.count)
        var kept = RecordTable()
        for index in ids.indices where !isDropped(ids[index]) {
            let next = kept.put(
                records[index], for: ids[index], transmits: meta[index].transmitsLeft, knownBy: nil, originNumber: nil)
            kept.knownBy[next] = knownBy[index]
            remap[index] = next
        }
        self = kept
        return remap
    }
}

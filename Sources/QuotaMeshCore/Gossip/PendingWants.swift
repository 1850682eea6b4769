/// Slots a push announced that this node lacks, until a record of them arrives: each round some are asked
/// for again, from another peer, so that one lost want or answer does not leave the node without them
/// until a digest happens to name the slot (Plumtree's graft, with the graft sent to any peer: by the time
/// a node asks again, most of its peers hold the record).
///
/// Bounded: at most ``capacity`` slots (the oldest give way) and ``maxAsks`` asks each, so announcements
/// of slots that do not exist (a vouched peer's lie) cost a few small packets and are forgotten.
struct PendingWants: Sendable {
    struct Want: Sendable {
        /// The version announced: what the node waits for (a record at least as new ends the want).
        var announced: RecordVersion
        /// The round it was last asked for.
        var askedInRound: UInt64
        /// How many times it was asked for.
        var asks: Int
    }

    /// The most slots waited for at once.
    static let capacity = 256
    /// The most times one slot is asked for.
    static let maxAsks = 6
    /// The most slots asked for in one want (one packet's worth is far more than a round brings).
    static let maxPerAsk = 32

    private(set) var wants: [UInt64: Want] = [:]
    /// Slot hashes in the order they were first wanted, for eviction (entries already gone are skipped).
    private var order: [UInt64] = []

    var isEmpty: Bool { wants.isEmpty }

    /// Notes that `hash` was announced at `announced` and asked for in `round`.
    mutating func note(_ hash: UInt64, announced: RecordVersion, round: UInt64) {
        if var want = wants[hash] {
            want.announced = max(want.announced, announced)
            want.askedInRound = max(want.askedInRound, round)
            wants[hash] = want
            return
        }
        if wants.count >= Self.capacity { evictOldest() }
        wants[hash] = Want(announced: announced, askedInRound: round, asks: 1)
        order.append(hash)
    }

    /// Whether `hash` was asked for, at `version` or newer, in `round`: the answer may still be on its way,
    /// so another announcer of the same round is not asked too. A round later it may be asked again.
    func isAwaiting(_ hash: UInt64, version: RecordVersion, round: UInt64) -> Bool {
        guard let want = wants[hash] else { return false }
        return want.announced >= version && want.askedInRound >= round
    }

    /// The wants to ask for again in `round` (asked last before the previous round, fewer than
    /// ``maxAsks`` times), after dropping those `heldVersion` shows satisfied; each is counted as asked.
    mutating func due(round: UInt64, heldVersion: (UInt64) -> RecordVersion?) -> [DigestEntry] {
        guard !wants.isEmpty else { return [] }
        var entries: [DigestEntry] = []
        for hash in order {
            guard var want = wants[hash] else { continue }
            let held = heldVersion(hash) ?? .zero
            if held >= want.announced || want.asks >= Self.maxAsks {
                wants[hash] = nil
                continue
            }
            guard want.askedInRound + 1 < round, entries.count < Self.maxPerAsk else { continue }
            want.asks += 1
            want.askedInRound = round
            wants[hash] = want
            entries.append(DigestEntry(slotHash: hash, version: held))
        }
        order.removeAll { wants[$0] == nil }
        return entries
    }

    private mutating func evictOldest() {
        while let first = order.first {
            order.removeFirst()
            if wants.removeValue(forKey: first) != nil { return }
        }
    }
}

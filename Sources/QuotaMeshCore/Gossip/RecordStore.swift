import QuotaMeshCrypto

/// The records a node holds and how they spread, as bookkeeping with no I/O: the newest record per
/// origin and slot (``RecordTable``), the push queue (memberlist's transmit-limited queue, by pushes
/// left), the slots updated lately, and the marks that keep one digest from naming a slot twice.
///
/// It decides *what* goes out — which records a round pushes, which slots a digest names — and never to
/// whom, nor how: peers, targets and the wire stay with ``MeshInstance``.
struct RecordStore: Sendable {
    /// The held records.
    private(set) var table = RecordTable()
    /// Indices of slots in the order they were last updated (with repeats), newest last, for digests.
    private var recentSlots: [Int] = []
    /// Records still to be pushed, by how many pushes they have left: level k holds (slot index, version)
    /// pairs with k pushes left, newest last. Entries whose record moved on (superseded, or pushed and so
    /// moved down a level) are skipped and compacted away.
    private var hotLevels: [[(index: Int, version: RecordVersion)]] = []
    /// Per held slot, how many pushes have announced its current version.
    private var announceCounts: [UInt8] = []
    private var digestCursor = 0
    /// Per held slot, the generation of the last digest that named it (see ``beginDigestMarks()``).
    private var digestMarks: [UInt32] = []
    private var digestGeneration: UInt32 = 0
    /// Counts the times held records were dropped and the rest renumbered (``forget(where:)``): a packet's
    /// copies name slots by number, which mean nothing once that happened.
    private(set) var renumbered: UInt64 = 0

    /// How many entries a digest holds at most.
    let maxDigestEntries: Int

    init(maxDigestEntries: Int) {
        self.maxDigestEntries = maxDigestEntries
    }

    // MARK: - Holding

    /// Holds `record` in slot `id` with `transmits` pushes to go (known already by `knownBy`, the peer it
    /// came from), queues it for them and notes the slot as updated; returns its index.
    @discardableResult
    mutating func hold(
        _ record: SignedRecord, for id: SlotID, transmits: Int, knownBy: UInt64?, originNumber: Int?
    ) -> Int {
        let index = table.put(record, for: id, transmits: transmits, knownBy: knownBy, originNumber: originNumber)
        if announceCounts.count <= index {
            announceCounts.append(contentsOf: repeatElement(0, count: index + 1 - announceCounts.count))
        }
        announceCounts[index] = 0
        enqueue(index, version: record.version, level: transmits)
        recentSlots.append(index)
        if recentSlots.count > 4 * maxDigestEntries {
            recentSlots.removeFirst(recentSlots.count - 2 * maxDigestEntries)
        }
        return index
    }

    /// Drops the slots `isDropped` names and renumbers the rest (the queue and the recent list follow).
    mutating func forget(where isDropped: (SlotID) -> Bool) {
        let remap = table.removeAll(where: isDropped)
        renumbered &+= 1
        recentSlots = recentSlots.compactMap { remap[$0] }
        var counts = [UInt8](repeating: 0, count: table.count)
        for (old, new) in remap.enumerated() { if let new, old < announceCounts.count { counts[new] = announceCounts[old] } }
        announceCounts = counts
        hotLevels = hotLevels.map { level in level.compactMap { entry in remap[entry.index].map { ($0, entry.version) } } }
    }

    /// Renumbers the origins after the peer directory changed.
    mutating func renumberOrigins(_ number: (VerifyingKey) -> Int?) { table.renumberOrigins(number) }

    /// Notes that `peer` holds the record at `index` (it sent it, or a digest said so): pushes skip it.
    mutating func noteKnown(at index: Int, by peer: VerifyingKey) { table.noteKnown(at: index, by: peer) }

    /// A copy of the record at `index` (at `version`) arrived from `sender`: evidence that it is
    /// widespread, counted as `pushes` pushes (Demers et al.'s rumor mongering with feedback).
    mutating func noteCopy(at index: Int, version: RecordVersion, from sender: VerifyingKey, pushes: Int) {
        guard table.version(at: index) == version && table.transmitsLeft(at: index) > 0 else { return }
        table.noteKnown(at: index, by: sender)
        enqueue(index, version: version, level: table.spend(at: index, pushes: pushes))
    }

    // MARK: - Pushes

    /// Up to `wanted` records to push this round, in memberlist's order: fewest pushes first, newest first
    /// within a level, so that every record gets its turn however many arrive. `isWithheld` records are
    /// passed over. Each comes with a count of pushes made of it this round, 0 so far.
    mutating func pushCandidates(wanted: Int, isWithheld: (SlotID) -> Bool) -> [(index: Int, pushes: Int)] {
        var candidates: [(index: Int, pushes: Int)] = []
        var level = hotLevels.count - 1
        while level >= 1 && candidates.count < wanted {
            var index = hotLevels[level].count - 1
            var stale = 0
            while index >= 0 && candidates.count < wanted {
                let (slot, version) = hotLevels[level][index]
                index -= 1
                let held = table.meta[slot]
                guard held.version == version, held.transmitsLeft == level else {
                    if index + 1 == hotLevels[level].count - 1 {
                        hotLevels[level].removeLast()  // stale at the tail: gone at no cost
                    } else {
                        stale += 1
                    }
                    continue
                }
                if isWithheld(table.ids[slot]) { continue }
                candidates.append((slot, 0))
            }
            if index < 0 && stale > 0 {
                // The whole level was read: drop its stale entries now, so later rounds do not read them
                // again (a quiet node would otherwise rescan every superseded entry each round).
                let held = table.meta
                hotLevels[level].removeAll { entry in
                    held[entry.index].version != entry.version || held[entry.index].transmitsLeft != level
                }
            }
            level -= 1
        }
        return candidates
    }

    /// Counts this round's pushes of each candidate and queues it at the level it has left.
    mutating func notePushed(_ candidates: [(index: Int, pushes: Int)]) {
        // In candidate order, not dictionary order, so that runs replay exactly.
        for candidate in candidates where candidate.pushes > 0 {
            let left = table.spend(at: candidate.index, pushes: candidate.pushes)
            enqueue(candidate.index, version: table.version(at: candidate.index), level: left)
        }
        compactQueue()
    }

    private mutating func enqueue(_ index: Int, version: RecordVersion, level: Int) {
        guard level > 0 else { return }
        while hotLevels.count <= level { hotLevels.append([]) }
        hotLevels[level].append((index, version))
    }

    /// Drops stale entries once they outnumber the live ones (at most one live entry per held slot).
    private mutating func compactQueue() {
        let total = hotLevels.reduce(0) { $0 + $1.count }
        guard total > 2 * table.count + 64 else { return }
        let held = table.meta
        for level in hotLevels.indices {
            hotLevels[level] = hotLevels[level].filter { entry in
                held[entry.index].version == entry.version && held[entry.index].transmitsLeft == level
            }
        }
    }

    /// Up to `count` slots updated lately, newest first, to announce in a push to `target`: not those in
    /// the push itself (`leavingOut`), nor `target`'s own, nor any it is known to hold, nor withheld ones.
    /// Only the last ``announceWindow`` updates are looked at: announcements are for news.
    mutating func announcements(
        count: Int, to target: VerifyingKey, leavingOut: [Int], isWithheld: (SlotID) -> Bool
    ) -> [DigestEntry] {
        guard count > 0, !recentSlots.isEmpty else { return [] }
        beginDigestMarks()
        for slot in leavingOut { digestMarks[slot] = digestGeneration }
        var entries: [DigestEntry] = []
        for slot in takeRecent(window: Self.announceWindow, limit: .max) where entries.count < count {
            let id = table.ids[slot]
            guard announceCounts[slot] < Self.announcesPerUpdate, id.origin != target, !table.isKnown(at: slot, by: target),
                !isWithheld(id)
            else { continue }
            let entry = DigestEntry(slotHash: id.hash, version: table.version(at: slot))
            if WireFormat.isAnnounceable(entry) {
                entries.append(entry)
                announceCounts[slot] += 1
            }
        }
        return entries
    }

    /// A filter of the versions of the latest `latest` distinct slots updated.
    mutating func heldFilter(latest: Int) -> HeldFilter {
        var filter = HeldFilter()
        for slot in latestSlots(latest) { filter.insert(slotHash: table.ids[slot].hash, version: table.version(at: slot)) }
        return filter
    }

    /// The latest `count` distinct slots updated, newest first.
    mutating func latestSlots(_ count: Int) -> [Int] {
        beginDigestMarks()
        return takeRecent(window: recentSlots.count, limit: count)
    }

    /// Up to `limit` distinct slots among the last `window` updates, newest first, leaving out and then
    /// marking those marked since ``beginDigestMarks()``.
    private mutating func takeRecent(window: Int, limit: Int) -> [Int] {
        var slots: [Int] = []
        var position = recentSlots.count - 1
        let oldest = max(0, recentSlots.count - window)
        while position >= oldest && slots.count < limit {
            let slot = recentSlots[position]
            position -= 1
            guard digestMarks[slot] != digestGeneration else { continue }
            digestMarks[slot] = digestGeneration
            slots.append(slot)
        }
        return slots
    }

    /// How many of the latest updates a push's announcements are drawn from.
    static let announceWindow = 128
    /// How many pushes announce one update, at most.
    static let announcesPerUpdate: UInt8 = 12

    // MARK: - Digests

    /// A digest's entries: `recent` of the most recently updated slots (so a node that missed a recent
    /// push hears of it within a few digests, however many slots the cluster holds), the rest a rotating
    /// sample of every held slot (own and relayed alike), so repeated digests cover all of them. Slots
    /// marked since ``beginDigestMarks()`` (named by the digest being answered, or already in this one)
    /// are left out.
    mutating func digestSample(count: Int, recent: Int) -> [DigestEntry] {
        guard count > 0, !table.isEmpty else { return [] }
        var entries = takeRecent(window: recentSlots.count, limit: recent).map { slot in
            DigestEntry(slotHash: table.ids[slot].hash, version: table.version(at: slot))
        }
        let total = table.count
        var offset = 0
        let start = digestCursor % total
        while entries.count < count && offset < total {
            let slot = (start + offset) % total
            offset += 1
            guard digestMarks[slot] != digestGeneration else { continue }
            entries.append(DigestEntry(slotHash: table.ids[slot].hash, version: table.version(at: slot)))
        }
        digestCursor = (start + offset) % total
        return entries
    }

    /// Starts a digest's marks: a slot is marked when the digest names it, or when the digest it answers
    /// did, so that it is named once. A mark is the digest's generation number, so that starting a new
    /// digest clears every mark without touching them (a set of hashes cost a hash per slot named).
    mutating func beginDigestMarks() {
        digestGeneration &+= 1
        if digestGeneration == 0 {
            digestMarks = []
            digestGeneration = 1
        }
        if digestMarks.count < table.count {
            digestMarks.append(contentsOf: repeatElement(0, count: table.count - digestMarks.count))
        }
    }

    /// Marks the slot at `index` as named by the digest being answered.
    mutating func markNamed(_ index: Int) { digestMarks[index] = digestGeneration }
}

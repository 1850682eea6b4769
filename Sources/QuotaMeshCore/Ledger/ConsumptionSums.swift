import QuotaMeshCrypto

/// The sums over origins of a ``ConsumptionCounter``'s entries, kept as entries are added and removed:
/// the lifetime total, and the net count of each window end. ``windowTotal(at:)`` and ``lifetimeTotal``
/// equal the counter's (whose saturating sums of non-negative terms are the true sums, capped), without
/// a pass over every origin: in a cluster of a thousand nodes that pass ran for every decision.
struct ConsumptionSums: Sendable {
    /// The sum of every entry's lifetime total (wide enough never to overflow).
    private var lifetime: UInt128 = 0
    /// The net counts of entries by window end, in ascending order of end; ends whose count is zero are
    /// left out.
    private var windows: [(end: UnixMillis, count: UInt128)] = []

    /// Counts `entry` in.
    mutating func add(_ entry: ConsumptionEntry) {
        lifetime += UInt128(entry.total)
        let net = Self.net(entry)
        guard net > 0 else { return }
        // One pass from the latest end, where a current window's entries land.
        let at = (windows.lastIndex { $0.end <= entry.windowEnd } ?? -1)
        if at >= 0 && windows[at].end == entry.windowEnd {
            windows[at].count += net
        } else {
            windows.insert((entry.windowEnd, net), at: at + 1)
        }
    }

    /// Counts `entry` out again: it must have been counted in.
    mutating func remove(_ entry: ConsumptionEntry) {
        lifetime -= UInt128(entry.total)
        let net = Self.net(entry)
        guard net > 0, let index = windows.lastIndex(where: { $0.end == entry.windowEnd }) else { return }
        windows[index].count -= net
        if windows[index].count == 0 { windows.remove(at: index) }
    }

    /// What an entry counts in its window: its count net of refunds.
    private static func net(_ entry: ConsumptionEntry) -> UInt128 {
        UInt128(entry.windowCount - min(entry.windowRefund, entry.windowCount))
    }

    /// The sum of every entry's count in windows that have not ended at `now`, at most `UInt64.max`.
    func windowTotal(at now: UnixMillis) -> UInt64 {
        var total: UInt128 = 0
        var index = windows.count - 1
        while index >= 0 && windows[index].end > now {
            total += windows[index].count
            index -= 1
        }
        return UInt64(clamping: total)
    }

    /// The sum of every entry's lifetime total, at most `UInt64.max`.
    var lifetimeTotal: UInt64 { UInt64(clamping: lifetime) }
}

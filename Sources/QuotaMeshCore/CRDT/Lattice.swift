/// A join-semilattice: `merging` is commutative, associative and idempotent, so replicas that have seen
/// the same updates in any order, any number of times, hold equal values (Shapiro et al., "Conflict-free
/// Replicated Data Types", 2011).
public protocol JoinSemilattice: Equatable, Sendable {
    /// The least upper bound of `self` and `other`.
    func merging(_ other: Self) -> Self
}

extension Optional: JoinSemilattice where Wrapped: JoinSemilattice {
    /// `nil` is the bottom element.
    public func merging(_ other: Wrapped?) -> Wrapped? {
        switch (self, other) {
        case (nil, let value), (let value, nil): value
        case (let a?, let b?): a.merging(b)
        }
    }
}

/// One origin's consumption of one quota key: a grow-only lifetime total plus the count within the
/// window that ends at `windowEnd`. Only the origin writes its own entry; copies merge by maximum.
public struct ConsumptionEntry: JoinSemilattice, Hashable, Codable {
    /// Everything this origin ever admitted for the key (grow-only; anchors upstream observations).
    public var total: UInt64
    /// The end of the window that `windowCount` belongs to (Unix ms).
    public var windowEnd: UnixMillis
    /// What this origin admitted in that window.
    public var windowCount: UInt64
    /// What this origin gave back in that window: reserved but not used (a call that cost fewer tokens
    /// than its acquire said). Grow-only too, so refunds merge like admissions.
    public var windowRefund: UInt64

    /// Creates an entry.
    public init(total: UInt64 = 0, windowEnd: UnixMillis = 0, windowCount: UInt64 = 0, windowRefund: UInt64 = 0) {
        self.total = total
        self.windowEnd = windowEnd
        self.windowCount = windowCount
        self.windowRefund = windowRefund
    }

    enum CodingKeys: String, CodingKey { case total, windowEnd, windowCount, windowRefund }

    /// Decodes an entry; state saved before refunds existed has none.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        total = try container.decode(UInt64.self, forKey: .total)
        windowEnd = try container.decode(Int64.self, forKey: .windowEnd)
        windowCount = try container.decode(UInt64.self, forKey: .windowCount)
        windowRefund = try container.decodeIfPresent(UInt64.self, forKey: .windowRefund) ?? 0
    }

    /// `total` by maximum; a later window supersedes an earlier one, and within one window the count and
    /// the refund each by maximum.
    public func merging(_ other: ConsumptionEntry) -> ConsumptionEntry {
        let total = max(total, other.total)
        if windowEnd != other.windowEnd {
            let later = windowEnd > other.windowEnd ? self : other
            return ConsumptionEntry(
                total: total, windowEnd: later.windowEnd, windowCount: later.windowCount, windowRefund: later.windowRefund)
        }
        return ConsumptionEntry(
            total: total, windowEnd: windowEnd, windowCount: max(windowCount, other.windowCount),
            windowRefund: max(windowRefund, other.windowRefund))
    }

    /// The count that still applies at `now` (zero once its window has ended), net of refunds.
    public func count(at now: UnixMillis) -> UInt64 {
        windowEnd > now ? windowCount - min(windowRefund, windowCount) : 0
    }

    /// Corrects this origin's own count in the current window by `delta`: more when a call cost more
    /// than reserved, a refund (never below zero) when it cost less.
    public mutating func correct(by delta: Int64, now: UnixMillis) {
        guard windowEnd > now else { return }
        if delta > 0 {
            total = total.saturatingAdd(UInt64(delta))
            windowCount = windowCount.saturatingAdd(UInt64(delta))
        } else if delta < 0 {
            windowRefund = min(windowCount, windowRefund.saturatingAdd(delta.magnitude))
        }
    }
}

/// A per-origin grow-only counter (a G-Counter generalised to windows): merge is the entry-wise join,
/// the global value is the sum over origins.
public struct ConsumptionCounter<Origin: Hashable & Sendable>: JoinSemilattice {
    /// Each origin's entry.
    public var entries: [Origin: ConsumptionEntry]

    /// Creates a counter.
    public init(entries: [Origin: ConsumptionEntry] = [:]) { self.entries = entries }

    /// The entry-wise join.
    public func merging(_ other: ConsumptionCounter) -> ConsumptionCounter {
        ConsumptionCounter(entries: entries.merging(other.entries) { $0.merging($1) })
    }

    /// The sum of every origin's count in windows that have not ended at `now`.
    public func windowTotal(at now: UnixMillis) -> UInt64 {
        entries.values.reduce(0) { $0.saturatingAdd($1.count(at: now)) }
    }

    /// The sum of every origin's lifetime total.
    public var lifetimeTotal: UInt64 { entries.values.reduce(0) { $0.saturatingAdd($1.total) } }
}

/// What the upstream API said about a quota at one moment. Ordered as a lattice: a later window
/// (`resetAt`) supersedes an earlier one; within one window the lowest `remaining` wins; remaining
/// ties are broken by the other fields so the join is a total order and deterministic.
public struct UpstreamObservation: JoinSemilattice, Hashable, Codable {
    /// When the upstream window resets (Unix ms).
    public var resetAt: UnixMillis
    /// What the upstream said remained in the window.
    public var remaining: Int64
    /// The upstream's limit for the window, 0 if it did not say.
    public var limit: Int64
    /// The window's length in ms, 0 if unknown.
    public var windowMillis: Int64
    /// When the observation was made (Unix ms, the observer's clock).
    public var observedAt: UnixMillis
    /// The lifetime consumption total the observer knew for the key when it observed; what has been
    /// consumed since is subtracted from `remaining` when estimating what is left.
    public var consumedTotalAtObservation: UInt64

    /// Creates an observation.
    public init(
        resetAt: UnixMillis, remaining: Int64, limit: Int64, windowMillis: Int64, observedAt: UnixMillis,
        consumedTotalAtObservation: UInt64
    ) {
        self.resetAt = resetAt
        self.remaining = remaining
        self.limit = limit
        self.windowMillis = windowMillis
        self.observedAt = observedAt
        self.consumedTotalAtObservation = consumedTotalAtObservation
    }

    private var order: (UnixMillis, Int64, UInt64, Int64, Int64, UnixMillis) {
        // `~remaining` reverses the order of `remaining` without overflowing at Int64.min.
        (resetAt, ~remaining, consumedTotalAtObservation, limit, windowMillis, observedAt)
    }

    /// The later window; within a window the lower remaining.
    public func merging(_ other: UpstreamObservation) -> UpstreamObservation {
        order >= other.order ? self : other
    }
}

/// The shared circuit breaker as a lattice of three timestamps merged by maximum: an opening seen
/// anywhere opens it everywhere until `openUntil`; a successful probe after the latest opening
/// (`closedAt ≥ openedAt`) closes it everywhere.
public struct BreakerRegister: JoinSemilattice, Hashable, Codable {
    /// When the latest opening happened (0: never).
    public var openedAt: UnixMillis
    /// Until when calls are refused (Unix ms).
    public var openUntil: UnixMillis
    /// When a successful probe last closed it (0: never).
    public var closedAt: UnixMillis

    /// Creates a register; the default is closed.
    public init(openedAt: UnixMillis = 0, openUntil: UnixMillis = 0, closedAt: UnixMillis = 0) {
        self.openedAt = openedAt
        self.openUntil = openUntil
        self.closedAt = closedAt
    }

    /// Component-wise maximum.
    public func merging(_ other: BreakerRegister) -> BreakerRegister {
        BreakerRegister(
            openedAt: max(openedAt, other.openedAt), openUntil: max(openUntil, other.openUntil),
            closedAt: max(closedAt, other.closedAt))
    }

    /// The breaker's state at `now`.
    public func state(at now: UnixMillis) -> BreakerState {
        if openedAt == 0 || closedAt >= openedAt { return .closed }
        return now < openUntil ? .open : .halfOpen
    }
}

/// The three states of a circuit breaker (Nygard, "Release It!").
public enum BreakerState: String, Sendable, Codable {
    /// Calls flow.
    case closed
    /// Calls are refused until the open period ends.
    case open
    /// The open period ended; a few probe calls decide whether to close it.
    case halfOpen = "half_open"
}

extension FixedWidthInteger {
    /// `self + other`, or the largest value instead of overflowing.
    func saturatingAdd(_ other: Self) -> Self {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    /// `self - other`, or the smallest/largest value instead of overflowing.
    func saturatingSubtract(_ other: Self) -> Self {
        let (difference, overflow) = subtractingReportingOverflow(other)
        return overflow ? (other > 0 ? .min : .max) : difference
    }
}

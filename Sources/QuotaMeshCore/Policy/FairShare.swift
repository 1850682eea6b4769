/// Max-min fair division of a capacity among claimants with known needs ("water-filling", Bertsekas &
/// Gallager, Data Networks §6.5.2): nobody gets more than it needs while another gets less than an
/// equal share; what nobody needs is then split equally, so a lone claimant gets all of it.
public enum FairShare {
    /// Divides `capacity` among `needs`.
    /// - Parameters:
    ///   - capacity: what there is to divide (≥ 0).
    ///   - needs: each claimant's need (negative needs count as 0).
    /// - Returns: one allocation per claimant, summing to `capacity` (within rounding) when there is at
    ///   least one claimant.
    public static func maxMin(capacity: Double, needs: [Double]) -> [Double] {
        guard !needs.isEmpty else { return [] }
        let capacity = max(0, capacity)
        var allocation = [Double](repeating: 0, count: needs.count)
        let clamped = needs.map { $0.isFinite ? max(0, $0) : 0 }
        var left = capacity
        var open = Array(clamped.indices).sorted { clamped[$0] < clamped[$1] }
        // Satisfy the smallest needs fully while they are below an equal share of what is left.
        while let first = open.first {
            let level = left / Double(open.count)
            guard clamped[first] <= level else { break }
            allocation[first] = clamped[first]
            left -= clamped[first]
            open.removeFirst()
        }
        if !open.isEmpty {
            let level = left / Double(open.count)
            for index in open { allocation[index] = level }
            return allocation
        }
        // Every need is met: split what nobody needs equally.
        let bonus = left / Double(needs.count)
        return allocation.map { $0 + bonus }
    }

    /// One claimant's allocation when the capacity goes to tiers in turn: each tier's needs are met
    /// max-min fairly from what the tiers before it left, a tier that cannot be met in full takes all
    /// that is left, and what no tier needs is split equally.
    ///
    /// Every node computes this from the same signed demand rates, so the allocations sum to the capacity
    /// across the cluster: the node uses two tiers, urgent demand anywhere before other demand anywhere.
    /// - Parameters:
    ///   - capacity: what there is to divide (calls left in the window).
    ///   - ownNeeds: this claimant's need in each tier, first tier first; all zero for an idle claimant.
    ///   - others: the other claimants' demand rates in each tier, in the same order, the idle ones
    ///     (no demand in any tier) counted apart as ``TierRates/idle``.
    ///   - scales: per tier, the factor from a rate to a need (seconds left, times any headroom).
    ///   - floor: a need every claimant has at least: a claimant with demand in its last tier, counting
    ///     what the tiers before gave it; an idle claimant in the first tier, so that its first call can go
    ///     at once even when the first tier alone wants more than there is.
    ///   - claimants: how many claimants there are, this one included.
    /// - Returns: this claimant's allocation, between 0 and `capacity`.
    public static func tieredAllocation(
        capacity: Double, ownNeeds: InlineArray<2, Double>, others: [TierRates], scales: InlineArray<2, Double>,
        floor: Double, claimants: Int
    ) -> Double {
        guard capacity > 0 else { return 0 }
        var left = capacity
        var own = 0.0
        let tiers = min(2, others.count)
        let ownIdle = ownNeeds[0] <= 0 && ownNeeds[1] <= 0
        for tier in 0..<tiers {
            let idleNeed = tier == 0 ? floor : 0
            let busyFloor = tier == tiers - 1 ? floor : 0
            let ownNeed = ownIdle ? idleNeed : max(busyFloor, ownNeeds[tier])
            let total = others[tier].totalNeed(scale: scales[tier], floor: busyFloor, idleNeed: idleNeed) + ownNeed
            if total <= left {
                own += ownNeed
                left -= total
                continue
            }
            let level = others[tier].waterLevel(
                capacity: left, ownNeed: ownNeed, scale: scales[tier], floor: busyFloor, idleNeed: idleNeed)
            return own + min(ownNeed, level)
        }
        return own + left / Double(max(1, claimants))
    }

    /// Jain's fairness index of `values`: 1 when all are equal, 1/n when one has everything.
    public static func jainIndex(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 1 }
        let sum = values.reduce(0, +)
        let squares = values.reduce(0) { $0 + $1 * $1 }
        guard squares > 0 else { return 1 }
        return sum * sum / (Double(values.count) * squares)
    }
}

/// Other claimants' demand rates in one priority tier, sorted, with running sums, so that a tier's total
/// need costs a binary search and its water level one pass. Idle claimants (no demand in any tier) are
/// counted apart: their need is the idle floor of ``FairShare/tieredAllocation(capacity:ownNeeds:others:scales:floor:claimants:)``.
public struct TierRates: Sendable {
    /// The busy claimants' rates, ascending.
    public let sorted: [Double]
    /// How many claimants are idle.
    public let idle: Int
    /// `prefix[i]` is the sum of `sorted[0..<i]`.
    private let prefix: [Double]

    /// Sorts `rates` (negative or non-finite rates count as 0), beside `idle` idle claimants.
    public init(_ rates: [Double], idle: Int = 0) {
        sorted = rates.map { $0.isFinite ? max(0, $0) : 0 }.sorted()
        self.idle = max(0, idle)
        var sums = [0.0]
        sums.reserveCapacity(sorted.count + 1)
        for rate in sorted { sums.append(sums[sums.count - 1] + rate) }
        prefix = sums
    }

    /// How many rates give a need below `floor` at `scale`.
    private func countBelow(scale: Double, floor: Double) -> Int {
        guard floor > 0 else { return 0 }
        var low = 0
        var high = sorted.count
        while low < high {
            let middle = (low + high) / 2
            if sorted[middle] * scale < floor { low = middle + 1 } else { high = middle }
        }
        return low
    }

    /// The sum of every claimant's need: `max(floor, rate × scale)` for a busy one, `idleNeed` for an
    /// idle one.
    public func totalNeed(scale: Double, floor: Double, idleNeed: Double = 0) -> Double {
        let below = countBelow(scale: scale, floor: floor)
        return Double(idle) * idleNeed + Double(below) * floor + scale * (prefix[sorted.count] - prefix[below])
    }

    /// The level at which `capacity` meets these needs and `ownNeed` max-min fairly: every need below it
    /// is met in full and every other claimant gets the level.
    public func waterLevel(
        capacity: Double, ownNeed: Double, scale: Double, floor: Double, idleNeed: Double = 0
    ) -> Double {
        var left = capacity
        var open = sorted.count + idle + 1
        var ownPlaced = false
        var idlePlaced = 0
        var index = 0
        // Three ascending runs merged: this claimant's need, the idle needs, the busy needs.
        while open > 0 {
            let level = left / Double(open)
            let busy = index < sorted.count ? max(floor, sorted[index] * scale) : .infinity
            let nextIdle = idlePlaced < idle ? idleNeed : .infinity
            let need: Double
            if !ownPlaced && ownNeed <= busy && ownNeed <= nextIdle {
                need = ownNeed
                ownPlaced = true
            } else if nextIdle <= busy {
                need = nextIdle
                idlePlaced += 1
            } else {
                need = busy
                index += 1
            }
            if need > level { return level }
            left -= need
            open -= 1
        }
        return .infinity
    }
}

/// A leaky bucket in its GCRA form (ITU-T I.371 "virtual scheduling"): calls are spaced `cost / rate`
/// apart, with a burst tolerance that depends on priority. It never reads a clock.
///
/// The rate may change from one call to the next (a node's share follows the cluster's demand). What the
/// bucket owes is therefore kept in calls, not in time: when the rate changes, the time still owed is
/// re-timed at the new rate. A call charged while the share was briefly small then does not hold back
/// the node after its share has grown again, so allocation that was granted is not left unused.
public struct LeakyBucket: Sendable, Hashable {
    /// The theoretical arrival time of the next call at `rate` (Unix ms, fractional).
    public private(set) var theoreticalArrival: Double
    /// The window the bucket is metering; a new window empties it.
    public private(set) var windowEnd: UnixMillis
    /// The rate (calls per ms) `theoreticalArrival` was computed at; 0 before the first charge.
    public private(set) var rate: Double

    /// Creates an empty bucket.
    public init() {
        theoreticalArrival = 0
        windowEnd = 0
        rate = 0
    }

    /// Starts metering a new window: the first call may pass `phase` ms from now (a random phase spreads
    /// the first calls of many nodes across the window instead of all at its start).
    public mutating func enter(windowEnd: UnixMillis, now: UnixMillis, phase: Double = 0) {
        self.windowEnd = windowEnd
        theoreticalArrival = Double(now) + max(0, phase)
        rate = 0
    }

    /// The theoretical arrival time re-timed to `ratePerMillisecond`: what is still owed after `now`,
    /// counted in calls at the old rate, paid at the new one.
    public func theoreticalArrival(at ratePerMillisecond: Double, now: UnixMillis) -> Double {
        let current = Double(now)
        guard rate > 0, ratePerMillisecond > 0, theoreticalArrival > current else { return theoreticalArrival }
        return current + (theoreticalArrival - current) * rate / ratePerMillisecond
    }

    /// Re-times what is still owed at `ratePerMillisecond`, from now on the bucket's rate. Called at every
    /// decision, so the debt is paid at each rate for as long as it held.
    public mutating func retime(ratePerMillisecond: Double, now: UnixMillis) {
        guard ratePerMillisecond > 0 else { return }
        theoreticalArrival = theoreticalArrival(at: ratePerMillisecond, now: now)
        rate = ratePerMillisecond
    }

    /// Stops paying what is owed until the next ``retime(ratePerMillisecond:now:)``: while a node's pace
    /// is nothing, its debt stands still. A bucket not charged yet in its window keeps its phase.
    public mutating func hold(now: UnixMillis) {
        guard rate > 0 else { return }
        retime(ratePerMillisecond: Self.heldRate, now: now)
    }

    /// The rate a held bucket is re-timed at: small enough that nothing is paid in any window.
    static let heldRate = 1e-12

    /// The earliest time a call may pass with burst tolerance `tolerance` (ms) at the bucket's rate.
    public func earliestAdmission(tolerance: Double) -> Double { theoreticalArrival - tolerance }

    /// The earliest time a call may pass with burst tolerance `tolerance` (ms) at the given rate.
    public func earliestAdmission(tolerance: Double, ratePerMillisecond: Double, now: UnixMillis) -> Double {
        theoreticalArrival(at: ratePerMillisecond, now: now) - tolerance
    }

    /// Decides whether a call passes now.
    /// - Parameters:
    ///   - cost: the call's cost.
    ///   - ratePerMillisecond: the drain rate (> 0).
    ///   - tolerance: how far (ms) the bucket may run ahead of real time: the burst.
    ///   - now: the current time.
    /// - Returns: `nil` if admitted (and the bucket is charged), else the time it would pass.
    public mutating func admit(
        cost: Double, ratePerMillisecond: Double, tolerance: Double, now: UnixMillis
    ) -> UnixMillis? {
        retime(ratePerMillisecond: ratePerMillisecond, now: now)
        let earliest = theoreticalArrival - tolerance
        if earliest > Double(now) { return UnixMillis(earliest.rounded(.up)) }
        charge(cost: cost, ratePerMillisecond: ratePerMillisecond, now: now)
        return nil
    }

    /// Charges the bucket without checking (for calls admitted on another basis).
    public mutating func charge(cost: Double, ratePerMillisecond: Double, now: UnixMillis) {
        let retimed = theoreticalArrival(at: ratePerMillisecond, now: now)
        theoreticalArrival = max(retimed, Double(now)) + cost / ratePerMillisecond
        rate = ratePerMillisecond
    }
}

/// A small, fast, seedable generator (SplitMix64, Steele et al. 2014) so the core's random choices
/// replay exactly from a seed.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Creates a generator from a seed.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Detects replayed packets per sender with a sliding window of the last 64 sequence numbers (the
/// anti-replay window of IPsec, RFC 4303 §3.4.3): reordered packets pass, duplicates and old ones do not.
public struct ReplayWindow: Sendable, Hashable {
    /// The sender's incarnation this window tracks.
    public private(set) var incarnation: UInt64 = 0
    /// The highest sequence accepted.
    public private(set) var highest: UInt64 = 0
    private var seen: UInt64 = 0
    private var started = false

    /// Whether any packet was accepted yet.
    public var hasStarted: Bool { started }

    /// Creates an empty window.
    public init() {}

    /// `true` if a packet with this incarnation and sequence would be new.
    public func isFresh(incarnation: UInt64, sequence: UInt64) -> Bool {
        guard started else { return true }
        if incarnation != self.incarnation { return incarnation > self.incarnation }
        if sequence > highest { return true }
        let age = highest - sequence
        return age < 64 && seen & (1 << age) == 0
    }

    /// Records a packet that passed `isFresh` and authentication.
    public mutating func accept(incarnation: UInt64, sequence: UInt64) {
        if !started || incarnation > self.incarnation {
            started = true
            self.incarnation = incarnation
            highest = sequence
            seen = 1
            return
        }
        if sequence > highest {
            let shift = sequence - highest
            seen = shift >= 64 ? 1 : (seen << shift) | 1
            highest = sequence
        } else {
            let age = highest - sequence
            if age < 64 { seen |= 1 << age }
        }
    }
}

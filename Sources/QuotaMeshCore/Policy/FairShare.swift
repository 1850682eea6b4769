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

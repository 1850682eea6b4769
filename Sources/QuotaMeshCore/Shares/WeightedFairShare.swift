/// Weighted max-min fair division (water-filling with weights): every claimant gets its need or its
/// weight times a common level, whichever is less, the level as high as the capacity allows; what no
/// claimant needs is split in proportion to weight. With equal weights it is ``FairShare/maxMin(capacity:needs:)``.
public enum WeightedFairShare {
    /// Divides `capacity` among claimants with `needs` and `weights` (positive; others count as 1).
    public static func allocate(capacity: Double, needs: [Double], weights: [Double]) -> [Double] {
        precondition(needs.count == weights.count, "a weight per need")
        guard !needs.isEmpty else { return [] }
        let capacity = max(0, capacity)
        let needs = needs.map { $0.isFinite ? max(0, $0) : 0 }
        let weights = weights.map { $0.isFinite && $0 > 0 ? $0 : 1 }
        var allocation = [Double](repeating: 0, count: needs.count)
        // Claimants whose need runs out first at a rising level: the smallest need per weight first.
        var open = Array(needs.indices).sorted { needs[$0] / weights[$0] < needs[$1] / weights[$1] }
        var left = capacity
        var openWeight = weights.reduce(0, +)
        while let first = open.first {
            let level = left / openWeight
            guard needs[first] <= weights[first] * level else { break }
            allocation[first] = needs[first]
            left -= needs[first]
            openWeight -= weights[first]
            open.removeFirst()
        }
        if !open.isEmpty {
            let level = left / openWeight
            for index in open { allocation[index] = weights[index] * level }
            return allocation
        }
        // Every need is met: what is left goes in proportion to weight.
        let total = weights.reduce(0, +)
        return allocation.indices.map { allocation[$0] + left * weights[$0] / total }
    }

    /// One claimant in ``tieredAllocation(capacity:claimants:own:floor:)``: its needs in the urgent tier
    /// and in the rest, and its weight.
    public struct Claim: Sendable {
        public var urgent: Double
        public var rest: Double
        public var weight: Double

        public init(urgent: Double, rest: Double, weight: Double) {
            self.urgent = urgent
            self.rest = rest
            self.weight = weight
        }

        var isIdle: Bool { urgent <= 0 && rest <= 0 }
    }

    /// Claimant `own`'s allocation when the capacity goes to two tiers in turn, as
    /// ``FairShare/tieredAllocation(capacity:ownNeeds:others:scales:floor:claimants:)`` divides it, with
    /// weights: each tier's needs are met weighted max-min fairly from what the tiers before left, and what
    /// no tier needs is split in proportion to weight. `floor` is the least need of an idle claimant in the
    /// first tier, and of a busy one in the last.
    public static func tieredAllocation(capacity: Double, claimants: [Claim], own: Int, floor: Double) -> Double {
        guard capacity > 0, claimants.indices.contains(own) else { return 0 }
        var left = capacity
        var granted = 0.0
        let weights = claimants.map { $0.weight.isFinite && $0.weight > 0 ? $0.weight : 1 }
        for tier in 0..<2 {
            let needs = claimants.map { claim -> Double in
                if claim.isIdle { return tier == 0 ? floor : 0 }
                let need = tier == 0 ? claim.urgent : claim.rest
                return tier == 1 ? max(floor, need) : need
            }
            let total = needs.reduce(0, +)
            if total <= left {
                granted += needs[own]
                left -= total
                continue
            }
            return granted + allocate(capacity: left, needs: needs, weights: weights)[own]
        }
        return granted + left * weights[own] / weights.reduce(0, +)
    }
}

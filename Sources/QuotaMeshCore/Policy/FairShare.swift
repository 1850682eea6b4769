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

    /// Jain's fairness index of `values`: 1 when all are equal, 1/n when one has everything.
    public static func jainIndex(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 1 }
        let sum = values.reduce(0, +)
        let squares = values.reduce(0) { $0 + $1 * $1 }
        guard squares > 0 else { return 1 }
        return sum * sum / (Double(values.count) * squares)
    }
}

/// A leaky bucket in its GCRA form (ITU-T I.371 "virtual scheduling"): calls are spaced `cost / rate`
/// apart, with a burst tolerance that depends on priority. It never reads a clock.
public struct LeakyBucket: Sendable, Hashable {
    /// The theoretical arrival time of the next call (Unix ms, fractional).
    public private(set) var theoreticalArrival: Double
    /// The window the bucket is metering; a new window empties it.
    public private(set) var windowEnd: UnixMillis

    /// Creates an empty bucket.
    public init() {
        theoreticalArrival = 0
        windowEnd = 0
    }

    /// Starts metering a new window: the first call may pass `phase` ms from now (a random phase spreads
    /// the first calls of many nodes across the window instead of all at its start).
    public mutating func enter(windowEnd: UnixMillis, now: UnixMillis, phase: Double = 0) {
        self.windowEnd = windowEnd
        theoreticalArrival = Double(now) + max(0, phase)
    }

    /// The earliest time a call may pass with burst tolerance `tolerance` (ms).
    public func earliestAdmission(tolerance: Double) -> Double { theoreticalArrival - tolerance }

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
        let current = Double(now)
        let earliest = theoreticalArrival - tolerance
        if earliest > current { return UnixMillis(earliest.rounded(.up)) }
        theoreticalArrival = max(theoreticalArrival, current) + cost / ratePerMillisecond
        return nil
    }

    /// Charges the bucket without checking (for calls admitted on another basis).
    public mutating func charge(cost: Double, ratePerMillisecond: Double, now: UnixMillis) {
        theoreticalArrival = max(theoreticalArrival, Double(now)) + cost / ratePerMillisecond
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

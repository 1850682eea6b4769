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

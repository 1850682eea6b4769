import QuotaMeshCrypto

/// Bounds on what a signed record may claim; records outside them are dropped as `absurd_values`, so a
/// buggy or compromised peer cannot make arithmetic overflow or switch enforcement off.
enum Plausible {
    /// How far in the past a record's time stamp may be.
    static let maxAgeMillis: Int64 = 30 * 86_400_000
    /// How far a reset, an open-until or a window end may lie ahead of the record.
    static let maxAheadMillis: Int64 = 400 * 86_400_000
    /// The largest limit, remaining or count.
    static let maxCount: Int64 = 1_000_000_000_000_000
    /// The longest window.
    static let maxWindowMillis: Int64 = 400 * 86_400_000

    static func isPlausible(_ state: QuotaState, stamped timestamp: UnixMillis) -> Bool {
        let latest = timestamp.saturatingAdd(maxAheadMillis)
        let time: (Int64) -> Bool = { $0 >= 0 && $0 <= latest }
        let count: (UInt64) -> Bool = { $0 <= UInt64(maxCount) }
        guard time(state.consumption.windowEnd), count(state.consumption.total), count(state.consumption.windowCount)
        else { return false }
        if let observation = state.observation {
            guard time(observation.resetAt), time(observation.observedAt),
                (0...maxCount).contains(observation.limit), (-maxCount...maxCount).contains(observation.remaining),
                (0...maxWindowMillis).contains(observation.windowMillis),
                count(observation.consumedTotalAtObservation)
            else { return false }
        }
        guard time(state.breaker.openedAt), time(state.breaker.openUntil), time(state.breaker.closedAt),
            state.breaker.openedAt <= timestamp.saturatingAdd(Plausible.maxAgeMillis),
            state.breaker.closedAt <= timestamp.saturatingAdd(Plausible.maxAgeMillis)
        else { return false }
        if let policy = state.policy {
            guard (1...maxCount).contains(policy.limit), (1...maxWindowMillis).contains(policy.windowMillis) else {
                return false
            }
        }
        if let ledger = state.ledger {
            guard time(ledger.windowEnd), count(ledger.spent), ledger.given.allSatisfy({ count($0.amount) }),
                count(ledger.totalGiven)
            else { return false }
        }
        return true
    }
}

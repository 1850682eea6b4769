/// How many failed signature checks a node spends on packets from one source, and on all sources together,
/// before it stops checking the packets of sources that have not proven themselves. Anyone can name a
/// vouched key in a packet header (the keys are no secret), and each such packet costs an Ed25519
/// verification; a flood of them (about 10k a second fills a core) is then refused for the price of a
/// dictionary look-up. A source whose packet verified lately is always checked, so a flood from elsewhere
/// does not cut off the real peers.
struct VerificationBudget: Sendable {
    /// Failures allowed from one source: a burst, then a steady rate (per second).
    static let sourceBurst = 20.0
    static let sourceRate = 10.0
    /// Failures allowed from all unproven sources together.
    static let globalBurst = 1_000.0
    static let globalRate = 500.0
    /// How long a verified packet vouches for its source.
    static let provenMillis: Int64 = 60_000
    /// The most sources remembered; past it the table is cleared (attackers rotate source ports).
    static let maxSources = 4_096

    private var failures: [Endpoint: (tokens: Double, at: UnixMillis)] = [:]
    private var global: (tokens: Double, at: UnixMillis) = (globalBurst, .min)
    private var proven: [Endpoint: UnixMillis] = [:]

    /// Whether a packet from `source` may be checked now.
    func mayVerify(_ source: Endpoint, now: UnixMillis) -> Bool {
        if let at = proven[source], now.saturatingSubtract(at) < Self.provenMillis { return true }
        let own = failures[source].map { Self.refilled($0, rate: Self.sourceRate, burst: Self.sourceBurst, now: now) }
            ?? Self.sourceBurst
        return own >= 1 && Self.refilled(global, rate: Self.globalRate, burst: Self.globalBurst, now: now) >= 1
    }

    /// Notes a packet from `source` whose signature verified.
    mutating func noteVerified(_ source: Endpoint, now: UnixMillis) {
        if proven.count >= Self.maxSources && proven[source] == nil { proven = [:] }
        proven[source] = now
        failures[source] = nil
    }

    /// Notes a packet from `source` whose signature did not verify.
    mutating func noteFailed(_ source: Endpoint, now: UnixMillis) {
        if failures.count >= Self.maxSources && failures[source] == nil { failures = [:] }
        let own = failures[source].map { Self.refilled($0, rate: Self.sourceRate, burst: Self.sourceBurst, now: now) }
            ?? Self.sourceBurst
        failures[source] = (own - 1, now)
        global = (Self.refilled(global, rate: Self.globalRate, burst: Self.globalBurst, now: now) - 1, now)
    }

    private static func refilled(
        _ bucket: (tokens: Double, at: UnixMillis), rate: Double, burst: Double, now: UnixMillis
    ) -> Double {
        guard bucket.at != .min else { return burst }
        return min(burst, bucket.tokens + Double(max(0, now.saturatingSubtract(bucket.at))) * rate / 1000)
    }
}

import QuotaMeshCrypto

/// The limit and window an origin enforces for a key (from its configuration or learned upstream), so
/// that peers without a configuration for the service learn it.
public struct AdvertisedPolicy: Hashable, Sendable, Codable {
    /// Calls allowed per window.
    public var limit: Int64
    /// The window's length in ms.
    public var windowMillis: Int64

    /// Creates a policy advertisement.
    public init(limit: Int64, windowMillis: Int64) {
        self.limit = limit
        self.windowMillis = windowMillis
    }
}

/// Everything one origin says about one quota key.
public struct QuotaState: Hashable, Sendable, Codable {
    /// The origin's own consumption.
    public var consumption: ConsumptionEntry
    /// The origin's latest upstream observation, if any.
    public var observation: UpstreamObservation?
    /// The breaker as the origin sees it.
    public var breaker: BreakerRegister
    /// The origin's recent demand.
    public var demand: Demand
    /// The limit the origin enforces, if it knows one.
    public var policy: AdvertisedPolicy?
    /// The origin's rights ledger for the current window: what it spent and gave (absent before it spent
    /// or gave anything, and in state saved before rights existed).
    public var ledger: RightsLedger?
    /// The members the origin splits rights among (absent in records signed before it was added).
    public var members: MembersDigest?
    /// The weight the origin claims for itself (absent: 1). Receivers believe at most what they vouch.
    public var weight: Weight?

    /// Creates a state.
    public init(
        consumption: ConsumptionEntry = .init(), observation: UpstreamObservation? = nil,
        breaker: BreakerRegister = .init(), demand: Demand = .zero, policy: AdvertisedPolicy? = nil,
        ledger: RightsLedger? = nil, members: MembersDigest? = nil, weight: Weight? = nil
    ) {
        self.weight = weight
        self.consumption = consumption
        self.observation = observation
        self.breaker = breaker
        self.demand = demand
        self.policy = policy
        self.ledger = ledger
        self.members = members
    }
}

/// When the shared circuit breaker opens, and for how long.
public struct BreakerPolicy: Hashable, Sendable, Codable {
    /// Consecutive failures (429, 5xx) seen by one node that open the breaker.
    public var failureThreshold: Int
    /// How long it stays open when no `Retry-After` says otherwise (ms).
    public var openMillis: Int64
    /// How long a half-open probe may stay unanswered before another node-local probe is allowed (ms).
    public var probeTimeoutMillis: Int64

    /// Creates a breaker policy.
    public init(failureThreshold: Int = 5, openMillis: Int64 = 30_000, probeTimeoutMillis: Int64 = 10_000) {
        self.failureThreshold = failureThreshold
        self.openMillis = openMillis
        self.probeTimeoutMillis = probeTimeoutMillis
    }
}

/// What a node enforces for one service.
public struct ServicePolicy: Hashable, Sendable, Codable {
    /// Calls allowed per window across the whole mesh, if known in advance.
    public var limit: Int64?
    /// The window's length in ms, if known in advance.
    public var windowMillis: Int64?
    /// Priority reserves.
    public var reserves: Reserves
    /// Account labels; calls rotate across them. Never credentials.
    public var accounts: [String]
    /// Breaker thresholds.
    public var breaker: BreakerPolicy
    /// The burst a node may send ahead of its paced rate, as a fraction of the limit (default 0.1).
    public var burstFraction: Double
    /// How the upstream gives the limit back: all at once at each window's reset, or continuously (a token
    /// bucket that refills the limit over the window). Rights accrue at the refill rate for the second.
    public var refill: Refill = .window
    /// The most rights of a window's requests limit one node holds (`nil`: no cap). Beyond it a node asks
    /// for no more and passes what it holds over the cap on (when asked, and with its surplus), so a node
    /// that crashes takes at most this many of the window's rights with it (plus its own part, if that is
    /// larger). A single call that costs more is still covered.
    public var maxHeldRights: Int64? = nil

    /// How an upstream gives its limit back.
    public enum Refill: String, Hashable, Sendable, Codable {
        /// The whole limit at each window's reset (a fixed window).
        case window
        /// The limit over the window at a steady rate (a token bucket: OpenAI, Anthropic).
        case continuous
    }

    /// Limits of other dimensions than requests (`tokens`, `input_tokens`, …), each per account, known in
    /// advance; dimensions the upstream reports in its headers are learned without configuration.
    public var dimensionLimits: [String: AdvertisedPolicy]

    /// Accounts the provider limits together (one organization's keys), by scope name. Every call on an
    /// account of a scope also counts against the scope, which has the service's limits too, so rotating
    /// across its accounts does not pretend to add capacity; a 429 on one of them holds back all of them.
    public var scopes: [String: [String]]

    /// The prefix of the quota-key account label a scope is counted under.
    public static let scopePrefix = "scope:"

    /// Creates a policy.
    public init(
        limit: Int64? = nil, windowMillis: Int64? = nil, reserves: Reserves = .standardReserves,
        accounts: [String] = ["default"], breaker: BreakerPolicy = .init(), burstFraction: Double = 0.1,
        dimensionLimits: [String: AdvertisedPolicy] = [:], scopes: [String: [String]] = [:]
    ) {
        self.scopes = scopes
        self.limit = limit
        self.windowMillis = windowMillis
        self.reserves = reserves
        self.accounts = accounts.isEmpty ? ["default"] : accounts
        self.breaker = breaker
        self.burstFraction = burstFraction
        self.dimensionLimits = dimensionLimits
    }

    /// The account label the scope of `account` is counted under, if the account is in a scope.
    public func scopeAccount(of account: String) -> String? {
        scopes.first { $0.value.contains(account) }.map { Self.scopePrefix + $0.key }
    }

    /// The configured limit and window of `dimension`, if both are known in advance.
    public func configuredLimit(_ dimension: String) -> AdvertisedPolicy? {
        guard dimension == QuotaKey.requests else { return dimensionLimits[dimension] }
        guard let limit, let windowMillis else { return nil }
        return AdvertisedPolicy(limit: limit, windowMillis: windowMillis)
    }
}

/// The protocol's parameters. Defaults follow memberlist's LAN profile (200 ms rounds, fanout 3).
public struct MeshConfiguration: Sendable {
    /// Domain separation for every signature: nodes of different clusters never accept each other.
    public var cluster: String
    /// Time between gossip rounds (ms).
    public var gossipIntervalMillis: Int64
    /// Peers pushed to per round.
    public var fanout: Int
    /// A peer not heard from for this long is down (ms).
    public var livenessTimeoutMillis: Int64
    /// How often a node re-signs its heartbeat record (ms).
    public var heartbeatIntervalMillis: Int64
    /// Each new record is pushed `retransmitMultiplier × ⌈log10(N + 1)⌉` times by each node (memberlist).
    public var retransmitMultiplier: Int
    /// Records and packets stamped further than this in the future are refused (ms).
    public var maxClockSkewMillis: Int64
    /// The longest a breaker stays open on any statement, a `Retry-After` or a peer's record (ms): after
    /// it the breaker is half-open and a probe decides.
    public var maxBreakerOpenMillis: Int64 = 900_000
    /// How far ahead a claim about a service with no configured window may reach (ms): a reset or a window
    /// end further ahead than this is not believed. 32 days, so that monthly quotas are learned.
    public var maxLearnedWindowMillis: Int64 = 32 * 86_400_000
    /// The most services a node tracks (configured ones count, and are always kept): a new name beyond it
    /// is refused locally and dropped from peers (`over_cap`).
    public var maxServices = 64
    /// The most accounts of one service a node tracks.
    public var maxAccountsPerService = 64
    /// The most dimensions besides requests of one service a node tracks.
    public var maxDimensionsPerService = 8
    /// A packet sent longer ago than this (by the sender's stamp, so clock skew included) neither moves
    /// its sender's address nor extends its liveness (ms); its records are still merged.
    public var maxPacketAgeMillis: Int64 = 10_000
    /// How often demand rates are re-estimated (ms).
    public var demandIntervalMillis: Int64
    /// How far apart the nodes' clocks and the upstream's may be once `Date` headers have corrected the
    /// large skews (ms): normal and low calls keep this far from a window's start and end (at most a tenth
    /// of the window), so that no clock's error moves a call into a neighbouring window.
    public var windowEdgeMillis: Int64 = 500
    /// How long before a window's end no rights of the window are spent (ms, at most a twentieth of the
    /// window): the time a granted call takes to reach the upstream plus the clock skew allowed for.
    public var rightsEdgeMillis: Int64 = 50
    /// How long after a window's start no rights of it are spent (ms, at most a twentieth of the window):
    /// the clock skew allowed for, so that a clock running ahead does not spend the next window's rights
    /// while the upstream still counts the last one.
    public var rightsLeadMillis: Int64 = 0
    /// An anti-entropy digest goes out every this many rounds.
    public var antiEntropyEveryRounds: Int
    /// Packets sent in answer to one digest, at most.
    public var maxAnswerPackets: Int
    /// Per-service policies.
    public var services: [String: ServicePolicy]
    /// How records and packets are signed: always Ed25519 in a node; the simulator may substitute.
    public var signatures: any SignatureScheme
    /// Where instances in one process share the records they accept (`nil` in a node: each holds its own).
    public var recordSharing: (any RecordSharing)? = nil
    /// Whose introductions of other peers this node trusts without a local `peer add`: nobody's by default.
    public var vouching: VouchingPolicy = .direct
    /// This node's own weight (`weight`), signed in its records; peers believe at most what they vouch.
    public var weight: Weight = .one

    /// The default retransmit multiplier: memberlist's 4. Duplicates received cut a record's pushes short
    /// (rumor mongering with feedback), so large clusters push far less than this bound.
    public static let defaultRetransmitMultiplier = 4

    /// The default digest period: every second round. Pushes miss a few nodes of a large cluster; digests,
    /// which name recently updated slots first, are how those catch up, so their period bounds the tail of
    /// convergence (measured in BENCHMARKS.md with `quotamesh simulate --digest-every`).
    public static let defaultAntiEntropyEveryRounds = 5

    /// Creates a configuration.
    public init(
        cluster: String = "quotamesh", gossipIntervalMillis: Int64 = 200, fanout: Int = 3,
        livenessTimeoutMillis: Int64 = 10_000, heartbeatIntervalMillis: Int64 = 2_000,
        retransmitMultiplier: Int = MeshConfiguration.defaultRetransmitMultiplier, maxClockSkewMillis: Int64 = 300_000, demandIntervalMillis: Int64 = 1_000,
        maxAnswerPackets: Int = 8,
        antiEntropyEveryRounds: Int = MeshConfiguration.defaultAntiEntropyEveryRounds, services: [String: ServicePolicy] = [:],
        signatures: any SignatureScheme = Ed25519Signatures()
    ) {
        self.signatures = signatures
        self.cluster = cluster
        self.gossipIntervalMillis = gossipIntervalMillis
        self.fanout = fanout
        self.livenessTimeoutMillis = livenessTimeoutMillis
        self.heartbeatIntervalMillis = heartbeatIntervalMillis
        self.retransmitMultiplier = retransmitMultiplier
        self.maxClockSkewMillis = maxClockSkewMillis
        self.demandIntervalMillis = demandIntervalMillis
        self.maxAnswerPackets = maxAnswerPackets
        self.antiEntropyEveryRounds = antiEntropyEveryRounds
        self.services = services
    }
}

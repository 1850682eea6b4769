/// Q: the merged view of one quota key (service, account), as `GET /v1/quota` and every acquire and
/// observe answer give it. The top-level limit fields describe the tightest dimension.
public struct QuotaAnswer: Codable, Sendable, Hashable {
    public var service: String
    public var account: String
    /// The dimension the top-level fields describe: the tightest.
    public var dimension: String
    public var limit: Int64?
    /// The window's length in seconds.
    public var windowSeconds: Double?
    public var remaining: Int64?
    /// The window's reset, Unix seconds rounded up.
    public var resetAt: Int64?
    /// The window's reset, Unix ms.
    public var resetAtMillis: Int64?
    /// Every dimension counted for the account.
    public var limits: [DimensionAnswer]
    /// Seconds until a call of cost 1 could be granted, by priority.
    public var nextAvailable: PerPriority
    /// Requests consumed in the window, by the mesh and by this node.
    public var consumed: Consumed
    public var breaker: Breaker
    public var peers: PeerCount
    /// This node's max-min fair fraction of what remains.
    public var share: Double
    /// The rights this node holds in the current window; `nil` when no limit is known.
    public var rights: Int64?
    /// The latest upstream observation merged into the view.
    public var observed: Observed?

    public init(
        service: String, account: String, dimension: String, limit: Int64?, windowSeconds: Double?, remaining: Int64?,
        resetAt: Int64?, resetAtMillis: Int64?, limits: [DimensionAnswer], nextAvailable: PerPriority,
        consumed: Consumed, breaker: Breaker, peers: PeerCount, share: Double, rights: Int64?, observed: Observed?
    ) {
        self.service = service
        self.account = account
        self.dimension = dimension
        self.limit = limit
        self.windowSeconds = windowSeconds
        self.remaining = remaining
        self.resetAt = resetAt
        self.resetAtMillis = resetAtMillis
        self.limits = limits
        self.nextAvailable = nextAvailable
        self.consumed = consumed
        self.breaker = breaker
        self.peers = peers
        self.share = share
        self.rights = rights
        self.observed = observed
    }

    enum CodingKeys: String, CodingKey {
        case service, account, dimension, limit, remaining, limits, consumed, breaker, peers, share, rights, observed
        case windowSeconds = "window_s", resetAt = "reset_at", resetAtMillis = "reset_at_ms"
        case nextAvailable = "next_available"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(service, forKey: .service)
        try container.encode(account, forKey: .account)
        try container.encode(dimension, forKey: .dimension)
        try container.encodeOrNull(limit, forKey: .limit)
        try container.encodeOrNull(windowSeconds, forKey: .windowSeconds)
        try container.encodeOrNull(remaining, forKey: .remaining)
        try container.encodeOrNull(resetAt, forKey: .resetAt)
        try container.encodeOrNull(resetAtMillis, forKey: .resetAtMillis)
        try container.encode(limits, forKey: .limits)
        try container.encode(nextAvailable, forKey: .nextAvailable)
        try container.encode(consumed, forKey: .consumed)
        try container.encode(breaker, forKey: .breaker)
        try container.encode(peers, forKey: .peers)
        try container.encode(share, forKey: .share)
        try container.encodeOrNull(rights, forKey: .rights)
        try container.encodeOrNull(observed, forKey: .observed)
    }

    /// One entry of `limits`: a dimension's own limit, remaining, reset and consumption.
    public struct DimensionAnswer: Codable, Sendable, Hashable {
        public var name: String
        public var limit: Int64?
        public var remaining: Int64?
        /// Unix seconds, rounded up.
        public var resetAt: Int64?
        public var windowSeconds: Double?
        public var consumed: Consumed

        public init(name: String, limit: Int64?, remaining: Int64?, resetAt: Int64?, windowSeconds: Double?, consumed: Consumed) {
            self.name = name
            self.limit = limit
            self.remaining = remaining
            self.resetAt = resetAt
            self.windowSeconds = windowSeconds
            self.consumed = consumed
        }

        enum CodingKeys: String, CodingKey {
            case name, limit, remaining, consumed
            case resetAt = "reset_at", windowSeconds = "window_s"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encodeOrNull(limit, forKey: .limit)
            try container.encodeOrNull(remaining, forKey: .remaining)
            try container.encodeOrNull(resetAt, forKey: .resetAt)
            try container.encodeOrNull(windowSeconds, forKey: .windowSeconds)
            try container.encode(consumed, forKey: .consumed)
        }
    }

    /// What was consumed in the window: by the whole mesh, and by this node.
    public struct Consumed: Codable, Sendable, Hashable {
        public var global: UInt64
        public var local: UInt64

        public init(global: UInt64, local: UInt64) {
            self.global = global
            self.local = local
        }
    }

    /// A value for each priority.
    public struct PerPriority: Codable, Sendable, Hashable {
        public var urgent: Double
        public var normal: Double
        public var low: Double

        public init(urgent: Double, normal: Double, low: Double) {
            self.urgent = urgent
            self.normal = normal
            self.low = low
        }
    }

    /// The shared circuit breaker.
    public struct Breaker: Codable, Sendable, Hashable {
        public enum State: String, Codable, Sendable {
            case closed, open
            case halfOpen = "half_open"
        }

        public var state: State
        /// When an open breaker may be probed again, Unix seconds rounded up; `nil` while closed.
        public var openUntil: Int64?

        public init(state: State, openUntil: Int64?) {
            self.state = state
            self.openUntil = openUntil
        }

        enum CodingKeys: String, CodingKey {
            case state
            case openUntil = "open_until"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(state, forKey: .state)
            try container.encodeOrNull(openUntil, forKey: .openUntil)
        }
    }

    /// Peers live and known.
    public struct PeerCount: Codable, Sendable, Hashable {
        public var live: Int
        public var known: Int

        public init(live: Int, known: Int) {
            self.live = live
            self.known = known
        }
    }

    /// An upstream observation: what it said was left of its limit, and when.
    public struct Observed: Codable, Sendable, Hashable {
        public var remaining: Int64
        public var limit: Int64
        /// Unix seconds, rounded up.
        public var resetAt: Int64
        /// Unix seconds.
        public var observedAt: Int64

        public init(remaining: Int64, limit: Int64, resetAt: Int64, observedAt: Int64) {
            self.remaining = remaining
            self.limit = limit
            self.resetAt = resetAt
            self.observedAt = observedAt
        }

        enum CodingKeys: String, CodingKey {
            case remaining, limit
            case resetAt = "reset_at", observedAt = "observed_at"
        }
    }
}

/// `GET /v1/quota`: every key.
public struct QuotasAnswer: Codable, Sendable, Hashable {
    public var quotas: [QuotaAnswer]

    public init(quotas: [QuotaAnswer]) { self.quotas = quotas }
}

/// `GET /v1/quota/{service}`: the account with the most remaining (its fields at the top level), every
/// account, and the service's scopes when it has any.
public struct ServiceQuotaAnswer: Codable, Sendable, Hashable {
    public var quota: QuotaAnswer
    public var accounts: [QuotaAnswer]
    public var scopes: [ScopeQuota]?

    public init(quota: QuotaAnswer, accounts: [QuotaAnswer], scopes: [ScopeQuota]?) {
        self.quota = quota
        self.accounts = accounts
        self.scopes = scopes
    }

    enum CodingKeys: String, CodingKey { case accounts, scopes }

    public init(from decoder: any Decoder) throws {
        quota = try QuotaAnswer(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        accounts = try container.decode([QuotaAnswer].self, forKey: .accounts)
        scopes = try container.decodeIfPresent([ScopeQuota].self, forKey: .scopes)
    }

    public func encode(to encoder: any Encoder) throws {
        try quota.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(accounts, forKey: .accounts)
        try container.encodeIfPresent(scopes, forKey: .scopes)
    }

    /// A scope's view (accounts the provider limits together): Q and the scope's name.
    public struct ScopeQuota: Codable, Sendable, Hashable {
        public var quota: QuotaAnswer
        public var scope: String

        public init(quota: QuotaAnswer, scope: String) {
            self.quota = quota
            self.scope = scope
        }

        enum CodingKeys: String, CodingKey { case scope }

        public init(from decoder: any Decoder) throws {
            quota = try QuotaAnswer(from: decoder)
            scope = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .scope)
        }

        public func encode(to encoder: any Encoder) throws {
            try quota.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(scope, forKey: .scope)
        }
    }
}

import QuotaMeshCrypto

/// What an agent asks for before an upstream call.
public struct AcquireRequest: Hashable, Sendable {
    /// The upstream service.
    public var service: String
    /// How urgent the call is.
    public var priority: Priority
    /// What the call costs in requests (≥ 1).
    public var cost: Int64
    /// What the call costs in other dimensions (`tokens`, `input_tokens`, …). Each dimension with a
    /// known limit must grant too: all are charged, or none.
    public var costs: [String: Int64]
    /// How long the agent is willing to wait for a grant (ms); 0 answers at once.
    public var waitMillis: Int64

    /// The largest cost of one call in requests: the API refuses more, the core clamps to it.
    public static let maxCost: Int64 = 1_000_000
    /// The largest cost of one call in another dimension (tokens, …).
    public static let maxDimensionCost: Int64 = 1_000_000_000
    /// The longest an acquire may wait (ms).
    public static let maxWaitMillis: Int64 = 600_000

    /// Creates a request.
    public init(
        service: String, priority: Priority = .normal, cost: Int64 = 1, costs: [String: Int64] = [:], waitMillis: Int64 = 0
    ) {
        self.service = service
        self.priority = priority
        self.cost = cost
        self.costs = costs
        self.waitMillis = waitMillis
    }
}

/// Why an acquire was refused.
public enum DenialReason: String, Sendable, Codable, CaseIterable {
    /// Nothing (or not enough) is left for this node in the window, or its paced rate is used up.
    case quotaExhausted = "quota_exhausted"
    /// What is left is kept for higher priorities.
    case reservedForHigherPriority = "reserved_for_higher_priority"
    /// The shared circuit breaker is open.
    case breakerOpen = "breaker_open"
    /// No configuration or observation names this service.
    case unknownService = "unknown_service"
}

/// Which case of a decision it is, finer than its reason: the `detail` values README.md documents.
public enum DecisionCase: String, Sendable, Hashable, CaseIterable {
    /// The leaky bucket spaces this node's share over the window.
    case paced
    /// This node's fair share of what is left is nil.
    case share
    /// Nothing is left in the window.
    case window
    /// Too close to a window's start or end.
    case windowEdge = "window_edge"
    /// What is left is probably granted already by nodes not heard from yet.
    case settling
    /// A window's last calls go by turns, and this node's has not come.
    case turn
    /// Only urgent calls pass while a node learns what its peers consumed after a start.
    case learning
    /// This node holds no right left for the call, and none reached it in time.
    case rights
    /// The node cannot save its state, so it grants nothing it could forget.
    case persistence
    /// Peers split rights among other members than this node does (their trust stores differ), and this
    /// node's set is the odd one out: its part may be too large, so it spends none until they agree.
    case trustStoresDiffer = "trust_stores_differ"
    /// What is left is kept for higher priorities.
    case reserve
    /// The cost can never pass in any window.
    case costExceedsLimit = "cost_exceeds_limit"
    /// A grant that is the half-open breaker's probe.
    case halfOpenProbe = "half_open_probe"
    /// Another node's turn to probe the half-open breaker.
    case halfOpenProbeElsewhere = "half_open_probe_elsewhere"
    /// The half-open breaker's probe is out and its answer not back.
    case halfOpenProbeInFlight = "half_open_probe_in_flight"
    /// A grant where no limit is known: only the breaker is enforced.
    case noLimitKnown = "no_limit_known"
    /// No configuration or observation names the service.
    case unknownService = "no configuration or observation names this service"
    /// The agent went away while the call waited.
    case cancelled
    /// The node is stopping.
    case shuttingDown = "shutting_down"
    /// Another part of the call (a dimension, a scope) was refused for no finer reason.
    case exhausted
}

/// A decision's case, and which part of the call it concerns when that is not the account's requests:
/// another dimension (`tokens_rights`) or the account's scope (`scope_paced`, `scope_tokens_window`).
public struct DecisionDetail: Hashable, Sendable, CustomStringConvertible {
    /// The case.
    public var kind: DecisionCase
    /// The dimension concerned, `nil` for requests.
    public var dimension: String?
    /// Whether it concerns the account's scope rather than the account.
    public var scope: Bool

    /// A detail about the account's requests.
    public init(_ kind: DecisionCase, dimension: String? = nil, scope: Bool = false) {
        self.kind = kind
        self.dimension = dimension
        self.scope = scope
    }

    /// The wire form: `scope_`, then `dimension_`, then the case.
    public var description: String {
        (scope ? "scope_" : "") + (dimension.map { $0 + "_" } ?? "") + kind.rawValue
    }
}

/// The answer to an acquire.
public struct AcquireDecision: Hashable, Sendable {
    /// Whether the call may go ahead.
    public var granted: Bool
    /// The key (and so the account) charged or examined.
    public var key: QuotaKey?
    /// Why not, when refused.
    public var reason: DenialReason?
    /// When it may next succeed (Unix ms), when refused.
    public var retryAt: UnixMillis?
    /// A finer explanation (`paced`, `share`, `window`, `half_open_probe_in_flight`, …).
    public var detail: DecisionDetail?
    /// For a grant spent from rights, the end of the window it was charged to (Unix ms).
    public var windowEnd: UnixMillis? = nil

    /// A grant charged to `key`.
    public static func grant(_ key: QuotaKey, detail: DecisionCase? = nil) -> AcquireDecision {
        AcquireDecision(granted: true, key: key, reason: nil, retryAt: nil, detail: detail.map { DecisionDetail($0) })
    }

    /// A refusal.
    public static func deny(
        _ reason: DenialReason, key: QuotaKey?, retryAt: UnixMillis?, detail: DecisionCase? = nil
    ) -> AcquireDecision {
        AcquireDecision(
            granted: false, key: key, reason: reason, retryAt: retryAt, detail: detail.map { DecisionDetail($0) })
    }
}

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

/// Why a packet or record was dropped: a fixed vocabulary for metrics and logs.
public enum DropReason: String, Sendable, CaseIterable {
    /// Shorter than its header or its own length fields say.
    case truncated
    /// Larger than a packet may be (1200 bytes).
    case oversized
    /// Not a QuotaMesh packet: the first bytes are wrong.
    case badMagic = "bad_magic"
    /// A wire version this node does not speak.
    case unknownVersion = "unknown_version"
    /// A packet or record type this node does not know.
    case unknownType = "unknown_type"
    /// Fields that do not decode: a bad label, a length out of range.
    case malformed
    /// Bytes left over after the last field.
    case trailingBytes = "trailing_bytes"
    /// The packet's sender is not in the trust store.
    case unknownSender = "unknown_sender"
    /// A record's origin is not in the trust store.
    case unknownOrigin = "unknown_origin"
    /// A packet that was already seen, or is older than the replay window.
    case replayed
    /// A packet or record signature that does not verify.
    case badSignature = "bad_signature"
    /// A packet or record stamped too far in the future.
    case fromFuture = "from_future"
    /// A packet that claims to come from this node.
    case fromSelf = "from_self"
    /// Two different records signed with the same origin and version.
    case equivocation
    /// A signed record whose times or counts are out of any plausible range.
    case absurd = "absurd_values"
    /// A packet or record from an origin quarantined for contradicting itself.
    case quarantined
    /// A record naming a service, account or dimension beyond this node's caps.
    case overCap = "over_cap"
    /// A packet from a source whose packets failed their signature checks too often lately: not checked.
    case overBudget = "over_budget"
    /// A packet from a vouched peer that sent more verified packets lately than any peer needs: not checked.
    case rateLimited = "rate_limited"

    init(_ error: DecodeError) {
        switch error {
        case .truncated: self = .truncated
        case .oversized: self = .oversized
        case .badMagic: self = .badMagic
        case .unknownVersion: self = .unknownVersion
        case .unknownType: self = .unknownType
        case .malformed: self = .malformed
        case .trailingBytes: self = .trailingBytes
        }
    }
}

/// Something worth logging or counting.
public enum MeshEvent: Hashable, Sendable {
    /// A packet (or one record in it) was dropped.
    case dropped(DropReason, from: Endpoint?, sender: VerifyingKey?)
    /// A record newer than what was held was accepted.
    case recordAccepted(origin: VerifyingKey, slot: RecordSlot)
    /// A record no newer than what was held was ignored.
    case recordStale(origin: VerifyingKey)
    /// A peer was heard from after being down or unknown.
    case peerUp(VerifyingKey)
    /// A peer stayed silent past the liveness timeout.
    case peerDown(VerifyingKey)
    /// This node opened the shared breaker for a key.
    case breakerOpened(QuotaKey, until: UnixMillis)
    /// This node closed the shared breaker after a successful probe.
    case breakerClosed(QuotaKey)
    /// A service was learned from an upstream observation or a peer's record.
    case serviceLearned(String)
    /// A peer signed two records that contradict each other; everything from it is set aside.
    case peerQuarantined(VerifyingKey, reason: QuarantineReason)
    /// A success contradicted a peer's claim that a key's breaker was open: its breaker claims no longer
    /// count for the key.
    case breakerClaimsIgnored(VerifyingKey, key: QuotaKey)
    /// A peer's upstream observations or breaker openings contradicted this node's own calls often enough
    /// that its observations no longer count (until the score decays), nor its breaker claims.
    case peerGraylisted(VerifyingKey, score: Double)
    /// A peer signs another member set than this node's (their trust stores differ; `count` is how many
    /// members it counts); `stopped`: this node spends no rights until they agree (its own set is the odd
    /// one out, see ``MeshInstance/rightsStopped``).
    case membersDiffer(VerifyingKey, count: Int, stopped: Bool)
    /// Every peer heard from signs this node's member set again.
    case membersAgree
}

/// Why a peer was quarantined: each is a contradiction proven by two records it signed.
public enum QuarantineReason: String, Sendable, Hashable, Codable {
    /// Two different records at one version.
    case equivocation
    /// A later record whose rights ledger, in the same window, shows less spent, refunded or given than an
    /// earlier one: it took back what it had signed (a fork that shows each receiver a different gift).
    case ledgerRegressed = "ledger_regressed"
}

/// The proof behind a quarantine: the two records, exactly as signed.
public struct QuarantineEvidence: Sendable, Hashable {
    /// Why.
    public var reason: QuarantineReason
    /// The record held before.
    public var earlier: SignedRecord
    /// The record that contradicts it.
    public var later: SignedRecord
    /// When this node saw the contradiction.
    public var at: UnixMillis
}

/// An effect the shell must carry out, in order.
public enum MeshDirective: Hashable, Sendable {
    /// Send a datagram.
    case send([UInt8], to: Endpoint)
    /// Answer the acquire with this ticket.
    case reply(ticket: UInt64, AcquireDecision)
    /// Save `MeshInstance.persistedState()` durably before carrying out the replies that follow. The
    /// directive carries no state, so deciding stays cheap; a shell may save once for several of them
    /// (group commit), as long as no reply that follows one goes out before a save that comes after it.
    case persist
    /// Log or count something.
    case event(MeshEvent)
    /// Call `tick` again no later than this.
    case wake(at: UnixMillis)
}

/// What a node keeps on disk: its incarnation and its own state per key, so that a restart neither
/// forgets consumption nor reuses record versions; and the peers it quarantined, with their proof.
public struct PersistedNodeState: Hashable, Sendable, Codable {
    /// The incarnation in use; the next start uses a larger one.
    public var incarnation: UInt64
    /// The node's own state per key.
    public var quotas: [PersistedQuota]
    /// Quarantined peers (absent in state saved before quarantines existed).
    public var quarantined: [PersistedQuarantine]?

    /// Creates a persisted state.
    public init(incarnation: UInt64, quotas: [PersistedQuota], quarantined: [PersistedQuarantine]? = nil) {
        self.incarnation = incarnation
        self.quotas = quotas
        self.quarantined = quarantined
    }
}

/// A quarantined peer as saved: its key, why, and the two records it signed that contradict each other,
/// exactly as signed (base64), so the proof outlives a restart and can be shown to an operator.
public struct PersistedQuarantine: Hashable, Sendable, Codable {
    /// The peer's key (base64).
    public var key: String
    /// Why.
    public var reason: QuarantineReason
    /// The earlier record's bytes (base64).
    public var earlier: String
    /// The contradicting record's bytes (base64).
    public var later: String
    /// When the contradiction was seen (Unix ms).
    public var at: UnixMillis

    /// Creates an entry.
    public init(key: String, reason: QuarantineReason, earlier: String, later: String, at: UnixMillis) {
        self.key = key
        self.reason = reason
        self.earlier = earlier
        self.later = later
        self.at = at
    }
}

/// One key's own state, as saved.
public struct PersistedQuota: Hashable, Sendable, Codable {
    /// The key.
    public var service: String
    /// The account.
    public var account: String
    /// The dimension, when not requests (absent in state saved before dimensions existed).
    public var dimension: String?
    /// The node's own state for it.
    public var state: QuotaState
    /// What the whole cluster had consumed of it as far as the node knew (absent in state saved before
    /// this existed). After a restart the node's view of the others fills in over a few rounds; this
    /// floor keeps the anchor of its first upstream observations from being too low, which would make
    /// every node count the calls before them twice.
    public var clusterConsumed: UInt64?

    /// Creates an entry.
    public init(key: QuotaKey, state: QuotaState, clusterConsumed: UInt64? = nil) {
        self.service = key.service
        self.account = key.account
        self.dimension = key.dimension == QuotaKey.requests ? nil : key.dimension
        self.state = state
        self.clusterConsumed = clusterConsumed
    }

    /// The key.
    public var key: QuotaKey { QuotaKey(service: service, account: account, dimension: dimension ?? QuotaKey.requests) }
}

/// The merged view of one key, as the API reports it.
public struct QuotaView: Hashable, Sendable {
    /// The key.
    public var key: QuotaKey
    /// The window's limit, if known.
    public var limit: Int64?
    /// The window's length in ms, if known.
    public var windowMillis: Int64?
    /// What is estimated to be left in the current window across the mesh.
    public var remaining: Int64?
    /// When the current window ends (Unix ms).
    public var resetAt: UnixMillis?
    /// For each priority, how long until a call of cost 1 could be granted here (ms).
    public var nextAvailableMillis: [Priority: Int64]
    /// The mesh's consumption in the current window.
    public var consumedGlobal: UInt64
    /// This node's consumption in the current window.
    public var consumedLocal: UInt64
    /// The breaker's state.
    public var breakerState: BreakerState
    /// Until when it is open, if it is.
    public var breakerOpenUntil: UnixMillis?
    /// Peers heard from within the liveness timeout.
    public var peersLive: Int
    /// Peers in the trust store.
    public var peersKnown: Int
    /// The latest upstream observation merged into the view.
    public var observation: UpstreamObservation?
    /// This node's fair share of what is left (0…1).
    public var share: Double
    /// The rights this node holds in the current window: what it may still grant without asking a peer
    /// (`nil` when no limit is known).
    public var rights: Int64? = nil
    /// Every dimension counted for the key's service and account, requests first: each one's own limit,
    /// window, remaining and consumption.
    public var dimensions: [DimensionView] = []

    /// The dimension with the least left relative to its limit (then the least left), or nil when none
    /// has a known remaining.
    public var tightest: DimensionView? {
        dimensions.filter { $0.remaining != nil }.min { a, b in
            (a.ratio, a.remaining ?? 0) < (b.ratio, b.remaining ?? 0)
        }
    }
}

/// One dimension (requests, tokens, …) of a service's account, as the API reports it.
public struct DimensionView: Hashable, Sendable {
    /// `requests`, `tokens`, `input_tokens`, `output_tokens`, or an IETF policy name.
    public var name: String
    /// The window's limit, if known.
    public var limit: Int64?
    /// The window's length in ms, if known.
    public var windowMillis: Int64?
    /// What is estimated to be left in the current window across the mesh.
    public var remaining: Int64?
    /// When the current window ends (Unix ms).
    public var resetAt: UnixMillis?
    /// The mesh's consumption in the current window.
    public var consumedGlobal: UInt64
    /// This node's consumption in the current window.
    public var consumedLocal: UInt64

    /// Creates a dimension's view.
    public init(
        name: String, limit: Int64?, windowMillis: Int64?, remaining: Int64?, resetAt: UnixMillis?,
        consumedGlobal: UInt64, consumedLocal: UInt64
    ) {
        self.name = name
        self.limit = limit
        self.windowMillis = windowMillis
        self.remaining = remaining
        self.resetAt = resetAt
        self.consumedGlobal = consumedGlobal
        self.consumedLocal = consumedLocal
    }

    /// What is left over the limit (1 when the limit is unknown).
    var ratio: Double {
        guard let remaining, let limit, limit > 0 else { return remaining == 0 ? 0 : 1 }
        return Double(remaining) / Double(limit)
    }
}

/// A peer as the API reports it.
public struct PeerView: Hashable, Sendable {
    /// The trust store's name for it.
    public var name: String
    /// Its key.
    public var key: VerifyingKey
    /// Where packets go (the address it was last heard from, else its configured endpoint).
    public var endpoint: Endpoint?
    /// Whether it was heard from within the liveness timeout.
    public var live: Bool
    /// When it was last heard from (directly or through a record it signed).
    public var lastHeardAt: UnixMillis?
    /// Record slots held from this origin.
    public var records: Int
    /// When the newest of those records was signed (its origin's clock): now minus this is how far
    /// behind this node's view of that peer is.
    public var newestRecordAt: UnixMillis?
    /// Why the peer is quarantined, if it is: it signed two records that contradict each other.
    public var quarantined: QuarantineReason? = nil
    /// How often its upstream observations or breaker openings contradicted this node's own calls lately
    /// (decaying, half-life 30 min).
    public var observationScore: Double = 0
    /// Whether its upstream observations are set aside (its score reached 2.5: three contradictions within
    /// about a quarter of an hour); its breaker claims then stop counting for good.
    public var graylisted = false
    /// How many members the peer last said it splits rights among, and whether they are this node's
    /// (`nil` until a record of it says).
    public var members: Int? = nil
    /// Whether its member set is this node's (`true` until a record of it says otherwise).
    public var membersAgree = true
}

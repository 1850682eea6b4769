import QuotaMeshCrypto

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
    /// The weight it claims in its records (1 until one says otherwise), the weight this node vouches for
    /// it, and the smaller of the two, which shares use.
    public var claimedWeight = Weight.one
    public var vouchedWeight = Weight.one
    public var weight = Weight.one
}

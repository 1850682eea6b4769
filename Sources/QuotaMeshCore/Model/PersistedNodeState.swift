import QuotaMeshCrypto

/// What a node keeps on disk: its incarnation and its own state per key, so that a restart neither
/// forgets consumption nor reuses record versions; and the peers it quarantined, with their proof.
public struct PersistedNodeState: Hashable, Sendable, Codable {
    /// The incarnation in use; the next start uses a larger one.
    public var incarnation: UInt64
    /// The node's own state per key.
    public var quotas: [PersistedQuota]
    /// Quarantined peers (absent in state saved before quarantines existed).
    public var quarantined: [PersistedQuarantine]?
    /// The last entry of the shell's log of changes that this snapshot includes (absent where no log was
    /// kept); entries up to it are not applied again on load.
    public var logSequence: UInt64?

    /// Creates a persisted state.
    public init(
        incarnation: UInt64, quotas: [PersistedQuota], quarantined: [PersistedQuarantine]? = nil, logSequence: UInt64? = nil
    ) {
        self.incarnation = incarnation
        self.quotas = quotas
        self.quarantined = quarantined
        self.logSequence = logSequence
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

import QuotaMeshCrypto

/// This node's own state of one key: what it signs, what its agents asked for, and its pacing.
struct LocalQuota: Sendable {
    var state = QuotaState()
    var demand = Demand.zero
    /// The demand in the last signed record: what peers use for this node's fair share, so this node
    /// uses it too.
    var signedDemand = Demand.zero
    /// When this node last signed a record for the key (with ``signedDemand`` in it).
    var signedDemandAt: UnixMillis = .min
    var requested = Demand.zero
    var bucket = LeakyBucket()
    var consecutiveFailures = 0
    var probeGrantedAt: UnixMillis?
    /// The slot of this node's last turn at a window's last calls (one call per turn).
    var lastTurnSlot: Int64 = .min
    /// The cluster's consumption this node knew of before it restarted: a floor for the anchor of its
    /// observations while its view of the others fills in again.
    var restoredClusterConsumed: UInt64 = 0
    /// Consumption, observation, breaker or policy changed: re-sign at the next round.
    var dirty = false
    /// Only the demand estimate changed: re-sign when the demand budget allows.
    var demandDirty = false

    /// ``signedDemand`` if it was signed at `freshAfter` or later, none (idle) otherwise: the rule every
    /// node applies to every node's demand (see ``KeyAggregate/OriginEntry/demand(signedAfter:)``).
    func signedDemand(signedAfter freshAfter: UnixMillis) -> Demand {
        signedDemandAt >= freshAfter ? signedDemand : Demand.zero
    }

    /// Marks what an upstream report changed since `before`. A limit response (`urgent`), a first
    /// observation, a new policy or a breaker change goes out at the next round; anything else the headers
    /// of a successful call changed is news at the demand-update pace, so that the records the cluster
    /// must spread stay within its gossip capacity as it grows.
    mutating func noteReported(since before: QuotaState, urgent: Bool) {
        if urgent || before.observation == nil || before.breaker != state.breaker || before.policy != state.policy {
            dirty = true
        } else if before != state {
            demandDirty = true
        }
    }

    /// This node's rights ledger for the window ending at `windowEnd`: the one held if it is for that
    /// window, else an empty one.
    func rightsLedger(windowEnd: UnixMillis) -> RightsLedger {
        if let ledger = state.ledger, ledger.windowEnd == windowEnd { return ledger }
        return RightsLedger(windowEnd: windowEnd)
    }
}

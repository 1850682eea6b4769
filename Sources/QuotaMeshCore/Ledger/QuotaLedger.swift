import QuotaMeshCrypto

/// The ledger half of the protocol, sans-IO: the services and keys known, this node's own state per key
/// and its peers' merged, the rights of each window and their transfers, demand, fair shares, pacing,
/// breakers and the acquires that wait. It decides and accounts; it signs, sends and stores no record —
/// ``MeshInstance`` routes between it and the dissemination half (peers, liveness, records, the wire),
/// feeding it the peers' states as records arrive and ``MeshFacts`` as liveness changes.
public struct QuotaLedger: Sendable {
    /// This node's key: whose rights are "own" and whose records are not merged as a peer's.
    let owner: VerifyingKey
    /// The protocol's parameters (the instance's, kept in step by it).
    var configuration: MeshConfiguration {
        didSet { catalog.configure(configuration) }
    }
    /// What dissemination knows of the peers: set by the instance whenever it changes.
    var mesh = MeshFacts()
    /// The trust store: the weight this node vouches for each peer.
    var directory: PeerDirectory
    /// The services, accounts and dimensions known, and each service's entry for the decision path.
    var catalog: ServiceCatalog
    /// This node's own state per key.
    var local: [QuotaKey: LocalQuota] = [:]
    /// Peers' states per key, merged incrementally.
    var remote: [QuotaKey: KeyAggregate] = [:]
    /// Acquires waiting for a grant.
    var waitQueue = WaitQueue()
    var shareCache: [QuotaKey: ShareCache] = [:]
    /// The members a window's rights are split among, and whether the peers name the same.
    var membership = Membership()
    /// Bumped when this node's own ledger of any key changes.
    var ledgerVersion: UInt64 = 0
    /// Per key, the window's split and every member's balance, kept until a ledger or the members change.
    var rightsCache: [QuotaKey: RightsCache] = [:]
    /// Rights this node lacks for calls it was asked for, by key: asked of peers by the instance.
    var rightsWants: [QuotaKey: RightsWant] = [:]
    /// Set while state cannot be saved: no grant and no transfer until a save succeeds.
    var persistenceFailing = false
    /// Keys whose own ledger changed since the last save the shell confirmed, each with the
    /// ``ledgerVersion`` of its last change (a save covers the changes up to the version it was made at).
    var undurableLedgers: [QuotaKey: UInt64] = [:]
    /// Per origin, how often its upstream observations contradicted this node's own, and the graylist.
    var scores = ObservationScores()
    /// The weights peers claim in their records.
    var weights = ClaimedWeights()
    var demandWindowStart: UnixMillis
    var lastDemandSignAt: UnixMillis?
    let startedAt: UnixMillis
    /// Whether this start restored a saved state (a restart, not a first start): the node then had a view
    /// of the others' consumption before and has lost it until it hears it again.
    let isRestart: Bool
    /// Whether a change must be saved before the next replies and records.
    var pendingPersist = false
    /// Events noted where no directives are at hand, handed out with the next directives.
    var pendingEvents: [MeshEvent] = []
    /// Peers set aside for good (quarantined by the instance): their member sets do not count.
    var setAside: Set<VerifyingKey> = []

    /// Creates the ledger of `owner` from what a previous run saved, if anything, and the configured
    /// services' accounts.
    init(
        owner: VerifyingKey, configuration: MeshConfiguration, directory: PeerDirectory, restored: PersistedNodeState?,
        now: UnixMillis
    ) {
        self.owner = owner
        self.configuration = configuration
        self.directory = directory
        self.catalog = ServiceCatalog(configuration)
        self.startedAt = now
        self.isRestart = restored != nil
        self.demandWindowStart = now
        for entry in restored?.quotas ?? []
        where QuotaKey.isValidLabel(entry.service) && QuotaKey.isValidLabel(entry.account)
            && QuotaKey.isValidLabel(entry.dimension ?? QuotaKey.requests)
        {
            var quota = LocalQuota()
            quota.state = entry.state
            quota.state.demand = Demand.zero
            quota.restoredClusterConsumed = max(entry.clusterConsumed ?? 0, entry.state.consumption.total)
            quota.dirty = true
            local[entry.key] = quota
            // A policy of its own is one this node's agents reported (a peer's is not kept in local state).
            if entry.state.policy != nil { catalog.noteReported(entry.key) } else { catalog.note(entry.key) }
            if entry.state.policy != nil { catalog.learn(entry.service) }
        }
        for (service, policy) in configuration.services {
            for account in policy.accounts + policy.scopes.keys.sorted().map({ ServicePolicy.scopePrefix + $0 }) {
                let key = QuotaKey(service: service, account: account)
                catalog.note(key)
                if local[key] == nil {
                    var quota = LocalQuota()
                    quota.dirty = true
                    local[key] = quota
                }
            }
        }
        membership.update(directory, own: owner)
        pendingPersist = true
    }

    /// This node's key.
    var publicKey: VerifyingKey { owner }
    /// Live peers, sorted.
    var live: [VerifyingKey] { mesh.live }
    /// Bumped whenever ``live`` changes.
    var liveVersion: UInt64 { mesh.liveVersion }
    /// Peers never heard from since start; while the start is recent they still count for fair shares.
    var unheard: Int { mesh.unheard }
    /// The gossip round.
    var round: UInt64 { mesh.round }
    /// This node and every peer in its trust store, sorted: the members a window's rights are split among.
    var members: [VerifyingKey] { membership.members }
    /// Origins whose upstream observations and breaker claims do not count.
    var graylisted: Set<VerifyingKey> { scores.graylisted }
    /// The liveness timeout in force.
    var livenessTimeout: Int64 { configuration.livenessTimeout(peerCount: mesh.peerCount) }
    /// Rounds between anti-entropy digests.
    var digestPeriodRounds: Int { configuration.digestPeriodRounds(peerCount: mesh.peerCount) }
    /// How often a change in the demand estimate alone may be signed.
    var demandUpdateInterval: Int64 { configuration.demandUpdateInterval(peerCount: mesh.peerCount) }

    // MARK: - Records from peers

    /// Takes a peer's signed state for `key` (its record was verified and stored): merges it, notes the
    /// key, the weight it claims and the members it names.
    /// `records`: every record held (this one included), to merge again should a contradiction graylist
    /// an origin.
    mutating func absorb(
        _ state: QuotaState, of origin: VerifyingKey, key: QuotaKey, stamp: UnixMillis, records: [SignedRecord]
    ) {
        merge(origin, state: state, key: key, stamp: stamp, records: records)
        noteAnswered(key, by: origin)
        catalog.note(key)
        weights.note(state.weight ?? .one, of: origin, stamp: stamp)
        if let digest = state.members, membership.note(digest, of: origin, stamp: stamp) {
            updateMembersAgreement()
        }
    }

    /// Notes that `origin`'s ledger for `key` as it stands has reached this node: a want no longer waits
    /// for its answer; sent by `origin` itself (`directlyAt` the time it came), it is the answer, and
    /// whatever it gave is credited by then, so `origin` is not asked again for a while.
    mutating func noteAnswered(_ key: QuotaKey, by origin: VerifyingKey, directlyAt now: UnixMillis? = nil) {
        guard rightsWants[key]?.awaiting.remove(origin) != nil, let now else { return }
        rightsWants[key]?.noteRefused(by: origin, at: now, keepingFor: Self.rightsRefusalMillis)
    }

    /// Merges a peer's state for `key`, as far as this node believes it, into the key's aggregate (made
    /// for the key's service, setting aside the breaker claims of `ignoring`, when it is the key's first).
    mutating func merge(
        _ origin: VerifyingKey, state: QuotaState, key: QuotaKey, stamp: UnixMillis, ignoring: Set<VerifyingKey> = [],
        records: [SignedRecord]
    ) {
        if remote[key] == nil {
            var aggregate = KeyAggregate()
            aggregate.peerOpenMillis = catalog.policy(key.service).breaker.openMillis
            aggregate.ignoredBreakers = ignoring
            remote[key] = aggregate
        }
        let openedBefore = remote[key]?.origins[origin]?.breaker.openedAt ?? 0
        let believed = bounded(state, key: key, stamp: stamp)
        remote[key, default: KeyAggregate()].update(
            origin: origin, state: believed, stamp: stamp, countObservation: !graylisted.contains(origin))
        if graylisted.contains(origin) {
            remote[key]?.ignoreBreaker(of: origin)
        } else if believed.breaker.openedAt > openedBefore {
            judgeBreakerOpening(key, origin: origin, openedAt: believed.breaker.openedAt, records: records)
        }
    }

    /// Rebuilds every key's aggregate from `records` (after peers were removed or set aside).
    mutating func rebuildAggregates(from records: [SignedRecord]) {
        let ignored = remote.mapValues(\.ignoredBreakers)
        remote = [:]
        for record in records where record.origin != owner {
            if case .quota(let key, let state) = record.body {
                merge(
                    record.origin, state: state, key: key, stamp: record.timestamp, ignoring: ignored[key] ?? [],
                    records: records)
            }
        }
    }

    /// Takes this node's own record from a previous run, relayed back by a peer: adopts what it says was
    /// consumed, spent and given, if the saved state missed any of it.
    mutating func adoptOwnRelayed(_ state: QuotaState, key: QuotaKey) {
        var quota = local[key] ?? LocalQuota()
        let before = quota.state.consumption
        quota.state.consumption = before.merging(state.consumption)
        quota.state.breaker = quota.state.breaker.merging(state.breaker)
        let ledgerBefore = quota.state.ledger
        if let relayed = state.ledger { quota.state.ledger = ledgerBefore.merging(relayed) }
        if quota.state.ledger != ledgerBefore { ledgerVersion &+= 1 }
        if quota.state.consumption != before || quota.state.ledger != ledgerBefore {
            quota.dirty = true
            pendingPersist = true
        }
        local[key] = quota
        catalog.note(key)
    }

    /// A peer set aside for good (quarantined): its claims of members are forgotten and the balances
    /// worked out again (its records' merged state is rebuilt by the instance).
    mutating func forget(_ origin: VerifyingKey) {
        setAside.insert(origin)
        membership.forget(origin)
        updateMembersAgreement()
        rightsCache = [:]
    }

    /// The trust store changed to `directory`: the member set, and the peers whose weights and scores
    /// count. `records`: when peers were removed, the records still held, to merge again without theirs.
    mutating func peersReplaced(
        _ directory: PeerDirectory, trusted: PeerTable, records: [SignedRecord]?
    ) {
        self.directory = directory
        setAside = setAside.filter { trusted.contains($0) }
        if let records {
            // What was saved of the cluster's consumption before may include the removed peers' claims:
            // start again from this node's own, and let the peers still trusted fill the rest in.
            for key in Array(local.keys) {
                let own = local[key]?.state.consumption.total ?? 0
                local[key]?.restoredClusterConsumed = own
            }
            rebuildAggregates(from: records)
        }
        if membership.update(directory, own: owner) {
            // Every record this node signs names its members: the peers learn of the new set at once.
            for key in Array(local.keys) { local[key]?.dirty = true }
        }
        scores.keep { trusted.contains($0) }
        weights.keep { trusted.contains($0) }
        rightsCache = [:]
        updateMembersAgreement()
    }

    /// Works out again which trusted peers name another member set than this node's, with an event when
    /// that changes.
    mutating func updateMembersAgreement() {
        let setAside = self.setAside
        pendingEvents += membership.reconcile { setAside.contains($0) }
    }

    // MARK: - Own records

    /// The state to sign for `key` now (its demand estimate, the members and the weight included), `nil`
    /// if the node has no state for the key.
    func stateToSign(_ key: QuotaKey) -> QuotaState? {
        guard let quota = local[key] else { return nil }
        var state = quota.state
        state.demand = quota.demand
        state.members = membership.digest
        state.weight = configuration.weight == .one ? nil : configuration.weight
        if state.policy == nil, let configured = configuration.services[key.service],
            let limit = configured.limit, let window = configured.windowMillis
        {
            state.policy = AdvertisedPolicy(limit: limit, windowMillis: window)
        }
        return state
    }

    /// Notes that this node signed its state of `key` at `now`.
    mutating func noteSigned(_ key: QuotaKey, now: UnixMillis) {
        guard var quota = local[key] else { return }
        quota.dirty = false
        quota.demandDirty = false
        quota.signedDemand = quota.demand
        quota.signedDemandAt = now
        local[key] = quota
    }

    /// The keys whose state is due to be signed at `now`: changed, or (once the demand-update pace allows)
    /// with a new demand estimate; and whether any is due for its demand alone. Keys with nothing to say
    /// are marked clean.
    mutating func keysToSign(now: UnixMillis) -> (keys: [QuotaKey], demandOnly: Bool) {
        let demandDue = lastDemandSignAt.map { now.saturatingSubtract($0) >= demandUpdateInterval } ?? true
        var keys: [QuotaKey] = []
        var demandOnly = false
        for key in local.keys.sorted() {
            guard var quota = local[key], quota.dirty || (quota.demandDirty && demandDue) else { continue }
            if quota.state == QuotaState() && quota.demand == Demand.zero && configuration.weight == .one {
                // Nothing to say yet (a configured key at start): no record, so that a cluster starting at
                // once does not flood itself with N empty ones. A node of another weight says that.
                quota.dirty = false
                quota.demandDirty = false
                local[key] = quota
                continue
            }
            if !quota.dirty { demandOnly = true }
            keys.append(key)
        }
        return (keys, demandOnly)
    }

    /// What to save: this node's state per key, with the cluster's consumption as far as it knows it.
    func persistedQuotas() -> [PersistedQuota] {
        local.sorted { $0.key < $1.key }.map { key, quota in
            PersistedQuota(
                key: key, state: quota.state,
                clusterConsumed: max(
                    (remote[key]?.consumption.lifetimeTotal ?? 0).saturatingAdd(quota.state.consumption.total),
                    quota.restoredClusterConsumed))
        }
    }
}

/// What the ledger needs to know of the mesh, from the dissemination half: who is live, how many peers
/// the trust store holds, and the gossip round.
struct MeshFacts: Sendable {
    /// Live peers, sorted.
    var live: [VerifyingKey] = []
    /// Bumped whenever ``live`` changes.
    var liveVersion: UInt64 = 0
    /// Peers never heard from since start.
    var unheard = 0
    /// Trusted peers (this node not counted).
    var peerCount = 0
    /// The gossip round.
    var round: UInt64 = 0
}

extension MeshConfiguration {
    /// The heartbeat interval in force with `peerCount` peers: the configured one, stretched with the
    /// cluster's size so that heartbeats (N²/interval deliveries a second) stay within the gossip capacity
    /// (about N × fanout × records per packet per round). Liveness timeouts stretch with it.
    func heartbeatInterval(peerCount: Int) -> Int64 {
        max(heartbeatIntervalMillis, Int64(peerCount + 1) * gossipIntervalMillis)
    }

    /// The liveness timeout in force (at least four heartbeat intervals).
    func livenessTimeout(peerCount: Int) -> Int64 {
        max(livenessTimeoutMillis, 4 * heartbeatInterval(peerCount: peerCount))
    }

    /// How often a change in the demand estimate alone may be signed: the cluster can spread only a
    /// fixed number of records a second (about fanout × records per packet per round, whatever N is),
    /// so each node's share of that budget shrinks as N grows.
    func demandUpdateInterval(peerCount: Int) -> Int64 {
        max(demandIntervalMillis, Int64(peerCount + 1) * gossipIntervalMillis / 2)
    }

    /// Rounds between anti-entropy digests: the configured period divided by about log10(N + 1). Pushes
    /// miss a small fraction of nodes whatever N is, so more nodes miss each record as N grows, and
    /// digests (which name recently updated slots first) are how they catch up: every 5 rounds up to a
    /// few dozen nodes, every 2 or 3 from a hundred.
    func digestPeriodRounds(peerCount: Int) -> Int {
        // log10 by decades, linear within a decade (the core imports no maths library).
        var value = Double(peerCount + 2)
        var scale = 0.0
        while value >= 10 {
            value /= 10
            scale += 1
        }
        scale += (value - 1) / 9
        let configured = Double(max(1, antiEntropyEveryRounds))
        return max(1, Int((configured / max(1, scale)).rounded()))
    }
}

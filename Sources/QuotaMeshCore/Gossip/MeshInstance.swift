import QuotaMeshCrypto

/// The QuotaMesh protocol as a pure state machine (sans-IO, after swift-cluster-membership's
/// `SWIM.Instance`): datagrams, agent calls and the time go in; datagrams to send, replies, state to
/// persist and the next wake-up come out as `MeshDirective`s. It owns no socket, timer, file or clock,
/// and its only randomness is a seeded generator, so the same inputs always give the same outputs.
///
/// Protocol: every node signs one record per (origin, slot) — its heartbeat and its state per quota key —
/// with a version `(incarnation, sequence)`. Receivers keep only the newest record per origin and slot
/// and merge the records into CRDTs (per-origin consumption counters, observation and breaker lattices).
/// Each round (200 ms by default) a node pushes records that are still "hot" (sent fewer than
/// `retransmitMultiplier × ⌈log10(N+1)⌉` times, memberlist-style) to `fanout` random live peers, and sends
/// one anti-entropy digest (van Renesse et al., "Efficient Reconciliation and Flow Control for
/// Anti-Entropy Protocols") to one peer, so a node that was down or partitioned catches up.
///
/// The instance is a router between two halves with their own state: dissemination (peers, liveness,
/// records, the wire) and the ledger, ``QuotaLedger``, which decides and accounts. A record dissemination
/// accepts is absorbed by the ledger, a change in the ledger is signed into a record dissemination
/// spreads, and both halves' directives come out of one call.
public struct MeshInstance: Sendable {
    /// The protocol's parameters.
    public internal(set) var configuration: MeshConfiguration {
        didSet {
            ledger.configuration = configuration
            dissemination.configuration = configuration
        }
    }
    /// Every random choice of both halves draws from this one seeded generator, lent to the calls that
    /// draw, so that a run is reproduced exactly by its seed.
    var rng: SplitMix64
    /// The dissemination half: peers, liveness, records, quarantine, introductions, the wire.
    var dissemination: Dissemination
    /// The ledger half: services, own and merged state, rights, demand, shares, breakers and waiters.
    var ledger: QuotaLedger

    /// This node's identity.
    public var identity: SigningKey { dissemination.identity }
    /// The incarnation this run signs with.
    public var incarnation: UInt64 { dissemination.incarnation }
    /// The public key of this node.
    public var publicKey: VerifyingKey { dissemination.publicKey }
    /// The records held, newest per origin and slot.
    var records: RecordTable { dissemination.records }
    /// Peers that signed records contradicting each other, with the proof: nothing from them is accepted.
    public var quarantined: [VerifyingKey: QuarantineEvidence] { dissemination.quarantined }
    /// Trusted peers whose member set is not this node's.
    public var membersDiffer: Set<VerifyingKey> { ledger.membership.differ }
    /// Whether this node spends no rights because its member set is the odd one out (``Membership``).
    public var rightsStopped: Bool { ledger.membership.stopped }
    /// Origins whose upstream observations and breaker claims do not count (their score reached
    /// ``ObservationScores/graylistScore``).
    public var graylisted: Set<VerifyingKey> { ledger.graylisted }

    /// Creates an instance.
    /// - Parameters:
    ///   - identity: the node's signing key.
    ///   - configuration: protocol parameters and service policies.
    ///   - peers: the trust store's peers (this node's own key is ignored if present).
    ///   - restored: what was persisted by a previous run, if anything.
    ///   - now: the current time.
    ///   - seed: seeds every random choice (peer selection).
    public init(
        identity: SigningKey, configuration: MeshConfiguration, peers: [PeerInfo], restored: PersistedNodeState?,
        now: UnixMillis, seed: UInt64
    ) {
        self.init(
            identity: identity, configuration: configuration, directory: PeerDirectory(peers), restored: restored,
            now: now, seed: seed)
    }

    /// Creates an instance on a peer directory that other instances may share (a simulator's nodes).
    /// - Parameters:
    ///   - identity: the node's signing key.
    ///   - configuration: protocol parameters and service policies.
    ///   - directory: the trust store's peers (this node's own entry, if present, is passed over).
    ///   - restored: what was persisted by a previous run, if anything.
    ///   - now: the current time.
    ///   - seed: seeds every random choice (peer selection).
    public init(
        identity: SigningKey, configuration: MeshConfiguration, directory: PeerDirectory,
        restored: PersistedNodeState?, now: UnixMillis, seed: UInt64
    ) {
        self.configuration = configuration
        var rng = SplitMix64(seed: seed)
        self.dissemination = Dissemination(
            identity: identity, configuration: configuration, directory: directory, restored: restored, now: now,
            rng: &rng)
        self.rng = rng
        self.ledger = QuotaLedger(
            owner: identity.publicKey, configuration: configuration, directory: directory, restored: restored, now: now)
        ledger.setAside = Set(dissemination.quarantined.keys)
        syncFacts()
    }

    /// Tells the ledger what dissemination now knows of the peers (live, how many, the round): after
    /// every step of dissemination that can change it, before the ledger next decides.
    mutating func syncFacts() {
        ledger.mesh = dissemination.facts
    }

    // MARK: - Inputs

    /// Replaces the trust store (after a reload). Records of origins no longer trusted are forgotten;
    /// known peers keep their liveness and replay state.
    public mutating func replacePeers(_ newPeers: [PeerInfo]) {
        replacePeers(PeerDirectory(newPeers))
    }

    /// Replaces the trust store with `directory`. Records of origins no longer trusted are forgotten;
    /// known peers keep their liveness and replay state.
    public mutating func replacePeers(_ directory: PeerDirectory) {
        dissemination.peers = dissemination.peers.moved(to: directory, own: publicKey)
        let table = dissemination.peers
        let own = publicKey
        let isUntrusted: (SlotID) -> Bool = { $0.origin != own && !table.contains($0.origin) }
        let removed = records.ids.contains(where: isUntrusted)
        if removed {
            dissemination.recordStore.forget(where: isUntrusted)
        }
        let directory = table.directory
        dissemination.recordStore.renumberOrigins { directory.index(of: $0) }
        // A peer taken out of the trust store leaves its quarantine behind: added again, it starts afresh.
        dissemination.quarantined = dissemination.quarantined.filter { table.contains($0.key) }
        dissemination.introductions.trustStoreReloaded()
        ledger.peersReplaced(directory, trusted: table, records: removed ? records.records : nil)
        dissemination.liveness.reset(table)
        syncFacts()
    }

    /// The first directives after start: persist the new incarnation, then gossip at once. A node whose
    /// weight is not 1 signs a record of each configured service at once, so that its peers learn the
    /// weight it claims before any call (the claim travels in quota records).
    public mutating func start(now: UnixMillis) -> [MeshDirective] {
        if configuration.weight != .one {
            for (service, policy) in configuration.services.sorted(by: { $0.key < $1.key }) {
                // The service's first configured account: no other account is made up for it.
                let key = QuotaKey(service: service, account: policy.accounts.first ?? "default")
                guard ledger.local[key] == nil else { continue }
                ledger.local[key] = LocalQuota()
                ledger.local[key]?.dirty = true
            }
        }
        return tick(now: now)
    }

    /// Handles one datagram.
    /// - Parameters:
    ///   - datagram: the bytes received.
    ///   - source: where they came from (used as the sender's address once it is authenticated).
    ///   - now: the current time.
    public mutating func receive(datagram: [UInt8], from source: Endpoint, now: UnixMillis) -> [MeshDirective] {
        var out: [MeshDirective] = []
        // An event per record, a wake and often a reply: room for a full packet's worth at once.
        out.reserveCapacity(16)
        guard let packet = dissemination.authenticate(datagram, from: source, now: now, into: &out) else {
            return finish(consume out, now: now)
        }
        syncFacts()
        switch packet.payload {
        case .records(let incoming):
            receiveRecords(incoming, from: packet.sender, source: source, now: now, into: &out)
        case .push(let incoming, let announced, let holds):
            receiveRecords(incoming, from: packet.sender, source: source, now: now, into: &out)
            dissemination.answerAnnouncements(announced, from: packet.sender, now: now, into: &out)
            if let holds {
                dissemination.answerHeldFilter(holds, from: packet.sender, now: now, withheld: ledger.withheldSlots(), into: &out)
            }
        case .digest(let isReply, let entries):
            dissemination.answerDigest(
                entries, isReply: isReply, from: packet.sender, now: now, withheld: ledger.withheldSlots(), into: &out)
        case .rightsRequest(let request):
            answerRightsRequest(request, from: packet.sender, now: now, into: &out)
        case .introductionsRequest:
            dissemination.answerIntroductionsRequest(from: packet.sender, now: now, rng: &rng, into: &out)
        case .introductions(let introduced):
            dissemination.receiveIntroductions(introduced, from: packet.sender, into: &out)
        case .join, .welcome:
            // A join is answered by dissemination; a welcome is for `quotamesh join`, not for a running node.
            break
        }
        return finish(consume out, now: now)
    }

    /// Stores the records of a packet, then saves and serves waiting acquires as they call for.
    private mutating func receiveRecords(
        _ incoming: [WireFormat.ArrivingRecord], from sender: VerifyingKey, source: Endpoint, now: UnixMillis,
        into out: inout [MeshDirective]
    ) {
        if !ledger.rightsWants.isEmpty { noteRightsAnswers(incoming, from: sender, now: now) }
        dissemination.receive(incoming, from: sender, source: source, now: now, ledger: &ledger, into: &out)
        syncFacts()
        if ledger.pendingPersist {
            out.append(.persist)
            ledger.pendingPersist = false
        }
        ledger.serveWaiters(now: now, rng: &rng, into: &out)
    }

    /// Handles the passage of time: demand estimates, heartbeats, gossip rounds, liveness and waiting
    /// acquires. Call it at (or after) the last `wake(at:)` time.
    public mutating func tick(now: UnixMillis) -> [MeshDirective] {
        var out: [MeshDirective] = []
        ledger.updateDemand(now: now)
        if now >= dissemination.nextGossipAt {
            dissemination.round += 1
            syncFacts()
            let round = dissemination.round
            // Liveness changes on a scale of seconds: refresh it every fifth round.
            if round % 5 == 1 && now >= dissemination.liveness.checkAt {
                dissemination.refreshLiveness(now: now, into: &out)
                syncFacts()
            }
            if round % 5 == 1 { liftGraylists(now: now) }
            // Surplus rights move at the pace of liveness checks: often enough to follow demand (agents that
            // run short ask at once), seldom enough that transfers do not crowd the gossip.
            if round % 5 == 0 { ledger.passSurplusRights(now: now) }
            signDirtyRecords(now: now)
            dissemination.heartbeatIfDue(now: now, ledger: &ledger)
            dissemination.gossipRound(now: now, withheld: ledger.withheldSlots(), rng: &rng, into: &out)
            dissemination.askForIntroductions(now: now, into: &out)
            dissemination.nextGossipAt = max(
                dissemination.nextGossipAt.saturatingAdd(configuration.gossipIntervalMillis), now + 1)
        }
        ledger.serveWaiters(now: now, rng: &rng, into: &out)
        return finish(consume out, now: now)
    }

    /// Signs new records for keys whose state changed. Changes to consumption, observations, the breaker
    /// or the policy go out at the next round (they are bounded by the upstream's own rate); changes to
    /// the demand estimate alone wait for `demandUpdateInterval`, so that the records competing for the
    /// cluster's fixed gossip capacity stay few however large the cluster grows.
    mutating func signDirtyRecords(now: UnixMillis) {
        let (keys, demandOnly) = ledger.keysToSign(now: now)
        for key in keys { signOwnRecord(key, now: now) }
        if demandOnly { ledger.lastDemandSignAt = now }
    }

    /// Signs and holds a new record of this node's state for `key` now (its demand estimate included) and
    /// returns it; `nil` if the node has no state for the key.
    @discardableResult
    mutating func signOwnRecord(_ key: QuotaKey, now: UnixMillis) -> SignedRecord? {
        guard let state = ledger.stateToSign(key) else { return nil }
        let record = dissemination.ownRecord(.quota(key, state), now: now)
        dissemination.store(record, receivedFrom: nil, ledger: &ledger)
        ledger.noteSigned(key, now: now)
        dissemination.lastSignedAt = now
        return record
    }

    /// Decides an agent's acquire. The reply comes as a `.reply(ticket:_:)` directive, at once or, when
    /// the request may wait, from a later call. Costs and the wait are clamped to ``AcquireRequest``'s
    /// limits (the API refuses what is beyond them).
    public mutating func acquire(_ request: AcquireRequest, ticket: UInt64, now: UnixMillis) -> [MeshDirective] {
        var request = request
        request.cost = min(max(request.cost, 1), AcquireRequest.maxCost)
        if !request.costs.isEmpty {
            request.costs = request.costs.compactMapValues { $0 > 0 ? min($0, AcquireRequest.maxDimensionCost) : nil }
            request.costs[QuotaKey.requests] = nil
        }
        request.waitMillis = min(max(request.waitMillis, 0), AcquireRequest.maxWaitMillis)
        var out: [MeshDirective] = []
        out.reserveCapacity(4)
        let entry = ledger.catalog.entry(request.service)
        ledger.noteDemand(request, entry: entry)
        let decision = ledger.decide(request, entry: entry, now: now, rng: &rng)
        if decision.granted {
            out.append(.persist)
            ledger.pendingPersist = false
            out.append(.reply(ticket: ticket, decision))
        } else if let wait = QuotaLedger.waitAllowed(request, decision: decision), let retryAt = decision.retryAt,
            retryAt <= now + wait
        {
            ledger.waitQueue.enqueue(ticket: ticket, request: request, deadline: now + wait, decision: decision)
        } else {
            out.append(.reply(ticket: ticket, decision))
        }
        return finish(consume out, now: now)
    }

    /// Abandons a waiting acquire (the agent went away); nothing is charged.
    public mutating func cancel(ticket: UInt64) {
        ledger.waitQueue.cancel(ticket: ticket)
    }

    /// What `observe` understood.
    public struct ObserveOutcome: Sendable, Hashable {
        /// The key the observation was charged to.
        public var key: QuotaKey?
        /// Whether the service is known now.
        public var serviceKnown: Bool
        /// Whether this observation opened the breaker.
        public var openedBreaker: Bool
        /// Whether it closed the breaker.
        public var closedBreaker: Bool
        /// Why nothing was recorded, when a cap refused a new name.
        public var refused: NameRefusal? = nil
        /// Dimensions the response stated that were not recorded (a cap on dimensions), with why.
        public var ignored: [IgnoredHeader] = []
    }

    /// Takes an upstream response the agent reports: merges what its rate-limit headers say and drives
    /// the shared breaker (``QuotaLedger/observe(service:account:status:report:corrections:now:rng:into:)``).
    /// - Parameters:
    ///   - service: the upstream service.
    ///   - account: the account used, if the agent names one.
    ///   - status: the HTTP status the upstream answered.
    ///   - report: what the headers said (`RateLimitHeaderParser.parse`).
    ///   - now: the current time.
    ///   - corrections: what the call really cost minus what its acquire reserved, by dimension other
    ///     than requests (negative: a refund), applied to this node's own consumption.
    public mutating func observe(
        service: String, account: String?, status: Int, report: RateLimitReport,
        corrections: [String: Int64] = [:], now: UnixMillis
    ) -> (directives: [MeshDirective], outcome: ObserveOutcome) {
        var out: [MeshDirective] = []
        let outcome = ledger.observe(
            service: service, account: account, status: status, report: report, corrections: corrections, now: now,
            records: records.records, rng: &rng, into: &out)
        return (finish(out, now: now), outcome)
    }

    /// The merged views of a service's scopes (accounts the provider limits together).
    public func scopeQuotas(service: String, now: UnixMillis) -> [QuotaView] {
        ledger.catalog.scopeKeys(of: service).map { ledger.view(of: $0, now: now, rng: rng) }
    }

    // MARK: - Queries

    /// The merged view of every known key, sorted.
    public func quotas(now: UnixMillis) -> [QuotaView] {
        ledger.catalog.knownKeys().map { ledger.view(of: $0, now: now, rng: rng) }
    }

    /// The merged view of one account's key, as ``quotas(service:now:)`` lists it, worked out alone: an
    /// acquire's or observe's answer needs only its own key's view. `nil` when the service is unknown or
    /// the key is not one of its accounts' (requests) keys.
    public func quota(of key: QuotaKey, now: UnixMillis) -> QuotaView? {
        guard isKnown(service: key.service), key == QuotaKey(service: key.service, account: key.account),
            ledger.catalog.accounts(of: key.service).contains(key.account)
        else { return nil }
        return ledger.view(of: key, now: now, rng: rng)
    }

    /// The merged view of one service: its account with the most remaining first, then the others.
    public func quotas(service: String, now: UnixMillis) -> [QuotaView] {
        ledger.catalog.accounts(of: service).map { ledger.view(of: QuotaKey(service: service, account: $0), now: now, rng: rng) }
            .sorted { ($0.remaining ?? .max, $1.key) > ($1.remaining ?? .max, $0.key) }
    }

    /// Whether a configuration, an observation or a peer's record names `service`.
    public func isKnown(service: String) -> Bool {
        ledger.catalog.isKnown(service)
    }

    /// Every trusted peer.
    public func peerViews(now: UnixMillis) -> [PeerView] {
        var counts: [VerifyingKey: Int] = [:]
        var newest: [VerifyingKey: UnixMillis] = [:]
        for (id, record) in zip(records.ids, records.records) {
            counts[id.origin, default: 0] += 1
            newest[id.origin] = max(newest[id.origin] ?? .min, record.timestamp)
        }
        let peers = dissemination.peers
        return peers.indices.map { index in
            let info = peers.info(at: index)
            let peer = peers[index]
            var view = PeerView(
                name: info.name, key: info.key, endpoint: peers.endpoint(at: index),
                live: peer.isLive(now: now, timeout: livenessTimeout) && quarantined[info.key] == nil,
                lastHeardAt: peer.lastHeardAt, records: counts[info.key] ?? 0,
                newestRecordAt: newest[info.key], quarantined: quarantined[info.key]?.reason,
                observationScore: ledger.observationScore(of: info.key, now: now),
                graylisted: graylisted.contains(info.key), members: ledger.membership.count(namedBy: info.key),
                membersAgree: !membersDiffer.contains(info.key))
            view.claimedWeight = ledger.weights.claim(of: info.key)
            view.vouchedWeight = info.weight
            view.weight = ledger.effectiveWeight(of: info.key)
            return view
        }.sorted { $0.name < $1.name }
    }

    /// The state to save now.
    public func persistedState() -> PersistedNodeState {
        PersistedNodeState(
            incarnation: incarnation,
            quotas: ledger.persistedQuotas(),
            quarantined: quarantined.isEmpty ? nil : quarantined.sorted { $0.key < $1.key }.map { key, evidence in
                PersistedQuarantine(
                    key: key.base64, reason: evidence.reason, earlier: Base64.encode(evidence.earlier.wire),
                    later: Base64.encode(evidence.later.wire), at: evidence.at)
            })
    }

    /// A saved quarantine, read back: `nil` if its key or records do not decode, or the records are not
    /// its key's (a state file is this node's own, but a damaged one must not quarantine anybody).
    static func restoredQuarantine(_ saved: PersistedQuarantine) -> (VerifyingKey, QuarantineEvidence)? {
        func record(_ text: String) -> SignedRecord? {
            guard let bytes = try? Base64.decode(text) else { return nil }
            var reader = ByteReader(bytes)
            return try? WireFormat.decodeRecord(from: &reader)
        }
        guard let key = try? VerifyingKey(base64: saved.key), let earlier = record(saved.earlier),
            let later = record(saved.later), earlier.origin == key, later.origin == key
        else { return nil }
        return (key, QuarantineEvidence(reason: saved.reason, earlier: earlier, later: later, at: saved.at))
    }

    /// Every record held, newest per origin and slot (for tests and the simulator).
    public var heldRecords: [SignedRecord] { records.records }

    /// The version held for `origin`'s `slot`, if any (for the simulator's convergence probes).
    public func heldVersion(origin: VerifyingKey, slot: RecordSlot) -> RecordVersion? {
        records.index(of: SlotID(origin: origin, slot: slot)).map { records.version(at: $0) }
    }

    /// The heartbeat interval in force (``MeshConfiguration/heartbeatInterval(peerCount:)``).
    public var heartbeatInterval: Int64 { dissemination.heartbeatInterval }

    /// How often a change in the demand estimate alone may be signed
    /// (``MeshConfiguration/demandUpdateInterval(peerCount:)``).
    public var demandUpdateInterval: Int64 { configuration.demandUpdateInterval(peerCount: dissemination.peers.count) }

    /// Rounds between anti-entropy digests (``MeshConfiguration/digestPeriodRounds(peerCount:)``).
    public var digestPeriodRounds: Int { dissemination.digestPeriodRounds }

    /// The liveness timeout in force (at least four heartbeat intervals).
    public var livenessTimeout: Int64 { dissemination.livenessTimeout }

    /// How many waiting acquires there are.
    public var waitingCount: Int { ledger.waitQueue.count }

    /// `peer`'s weight here: the smaller of what it claims and what this node vouches for it
    /// (``QuotaLedger/effectiveWeight(of:)``).
    public func effectiveWeight(of peer: VerifyingKey) -> Weight { ledger.effectiveWeight(of: peer) }

    /// Lifts the graylist of origins whose count has decayed to half the threshold (the instance does so
    /// every fifth round; tests call it with a later time).
    mutating func liftGraylists(now: UnixMillis) {
        ledger.liftGraylists(now: now, records: records.records)
    }

    /// The pieces of the remaining estimate for `key`, for diagnosis (``QuotaLedger/remainingBreakdown(_:now:)``).
    public func remainingBreakdown(_ key: QuotaKey, now: UnixMillis) -> [String: Int64] {
        ledger.remainingBreakdown(key, now: now)
    }

    /// The inputs of this node's pacing for `key`, for diagnosis (``QuotaLedger/pacingBreakdown(_:now:)``).
    public mutating func pacingBreakdown(_ key: QuotaKey, now: UnixMillis) -> [String: Double] {
        ledger.pacingBreakdown(key, now: now)
    }
}

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
/// `retransmitMultiplier × ⌈log2(N+1)⌉` times, memberlist-style) to `fanout` random live peers, and sends
/// one anti-entropy digest (van Renesse et al., "Efficient Reconciliation and Flow Control for
/// Anti-Entropy Protocols") to one peer, so a node that was down or partitioned catches up.
public struct MeshInstance: Sendable {
    /// This node's identity.
    public let identity: SigningKey
    /// The protocol's parameters.
    public internal(set) var configuration: MeshConfiguration {
        didSet { catalog.configure(configuration) }
    }
    /// The incarnation this run signs with.
    public let incarnation: UInt64

    var sequence: UInt64 = 0
    var packetSequence: UInt64 = 0
    var rng: SplitMix64
    /// The trusted peers and what this node knows of each.
    var peers: PeerTable
    /// The records held, their push queue and digest marks.
    var recordStore = RecordStore(maxDigestEntries: MeshInstance.maxDigestEntries)
    /// The newest record per origin and slot, each at a dense index (digests rotate in index order).
    var records: RecordTable { recordStore.table }
    /// Peers' states per key, merged incrementally.
    var remote: [QuotaKey: KeyAggregate] = [:]
    /// The services, accounts and dimensions known, and each service's entry for the decision path.
    var catalog: ServiceCatalog
    var local: [QuotaKey: LocalQuota] = [:]
    /// Acquires waiting for a grant.
    var waitQueue = WaitQueue()
    var nextGossipAt: UnixMillis
    var lastHeartbeatAt: UnixMillis?
    /// When the first heartbeat is due: at start in a small cluster; in a large one, at a random point in
    /// the part of the heartbeat interval that was stretched for the cluster's size.
    var firstHeartbeatAt: UnixMillis
    /// When this node last signed any record (a signed record is liveness evidence too).
    var lastSignedAt: UnixMillis?
    var lastDemandSignAt: UnixMillis?
    var demandWindowStart: UnixMillis
    var pendingPersist = false
    /// Which peers are live.
    var liveness = Liveness()
    /// Live peers, sorted; refreshed when one can have timed out and extended when a peer comes up.
    var live: [VerifyingKey] { liveness.live }
    /// Bumped whenever ``live`` changes.
    var liveVersion: UInt64 { liveness.version }
    /// Peers never heard from since start; while the start is recent they still count for fair shares.
    var unheard: Int { liveness.unheard }
    let startedAt: UnixMillis
    /// Whether this start restored a saved state (a restart, not a first start): the node then had a view
    /// of the others' consumption before and has lost it until it hears it again.
    let isRestart: Bool
    var round: UInt64 = 0
    var shareCache: [QuotaKey: ShareCache] = [:]
    /// The members a window's rights are split among, and whether the peers name the same.
    var membership = Membership()
    /// This node and every peer in its trust store, sorted: the members a window's rights are split among.
    var members: [VerifyingKey] { membership.members }
    /// Trusted peers whose member set is not this node's.
    public var membersDiffer: Set<VerifyingKey> { membership.differ }
    /// Whether this node spends no rights because its member set is the odd one out (``Membership``).
    public var rightsStopped: Bool { membership.stopped }
    /// Bumped when this node's own ledger of any key changes.
    var ledgerVersion: UInt64 = 0
    /// Per key, the window's split and every member's balance, kept until a ledger or the members change.
    var rightsCache: [QuotaKey: RightsCache] = [:]
    /// Rights this node lacks for calls it was asked for, by key: asked of peers from ``finish``.
    var rightsWants: [QuotaKey: RightsWant] = [:]
    /// Set by the shell while state cannot be saved: no grant and no transfer until a save succeeds.
    public internal(set) var persistenceFailing = false
    /// Keys whose own ledger changed since the last save the shell confirmed.
    var undurableLedgers: Set<QuotaKey> = []
    /// Failed signature checks spent per source: floods naming a vouched key are refused before Ed25519.
    var verificationBudget = VerificationBudget()
    /// Peers that signed records contradicting each other, with the proof: nothing from them is accepted.
    public internal(set) var quarantined: [VerifyingKey: QuarantineEvidence] = [:]
    /// Per origin, how often its upstream observations contradicted this node's own, and the graylist.
    var scores = ObservationScores()
    /// Origins whose upstream observations and breaker claims do not count (their score reached
    /// ``ObservationScores/graylistScore``).
    public var graylisted: Set<VerifyingKey> { scores.graylisted }
    /// Events noted where no directives are at hand, handed out with the next directives.
    var pendingEvents: [MeshEvent] = []
    /// Peers this node asked the shell to trust, and introductions it set aside.
    var introductions = IntroductionBook()
    /// The weights peers claim in their records.
    var weights = ClaimedWeights()

    /// The public key of this node.
    public var publicKey: VerifyingKey { identity.publicKey }

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
        self.identity = identity
        self.configuration = configuration
        self.catalog = ServiceCatalog(configuration)
        self.peers = PeerTable(directory: directory, own: identity.publicKey)
        // Strictly greater than any incarnation used before, even if the state folder was lost (the clock
        // in seconds is a floor), so peers accept the new records and packets.
        self.incarnation = max((restored?.incarnation ?? 0).saturatingAdd(1), UInt64(max(0, now / 1000)))
        self.rng = SplitMix64(seed: seed)
        self.nextGossipAt = now
        self.firstHeartbeatAt = now
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
        liveness.reset(self.peers)
        membership.update(directory, own: identity.publicKey)
        for saved in restored?.quarantined ?? [] {
            if let (key, evidence) = Self.restoredQuarantine(saved), self.peers.contains(key) { quarantined[key] = evidence }
        }
        let spread = heartbeatInterval - max(0, configuration.heartbeatIntervalMillis)
        firstHeartbeatAt = spread > 0 ? now + Int64.random(in: 0..<spread, using: &rng) : now
        pendingPersist = true
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
        peers = peers.moved(to: directory, own: publicKey)
        let table = peers
        let own = publicKey
        let isUntrusted: (SlotID) -> Bool = { $0.origin != own && !table.contains($0.origin) }
        if records.ids.contains(where: isUntrusted) {
            // What was saved of the cluster's consumption before may include the removed peers' claims:
            // start again from this node's own, and let the peers still trusted fill the rest in.
            for key in Array(local.keys) {
                let own = local[key]?.state.consumption.total ?? 0
                local[key]?.restoredClusterConsumed = own
            }
            forgetRecords(where: isUntrusted)
        }
        let directory = peers.directory
        recordStore.renumberOrigins { directory.index(of: $0) }
        if membership.update(directory, own: publicKey) {
            // Every record this node signs names its members: the peers learn of the new set at once.
            for key in Array(local.keys) { local[key]?.dirty = true }
        }
        // A peer taken out of the trust store leaves its quarantine behind: added again, it starts afresh.
        quarantined = quarantined.filter { peers.contains($0.key) }
        introductions.trustStoreReloaded()
        let trusted = peers
        scores.keep { trusted.contains($0) }
        weights.keep { trusted.contains($0) }
        rightsCache = [:]
        updateMembersAgreement()
        liveness.reset(peers)
    }

    /// The first directives after start: persist the new incarnation, then gossip at once. A node whose
    /// weight is not 1 signs a record of each configured service at once, so that its peers learn the
    /// weight it claims before any call (the claim travels in quota records).
    public mutating func start(now: UnixMillis) -> [MeshDirective] {
        if configuration.weight != .one {
            for (service, policy) in configuration.services.sorted(by: { $0.key < $1.key }) {
                // The service's first configured account: no other account is made up for it.
                let key = QuotaKey(service: service, account: policy.accounts.first ?? "default")
                guard local[key] == nil else { continue }
                local[key] = LocalQuota()
                local[key]?.dirty = true
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
        let header: PacketHeader
        do {
            header = try WireFormat.decodeHeader(datagram)
        } catch {
            out.append(.event(.dropped(DropReason(error), from: source, sender: nil)))
            return finish(out, now: now)
        }
        guard header.sender != publicKey else {
            out.append(.event(.dropped(.fromSelf, from: source, sender: header.sender)))
            return finish(out, now: now)
        }
        if WireFormat.isJoinRequest(datagram) {
            answerJoin(datagram, header: header, from: source, now: now, into: &out)
            return finish(out, now: now)
        }
        guard let peerIndex = peers.index(of: header.sender) else {
            out.append(.event(.dropped(.unknownSender, from: source, sender: header.sender)))
            return finish(out, now: now)
        }
        guard quarantined[header.sender] == nil else {
            out.append(.event(.dropped(.quarantined, from: source, sender: header.sender)))
            return finish(out, now: now)
        }
        var peer = peers[peerIndex]
        // Cheap checks before the signature.
        guard peer.replay.isFresh(incarnation: header.incarnation, sequence: header.sequence) else {
            out.append(.event(.dropped(.replayed, from: source, sender: header.sender)))
            return finish(out, now: now)
        }
        guard header.sentAt <= now.saturatingAdd(configuration.maxClockSkewMillis) else {
            out.append(.event(.dropped(.fromFuture, from: source, sender: header.sender)))
            return finish(out, now: now)
        }
        // A vouched peer flooding valid packets: past its rate, they are not checked.
        guard peer.mayBeChecked(now: now) else {
            out.append(.event(.dropped(.rateLimited, from: source, sender: header.sender)))
            return finish(out, now: now)
        }
        guard isSignedBySender(datagram, header: header, from: source, now: now, into: &out) else {
            return finish(out, now: now)
        }
        verificationBudget.noteVerified(source, now: now)
        peer.noteVerifiedPacket(now: now)
        // Only the newest packet moves the peer's address, so a re-sent older packet cannot redirect it.
        let newest = !peer.replay.hasStarted || header.incarnation > peer.replay.incarnation
            || header.sequence > peer.replay.highest
        peer.replay.accept(incarnation: header.incarnation, sequence: header.sequence)
        // A packet held back and delivered late (its records are still welcome: they are signed and
        // versioned) says nothing about where the sender is now, nor that it is alive.
        let timely = header.sentAt >= now.saturatingSubtract(configuration.maxPacketAgeMillis)
        if newest && timely { peers.observe(source, at: peerIndex) }
        if timely { markHeard(&peer, key: header.sender, at: min(now, header.sentAt), now: now, into: &out) }
        peers[peerIndex] = peer

        let payload: WireFormat.ArrivingPayload
        do throws(DecodeError) {
            payload = try WireFormat.decodeArriving(datagram) { origin, version, wire in
                guard origin != self.publicKey, let number = self.peers.directory.index(of: origin) else { return nil }
                return self.records.index(ofCopy: wire, originNumber: number, version: version)
            }
        } catch {
            out.append(.event(.dropped(DropReason(error), from: source, sender: header.sender)))
            return finish(out, now: now)
        }
        switch payload {
        case .records(let incoming):
            let renumbered = recordStore.renumbered
            for arriving in incoming {
                switch arriving {
                case .copy(let index, let version):
                    // A record earlier in the packet can quarantine its origin, which drops records: the
                    // copies' slot numbers are then stale, and a copy only confirms what is held anyway.
                    guard recordStore.renumbered == renumbered else { continue }
                    noteCopy(at: index, version: version, from: header.sender, into: &out)
                case .record(let record):
                    accept(record, from: header.sender, source: source, now: now, into: &out)
                }
            }
            if pendingPersist {
                out.append(.persist)
                pendingPersist = false
            }
            serveWaiters(now: now, into: &out)
        case .digest(let isReply, let entries):
            answerDigest(entries, isReply: isReply, from: header.sender, now: now, into: &out)
        case .rightsRequest(let request):
            answerRightsRequest(request, from: header.sender, now: now, into: &out)
        case .introductionsRequest:
            answerIntroductionsRequest(from: header.sender, now: now, into: &out)
        case .introductions(let introduced):
            receiveIntroductions(introduced, from: header.sender, into: &out)
        case .join, .welcome:
            // A join is answered above; a welcome is for `quotamesh join`, not for a running node.
            break
        }
        return finish(out, now: now)
    }

    /// Whether the packet's signature is its sender's, checked only while `source` is within its
    /// verification budget; a refusal is noted in the budget and as a drop event.
    mutating func isSignedBySender(
        _ datagram: [UInt8], header: PacketHeader, from source: Endpoint, now: UnixMillis, into out: inout [MeshDirective]
    ) -> Bool {
        guard verificationBudget.mayVerify(source, now: now) else {
            out.append(.event(.dropped(.overBudget, from: source, sender: header.sender)))
            return false
        }
        guard
            WireFormat.hasValidPacketSignature(
                datagram, sender: header.sender, cluster: configuration.cluster, scheme: configuration.signatures)
        else {
            verificationBudget.noteFailed(source, now: now)
            out.append(.event(.dropped(.badSignature, from: source, sender: header.sender)))
            return false
        }
        return true
    }

    /// Handles the passage of time: demand estimates, heartbeats, gossip rounds, liveness and waiting
    /// acquires. Call it at (or after) the last `wake(at:)` time.
    public mutating func tick(now: UnixMillis) -> [MeshDirective] {
        var out: [MeshDirective] = []
        updateDemand(now: now)
        if now >= nextGossipAt {
            round += 1
            // Liveness changes on a scale of seconds: refresh it every fifth round.
            if round % 5 == 1 && now >= liveness.checkAt { refreshLiveness(now: now, into: &out) }
            if round % 5 == 1 { liftGraylists(now: now) }
            // Surplus rights move at the pace of liveness checks: often enough to follow demand (agents that
            // run short ask at once), seldom enough that transfers do not crowd the gossip.
            if round % 5 == 0 { passSurplusRights(now: now) }
            signDirtyRecords(now: now)
            // A heartbeat only when nothing else this node signed lately says it is alive.
            // The first heartbeat waits for its random start-up slot, and a record signed meanwhile
            // stands in for it: a cluster that starts at once does not flood itself with N heartbeats.
            if lastHeartbeatAt == nil, lastSignedAt != nil {
                lastHeartbeatAt = lastSignedAt
            }
            let latest = max(lastHeartbeatAt ?? .min, lastSignedAt ?? .min)
            if lastHeartbeatAt == nil ? now >= firstHeartbeatAt : now.saturatingSubtract(latest) >= heartbeatInterval {
                lastHeartbeatAt = now
                store(ownRecord(.heartbeat, now: now), receivedFrom: nil)
            }
            gossipRound(now: now, into: &out)
            askForIntroductions(now: now, into: &out)
            nextGossipAt = max(nextGossipAt.saturatingAdd(configuration.gossipIntervalMillis), now + 1)
        }
        serveWaiters(now: now, into: &out)
        return finish(out, now: now)
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
        let entry = catalog.entry(request.service)
        noteDemand(request, entry: entry)
        let decision = decide(request, entry: entry, now: now)
        if decision.granted {
            out.append(.persist)
            pendingPersist = false
            out.append(.reply(ticket: ticket, decision))
        } else if let wait = waitAllowed(request, decision: decision), let retryAt = decision.retryAt,
            retryAt <= now + wait
        {
            waitQueue.enqueue(ticket: ticket, request: request, deadline: now + wait, decision: decision)
        } else {
            out.append(.reply(ticket: ticket, decision))
        }
        return finish(out, now: now)
    }

    /// How long a refused acquire may wait for a grant, `nil` if it is answered at once: what the agent
    /// allows, and at least ``rightsWaitMillis`` when only rights are missing and peers holding some were
    /// asked (their answer is a round trip away, far sooner than any agent's retry).
    func waitAllowed(_ request: AcquireRequest, decision: AcquireDecision) -> Int64? {
        guard decision.reason != .unknownService, decision.detail?.kind != .costExceedsLimit else { return nil }
        // For the account's requests, or another dimension or the scope of the call.
        let lacksRights = decision.detail?.kind == .rights
        let wait = lacksRights ? max(request.waitMillis, Self.rightsWaitMillis) : request.waitMillis
        return wait > 0 ? wait : nil
    }

    /// How long an acquire waits for rights asked of peers before it is refused (ms).
    static let rightsWaitMillis: Int64 = 250

    /// Abandons a waiting acquire (the agent went away); nothing is charged.
    public mutating func cancel(ticket: UInt64) {
        waitQueue.cancel(ticket: ticket)
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
    /// the shared breaker.
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
        var outcome = ObserveOutcome(key: nil, serviceKnown: false, openedBreaker: false, closedBreaker: false)
        if let policy = configuration.services[service], let account, !policy.accounts.contains(account) {
            outcome.refused = .unconfiguredAccount
            return (finish(out, now: now), outcome)
        }
        // Requests are counted under the service's key; every other dimension (tokens, and each window the
        // upstream states over requests, such as an hourly and a daily IETF policy) under a key of its own.
        // A response whose only statement about requests is one IETF policy describes the requests quota
        // itself (as most IETF upstreams send one), unless this node's agents reported it under a key of
        // its own before.
        var counted = report.dimensions.filter { $0.name != QuotaKey.requests }
        var primary = report.dimensions.first { $0.name == QuotaKey.requests }
        let windows = counted.filter { ServiceCatalog.countsRequests($0.name, configured: configuration.services[service]) }
        if primary == nil, windows.count == 1, let only = windows.first, !catalog.hasReported(only.name, of: service) {
            primary = RateLimitDimension(
                name: QuotaKey.requests, limit: only.limit, remaining: only.remaining, resetAt: only.resetAt,
                windowSeconds: only.windowSeconds)
            counted.removeAll { $0.name == only.name }
        }
        if !isKnown(service: service) {
            guard (primary.map { [$0] } ?? []).contains(where: { $0.limit != nil || $0.remaining != nil })
                || counted.contains(where: { $0.limit != nil || $0.remaining != nil })
            else {
                return (finish(out, now: now), outcome)
            }
            if let refusal = catalog.refusal(ofNew: QuotaKey(service: service, account: account ?? "default")) {
                outcome.refused = refusal
                return (finish(out, now: now), outcome)
            }
            catalog.learn(service)
            out.append(.event(.serviceLearned(service)))
        }
        outcome.serviceKnown = true
        let key = QuotaKey(service: service, account: account ?? catalog.accounts(of: service).first ?? "default")
        if let refusal = catalog.refusal(ofNew: key) {
            outcome.refused = refusal
            return (finish(out, now: now), outcome)
        }
        outcome.key = key
        absorb(
            status: status, report: report, primary: primary, counted: counted, corrections: corrections, into: key,
            outcome: &outcome, out: &out, now: now)
        // What the upstream says about an account of a scope holds for the scope: its limits, and a 429
        // that must hold back every account the provider counts together.
        if let scope = catalog.policy(service).scopeAccount(of: key.account) {
            var scoped = outcome
            absorb(
                status: status, report: report, primary: primary, counted: counted, corrections: corrections,
                into: QuotaKey(service: service, account: scope), outcome: &scoped, out: &out, now: now)
        }
        out.append(.persist)
        pendingPersist = false
        serveWaiters(now: now, into: &out)
        return (finish(out, now: now), outcome)
    }

    /// Merges one upstream response into `key` (an account, or a scope) and its token dimensions: the
    /// observations, the usage corrections and the shared breaker.
    private mutating func absorb(
        status: Int, report: RateLimitReport, primary: RateLimitDimension?, counted: [RateLimitDimension],
        corrections: [String: Int64], into key: QuotaKey, outcome: inout ObserveOutcome, out: inout [MeshDirective],
        now: UnixMillis
    ) {
        catalog.note(key)
        var quota = local[key] ?? LocalQuota()
        let merged = mergedView(key, now: now)

        // An observation of a call that went through is compared with what peers observed.
        let made = primary.flatMap { record($0, into: &quota, key: key, merged: merged, now: now) }
        let observed = (200...399).contains(status) ? made : nil
        for dimension in counted {
            let partKey = key.counting(dimension.name)
            if let refusal = catalog.refusal(ofNew: partKey) {
                outcome.ignored.append(IgnoredHeader(
                    name: dimension.name, reason: "dimension `\(dimension.name)` not recorded: \(refusal.rawValue) (max_dimensions)"))
                continue
            }
            catalog.noteReported(partKey)
            var part = local[partKey] ?? LocalQuota()
            let before = part.state
            record(dimension, into: &part, key: partKey, merged: mergedView(partKey, now: now), now: now)
            part.noteReported(since: before, urgent: false)
            local[partKey] = part
        }
        for (dimension, delta) in corrections where delta != 0 && dimension != QuotaKey.requests {
            let partKey = key.counting(dimension)
            guard var part = local[partKey] else { continue }
            part.state.consumption.correct(by: delta, now: now)
            part.dirty = true
            local[partKey] = part
            correctRights(partKey, by: delta, now: now)
        }

        let policy = catalog.policy(key.service)
        let breakerNow = merged.breaker.state(at: now)
        let failed = status == 429 || status == 529 || (500...599).contains(status) || report.isRateLimited
            || report.isOverloaded
        if failed {
            quota.consecutiveFailures += 1
            var openUntil: UnixMillis?
            if let retryAt = report.retryAt, status == 429 || status == 503 || status == 529 || report.isRateLimited {
                openUntil = retryAt
            } else if status == 429 || report.isRateLimited {
                let exhausted = ((primary.map { [$0] } ?? []) + counted).filter { $0.remaining == 0 }
                if let reset = exhausted.compactMap(\.resetAt).max() {
                    openUntil = reset
                } else {
                    openUntil = now + policy.breaker.openMillis
                }
            } else if quota.consecutiveFailures >= policy.breaker.failureThreshold || breakerNow == .halfOpen {
                openUntil = now + policy.breaker.openMillis
            }
            if let until = openUntil.map({ min($0, now.saturatingAdd(configuration.maxBreakerOpenMillis)) }), until > now {
                let openedAt = max(now, merged.breaker.openedAt.saturatingAdd(1), merged.breaker.closedAt.saturatingAdd(1))
                quota.state.breaker = quota.state.breaker.merging(
                    BreakerRegister(openedAt: openedAt, openUntil: until, closedAt: 0))
                outcome.openedBreaker = true
                out.append(.event(.breakerOpened(key, until: until)))
            }
        } else if (200...399).contains(status) {
            quota.consecutiveFailures = 0
            // A call of this node's own that succeeded closes the breaker, half-open or still open: the
            // upstream serves, whatever the statement that opened it said.
            if breakerNow != .closed {
                quota.state.breaker = quota.state.breaker.merging(
                    BreakerRegister(openedAt: 0, openUntil: 0, closedAt: max(now, merged.breaker.openedAt.saturatingAdd(1))))
                quota.probeGrantedAt = nil
                outcome.closedBreaker = true
                out.append(.event(.breakerClosed(key)))
            }
        }
        quota.noteReported(since: local[key]?.state ?? QuotaState(), urgent: failed)
        local[key] = quota
        if outcome.closedBreaker { checkBreakerClaims(key, into: &out) }
        if let observed { judgeObservations(key, own: observed, now: now, into: &out) }
    }

    /// The merged views of a service's scopes (accounts the provider limits together).
    public func scopeQuotas(service: String, now: UnixMillis) -> [QuotaView] {
        catalog.scopeKeys(of: service).map { view(of: $0, now: now) }
    }

    /// Merges one reported dimension into `quota` (an observation, and the limit it implies when none is
    /// configured); returns the observation made, if one was.
    @discardableResult
    private func record(
        _ dimension: RateLimitDimension, into quota: inout LocalQuota, key: QuotaKey, merged: Merged, now: UnixMillis
    ) -> UpstreamObservation? {
        guard let remaining = dimension.remaining else {
            // A limit stated without what is left (the remaining field malformed, or not sent) still
            // teaches the limit; no observation is made of it. A remaining without a limit invents none.
            learnLimit(dimension, into: &quota, key: key, now: now)
            return nil
        }
        // Just after a restart this node has not yet heard again what the others consumed: an observation
        // anchored on that partial view would make every node that merges it count the calls before it
        // twice, and the window would be believed spent early. So none is
        // kept until learning ends, unless it says nothing is left (which no anchor can overstate); what
        // the upstream said still drives the breaker. Any restart counts, also of a node that had granted
        // nothing and so saved no cluster consumption: its view of the others is just as partial. (At a
        // node's first start there is no saved state; at a cluster's, nothing was consumed before.)
        guard remaining <= 0 || !isRestart || !isLearning(now: now) else { return nil }
        let windowMillis = min(
            dimension.windowSeconds.map { $0.saturatingMultiply(1000) } ?? merged.policy?.windowMillis ?? 0,
            claimHorizon(key))
        let limit = dimension.limit ?? merged.policy?.limit ?? 0
        let resetAt = dimension.resetAt ?? (merged.window?.resetAt ?? now + max(windowMillis, 1000))
        // A statement that its window resets further ahead than any window of the key is not believed at
        // all (its other numbers come from the same misreading); the status still drives the breaker.
        guard resetAt <= now.saturatingAdd(claimHorizon(key)) else { return nil }
        // What an agent reports may lower what is enforced, never lift it: a configured limit caps it.
        let observation = bounded(
            UpstreamObservation(
                resetAt: resetAt, remaining: max(0, limit > 0 ? min(remaining, limit) : remaining), limit: limit,
                windowMillis: windowMillis, observedAt: now,
                consumedTotalAtObservation: max(merged.lifetimeTotal, quota.restoredClusterConsumed)),
            key: key)
        quota.state.observation = quota.state.observation.merging(observation)
        if configuration.services[key.service]?.configuredLimit(key.dimension) == nil, limit > 0 {
            // Without a stated window, the time to reset (in whole seconds) is the best estimate.
            let window = windowMillis > 0 ? windowMillis : max(1000, (resetAt - now + 999) / 1000 * 1000)
            quota.state.policy = AdvertisedPolicy(limit: limit, windowMillis: window)
        }
        return observation
    }

    /// Learns `dimension`'s limit and window when the configuration sets none: the stated window, else
    /// the time to the stated reset (in whole seconds); nothing when neither is stated.
    private func learnLimit(_ dimension: RateLimitDimension, into quota: inout LocalQuota, key: QuotaKey, now: UnixMillis) {
        guard configuration.services[key.service]?.configuredLimit(key.dimension) == nil,
            let limit = dimension.limit, limit > 0
        else { return }
        var window = dimension.windowSeconds.map { $0.saturatingMultiply(1000) } ?? 0
        if window <= 0, let resetAt = dimension.resetAt, resetAt > now { window = (resetAt - now + 999) / 1000 * 1000 }
        guard window > 0, window <= claimHorizon(key) else { return }
        quota.state.policy = AdvertisedPolicy(limit: limit, windowMillis: window)
    }

    // MARK: - Queries

    /// The merged view of every known key, sorted.
    public func quotas(now: UnixMillis) -> [QuotaView] {
        catalog.knownKeys().map { view(of: $0, now: now) }
    }

    /// The merged view of one account's key, as ``quotas(service:now:)`` lists it, worked out alone: an
    /// acquire's or observe's answer needs only its own key's view. `nil` when the service is unknown or
    /// the key is not one of its accounts' (requests) keys.
    public func quota(of key: QuotaKey, now: UnixMillis) -> QuotaView? {
        guard isKnown(service: key.service), key == QuotaKey(service: key.service, account: key.account),
            catalog.accounts(of: key.service).contains(key.account)
        else { return nil }
        return view(of: key, now: now)
    }

    /// The merged view of one service: its account with the most remaining first, then the others.
    public func quotas(service: String, now: UnixMillis) -> [QuotaView] {
        catalog.accounts(of: service).map { view(of: QuotaKey(service: service, account: $0), now: now) }
            .sorted { ($0.remaining ?? .max, $1.key) > ($1.remaining ?? .max, $0.key) }
    }

    /// Whether a configuration, an observation or a peer's record names `service`.
    public func isKnown(service: String) -> Bool {
        catalog.isKnown(service)
    }

    /// Every trusted peer.
    public func peerViews(now: UnixMillis) -> [PeerView] {
        var counts: [VerifyingKey: Int] = [:]
        var newest: [VerifyingKey: UnixMillis] = [:]
        for (id, record) in zip(records.ids, records.records) {
            counts[id.origin, default: 0] += 1
            newest[id.origin] = max(newest[id.origin] ?? .min, record.timestamp)
        }
        return peers.indices.map { index in
            let info = peers.info(at: index)
            let peer = peers[index]
            var view = PeerView(
                name: info.name, key: info.key, endpoint: peers.endpoint(at: index),
                live: peer.isLive(now: now, timeout: livenessTimeout) && quarantined[info.key] == nil,
                lastHeardAt: peer.lastHeardAt, records: counts[info.key] ?? 0,
                newestRecordAt: newest[info.key], quarantined: quarantined[info.key]?.reason,
                observationScore: observationScore(of: info.key, now: now), graylisted: graylisted.contains(info.key),
                members: membership.count(namedBy: info.key),
                membersAgree: !membersDiffer.contains(info.key))
            view.claimedWeight = weights.claim(of: info.key)
            view.vouchedWeight = info.weight
            view.weight = effectiveWeight(of: info.key)
            return view
        }.sorted { $0.name < $1.name }
    }

    /// The state to save now.
    public func persistedState() -> PersistedNodeState {
        PersistedNodeState(
            incarnation: incarnation,
            quotas: local.sorted { $0.key < $1.key }.map { key, quota in
                PersistedQuota(
                    key: key, state: quota.state,
                    clusterConsumed: max(
                        (remote[key]?.consumption.lifetimeTotal ?? 0).saturatingAdd(quota.state.consumption.total),
                        quota.restoredClusterConsumed))
            },
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

    /// The heartbeat interval in force: the configured one, stretched with the cluster's size so that
    /// heartbeats (N²/interval deliveries a second) stay within the gossip capacity (about
    /// N × fanout × records per packet per round). Liveness timeouts stretch with it.
    public var heartbeatInterval: Int64 {
        max(configuration.heartbeatIntervalMillis, Int64(peers.count + 1) * configuration.gossipIntervalMillis)
    }

    /// How often a change in the demand estimate alone may be signed: the cluster can spread only a
    /// fixed number of records a second (about fanout × records per packet per round, whatever N is),
    /// so each node's share of that budget shrinks as N grows.
    public var demandUpdateInterval: Int64 {
        max(configuration.demandIntervalMillis, Int64(peers.count + 1) * configuration.gossipIntervalMillis / 2)
    }

    /// Rounds between anti-entropy digests: the configured period divided by about log10(N + 1). Pushes
    /// miss a small fraction of nodes whatever N is, so more nodes miss each record as N grows, and
    /// digests (which name recently updated slots first) are how they catch up: every 5 rounds up to a
    /// few dozen nodes, every 2 or 3 from a hundred.
    public var digestPeriodRounds: Int {
        // log10 by decades, linear within a decade (the core imports no maths library).
        var value = Double(peers.count + 2)
        var scale = 0.0
        while value >= 10 {
            value /= 10
            scale += 1
        }
        scale += (value - 1) / 9
        let configured = Double(max(1, configuration.antiEntropyEveryRounds))
        return max(1, Int((configured / max(1, scale)).rounded()))
    }

    /// The liveness timeout in force (at least four heartbeat intervals).
    public var livenessTimeout: Int64 { max(configuration.livenessTimeoutMillis, 4 * heartbeatInterval) }

    /// How many waiting acquires there are.
    public var waitingCount: Int { waitQueue.count }
}

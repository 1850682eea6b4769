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
///
/// The instance is the dissemination half (peers, liveness, records, the wire) and the router to the
/// ledger half, ``QuotaLedger``, which decides and accounts: a record accepted here is absorbed there, a
/// change there is signed into a record here, and both halves' directives come out of one call.
public struct MeshInstance: Sendable {
    /// This node's identity.
    public let identity: SigningKey
    /// The protocol's parameters.
    public internal(set) var configuration: MeshConfiguration {
        didSet { ledger.configuration = configuration }
    }
    /// The incarnation this run signs with.
    public let incarnation: UInt64

    var sequence: UInt64 = 0
    var packetSequence: UInt64 = 0
    var rng: SplitMix64
    /// The ledger half: services, own and merged state, rights, demand, shares, breakers and waiters.
    var ledger: QuotaLedger
    /// The trusted peers and what this node knows of each.
    var peers: PeerTable
    /// The records held, their push queue and digest marks.
    var recordStore = RecordStore(maxDigestEntries: MeshInstance.maxDigestEntries)
    /// The newest record per origin and slot, each at a dense index (digests rotate in index order).
    var records: RecordTable { recordStore.table }
    var nextGossipAt: UnixMillis
    var lastHeartbeatAt: UnixMillis?
    /// When the first heartbeat is due: at start in a small cluster; in a large one, at a random point in
    /// the part of the heartbeat interval that was stretched for the cluster's size.
    var firstHeartbeatAt: UnixMillis
    /// When this node last signed any record (a signed record is liveness evidence too).
    var lastSignedAt: UnixMillis?
    /// Which peers are live; the ledger is told whenever that changes.
    var liveness = Liveness() {
        didSet {
            ledger.mesh.live = liveness.live
            ledger.mesh.liveVersion = liveness.version
            ledger.mesh.unheard = liveness.unheard
        }
    }
    /// Live peers, sorted; refreshed when one can have timed out and extended when a peer comes up.
    var live: [VerifyingKey] { liveness.live }
    var round: UInt64 = 0 {
        didSet { ledger.mesh.round = round }
    }
    /// Trusted peers whose member set is not this node's.
    public var membersDiffer: Set<VerifyingKey> { ledger.membership.differ }
    /// Whether this node spends no rights because its member set is the odd one out (``Membership``).
    public var rightsStopped: Bool { ledger.membership.stopped }
    /// Failed signature checks spent per source: floods naming a vouched key are refused before Ed25519.
    var verificationBudget = VerificationBudget()
    /// Peers that signed records contradicting each other, with the proof: nothing from them is accepted.
    public internal(set) var quarantined: [VerifyingKey: QuarantineEvidence] = [:]
    /// Origins whose upstream observations and breaker claims do not count (their score reached
    /// ``ObservationScores/graylistScore``).
    public var graylisted: Set<VerifyingKey> { ledger.graylisted }
    /// Peers this node asked the shell to trust, and introductions it set aside.
    var introductions = IntroductionBook()

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
        self.peers = PeerTable(directory: directory, own: identity.publicKey)
        self.ledger = QuotaLedger(
            owner: identity.publicKey, configuration: configuration, directory: directory, restored: restored, now: now)
        // Strictly greater than any incarnation used before, even if the state folder was lost (the clock
        // in seconds is a floor), so peers accept the new records and packets.
        self.incarnation = max((restored?.incarnation ?? 0).saturatingAdd(1), UInt64(max(0, now / 1000)))
        self.rng = SplitMix64(seed: seed)
        self.nextGossipAt = now
        self.firstHeartbeatAt = now
        ledger.mesh.peerCount = peers.count
        liveness.reset(self.peers)
        for saved in restored?.quarantined ?? [] {
            if let (key, evidence) = Self.restoredQuarantine(saved), self.peers.contains(key) { quarantined[key] = evidence }
        }
        ledger.setAside = Set(quarantined.keys)
        let spread = heartbeatInterval - max(0, configuration.heartbeatIntervalMillis)
        firstHeartbeatAt = spread > 0 ? now + Int64.random(in: 0..<spread, using: &rng) : now
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
        ledger.mesh.peerCount = peers.count
        let table = peers
        let own = publicKey
        let isUntrusted: (SlotID) -> Bool = { $0.origin != own && !table.contains($0.origin) }
        let removed = records.ids.contains(where: isUntrusted)
        if removed {
            recordStore.forget(where: isUntrusted)
        }
        let directory = peers.directory
        recordStore.renumberOrigins { directory.index(of: $0) }
        // A peer taken out of the trust store leaves its quarantine behind: added again, it starts afresh.
        quarantined = quarantined.filter { peers.contains($0.key) }
        introductions.trustStoreReloaded()
        ledger.peersReplaced(directory, trusted: peers, records: removed ? records.records : nil)
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
            if ledger.pendingPersist {
                out.append(.persist)
                ledger.pendingPersist = false
            }
            ledger.serveWaiters(now: now, rng: &rng, into: &out)
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
        ledger.updateDemand(now: now)
        if now >= nextGossipAt {
            round += 1
            // Liveness changes on a scale of seconds: refresh it every fifth round.
            if round % 5 == 1 && now >= liveness.checkAt { refreshLiveness(now: now, into: &out) }
            if round % 5 == 1 { liftGraylists(now: now) }
            // Surplus rights move at the pace of liveness checks: often enough to follow demand (agents that
            // run short ask at once), seldom enough that transfers do not crowd the gossip.
            if round % 5 == 0 { ledger.passSurplusRights(now: now) }
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
        ledger.serveWaiters(now: now, rng: &rng, into: &out)
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
        return finish(out, now: now)
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
    public var heartbeatInterval: Int64 { configuration.heartbeatInterval(peerCount: peers.count) }

    /// How often a change in the demand estimate alone may be signed
    /// (``MeshConfiguration/demandUpdateInterval(peerCount:)``).
    public var demandUpdateInterval: Int64 { configuration.demandUpdateInterval(peerCount: peers.count) }

    /// Rounds between anti-entropy digests (``MeshConfiguration/digestPeriodRounds(peerCount:)``).
    public var digestPeriodRounds: Int { configuration.digestPeriodRounds(peerCount: peers.count) }

    /// The liveness timeout in force (at least four heartbeat intervals).
    public var livenessTimeout: Int64 { configuration.livenessTimeout(peerCount: peers.count) }

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

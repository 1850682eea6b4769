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
    public private(set) var configuration: MeshConfiguration
    /// The incarnation this run signs with.
    public let incarnation: UInt64

    private var sequence: UInt64 = 0
    private var packetSequence: UInt64 = 0
    private var rng: SplitMix64
    private var peers: [VerifyingKey: PeerState] = [:]
    private var records: [SlotID: StoredRecord] = [:]
    private var slotsByHash: [UInt64: SlotID] = [:]
    private var local: [QuotaKey: LocalQuota] = [:]
    private var learnedServices: Set<String> = []
    private var waiters: [Waiter] = []
    private var nextWaiterOrder: UInt64 = 0
    private var nextGossipAt: UnixMillis
    private var lastHeartbeatAt: UnixMillis?
    private var demandWindowStart: UnixMillis
    private var digestCursor = 0
    private var pendingPersist = false

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
        self.identity = identity
        self.configuration = configuration
        // Strictly greater than any incarnation used before, even if the state folder was lost (the clock
        // in seconds is a floor), so peers accept the new records and packets.
        self.incarnation = max((restored?.incarnation ?? 0) + 1, UInt64(max(0, now / 1000)))
        self.rng = SplitMix64(seed: seed)
        self.nextGossipAt = now
        self.demandWindowStart = now
        for entry in restored?.quotas ?? [] where QuotaKey.isValidLabel(entry.service) {
            var quota = LocalQuota()
            quota.state = entry.state
            quota.state.demand = Demand()
            quota.dirty = true
            local[entry.key] = quota
            if configuration.services[entry.service] == nil, entry.state.policy != nil {
                learnedServices.insert(entry.service)
            }
        }
        for (service, policy) in configuration.services {
            for account in policy.accounts {
                let key = QuotaKey(service: service, account: account)
                if local[key] == nil {
                    var quota = LocalQuota()
                    quota.dirty = true
                    local[key] = quota
                }
            }
        }
        replacePeers(peers)
        pendingPersist = true
    }

    // MARK: - Inputs

    /// Replaces the trust store (after a reload). Records of origins no longer trusted are forgotten;
    /// known peers keep their liveness and replay state.
    public mutating func replacePeers(_ newPeers: [PeerInfo]) {
        var next: [VerifyingKey: PeerState] = [:]
        for info in newPeers where info.key != publicKey {
            var state = peers[info.key] ?? PeerState(info: info)
            state.info = info
            if state.observedEndpoint == nil { state.observedEndpoint = nil }
            next[info.key] = state
        }
        peers = next
        for (id, _) in records where peers[id.origin] == nil {
            removeRecord(id)
        }
    }

    /// The first directives after start: persist the new incarnation, then gossip at once.
    public mutating func start(now: UnixMillis) -> [MeshDirective] {
        tick(now: now)
    }

    /// Handles one datagram.
    /// - Parameters:
    ///   - datagram: the bytes received.
    ///   - source: where they came from (used as the sender's address once it is authenticated).
    ///   - now: the current time.
    public mutating func receive(datagram: [UInt8], from source: Endpoint, now: UnixMillis) -> [MeshDirective] {
        var out: [MeshDirective] = []
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
        guard var peer = peers[header.sender] else {
            out.append(.event(.dropped(.unknownSender, from: source, sender: header.sender)))
            return finish(out, now: now)
        }
        // Cheap checks before the signature.
        guard peer.replay.isFresh(incarnation: header.incarnation, sequence: header.sequence) else {
            out.append(.event(.dropped(.replayed, from: source, sender: header.sender)))
            return finish(out, now: now)
        }
        guard header.sentAt <= now + configuration.maxClockSkewMillis else {
            out.append(.event(.dropped(.fromFuture, from: source, sender: header.sender)))
            return finish(out, now: now)
        }
        guard WireFormat.hasValidPacketSignature(datagram, sender: header.sender, cluster: configuration.cluster)
        else {
            out.append(.event(.dropped(.badSignature, from: source, sender: header.sender)))
            return finish(out, now: now)
        }
        peer.replay.accept(incarnation: header.incarnation, sequence: header.sequence)
        peer.observedEndpoint = source
        let wasLive = peer.isLive(now: now, timeout: configuration.livenessTimeoutMillis)
        peer.lastHeardAt = max(peer.lastHeardAt ?? .min, now)
        peer.announcedLive = true
        peers[header.sender] = peer
        if !wasLive { out.append(.event(.peerUp(header.sender))) }

        let payload: PacketPayload
        do {
            payload = try WireFormat.decodePayload(datagram)
        } catch {
            out.append(.event(.dropped(DropReason(error), from: source, sender: header.sender)))
            return finish(out, now: now)
        }
        switch payload {
        case .records(let incoming):
            for record in incoming { accept(record, from: header.sender, source: source, now: now, into: &out) }
        case .digest(let isReply, let entries):
            answerDigest(entries, isReply: isReply, from: header.sender, now: now, into: &out)
        }
        return finish(out, now: now)
    }

    /// Handles the passage of time: demand estimates, heartbeats, gossip rounds, liveness and waiting
    /// acquires. Call it at (or after) the last `wake(at:)` time.
    public mutating func tick(now: UnixMillis) -> [MeshDirective] {
        var out: [MeshDirective] = []
        updateDemand(now: now)
        if now >= nextGossipAt {
            if lastHeartbeatAt.map({ now - $0 >= configuration.heartbeatIntervalMillis }) ?? true {
                lastHeartbeatAt = now
                store(ownRecord(.heartbeat, now: now), receivedFrom: nil)
            }
            signDirtyRecords(now: now)
            gossipRound(now: now, into: &out)
            nextGossipAt = max(nextGossipAt + configuration.gossipIntervalMillis, now + 1)
            for (key, var peer) in peers where peer.announcedLive
                && !peer.isLive(now: now, timeout: configuration.livenessTimeoutMillis)
            {
                peer.announcedLive = false
                peers[key] = peer
                out.append(.event(.peerDown(key)))
            }
        }
        serveWaiters(now: now, into: &out)
        return finish(out, now: now)
    }

    /// Decides an agent's acquire. The reply comes as a `.reply(ticket:_:)` directive, at once or, when
    /// the request may wait, from a later call.
    public mutating func acquire(_ request: AcquireRequest, ticket: UInt64, now: UnixMillis) -> [MeshDirective] {
        var out: [MeshDirective] = []
        noteDemand(service: request.service, priority: request.priority, cost: request.cost)
        let decision = decide(request, now: now, blockedPriorities: [])
        if decision.granted {
            out.append(.persist(persistedState()))
            pendingPersist = false
            out.append(.reply(ticket: ticket, decision))
        } else if request.waitMillis > 0, decision.reason != .unknownService,
            let retryAt = decision.retryAt, retryAt <= now + request.waitMillis
        {
            waiters.append(
                Waiter(
                    ticket: ticket, request: request, deadline: now + request.waitMillis, order: nextWaiterOrder,
                    lastDecision: decision))
            nextWaiterOrder += 1
        } else {
            out.append(.reply(ticket: ticket, decision))
        }
        return finish(out, now: now)
    }

    /// Abandons a waiting acquire (the agent went away); nothing is charged.
    public mutating func cancel(ticket: UInt64) {
        waiters.removeAll { $0.ticket == ticket }
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
    }

    /// Takes an upstream response the agent reports: merges what its rate-limit headers say and drives
    /// the shared breaker.
    /// - Parameters:
    ///   - service: the upstream service.
    ///   - account: the account used, if the agent names one.
    ///   - status: the HTTP status the upstream answered.
    ///   - report: what the headers said (`RateLimitHeaderParser.parse`).
    ///   - now: the current time.
    public mutating func observe(
        service: String, account: String?, status: Int, report: RateLimitReport, now: UnixMillis
    ) -> (directives: [MeshDirective], outcome: ObserveOutcome) {
        var out: [MeshDirective] = []
        var outcome = ObserveOutcome(key: nil, serviceKnown: false, openedBreaker: false, closedBreaker: false)
        let primary = report.dimensions.first { $0.name == "requests" } ?? report.tightest
        if !isKnown(service: service) {
            guard let primary, primary.limit != nil || primary.remaining != nil else {
                return (finish(out, now: now), outcome)
            }
            learnedServices.insert(service)
            out.append(.event(.serviceLearned(service)))
        }
        outcome.serviceKnown = true
        let key = QuotaKey(service: service, account: account ?? accounts(of: service).first ?? "default")
        outcome.key = key
        var quota = local[key] ?? LocalQuota()
        let merged = mergedView(key, now: now)

        if let primary, let remaining = primary.remaining {
            let windowMillis = primary.windowSeconds.map { $0 * 1000 } ?? merged.policy?.windowMillis ?? 0
            let limit = primary.limit ?? merged.policy?.limit ?? 0
            let resetAt = primary.resetAt ?? (merged.window?.resetAt ?? now + max(windowMillis, 1000))
            let observation = UpstreamObservation(
                resetAt: resetAt, remaining: max(0, limit > 0 ? min(remaining, limit) : remaining), limit: limit,
                windowMillis: windowMillis, observedAt: now, consumedTotalAtObservation: merged.lifetimeTotal)
            quota.state.observation = quota.state.observation.merging(observation)
            if configuration.services[service]?.limit == nil, limit > 0 {
                // Without a stated window, the time to reset (in whole seconds) is the best estimate.
                let window = windowMillis > 0 ? windowMillis : max(1000, (resetAt - now + 999) / 1000 * 1000)
                quota.state.policy = AdvertisedPolicy(limit: limit, windowMillis: window)
            }
        }

        let policy = servicePolicy(service)
        let breakerNow = merged.breaker.state(at: now)
        let failed = status == 429 || status == 529 || (500...599).contains(status) || report.isRateLimited
            || report.isOverloaded
        if failed {
            quota.consecutiveFailures += 1
            var openUntil: UnixMillis?
            if let retryAt = report.retryAt, status == 429 || status == 503 || status == 529 || report.isRateLimited {
                openUntil = retryAt
            } else if status == 429 || report.isRateLimited {
                if let primary, primary.remaining == 0, let reset = primary.resetAt {
                    openUntil = reset
                } else {
                    openUntil = now + policy.breaker.openMillis
                }
            } else if quota.consecutiveFailures >= policy.breaker.failureThreshold || breakerNow == .halfOpen {
                openUntil = now + policy.breaker.openMillis
            }
            if let until = openUntil, until > now {
                let openedAt = max(now, merged.breaker.openedAt + 1, merged.breaker.closedAt + 1)
                quota.state.breaker = quota.state.breaker.merging(
                    BreakerRegister(openedAt: openedAt, openUntil: until, closedAt: 0))
                outcome.openedBreaker = true
                out.append(.event(.breakerOpened(key, until: until)))
            }
        } else if (200...399).contains(status) {
            quota.consecutiveFailures = 0
            if breakerNow == .halfOpen {
                quota.state.breaker = quota.state.breaker.merging(
                    BreakerRegister(openedAt: 0, openUntil: 0, closedAt: max(now, merged.breaker.openedAt + 1)))
                quota.probeGrantedAt = nil
                outcome.closedBreaker = true
                out.append(.event(.breakerClosed(key)))
            }
        }
        quota.dirty = true
        local[key] = quota
        out.append(.persist(persistedState()))
        pendingPersist = false
        serveWaiters(now: now, into: &out)
        return (finish(out, now: now), outcome)
    }

    // MARK: - Queries

    /// The merged view of every known key, sorted.
    public func quotas(now: UnixMillis) -> [QuotaView] {
        knownKeys().map { view(of: $0, now: now) }
    }

    /// The merged view of one service: its account with the most remaining first, then the others.
    public func quotas(service: String, now: UnixMillis) -> [QuotaView] {
        accounts(of: service).map { view(of: QuotaKey(service: service, account: $0), now: now) }
            .sorted { ($0.remaining ?? .max, $1.key) > ($1.remaining ?? .max, $0.key) }
    }

    /// Whether a configuration, an observation or a peer's record names `service`.
    public func isKnown(service: String) -> Bool {
        configuration.services[service] != nil || learnedServices.contains(service)
            || records.values.contains { stored in
                if case .quota(let key, let state) = stored.record.body, key.service == service {
                    return state.policy != nil || state.observation != nil
                }
                return false
            }
    }

    /// Every trusted peer.
    public func peerViews(now: UnixMillis) -> [PeerView] {
        peers.values.map { peer in
            PeerView(
                name: peer.info.name, key: peer.info.key, endpoint: peer.observedEndpoint ?? peer.info.endpoint,
                live: peer.isLive(now: now, timeout: configuration.livenessTimeoutMillis),
                lastHeardAt: peer.lastHeardAt, records: records.keys.filter { $0.origin == peer.info.key }.count)
        }.sorted { $0.name < $1.name }
    }

    /// The state to save now.
    public func persistedState() -> PersistedNodeState {
        PersistedNodeState(
            incarnation: incarnation,
            quotas: local.sorted { $0.key < $1.key }.map { PersistedQuota(key: $0.key, state: $0.value.state) })
    }

    /// Every record held, newest per origin and slot (for tests and the simulator).
    public var heldRecords: [SignedRecord] { records.values.map(\.record) }

    // MARK: - Records

    private func retransmitLimit() -> Int {
        configuration.retransmitMultiplier * ceilLog2(Double(peers.count + 2))
    }

    private func ceilLog2(_ x: Double) -> Int {
        var value = 1.0
        var bits = 0
        while value < x {
            value *= 2
            bits += 1
        }
        return max(1, bits)
    }

    private mutating func ownRecord(_ body: RecordBody, now: UnixMillis) -> SignedRecord {
        sequence += 1
        return SignedRecord(
            signing: body, version: RecordVersion(incarnation: incarnation, sequence: sequence), timestamp: now,
            with: identity, cluster: configuration.cluster)
    }

    private mutating func signDirtyRecords(now: UnixMillis) {
        for (key, quota) in local.sorted(by: { $0.key < $1.key }) where quota.dirty {
            var state = quota.state
            state.demand = quota.demand
            if state.policy == nil, let configured = configuration.services[key.service],
                let limit = configured.limit, let window = configured.windowMillis
            {
                state.policy = AdvertisedPolicy(limit: limit, windowMillis: window)
            }
            store(ownRecord(.quota(key, state), now: now), receivedFrom: nil)
            local[key]?.dirty = false
        }
    }

    private mutating func store(_ record: SignedRecord, receivedFrom: VerifyingKey?) {
        let id = SlotID(origin: record.origin, slot: record.body.slot)
        if records[id] == nil { slotsByHash[id.hash] = id }
        records[id] = StoredRecord(record: record, receivedFrom: receivedFrom, transmitsLeft: retransmitLimit())
    }

    private mutating func removeRecord(_ id: SlotID) {
        records[id] = nil
        slotsByHash[id.hash] = nil
    }

    private mutating func accept(
        _ record: SignedRecord, from sender: VerifyingKey, source: Endpoint, now: UnixMillis,
        into out: inout [MeshDirective]
    ) {
        guard record.origin == publicKey || peers[record.origin] != nil else {
            out.append(.event(.dropped(.unknownOrigin, from: source, sender: sender)))
            return
        }
        guard record.timestamp <= now + configuration.maxClockSkewMillis else {
            out.append(.event(.dropped(.fromFuture, from: source, sender: sender)))
            return
        }
        let id = SlotID(origin: record.origin, slot: record.body.slot)
        if record.origin == publicKey {
            // Our own record relayed back, e.g. from before a restart: adopt what it says we consumed.
            guard record.version.incarnation < incarnation, record.hasValidSignature(cluster: configuration.cluster),
                case .quota(let key, let state) = record.body
            else { return }
            var quota = local[key] ?? LocalQuota()
            let before = quota.state.consumption
            quota.state.consumption = before.merging(state.consumption)
            quota.state.breaker = quota.state.breaker.merging(state.breaker)
            if quota.state.consumption != before {
                quota.dirty = true
                pendingPersist = true
            }
            local[key] = quota
            return
        }
        if let held = records[id] {
            if held.record.version > record.version {
                out.append(.event(.recordStale(origin: record.origin)))
                return
            }
            if held.record.version == record.version {
                if held.record.bodyBytes == record.bodyBytes && held.record.signature == record.signature
                    && held.record.timestamp == record.timestamp
                {
                    out.append(.event(.recordStale(origin: record.origin)))
                    return
                }
                // Same version, different bytes: either forged (fails below) or the origin equivocated.
                if record.hasValidSignature(cluster: configuration.cluster) {
                    out.append(.event(.dropped(.equivocation, from: source, sender: sender)))
                } else {
                    out.append(.event(.dropped(.badSignature, from: source, sender: sender)))
                }
                return
            }
        }
        guard record.hasValidSignature(cluster: configuration.cluster) else {
            out.append(.event(.dropped(.badSignature, from: source, sender: sender)))
            return
        }
        store(record, receivedFrom: sender)
        if var origin = peers[record.origin] {
            let evidence = min(now, record.timestamp)
            let wasLive = origin.isLive(now: now, timeout: configuration.livenessTimeoutMillis)
            origin.lastHeardAt = max(origin.lastHeardAt ?? .min, evidence)
            if !wasLive && origin.isLive(now: now, timeout: configuration.livenessTimeoutMillis) {
                origin.announcedLive = true
                out.append(.event(.peerUp(record.origin)))
            }
            peers[record.origin] = origin
        }
        if case .quota(let key, let state) = record.body, configuration.services[key.service] == nil,
            state.policy != nil || state.observation != nil, !learnedServices.contains(key.service)
        {
            learnedServices.insert(key.service)
            out.append(.event(.serviceLearned(key.service)))
        }
        out.append(.event(.recordAccepted(origin: record.origin, slot: record.body.slot)))
    }

    // MARK: - Gossip

    private func livePeers(now: UnixMillis) -> [VerifyingKey] {
        peers.values.filter { $0.isLive(now: now, timeout: configuration.livenessTimeoutMillis) }
            .map(\.info.key).sorted()
    }

    private func endpoint(of key: VerifyingKey) -> Endpoint? {
        guard let peer = peers[key] else { return nil }
        return peer.observedEndpoint ?? peer.info.endpoint
    }

    private mutating func chooseTargets(now: UnixMillis) -> [VerifyingKey] {
        var live = livePeers(now: now).filter { endpoint(of: $0) != nil }
        live.shuffle(using: &rng)
        var targets = Array(live.prefix(configuration.fanout))
        let liveSet = Set(live)
        var down = peers.keys.filter { !liveSet.contains($0) && endpoint(of: $0) != nil }.sorted()
        down.shuffle(using: &rng)
        if targets.count < configuration.fanout {
            targets += down.prefix(configuration.fanout - targets.count)
        } else if let probe = down.first, Int.random(in: 0..<4, using: &rng) == 0 {
            // Now and then, try a peer that is down, so that it is found again when it returns.
            targets.append(probe)
        }
        return targets
    }

    private mutating func nextPacketHeader(now: UnixMillis) -> PacketHeader {
        packetSequence += 1
        return PacketHeader(sender: publicKey, incarnation: incarnation, sequence: packetSequence, sentAt: now)
    }

    private mutating func sendRecords(
        _ chosen: [SignedRecord], to target: VerifyingKey, now: UnixMillis, into out: inout [MeshDirective]
    ) {
        guard let address = endpoint(of: target), !chosen.isEmpty else { return }
        var batch: [SignedRecord] = []
        var size = 1
        func flush(_ me: inout MeshInstance) {
            guard !batch.isEmpty else { return }
            let bytes = WireFormat.encodePacket(
                header: me.nextPacketHeader(now: now), payload: .records(batch), signingKey: me.identity,
                cluster: me.configuration.cluster)
            out.append(.send(bytes, to: address))
            batch = []
            size = 1
        }
        for record in chosen {
            if size + record.encodedCount > WireFormat.maxPayloadBytes || batch.count == 255 { flush(&self) }
            batch.append(record)
            size += record.encodedCount
        }
        flush(&self)
    }

    private mutating func gossipRound(now: UnixMillis, into out: inout [MeshDirective]) {
        let targets = chooseTargets(now: now)
        guard !targets.isEmpty else { return }
        let hot = records.filter { $0.value.transmitsLeft > 0 }
            .sorted { ($1.value.transmitsLeft, $0.value.record.version) < ($0.value.transmitsLeft, $1.value.record.version) }
        for target in targets {
            var chosen: [SignedRecord] = []
            var size = 1
            for (id, stored) in hot where stored.receivedFrom != target && id.origin != target {
                guard size + stored.record.encodedCount <= WireFormat.maxPayloadBytes else { break }
                chosen.append(stored.record)
                size += stored.record.encodedCount
                records[id]?.transmitsLeft -= 1
            }
            sendRecords(chosen, to: target, now: now, into: &out)
        }
        // Anti-entropy: one digest per round to one of the targets.
        if let target = targets.randomElement(using: &rng), let address = endpoint(of: target) {
            let entries = digestSample(excluding: [], count: Self.maxDigestEntries)
            let bytes = WireFormat.encodePacket(
                header: nextPacketHeader(now: now), payload: .digest(isReply: false, entries: entries),
                signingKey: identity, cluster: configuration.cluster)
            out.append(.send(bytes, to: address))
        }
    }

    static let maxDigestEntries = (WireFormat.maxPayloadBytes - 3) / WireFormat.digestEntryBytes

    /// A rotating sample of held slots, own slots first, so repeated digests cover everything.
    private mutating func digestSample(excluding: Set<UInt64>, count: Int) -> [DigestEntry] {
        guard count > 0 else { return [] }
        let all = records.sorted { ($0.key.origin, $0.key.slot) < ($1.key.origin, $1.key.slot) }
            .filter { !excluding.contains($0.key.hash) }
        guard !all.isEmpty else { return [] }
        let own = all.filter { $0.key.origin == publicKey }
        let others = all.filter { $0.key.origin != publicKey }
        var entries = own.prefix(count).map { DigestEntry(slotHash: $0.key.hash, version: $0.value.record.version) }
        let room = count - entries.count
        if room > 0, !others.isEmpty {
            let start = digestCursor % others.count
            let take = min(room, others.count)
            for offset in 0..<take {
                let item = others[(start + offset) % others.count]
                entries.append(DigestEntry(slotHash: item.key.hash, version: item.value.record.version))
            }
            digestCursor = (start + take) % others.count
        }
        return entries
    }

    private mutating func answerDigest(
        _ entries: [DigestEntry], isReply: Bool, from sender: VerifyingKey, now: UnixMillis,
        into out: inout [MeshDirective]
    ) {
        var toSend: [SignedRecord] = []
        var wants: [DigestEntry] = []
        var mentioned = Set<UInt64>()
        for entry in entries {
            mentioned.insert(entry.slotHash)
            if let id = slotsByHash[entry.slotHash], let held = records[id] {
                if held.record.version > entry.version {
                    toSend.append(held.record)
                } else if held.record.version < entry.version {
                    wants.append(DigestEntry(slotHash: entry.slotHash, version: held.record.version))
                }
            } else if entry.version > .zero {
                wants.append(DigestEntry(slotHash: entry.slotHash, version: .zero))
            }
        }
        let budget = configuration.maxAnswerPackets * (WireFormat.maxPayloadBytes / 300)
        sendRecords(Array(toSend.sorted { $0.version < $1.version }.prefix(budget)), to: sender, now: now, into: &out)
        var reply = Array(wants.prefix(Self.maxDigestEntries))
        if !isReply {
            reply += digestSample(excluding: mentioned, count: Self.maxDigestEntries - reply.count)
        }
        if !reply.isEmpty, let address = endpoint(of: sender) {
            let bytes = WireFormat.encodePacket(
                header: nextPacketHeader(now: now), payload: .digest(isReply: true, entries: reply),
                signingKey: identity, cluster: configuration.cluster)
            out.append(.send(bytes, to: address))
        }
    }

    // MARK: - Merged state

    private func accounts(of service: String) -> [String] {
        var names = Set(configuration.services[service]?.accounts ?? [])
        for key in local.keys where key.service == service { names.insert(key.account) }
        for id in records.keys {
            if case .quota(let key) = id.slot, key.service == service { names.insert(key.account) }
        }
        return names.sorted()
    }

    private func knownKeys() -> [QuotaKey] {
        var keys = Set(local.keys)
        for id in records.keys {
            if case .quota(let key) = id.slot { keys.insert(key) }
        }
        return keys.filter { isKnown(service: $0.service) }.sorted()
    }

    private func servicePolicy(_ service: String) -> ServicePolicy {
        configuration.services[service] ?? ServicePolicy()
    }

    struct Window {
        var resetAt: UnixMillis
        var limit: Int64?
        var windowMillis: Int64?
    }

    struct Merged {
        var consumption = ConsumptionCounter<VerifyingKey>()
        var observation: UpstreamObservation?
        var breaker = BreakerRegister()
        var policy: AdvertisedPolicy?
        var demands: [VerifyingKey: Demand] = [:]
        var window: Window?
        var lifetimeTotal: UInt64 { consumption.lifetimeTotal }
    }

    private func mergedView(_ key: QuotaKey, now: UnixMillis) -> Merged {
        var merged = Merged()
        var advertised: AdvertisedPolicy?
        for (id, stored) in records where id.origin != publicKey {
            guard case .quota(let recordKey, let state) = stored.record.body, recordKey == key else { continue }
            merged.consumption = merged.consumption.merging(ConsumptionCounter(entries: [id.origin: state.consumption]))
            merged.observation = merged.observation.merging(state.observation.map(Self.sanitized))
            merged.breaker = merged.breaker.merging(state.breaker)
            if peers[id.origin]?.isLive(now: now, timeout: configuration.livenessTimeoutMillis) == true {
                merged.demands[id.origin] = state.demand
            }
            if let policy = state.policy, policy.limit > 0, policy.windowMillis > 0 {
                // Of several advertised limits, the lowest is the safe one; ties by window.
                if let current = advertised {
                    if (policy.limit, -policy.windowMillis) < (current.limit, -current.windowMillis) { advertised = policy }
                } else {
                    advertised = policy
                }
            }
        }
        if let own = local[key] {
            merged.consumption = merged.consumption.merging(ConsumptionCounter(entries: [publicKey: own.state.consumption]))
            merged.observation = merged.observation.merging(own.state.observation)
            merged.breaker = merged.breaker.merging(own.state.breaker)
            merged.demands[publicKey] = own.demand
            if let policy = own.state.policy { advertised = policy }
        } else {
            merged.demands[publicKey] = Demand()
        }
        if let configured = configuration.services[key.service], let limit = configured.limit,
            let window = configured.windowMillis
        {
            merged.policy = AdvertisedPolicy(limit: limit, windowMillis: window)
        } else {
            merged.policy = advertised
        }
        merged.window = Self.window(observation: merged.observation, policy: merged.policy, now: now)
        return merged
    }

    private static func sanitized(_ observation: UpstreamObservation) -> UpstreamObservation {
        var clean = observation
        clean.remaining = max(0, clean.remaining)
        if clean.limit > 0 { clean.remaining = min(clean.remaining, clean.limit) }
        return clean
    }

    static func window(observation: UpstreamObservation?, policy: AdvertisedPolicy?, now: UnixMillis) -> Window? {
        if let observation, observation.resetAt > now {
            return Window(
                resetAt: observation.resetAt,
                limit: observation.limit > 0 ? observation.limit : policy?.limit,
                windowMillis: observation.windowMillis > 0 ? observation.windowMillis : policy?.windowMillis)
        }
        let length = policy?.windowMillis ?? (observation.map { $0.windowMillis } ?? 0)
        let limit = policy?.limit ?? observation.flatMap { $0.limit > 0 ? $0.limit : nil }
        guard length > 0 else { return nil }
        if let observation, policy == nil || observation.windowMillis > 0 {
            // Project the upstream's last known window forward.
            let elapsed = now - observation.resetAt
            let periods = elapsed / length + 1
            return Window(resetAt: observation.resetAt + periods * length, limit: limit, windowMillis: length)
        }
        // Windows aligned to the epoch, so every node agrees on their edges.
        return Window(resetAt: (now / length + 1) * length, limit: limit, windowMillis: length)
    }

    /// What is left in the current window, estimated from the limit, the counted consumption and the
    /// latest upstream observation (minus what was consumed since it).
    private func remaining(_ merged: Merged, now: UnixMillis) -> Int64? {
        var estimate: Int64?
        if let window = merged.window, let limit = window.limit {
            estimate = limit - Int64(clamping: merged.consumption.windowTotal(at: now))
        }
        if let observation = merged.observation, observation.resetAt > now {
            let since = merged.lifetimeTotal >= observation.consumedTotalAtObservation
                ? merged.lifetimeTotal - observation.consumedTotalAtObservation : 0
            let fromUpstream = observation.remaining - Int64(clamping: since)
            estimate = min(estimate ?? .max, fromUpstream)
        }
        return estimate.map { max(0, $0) }
    }

    // MARK: - Enforcement

    private struct Assessment {
        var decision: AcquireDecision
        var headroom: Double
    }

    private mutating func decide(
        _ request: AcquireRequest, now: UnixMillis, blockedPriorities: Set<Priority>
    ) -> AcquireDecision {
        guard isKnown(service: request.service) else {
            return .deny(.unknownService, key: nil, retryAt: now + 1000, detail: "no configuration or observation names this service")
        }
        var best: (key: QuotaKey, headroom: Double)?
        var soonestDenial: AcquireDecision?
        for account in accounts(of: request.service) {
            let key = QuotaKey(service: request.service, account: account)
            let assessment = assess(key, request: request, now: now)
            if assessment.decision.granted {
                if best == nil || assessment.headroom > best!.headroom { best = (key, assessment.headroom) }
            } else if soonestDenial == nil
                || (assessment.decision.retryAt ?? .max) < (soonestDenial?.retryAt ?? .max)
            {
                soonestDenial = assessment.decision
            }
        }
        guard let chosen = best else {
            return soonestDenial ?? .deny(.quotaExhausted, key: nil, retryAt: now + configuration.gossipIntervalMillis)
        }
        return commit(chosen.key, request: request, now: now)
    }

    /// Everything needed to decide for one key, without changing anything.
    private func assess(_ key: QuotaKey, request: AcquireRequest, now: UnixMillis) -> Assessment {
        let merged = mergedView(key, now: now)
        let quota = local[key] ?? LocalQuota()
        let policy = servicePolicy(key.service)
        let cost = Double(max(0, request.cost))
        switch merged.breaker.state(at: now) {
        case .open:
            return Assessment(decision: .deny(.breakerOpen, key: key, retryAt: merged.breaker.openUntil), headroom: 0)
        case .halfOpen:
            if let probe = quota.probeGrantedAt, now < probe + policy.breaker.probeTimeoutMillis {
                return Assessment(
                    decision: .deny(
                        .breakerOpen, key: key, retryAt: probe + policy.breaker.probeTimeoutMillis,
                        detail: "half_open_probe_in_flight"),
                    headroom: 0)
            }
            return Assessment(decision: .grant(key, detail: "half_open_probe"), headroom: 0)
        case .closed:
            break
        }
        guard let window = merged.window, let remainingCount = remaining(merged, now: now) else {
            // A known service with no limit and no current observation: nothing to enforce but the breaker.
            return Assessment(decision: .grant(key, detail: "no_limit_known"), headroom: .infinity)
        }
        let remaining = Double(remainingCount)
        let limit = Double(window.limit ?? remainingCount)
        let floor = policy.reserves[request.priority] * limit
        if remaining < cost {
            return Assessment(
                decision: .deny(.quotaExhausted, key: key, retryAt: window.resetAt, detail: "window"), headroom: 0)
        }
        if remaining - cost < floor {
            return Assessment(
                decision: .deny(.reservedForHigherPriority, key: key, retryAt: window.resetAt, detail: "reserve"),
                headroom: 0)
        }
        let share = fairShare(merged, remaining: remaining, limit: limit, policy: policy, resetAt: window.resetAt, now: now)
        var usable = share * (remaining - floor)
        // Urgent work is not held to the node's share while a healthy part of the normal reserve is left:
        // that reserve exists for it, and the margin absorbs nodes granting at the same moment.
        let urgentMargin = policy.reserves.normal * limit / 2
        if request.priority == .urgent, remaining - cost >= urgentMargin {
            usable = max(usable, remaining - urgentMargin)
        }
        if usable + 1e-9 < cost {
            let retry = min(window.resetAt, now + max(configuration.gossipIntervalMillis * 5, 1000))
            return Assessment(decision: .deny(.quotaExhausted, key: key, retryAt: retry, detail: "share"), headroom: 0)
        }
        // Pace the node's share over what is left of the window.
        let millisLeft = Double(max(window.resetAt - now, 1))
        let rate = share * remaining / millisLeft
        guard rate > 0 else { return Assessment(decision: .grant(key), headroom: usable - cost) }
        let burst = max(1, share * policy.burstFraction * limit)
        let tolerance = (request.priority == .urgent ? 2 * burst : burst) / rate
        var bucket = quota.bucket
        bucket.enter(windowEnd: window.resetAt, now: now)
        let earliest = bucket.earliestAdmission(tolerance: tolerance)
        if earliest > Double(now) {
            return Assessment(
                decision: .deny(.quotaExhausted, key: key, retryAt: UnixMillis(earliest.rounded(.up)), detail: "paced"),
                headroom: 0)
        }
        return Assessment(decision: .grant(key), headroom: usable - cost)
    }

    private mutating func commit(_ key: QuotaKey, request: AcquireRequest, now: UnixMillis) -> AcquireDecision {
        let merged = mergedView(key, now: now)
        let assessment = assess(key, request: request, now: now)
        var quota = local[key] ?? LocalQuota()
        let cost = UInt64(max(0, request.cost))
        let resetAt = merged.window?.resetAt ?? 0
        var entry = quota.state.consumption
        entry.total &+= cost
        if resetAt > entry.windowEnd {
            entry.windowEnd = resetAt
            entry.windowCount = cost
        } else {
            entry.windowCount &+= cost
        }
        quota.state.consumption = entry
        if assessment.decision.detail == "half_open_probe" { quota.probeGrantedAt = now }
        if let window = merged.window, let remainingCount = remaining(merged, now: now), remainingCount > 0 {
            let limit = Double(window.limit ?? remainingCount)
            let share = fairShare(
                merged, remaining: Double(remainingCount), limit: limit, policy: servicePolicy(key.service),
                resetAt: window.resetAt, now: now)
            let rate = share * Double(remainingCount) / Double(max(window.resetAt - now, 1))
            if rate > 0 {
                quota.bucket.enter(windowEnd: window.resetAt, now: now)
                quota.bucket.charge(cost: Double(cost), ratePerMillisecond: rate, now: now)
            }
        }
        quota.dirty = true
        local[key] = quota
        return assessment.decision
    }

    /// This node's max-min fair fraction of what is left, by the demand of every live node over the
    /// rest of the window.
    ///
    /// Every live node is deemed to need at least a small floor (its share of the burst), so a node that
    /// was idle can make its first call at once; its demand reaches the others within a round. All nodes
    /// compute the same needs from the same merged state, so the allocations sum to what is left.
    private func fairShare(
        _ merged: Merged, remaining: Double, limit: Double, policy: ServicePolicy, resetAt: UnixMillis, now: UnixMillis
    ) -> Double {
        guard remaining > 0 else { return 0 }
        let live = livePeers(now: now)
        if live.isEmpty { return 1 }
        let seconds = Double(max(resetAt - now, 1)) / 1000
        var participants = [publicKey] + live
        participants.sort()
        let count = Double(participants.count)
        let floorNeed = min(remaining / count, max(1, policy.burstFraction * limit / count))
        let needs = participants.map { max(floorNeed, (merged.demands[$0]?.total ?? 0) * seconds) }
        let allocation = FairShare.maxMin(capacity: remaining, needs: needs)
        guard let mine = participants.firstIndex(of: publicKey) else { return 0 }
        return min(1, max(0, allocation[mine] / remaining))
    }

    private func view(of key: QuotaKey, now: UnixMillis) -> QuotaView {
        let merged = mergedView(key, now: now)
        let remainingCount = remaining(merged, now: now)
        var next: [Priority: Int64] = [:]
        for priority in Priority.allCases {
            let probe = AcquireRequest(service: key.service, priority: priority, cost: 1)
            let decision = assess(key, request: probe, now: now).decision
            next[priority] = decision.granted ? 0 : max(0, (decision.retryAt ?? now) - now)
        }
        let breakerState = merged.breaker.state(at: now)
        let share = remainingCount.map { count in
            merged.window.map {
                fairShare(
                    merged, remaining: Double(count), limit: Double($0.limit ?? count), policy: servicePolicy(key.service),
                    resetAt: $0.resetAt, now: now)
            } ?? 1
        } ?? 1
        return QuotaView(
            key: key, limit: merged.window?.limit ?? merged.policy?.limit,
            windowMillis: merged.window?.windowMillis ?? merged.policy?.windowMillis, remaining: remainingCount,
            resetAt: merged.window?.resetAt, nextAvailableMillis: next,
            consumedGlobal: merged.consumption.windowTotal(at: now),
            consumedLocal: local[key]?.state.consumption.count(at: now) ?? 0, breakerState: breakerState,
            breakerOpenUntil: breakerState == .closed ? nil : merged.breaker.openUntil,
            peersLive: livePeers(now: now).count, peersKnown: peers.count, observation: merged.observation,
            share: share)
    }

    // MARK: - Demand and waiting

    private mutating func noteDemand(service: String, priority: Priority, cost: Int64) {
        guard isKnown(service: service) else { return }
        for account in accounts(of: service) {
            let key = QuotaKey(service: service, account: account)
            var quota = local[key] ?? LocalQuota()
            quota.requested[priority] += Double(max(0, cost))
            local[key] = quota
        }
    }

    private mutating func updateDemand(now: UnixMillis) {
        let elapsed = now - demandWindowStart
        guard elapsed >= configuration.demandIntervalMillis else { return }
        demandWindowStart = now
        let seconds = Double(elapsed) / 1000
        for (key, var quota) in local {
            var changed = false
            for priority in Priority.allCases {
                let rate = quota.requested[priority] / seconds
                let old = quota.demand[priority]
                var next = 0.5 * rate + 0.5 * old
                if next < 0.01 { next = 0 }
                if (old == 0) != (next == 0) || abs(next - old) > 0.2 * max(old, next) { changed = true }
                quota.demand[priority] = next
            }
            quota.requested = Demand()
            if changed { quota.dirty = true }
            local[key] = quota
        }
    }

    private mutating func serveWaiters(now: UnixMillis, into out: inout [MeshDirective]) {
        guard !waiters.isEmpty else { return }
        waiters.sort { ($0.request.priority.rank, $0.order) < ($1.request.priority.rank, $1.order) }
        var blocked: [String: Priority] = [:]
        var kept: [Waiter] = []
        var grantedAny = false
        for var waiter in waiters {
            if let higher = blocked[waiter.request.service], higher < waiter.request.priority {
                // Urgent first: lower priorities wait while a higher one for the service still waits.
                if now >= waiter.deadline {
                    out.append(.reply(ticket: waiter.ticket, waiter.lastDecision))
                } else {
                    kept.append(waiter)
                }
                continue
            }
            let decision = decide(waiter.request, now: now, blockedPriorities: [])
            if decision.granted {
                grantedAny = true
                out.append(.persist(persistedState()))
                out.append(.reply(ticket: waiter.ticket, decision))
                continue
            }
            waiter.lastDecision = decision
            if now >= waiter.deadline || (decision.retryAt ?? .max) > waiter.deadline {
                out.append(.reply(ticket: waiter.ticket, decision))
            } else {
                kept.append(waiter)
                if blocked[waiter.request.service] == nil { blocked[waiter.request.service] = waiter.request.priority }
            }
        }
        if grantedAny { pendingPersist = false }
        waiters = kept
    }

    private mutating func finish(_ directives: [MeshDirective], now: UnixMillis) -> [MeshDirective] {
        var out = directives
        if pendingPersist {
            out.insert(.persist(persistedState()), at: 0)
            pendingPersist = false
        }
        var wake = nextGossipAt
        for waiter in waiters {
            wake = min(wake, waiter.deadline, max(now + 1, waiter.lastDecision.retryAt ?? waiter.deadline))
        }
        out.append(.wake(at: max(wake, now + 1)))
        return out
    }
}

// MARK: - Internal state

struct SlotID: Hashable, Sendable {
    let origin: VerifyingKey
    let slot: RecordSlot
    let hash: UInt64

    init(origin: VerifyingKey, slot: RecordSlot) {
        self.origin = origin
        self.slot = slot
        var bytes = origin.rawRepresentation
        switch slot {
        case .heartbeat:
            bytes.append(0)
        case .quota(let key):
            bytes.append(1)
            bytes += Array(key.service.utf8) + [0] + Array(key.account.utf8)
        }
        self.hash = shortHash(bytes)
    }

    static func == (lhs: SlotID, rhs: SlotID) -> Bool { lhs.origin == rhs.origin && lhs.slot == rhs.slot }
    func hash(into hasher: inout Hasher) {
        hasher.combine(origin)
        hasher.combine(slot)
    }
}

struct StoredRecord: Sendable {
    var record: SignedRecord
    var receivedFrom: VerifyingKey?
    var transmitsLeft: Int
}

struct PeerState: Sendable {
    var info: PeerInfo
    var observedEndpoint: Endpoint?
    var lastHeardAt: UnixMillis?
    var replay = ReplayWindow()
    var announcedLive = false

    init(info: PeerInfo) { self.info = info }

    func isLive(now: UnixMillis, timeout: Int64) -> Bool {
        guard let last = lastHeardAt else { return false }
        return now - last < timeout
    }
}

struct LocalQuota: Sendable {
    var state = QuotaState()
    var demand = Demand()
    var requested = Demand()
    var bucket = LeakyBucket()
    var consecutiveFailures = 0
    var probeGrantedAt: UnixMillis?
    var dirty = false
}

struct Waiter: Sendable {
    var ticket: UInt64
    var request: AcquireRequest
    var deadline: UnixMillis
    var order: UInt64
    var lastDecision: AcquireDecision
}

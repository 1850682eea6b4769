import Foundation
import Logging
import NIOCore
import NIOPosix
import QuotaMeshCore
import QuotaMeshCrypto

/// The wall clock in Unix milliseconds: the only clock the node reads.
public func wallClockMillis() -> UnixMillis {
    UnixMillis((Date().timeIntervalSince1970 * 1000).rounded())
}

/// The shell around `MeshInstance`: it owns the instance and carries out its directives — datagrams go to
/// the UDP channel, persistence to the state folder, replies to waiting agents, wake-ups to a timer.
/// Being an actor, it feeds the instance one event at a time.
public actor MeshNode {
    private var instance: MeshInstance
    /// Saves the state as a snapshot and a log of changes (nil without a state store).
    private let stateWriter: StateWriter?
    /// Where peers that join with this node's invitation, or that a trusted introducer introduces, are
    /// written (`nil`: not written, for tests); the trust store's reload then makes them peers.
    private let trustStore: TrustStore?
    private let logger: Logger
    private let clock: @Sendable () -> UnixMillis
    private var channel: (any Channel)?
    private var addresses: [Endpoint: SocketAddress] = [:]
    private var pending: [UInt64: CheckedContinuation<AcquireDecision, Never>] = [:]
    /// Group commit: replies and datagrams held until the state that includes their grants and transfers
    /// is saved. Every grant decided while a save is pending or being written joins the next save, so one
    /// write serves all of them.
    private var awaitingSave: [HeldEffect] = []

    /// An effect that may not happen before a save.
    private enum HeldEffect {
        case reply(ticket: UInt64, decision: AcquireDecision)
        case send(bytes: [UInt8], endpoint: Endpoint)
    }
    /// A save was asked for since the last one was prepared.
    private var saveWanted = false
    /// The next save is queued on the actor.
    private var saveScheduled = false
    /// A save's file work is under way off the actor (``StateWrite``).
    private var writing = false
    /// Who waits for the write under way to finish (``stop()``).
    private var writeWaiters: [CheckedContinuation<Void, Never>] = []
    private var nextTicket: UInt64 = 1
    private var timer: Task<Void, Never>?
    private var scheduledWake: UnixMillis = .max
    private var counters: [String: Int] = [:]
    private let metrics = NodeMetrics()
    /// Set once shutdown has begun: acquires are answered at once, never held.
    private var draining = false
    /// The last error saving state, if the last save failed.
    public private(set) var persistenceError: String?
    /// When the node started.
    public let startedAt: UnixMillis

    /// The node's public key.
    public nonisolated let publicKey: VerifyingKey

    /// Creates a node.
    /// - Parameters:
    ///   - identity: the signing key.
    ///   - configuration: protocol parameters and services.
    ///   - peers: the trust store's peers.
    ///   - stateStore: where to persist (nil keeps nothing, for tests).
    ///   - trustStore: where joined and introduced peers are written (nil writes none, for tests).
    ///   - logger: where to log.
    ///   - clock: the wall clock (injectable for tests).
    public init(
        identity: SigningKey, configuration: MeshConfiguration, peers: [PeerInfo], stateStore: StateStore?,
        trustStore: TrustStore? = nil, logger: Logger, clock: @escaping @Sendable () -> UnixMillis = wallClockMillis
    ) throws {
        let now = clock()
        let restored = try stateStore?.load()
        self.instance = MeshInstance(
            identity: identity, configuration: configuration, peers: peers, restored: restored, now: now,
            seed: secureRandomUInt64())
        self.stateWriter = stateStore.map { StateWriter(store: $0, restored: restored) }
        self.trustStore = trustStore
        self.logger = logger
        self.clock = clock
        self.startedAt = now
        self.publicKey = identity.publicKey
    }

    /// The incarnation this run signs with.
    public var incarnation: UInt64 { instance.incarnation }

    /// Connects the UDP channel and starts gossiping.
    public func attach(channel: any Channel) {
        self.channel = channel
        apply(instance.start(now: clock()))
    }

    /// Starts the timers without a channel (nothing is sent), for an API-only node in tests.
    public func startWithoutNetwork() {
        apply(instance.start(now: clock()))
    }

    /// Stops the timer, answers every waiting agent and saves the state as one snapshot (after the write
    /// under way, if any); call on shutdown.
    public func stop() async {
        timer?.cancel()
        timer = nil
        channel = nil
        releaseWaiters()
        while writing {
            await withCheckedContinuation { writeWaiters.append($0) }
        }
        stateWriter?.compactAtNextSave()
        await saveAndRelease()
    }

    /// Answers every waiting acquire with a denial (`shutting_down`, retry in a second); from then on no
    /// acquire waits (the node is shutting down).
    public func releaseWaiters() {
        draining = true
        for (ticket, continuation) in pending {
            instance.cancel(ticket: ticket)
            continuation.resume(returning: .deny(.quotaExhausted, key: nil, retryAt: clock() + 1000, detail: .shuttingDown))
        }
        pending = [:]
    }

    /// Handles a datagram from the UDP channel.
    public func receive(_ bytes: [UInt8], from address: SocketAddress) {
        let source = Endpoint(host: address.ipAddress ?? "unknown", port: address.port ?? 0)
        metrics.packetIn(bytes: bytes.count)
        apply(instance.receive(datagram: bytes, from: source, now: clock()))
    }

    /// Asks for a grant; returns when the instance answers (at once, or after waiting).
    public func acquire(_ request: AcquireRequest) async -> AcquireDecision {
        await decide(request)
    }

    /// ``acquire(_:)`` with the view of the decision's key as it stands once the decision is answered (`nil`
    /// when no key is known), worked out in the same turn on the actor: the API's answer needs both.
    public func acquireWithQuota(_ request: AcquireRequest) async -> (decision: AcquireDecision, quota: QuotaView?) {
        let decision = await decide(request)
        return (decision, decision.key.flatMap { instance.quota(of: $0, now: clock()) })
    }

    private func decide(_ request: AcquireRequest) async -> AcquireDecision {
        var request = request
        if draining { request.waitMillis = 0 }
        let ticket = nextTicket
        nextTicket += 1
        let started = ContinuousClock.now
        let decision = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<AcquireDecision, Never>) in
                pending[ticket] = continuation
                apply(instance.acquire(request, ticket: ticket, now: clock()))
            }
        } onCancel: {
            Task { await self.abandon(ticket: ticket) }
        }
        let waited = ContinuousClock.now - started
        metrics.acquired(request, decision: decision, waited: waited)
        if logger.logLevel <= .debug { logDecision(request, decision, waited: waited) }
        return decision
    }

    /// One debug line per acquire: what was asked, what was decided and why.
    private func logDecision(_ request: AcquireRequest, _ decision: AcquireDecision, waited: Duration) {
        var metadata: Logger.Metadata = [
            "service": "\(request.service)", "priority": "\(request.priority.rawValue)", "cost": "\(request.cost)",
            "granted": "\(decision.granted)",
            "waited_ms": "\(waited.components.seconds * 1000 + waited.components.attoseconds / 1_000_000_000_000_000)",
        ]
        if !request.costs.isEmpty {
            metadata["costs"] = "\(request.costs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ","))"
        }
        if let account = decision.key?.account { metadata["account"] = "\(account)" }
        if let reason = decision.reason { metadata["reason"] = "\(reason.rawValue)" }
        if let detail = decision.detail { metadata["detail"] = "\(detail.description)" }
        if !decision.granted, let retryAt = decision.retryAt { metadata["retry_in_ms"] = "\(max(0, retryAt - clock()))" }
        logger.debug(decision.granted ? "Acquire granted" : "Acquire denied", metadata: metadata)
    }

    /// Every metric in the Prometheus text format, gauges set from the current state.
    public func metricsText() -> String {
        let now = clock()
        return metrics.render(
            quotas: instance.quotas(now: now), peers: instance.peerViews(now: now), waiting: instance.waitingCount,
            persistenceFailing: persistenceError != nil, now: now)
    }

    private func abandon(ticket: UInt64) {
        instance.cancel(ticket: ticket)
        pending.removeValue(forKey: ticket)?.resume(
            returning: .deny(.quotaExhausted, key: nil, retryAt: clock(), detail: .cancelled))
    }

    /// Reports an upstream response.
    public func observe(
        service: String, account: String?, status: Int, headers: [(name: String, value: String)],
        corrections: [String: Int64] = [:]
    ) -> (outcome: MeshInstance.ObserveOutcome, report: RateLimitReport) {
        let now = clock()
        let report = RateLimitHeaderParser.parse(headers: headers, status: status, now: now)
        let (directives, outcome) = instance.observe(
            service: service, account: account, status: status, report: report, corrections: corrections, now: now)
        apply(directives)
        return (outcome, report)
    }

    /// The merged views of a service's scopes (accounts the provider limits together).
    public func scopeQuotas(service: String) -> [QuotaView] { instance.scopeQuotas(service: service, now: clock()) }

    /// The merged view of every key.
    public func quotas() -> [QuotaView] { instance.quotas(now: clock()) }

    /// The merged view of one service's accounts, most remaining first; empty if unknown.
    public func quotas(service: String) -> [QuotaView] {
        guard instance.isKnown(service: service) else { return [] }
        return instance.quotas(service: service, now: clock())
    }

    /// One account's view (``MeshInstance/quota(of:now:)``), `nil` if the key is not an account's.
    public func quota(of key: QuotaKey) -> QuotaView? { instance.quota(of: key, now: clock()) }

    /// Every trusted peer.
    public func peers() -> [PeerView] { instance.peerViews(now: clock()) }

    /// The accounts configured for `service` (empty when it is not configured).
    public func configuredAccounts(of service: String) -> [String] {
        instance.configuration.services[service]?.accounts ?? []
    }

    /// Whether this node spends no rights because its trust store is the odd one out.
    public var rightsStopped: Bool { instance.rightsStopped }

    /// Replaces the trust store after a reload.
    public func replacePeers(_ peers: [PeerInfo]) { instance.replacePeers(peers) }

    /// Counts of dropped packets by reason and other events, for health and metrics.
    public func statistics() -> [String: Int] { counters }

    /// The current time as the node sees it.
    public nonisolated func now() -> UnixMillis { clock() }

    // MARK: Directives

    private func apply(_ directives: [MeshDirective]) {
        // Replies and datagrams that follow a save wait for it (a datagram may carry rights this node gave,
        // which it must not forget in a crash), and so do datagrams while a save is still to be written or
        // being written; the rest go at once.
        var mustSave = false
        for directive in directives {
            switch directive {
            case .send(let bytes, let endpoint):
                // A datagram signed while an earlier save is still to be written may carry what it saves.
                if mustSave || saveWanted || saveScheduled || writing {
                    awaitingSave.append(.send(bytes: bytes, endpoint: endpoint))
                } else {
                    send(bytes, to: endpoint)
                }
            case .reply(let ticket, let decision):
                if mustSave {
                    awaitingSave.append(.reply(ticket: ticket, decision: decision))
                } else {
                    pending.removeValue(forKey: ticket)?.resume(returning: decision)
                }
            case .persist:
                guard stateWriter != nil else { continue }
                mustSave = true
            case .event(let event):
                record(event)
            case .wake(let at):
                schedule(at)
            case .trust(let peer, let introducer):
                trust(peer, introducedBy: introducer)
            }
        }
        if mustSave { saveWanted = true }
        scheduleSave()
    }

    /// Queues the next save when one is wanted (or effects wait for one) and none is queued or being
    /// written: after the work already queued on this actor, so that the acquires waiting to run decide
    /// first and one write covers their grants too. While a write is under way, what is decided meanwhile
    /// waits for the save queued when it finishes.
    /// `retrying`: after a failed save, with nothing new to save (a retry holds no datagram back).
    private func scheduleSave(retrying: Bool = false) {
        guard retrying || saveWanted || !awaitingSave.isEmpty, !saveScheduled, !writing else { return }
        saveScheduled = true
        Task { await self.saveAndRelease() }
    }

    /// Saves the state once for every grant decided since the last save was prepared, then sends their
    /// replies and the datagrams held for it. When the save fails, nothing it held goes out: grants are
    /// answered with a denial (`persistence`) and the instance grants and gives nothing until a save
    /// succeeds.
    private func saveAndRelease() async {
        saveScheduled = false
        // One write at a time: the save under way queues the next when it finishes.
        guard !writing else { return }
        let released = awaitingSave
        awaitingSave = []
        saveWanted = false
        let saved = await save()
        for effect in released {
            switch effect {
            case .reply(let ticket, var decision):
                if !saved && decision.granted {
                    decision = .deny(
                        .quotaExhausted, key: decision.key, retryAt: clock() + 1000, detail: .persistence)
                }
                pending.removeValue(forKey: ticket)?.resume(returning: decision)
            case .send(let bytes, let endpoint):
                if saved { send(bytes, to: endpoint) }
            }
        }
        scheduleSave()
    }

    /// Saves the state as it stands now; `true` when it is on disk (or there is no store). The write runs
    /// off the actor, which goes on deciding meanwhile; what it decides is saved by the next save.
    private func save() async -> Bool {
        guard let stateWriter else { return true }
        let stateStore = stateWriter.store
        let mark = instance.persistenceMark
        var failure: (any Error)?
        do {
            if let write = try stateWriter.prepare(instance.persistedState()) {
                writing = true
                failure = await Self.perform(write)
                writing = false
                stateWriter.finish(write, error: failure)
                let waiters = writeWaiters
                writeWaiters = []
                for waiter in waiters { waiter.resume() }
            }
        } catch {
            failure = error
        }
        guard let failure else {
            instance.persistenceDidSucceed(upTo: mark)
            counters["state_saves", default: 0] += 1
            if persistenceError != nil {
                logger.notice("State saved again", metadata: ["state.path": "\(stateStore.path)"])
            }
            persistenceError = nil
            return true
        }
        if persistenceError == nil {
            logger.error(
                "Cannot save state; keeping the last good copy",
                metadata: ["state.path": "\(stateStore.path)", "error": "\(failure)"])
        }
        persistenceError = "\(failure)"
        counters["persist_failures", default: 0] += 1
        instance.persistenceDidFail()
        return false
    }

    /// Carries out a save's file work on NIO's blocking-I/O thread pool, not on the cooperative pool that
    /// runs the node and the API (two threads on a two-core machine, which a slow `fdatasync` would halve).
    private nonisolated static func perform(_ write: StateWrite) async -> (any Error)? {
        do {
            try await NIOThreadPool.singleton.runIfActive { try write.perform() }
            return nil
        } catch {
            return error
        }
    }

    private func record(_ event: MeshEvent) {
        switch event {
        case .dropped(let reason, let from, let sender):
            counters["dropped_\(reason.rawValue)", default: 0] += 1
            metrics.dropped(reason)
            logger.debug(
                "Dropped packet",
                metadata: [
                    "drop.reason": "\(reason.rawValue)", "peer.address": "\(from.map(\.description) ?? "-")",
                    "peer.id": "\(sender?.shortID ?? "-")",
                ])
        case .recordAccepted:
            counters["records_accepted", default: 0] += 1
            metrics.record(accepted: true)
        case .recordStale:
            counters["records_stale", default: 0] += 1
            metrics.record(accepted: false)
        case .peerUp(let key):
            counters["peer_up", default: 0] += 1
            logger.info("Peer up", metadata: ["peer": "\(peerName(key))", "peer.id": "\(key.shortID)"])
        case .peerDown(let key):
            counters["peer_down", default: 0] += 1
            logger.info("Peer down", metadata: ["peer": "\(peerName(key))", "peer.id": "\(key.shortID)"])
        case .breakerOpened(let key, let until):
            logger.notice(
                "Breaker opened",
                metadata: ["service": "\(key.service)", "account": "\(key.account)", "breaker.open_until_ms": "\(until)"])
        case .breakerClosed(let key):
            logger.notice("Breaker closed", metadata: ["service": "\(key.service)", "account": "\(key.account)"])
        case .serviceLearned(let service):
            logger.info("Service learned", metadata: ["service": "\(service)"])
        case .breakerClaimsIgnored(let peer, let key):
            counters["breaker_claims_ignored", default: 0] += 1
            logger.warning(
                "A success contradicted a peer's open breaker; its breaker claims no longer count",
                metadata: ["peer": "\(peerName(peer))", "peer.id": "\(peer.shortID)", "service": "\(key.service)",
                    "account": "\(key.account)"])
        case .peerGraylisted(let key, let score):
            counters["peers_graylisted", default: 0] += 1
            logger.warning(
                "Peer graylisted: its upstream observations or breaker openings kept contradicting this node's own calls; its observations no longer count until its score decays, its breaker claims no more",
                metadata: ["peer": "\(peerName(key))", "peer.id": "\(key.shortID)", "score": "\(score)"])
        case .membersDiffer(let key, let count, let stopped):
            counters["members_differ", default: 0] += 1
            logger.error(
                stopped
                    ? "Trust stores differ: this peer splits rights among another set of members, and this node's set is the odd one out; it spends no rights until every trust store lists the same peers"
                    : "Trust stores differ: this peer splits rights among another set of members; most peers name this node's set, so it goes on spending its part; fix the peer's trust store",
                metadata: ["peer": "\(peerName(key))", "peer.id": "\(key.shortID)", "peer.members": "\(count)",
                    "members": "\(instance.peerViews(now: clock()).count + 1)"])
        case .membersAgree:
            logger.notice("Trust stores agree again: rights are spent again")
        case .joinRefused(let key, let reason, let from):
            counters["joins_refused", default: 0] += 1
            logger.warning(
                reason == .expired
                    ? "Join refused: the invitation expired; make a new one with `quotamesh invite`"
                    : "Join refused: the proof matches no invitation of this node's",
                metadata: ["peer.id": "\(key.shortID)", "peer.address": "\(from)", "join.reason": "\(reason.rawValue)"])
        case .introductionIgnored(let key, let endpoint, let introducer):
            logger.info(
                "A peer introduced another that this node does not trust (its `vouching` does not take this peer's introductions); to trust it: quotamesh peer add NAME --key \(key.base64) --endpoint \(endpoint)",
                metadata: ["peer": "\(peerName(introducer))", "introduced.id": "\(key.shortID)"])
        case .peerQuarantined(let key, let reason):
            counters["peers_quarantined", default: 0] += 1
            logger.error(
                "Peer quarantined: it signed records that contradict each other; nothing from it is accepted until it is removed from the trust store and added again",
                metadata: ["peer": "\(peerName(key))", "peer.id": "\(key.shortID)", "quarantine.reason": "\(reason.rawValue)"])
        }
    }

    /// Writes a peer that joined with this node's invitation, or that a trusted introducer introduced, to
    /// the trust store; its reload (within two seconds) makes it a peer. A name already taken gets a
    /// number after it; a key already listed is not written again.
    private func trust(_ peer: PeerInfo, introducedBy introducer: VerifyingKey?) {
        let how = introducer.map { "introduced by \(peerName($0))" } ?? "joined with this node's invitation"
        guard let trustStore else { return }
        let listed = trustStore.load().peers
        guard !listed.contains(where: { $0.key == peer.key }) else { return }
        var entry = peer
        var suffix = 2
        while listed.contains(where: { $0.name == entry.name }) {
            entry.name = "\(peer.name)-\(suffix)"
            suffix += 1
        }
        do {
            try trustStore.add(entry)
            counters[introducer == nil ? "peers_joined" : "peers_introduced", default: 0] += 1
            logger.notice(
                "Trusted a new peer: \(how)",
                metadata: ["peer": "\(entry.name)", "peer.id": "\(entry.key.shortID)",
                    "peer.address": "\(entry.endpoint?.description ?? "-")", "peer.file": "\(trustStore.path(for: entry.name))"])
        } catch {
            logger.error(
                "Could not write a new peer to the trust store",
                metadata: ["peer": "\(entry.name)", "peer.id": "\(entry.key.shortID)", "error": "\(error)"])
        }
    }

    /// The trust store's name for a peer (its file name), for logs.
    private func peerName(_ key: VerifyingKey) -> String {
        instance.peerViews(now: clock()).first { $0.key == key }?.name ?? "?"
    }

    private func send(_ bytes: [UInt8], to endpoint: Endpoint) {
        guard let channel else { return }
        let address: SocketAddress
        if let cached = addresses[endpoint] {
            address = cached
        } else {
            do {
                address = try SocketAddress.makeAddressResolvingHost(endpoint.host, port: endpoint.port)
                addresses[endpoint] = address
            } catch {
                counters["send_unresolved", default: 0] += 1
                return
            }
        }
        counters["datagrams_sent", default: 0] += 1
        counters["bytes_sent", default: 0] += bytes.count
        metrics.packetOut(bytes: bytes.count)
        let envelope = AddressedEnvelope(remoteAddress: address, data: ByteBuffer(bytes: bytes))
        channel.writeAndFlush(envelope, promise: nil)
    }

    private func schedule(_ wake: UnixMillis) {
        guard timer == nil || wake < scheduledWake else { return }
        timer?.cancel()
        scheduledWake = wake
        let delay = max(0, wake - clock())
        timer = Task { [weak self] in
            try? await Task.sleep(for: .milliseconds(delay))
            guard !Task.isCancelled else { return }
            await self?.fire()
        }
    }

    private func fire() {
        timer = nil
        scheduledWake = .max
        apply(instance.tick(now: clock()))
        // While saves fail the instance grants nothing: try again every round, so it resumes once the disk
        // has room.
        if persistenceError != nil { scheduleSave(retrying: true) }
    }
}

import QuotaMeshCore
import QuotaMeshCrypto

/// What one simulation run measured.
public struct SimulationReport: Sendable {
    /// The configuration's node count, seconds and seed.
    public var nodes: Int
    public var seconds: Double
    public var seed: UInt64
    /// Gossip rounds until every live node held a probe observation, median and 99th percentile.
    public var convergenceRoundsP50: Double
    public var convergenceRoundsP99: Double
    /// Probes that reached every live node before the run ended, and all probes.
    public var probesConverged: Int
    public var probes: Int
    /// Epidemic theory's estimate for push gossip: log_fanout(N) + ln(N)/fanout rounds.
    public var theoreticalRounds: Double
    /// Calls sent upstream in the worst window ÷ the limit (outside any partition).
    public var maxAdmittedRatio: Double
    /// The smallest bucket that, refilled at `limit` per window, would have admitted every call sent
    /// upstream, ÷ the limit: at most 1 means a token bucket of the limit never refuses one (the worst
    /// stretch of any length sent at most the limit plus what refilled meanwhile).
    public var bucketDepthRatio: Double = 0
    /// Times a node graylisted the liar's observations and breaker claims, and an honest node's.
    public var liarGraylistings = 0
    public var honestGraylistings = 0
    /// The same, over windows that overlap the partition.
    public var partitionMaxAdmittedRatio: Double?
    /// Successful upstream calls ÷ min(offered, limit), over full windows.
    public var utilization: Double
    /// Jain's index over per-node successful calls.
    public var jainIndex: Double
    /// How close the per-node successful calls come to a max-min fair division of them (water-filled
    /// over each node's tasks, both counted for tasks created before the last two windows): Jain's index
    /// over each node's calls ÷ its max-min share, 1 when every node got exactly its share. Under equal
    /// demand it tells the same as `jainIndex`; under unequal demand it is the one to read (a node that
    /// asked for little is not short-changed by getting little).
    public var maxMinIndex: Double
    /// The least any node got of its max-min share (its calls ÷ its share), over nodes with a share.
    public var maxMinWorstRatio: Double
    /// Urgent tasks that succeeded ÷ urgent tasks (created before the last two windows).
    public var urgentSuccessRatio: Double
    /// Urgent time to success, 99th percentile (ms).
    public var urgentWaitP99Millis: Double
    /// The 99th percentile of the wait of urgent tasks created in windows the cluster did not spend in full
    /// (rights were left somewhere all along), in ms.
    public var urgentWaitP99WhileRightsLeftMillis: Double = 0
    /// The 99th percentile of the wait of urgent tasks while rights existed: created where a grant may be
    /// spent (not in a window's closing edge nor before its opening lead), and served before the window's
    /// last right was spent anywhere, or never served in a window the mesh left unspent. In ms; `nil`
    /// when no task qualifies. (Fixed windows: with a continuous refill, rights unlocked later also count.)
    public var urgentWaitP99WhereRightsExistMillis: Double? = nil
    /// Tasks per priority and how many succeeded.
    public var tasks: [Priority: (created: Int, succeeded: Int)]
    /// Upstream calls and 429s.
    public var upstreamCalls: Int
    public var upstream429s: Int
    /// Denials the agents were given ("not now, retry at T").
    public var denials: Int
    /// Bytes sent per node per virtual second.
    public var bytesPerNodePerSecond: Double
    /// Signature verifications per node per virtual second.
    public var verificationsPerNodePerSecond: Double
    /// Datagrams delivered and lost.
    public var datagramsDelivered: Int
    public var datagramsLost: Int
    /// Wall-clock seconds the run took.
    public var wallSeconds: Double
    /// Per full window: calls sent upstream, calls it accepted, and calls offered (capped at the limit).
    public var windows: [(sent: Int, accepted: Int, offered: Int)] = []
}

/// A deterministic discrete-event simulation of a QuotaMesh cluster: N real `MeshInstance`s (the code
/// the node runs) over a simulated network (latency, loss, duplication, reordering, partitions), with
/// crashes and clock skew, agents with demand by priority, and an upstream that enforces a real quota
/// and answers with rate-limit headers and 429s. One seed reproduces a run exactly.
public struct Simulator {
    enum Event {
        case deliver(from: Int, to: Int, bytes: [UInt8])
        case wake(node: Int)
        case arrival(node: Int)
        case attempt(task: Int)
        case upstream(task: Int)
        case response(task: Int, status: Int, headers: [(name: String, value: String)])
        case crash(node: Int)
        case restart(node: Int)
        case probe(index: Int)
        case checkProbes
        case lie
    }

    struct Node {
        /// The running instance; `nil` while the node is down. Held in a box, so that an event changes it
        /// in place instead of copying it out of (and back into) the array of nodes.
        let box: InstanceBox
        var instance: MeshInstance? {
            get { box.instance }
            nonmutating set { box.instance = newValue }
        }
        /// Whether the node is running (checked for every event without touching the instance); set with
        /// `instance` on crash and restart.
        var isUp = true
        var key: SigningKey
        var skew: Int64
        var persisted: PersistedNodeState?
        var scheduledWake: Int64 = .max
        var weight: Double
        var tickets: [UInt64: Int] = [:]
        var successes = 0
    }

    struct Task {
        var node: Int
        var priority: Priority
        var created: Int64
        var succeeded: Int64?
        var inFlight = false
    }

    struct Probe {
        var origin: Int
        var key: QuotaKey
        var signedAt: Int64?
        var convergedAt: Int64?
    }

    public let configuration: SimulationConfiguration
    /// The liar's record and packet counters (it signs with an incarnation above its honest instance's).
    var liarSequence: UInt64 = 0
    let start: Int64 = 1_800_000_000_000
    let service = "api"
    var rng: SplitMix64
    var queue = EventQueue<Event>()
    var nodes: [Node] = []
    /// Every node's trust store: all the nodes (each instance passes over its own entry).
    var directory = PeerDirectory([])
    var tasks: [Task] = []
    var probes: [Probe] = []
    var now: Int64
    var nextTicket: UInt64 = 1
    let scheme: (any SignatureScheme)
    /// The simulated scheme, when in use (for its counters).
    public let simulated: SimulatedSignatures?
    /// One copy of each record for every node.
    public let sharedRecords = SharedRecords()
    // Upstream state.
    var windowSent: [Int64: Int] = [:]
    /// When each window's last call under the limit was sent.
    var windowSpentAt: [Int64: Int64] = [:]
    var windowAccepted: [Int64: Int] = [:]
    var windowCreated: [Int64: Int] = [:]
    var backlogAtWindowStart: [Int64: Int] = [:]
    var tokens: Double
    var tokensAt: Int64
    var upstreamCalls = 0
    /// Times a node graylisted the liar (node 0, when there is one), and an honest node.
    var liarGraylistings = 0
    var honestGraylistings = 0
    /// When each call reached the upstream, in order.
    var upstreamCallTimes: [Int64] = []
    var upstream429s = 0
    var denials = 0
    var bytesSent = 0
    var delivered = 0
    var lost = 0
    var pending = 0
    /// Records accepted (new versions) across all nodes.
    public var recordsAccepted = 0
    /// Records received that were already held (the redundancy of push gossip).
    public var recordsStale = 0
    /// Bytes and datagrams sent, by packet kind (1 records, 2 digest).
    public var bytesByKind: [UInt8: Int] = [:]
    public var packetsByKind: [UInt8: Int] = [:]
    /// Denials per window by reason/detail, for diagnosis.
    public var denialDetails: [Int64: [String: Int]] = [:]
    /// Grants per window by detail, for diagnosis.
    public var grantDetails: [Int64: [String: Int]] = [:]
    /// Upstream calls and 429s per virtual second, for diagnosis.
    public var callsPerSecond: [Int64: (sent: Int, rejected: Int)] = [:]
    /// When above 0, every this many virtual ms (a multiple of the gossip interval) the run hands
    /// ``onSample`` a line with the current window's calls and the pacing inputs of nodes 0 to 3.
    public var sampleEvery: Int64 = 0
    /// Receives the lines ``sampleEvery`` asks for.
    public var onSample: ((String) -> Void)?
    /// When set, samples show every node's remaining estimate and its pieces instead of nodes 0 to 3's
    /// pacing inputs. Working out pacing inputs updates a node's share cache, so those samples can change
    /// the run; these read only, so the run is the one without sampling. Crashes and restarts are
    /// sampled too.
    public var sampleRemaining = false
    /// When set, samples show the rights every node holds in its own view, summed, and how many tasks wait.
    public var sampleRights = false
    /// If set, receives a line per convergence check: for each probe still spreading, how many live
    /// nodes hold it.
    public var onProbeCheck: ((String) -> Void)?
    /// If set, receives a line per granted acquire: when, which node, the priority and detail, and the
    /// node's pacing inputs at that moment (for diagnosing a window that overshot).
    public var onGrant: ((String) -> Void)?
    /// If set, receives a line per refused acquire of an urgent task: when, which node and task, the
    /// reason and detail, and how long until it may try again (for diagnosing urgent waits).
    public var onUrgentDenial: ((String) -> Void)?

    /// Prepares a run.
    public init(_ configuration: SimulationConfiguration) {
        self.configuration = configuration
        self.rng = SplitMix64(seed: configuration.seed)
        self.now = start
        self.tokens = Double(configuration.limit)
        self.tokensAt = start
        if configuration.realSignatures {
            scheme = Ed25519Signatures()
            simulated = nil
        } else {
            let fast = SimulatedSignatures()
            scheme = fast
            simulated = fast
        }
    }

    func endpoint(_ index: Int) -> Endpoint { Endpoint(host: "sim", port: index + 1) }

    var endTime: Int64 { start + Int64(configuration.seconds * 1000) }

    func meshConfiguration() -> MeshConfiguration {
        let basePolicy = ServicePolicy(
            limit: configuration.limit, windowMillis: configuration.windowMillis, reserves: configuration.reserves,
            burstFraction: configuration.burstFraction)
        var policy = basePolicy
        // A deployment in front of a token bucket says so, and its rights accrue at the refill rate.
        policy.refill = configuration.refill ?? (configuration.upstream == .tokenBucket ? .continuous : .window)
        var mesh = MeshConfiguration(
            gossipIntervalMillis: configuration.gossipIntervalMillis, fanout: configuration.fanout,
            retransmitMultiplier: configuration.retransmitMultiplier,
            antiEntropyEveryRounds: configuration.antiEntropyEveryRounds, services: [service: policy], signatures: scheme)
        if configuration.shareRecords { mesh.recordSharing = sharedRecords }
        // The rights' edges allow for the clocks' spread and the way to the upstream, as a deployment's
        // configuration would.
        mesh.rightsLeadMillis = configuration.clockSkewMillis
        mesh.rightsEdgeMillis = max(mesh.rightsEdgeMillis, configuration.clockSkewMillis + configuration.upstreamLatencyMillis)
        return mesh
    }

    /// Runs to the end and reports.
    public mutating func run() -> SimulationReport {
        let wallStart = ContinuousClock.now
        setUp()
        var lastProgress = 0.0
        while let (time, event) = queue.pop(), time <= endTime {
            now = time
            handle(event)
            let done = Double(now - start) / Double(endTime - start)
            if done - lastProgress >= 0.05 {
                lastProgress = done
                configuration.progress?(done)
            }
        }
        now = endTime
        let elapsed = ContinuousClock.now - wallStart
        let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return report(wallSeconds: wall)
    }

    // MARK: Set-up

    mutating func setUp() {
        let count = configuration.nodes
        var keys: [SigningKey] = []
        for index in 0..<count {
            var seed = [UInt8](repeating: 0, count: 32)
            var mixer = SplitMix64(seed: configuration.seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15))
            for byteIndex in 0..<32 { seed[byteIndex] = UInt8(truncatingIfNeeded: mixer.next()) }
            // 32 bytes by construction.
            keys.append(try! SigningKey(seed: seed))
        }
        // One directory for every node: each instance keeps only its own few bytes per peer beside it.
        let directory = PeerDirectory(
            keys.enumerated().map { PeerInfo(name: "n\($0.offset)", key: $0.element.publicKey, endpoint: endpoint($0.offset)) })
        self.directory = directory
        let mesh = meshConfiguration()
        for index in 0..<count {
            let skew = configuration.clockSkewMillis > 0
                ? Int64.random(in: -configuration.clockSkewMillis...configuration.clockSkewMillis, using: &rng) : 0
            // A liar makes no calls of its own: what is measured is what its statements do to the others.
            let weight = configuration.liar != nil && index == 0 ? 0 : configuration.skewedDemand ? 1 / Double(index + 1) : 1
            let instance = MeshInstance(
                identity: keys[index], configuration: mesh, directory: directory, restored: nil, now: start + skew,
                seed: rng.next())
            nodes.append(Node(box: InstanceBox(instance), key: keys[index], skew: skew, weight: weight))
        }
        // Stagger the nodes' first rounds across one interval.
        for index in 0..<count {
            let offset = Int64.random(in: 0..<configuration.gossipIntervalMillis, using: &rng)
            schedule(.wake(node: index), at: start + offset)
            nodes[index].scheduledWake = start + offset
        }
        let totalWeight = nodes.reduce(0) { $0 + $1.weight }
        for index in 0..<count {
            nodes[index].weight /= totalWeight
            scheduleArrival(index)
        }
        for index in 0..<configuration.crashes {
            let at = start + Int64(Double(endTime - start) * (Double(index) + 0.5 + Double.random(in: -0.3...0.3, using: &rng)) / Double(configuration.crashes + 1))
            schedule(.crash(node: Int.random(in: 0..<count, using: &rng)), at: at)
        }
        for index in 0..<configuration.probes {
            // After a warm-up (the first records of every node flood the cluster at start), spread over
            // the rest of the run, leaving time to converge.
            let at = start + Int64(Double(endTime - start) * (0.3 + 0.5 * Double(index) / Double(max(1, configuration.probes))))
            schedule(.probe(index: index), at: at)
        }
        schedule(.checkProbes, at: start + configuration.gossipIntervalMillis)
        if configuration.liar != nil && count > 1 { schedule(.lie, at: start + 1_000) }
    }

    mutating func schedule(_ event: Event, at time: Int64) { queue.push(event, at: time) }

    /// The demand rate of node `index` at the current time (tasks per ms).
    func rate(of index: Int) -> Double {
        let total = configuration.demand * Double(configuration.limit) / Double(configuration.windowMillis)
        var weightIndex = index
        if let shift = configuration.demandShiftAt, now >= start + Int64(Double(endTime - start) * shift) {
            weightIndex = (index + nodes.count / 2) % nodes.count
        }
        return total * nodes[weightIndex].weight
    }

    mutating func scheduleArrival(_ index: Int) {
        let rate = rate(of: index)
        guard rate > 0 else { return }
        let gap = -log(max(1e-12, Double.random(in: 0..<1, using: &rng))) / rate
        schedule(.arrival(node: index), at: now + max(1, Int64(gap)))
    }

    // MARK: Events

    mutating func handle(_ event: Event) {
        switch event {
        case .deliver(let from, let to, let bytes):
            guard nodes[to].isUp else {
                lost += 1
                return
            }
            delivered += 1
            let source = endpoint(from)
            drive(to) { instance, nodeTime in instance.receive(datagram: bytes, from: source, now: nodeTime) }
        case .wake(let index):
            guard nodes[index].scheduledWake == now, nodes[index].isUp else { return }
            nodes[index].scheduledWake = .max
            drive(index) { instance, nodeTime in instance.tick(now: nodeTime) }
        case .arrival(let index):
            let priority = drawPriority()
            tasks.append(Task(node: index, priority: priority, created: now))
            windowCreated[upstreamWindow(now), default: 0] += 1
            pending += 1
            attempt(tasks.count - 1)
            scheduleArrival(index)
        case .attempt(let task):
            attempt(task)
        case .upstream(let task):
            callUpstream(task)
        case .response(let task, let status, let headers):
            let index = tasks[task].node
            tasks[task].inFlight = false
            guard nodes[index].isUp else {
                schedule(.attempt(task: task), at: now + 500)
                return
            }
            let service = service
            drive(index) { instance, nodeTime in
                let report = RateLimitHeaderParser.parse(headers: headers, status: status, now: nodeTime)
                return instance.observe(service: service, account: nil, status: status, report: report, now: nodeTime).directives
            }
            if status == 200 {
                tasks[task].succeeded = now
                nodes[index].successes += 1
                pending -= 1
            } else {
                schedule(.attempt(task: task), at: now + 1)
            }
        case .crash(let index):
            guard nodes[index].isUp else { return }
            if sampleEvery > 0, let onSample { onSample("t=\(Double(now - start) / 1000) crash n\(index)") }
            nodes[index].instance = nil
            nodes[index].isUp = false
            nodes[index].tickets = [:]
            nodes[index].scheduledWake = .max
            schedule(.restart(node: index), at: now + configuration.downtimeMillis)
        case .restart(let index):
            if sampleEvery > 0, let onSample { onSample("t=\(Double(now - start) / 1000) restart n\(index)") }
            let nodeTime = now + nodes[index].skew
            var instance = MeshInstance(
                identity: nodes[index].key, configuration: meshConfiguration(), directory: directory,
                restored: nodes[index].persisted, now: nodeTime, seed: rng.next())
            let directives = instance.start(now: nodeTime)
            nodes[index].instance = instance
            nodes[index].isUp = true
            apply(directives, from: index)
            // Tasks that were waiting on the crashed node try again.
            for task in tasks.indices where tasks[task].node == index && tasks[task].succeeded == nil && !tasks[task].inFlight {
                schedule(.attempt(task: task), at: now + 1)
            }
        case .probe(let index):
            startProbe(index)
        case .lie:
            lie()
            schedule(.lie, at: now + configuration.gossipIntervalMillis)
        case .checkProbes:
            checkProbes()
            if sampleEvery > 0, (now - start) % sampleEvery == 0, let onSample {
                let key = QuotaKey(service: service, account: "default")
                var line = "t=\(Double(now - start) / 1000) sent=\(windowSent[upstreamWindow(now), default: 0])"
                if sampleRights {
                    // Every node's own view of what it holds, and how many calls wait.
                    var held: Int64 = 0
                    var holders = 0
                    for index in nodes.indices {
                        let nodeTime = now + nodes[index].skew
                        let rights = nodes[index].box.inspect { $0.quotas(service: service, now: nodeTime).first?.rights } ?? nil
                        held += max(0, rights ?? 0)
                        if (rights ?? 0) > 0 { holders += 1 }
                    }
                    let waiting = tasks.reduce(0) { $0 + ($1.succeeded == nil && !$1.inFlight ? 1 : 0) }
                    line += " held=\(held) holders=\(holders) tasks_waiting=\(waiting)"
                } else {
                    let sampled = sampleRemaining ? Array(nodes.indices) : Array(0..<min(4, nodes.count))
                    for index in sampled {
                        let fields = sampleRemaining ? remainingFields(of: index, key: key) : pacingFields(of: index, key: key)
                        if let fields { line += " | n\(index) " + fields }
                    }
                }
                onSample(line)
            }
            schedule(.checkProbes, at: now + configuration.gossipIntervalMillis)
        }
    }

    /// Node 0, a vouched liar, signs this round's lie and sends it to `fanout` random peers.
    mutating func lie() {
        guard let kind = configuration.liar, nodes[0].isUp, let honest = nodes[0].instance?.incarnation else { return }
        let key = QuotaKey(service: service, account: "default")
        let year: Int64 = 365 * 86_400_000
        let windowEnd = (now / configuration.windowMillis + 1) * configuration.windowMillis
        var state = QuotaState()
        switch kind {
        case .claims:
            state.observation = UpstreamObservation(
                resetAt: now + year, remaining: 1_000_000_000_000, limit: 1_000_000_000_000, windowMillis: year,
                observedAt: now, consumedTotalAtObservation: 0)
            state.consumption = ConsumptionEntry(
                total: 1_000_000_000_000, windowEnd: now + year, windowCount: 1_000_000_000_000)
        case .breaker:
            state.breaker = BreakerRegister(openedAt: now, openUntil: now + year, closedAt: 0)
        case .overgive:
            var ledger = RightsLedger(windowEnd: windowEnd)
            for index in 1..<min(nodes.count, RightsLedger.maxReceivers + 1) {
                ledger.give(1_000, to: nodes[index].key.publicKey)
            }
            state.ledger = ledger
        case .starve:
            state.observation = UpstreamObservation(
                resetAt: windowEnd, remaining: 0, limit: configuration.limit, windowMillis: configuration.windowMillis,
                observedAt: now + nodes[0].skew, consumedTotalAtObservation: 0)
        case .fork:
            var ledger = RightsLedger(windowEnd: windowEnd)
            let part = max(1, UInt64(configuration.limit) / UInt64(nodes.count))
            ledger.give(part, to: nodes[1 + Int(liarSequence % UInt64(nodes.count - 1))].key.publicKey)
            state.ledger = ledger
        }
        liarSequence += 1
        let incarnation = honest + 1_000
        let record = SignedRecord(
            signing: .quota(key, state), version: RecordVersion(incarnation: incarnation, sequence: liarSequence),
            timestamp: now + nodes[0].skew, with: nodes[0].key, cluster: "quotamesh", scheme: scheme)
        for _ in 0..<configuration.fanout {
            let target = Int.random(in: 1..<nodes.count, using: &rng)
            let packet = WireFormat.encodePacket(
                header: PacketHeader(
                    sender: nodes[0].key.publicKey, incarnation: incarnation, sequence: liarSequence &* 16 &+ UInt64(target),
                    sentAt: now + nodes[0].skew),
                payload: .records([record]), signingKey: nodes[0].key, cluster: "quotamesh", scheme: scheme)
            apply([.send(packet, to: endpoint(target))], from: 0)
        }
    }

    mutating func drawPriority() -> Priority {
        let mix = configuration.priorityMix
        let draw = Double.random(in: 0..<(mix.urgent + mix.normal + mix.low), using: &rng)
        if draw < mix.urgent { return .urgent }
        if draw < mix.urgent + mix.normal { return .normal }
        return .low
    }

    mutating func attempt(_ task: Int) {
        let index = tasks[task].node
        guard tasks[task].succeeded == nil, !tasks[task].inFlight else { return }
        guard nodes[index].isUp else { return }  // retried on restart
        let ticket = nextTicket
        nextTicket += 1
        nodes[index].tickets[ticket] = task
        let request = AcquireRequest(service: service, priority: tasks[task].priority, cost: 1)
        drive(index) { instance, nodeTime in instance.acquire(request, ticket: ticket, now: nodeTime) }
    }

    // MARK: Directives

    /// Runs `body` on node `index`'s instance in its own time and carries out the directives.
    mutating func drive(_ index: Int, _ body: (inout MeshInstance, Int64) -> [MeshDirective]) {
        let box = nodes[index].box
        let nodeTime = now + nodes[index].skew
        guard let directives = box.instance?.inPlace({ body(&$0, nodeTime) }) else { return }
        apply(directives, from: index)
    }

    /// Node `index`'s pacing inputs for `key` on its own clock, as `name=value` fields in name order
    /// (for the sample and grant diagnostics); `nil` while the node is down.
    func pacingFields(of index: Int, key: QuotaKey) -> String? {
        guard let breakdown = nodes[index].box.instance?.pacingBreakdown(key, now: now + nodes[index].skew) else {
            return nil
        }
        return breakdown.sorted { $0.key < $1.key }.map { "\($0.key)=\(($0.value * 1000).rounded() / 1000)" }
            .joined(separator: " ")
    }

    /// Node `index`'s remaining estimate for `key` and its pieces on its own clock, as `name=value` fields
    /// in name order (reset times left out); `nil` while the node is down. Reads only.
    func remainingFields(of index: Int, key: QuotaKey) -> String? {
        let nodeTime = now + nodes[index].skew
        guard let pieces = nodes[index].box.inspect({ $0.remainingBreakdown(key, now: nodeTime) }) else { return nil }
        return pieces.filter { $0.key != "reset_at" && $0.key != "obs_reset" }.sorted { $0.key < $1.key }
            .map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    mutating func apply(_ directives: [MeshDirective], from index: Int) {
        for directive in directives {
            switch directive {
            case .send(let bytes, let target):
                let destination = target.port - 1
                guard destination >= 0, destination < nodes.count else { continue }
                bytesSent += bytes.count
                if bytes.count > 3 { bytesByKind[bytes[3], default: 0] += bytes.count; packetsByKind[bytes[3], default: 0] += 1 }
                if isCut(index, destination) || Double.random(in: 0..<1, using: &rng) < configuration.loss {
                    lost += 1
                    continue
                }
                let latency = Int64.random(in: configuration.latencyMillis, using: &rng)
                schedule(.deliver(from: index, to: destination, bytes: bytes), at: now + latency)
                if Double.random(in: 0..<1, using: &rng) < configuration.duplication {
                    let again = Int64.random(in: configuration.latencyMillis, using: &rng)
                    schedule(.deliver(from: index, to: destination, bytes: bytes), at: now + again)
                }
            case .reply(let ticket, let decision):
                guard let task = nodes[index].tickets.removeValue(forKey: ticket) else { continue }
                if decision.granted {
                    grantDetails[upstreamWindow(now), default: [:]][decision.detail?.description ?? "-", default: 0] += 1
                    if let onGrant, let fields = pacingFields(of: index, key: QuotaKey(service: service, account: "default")) {
                        onGrant("t=\(Double(now - start) / 1000) n\(index) \(tasks[task].priority) \(decision.detail?.description ?? "-") waited=\(now - tasks[task].created) " + fields)
                    }
                    tasks[task].inFlight = true
                    schedule(.upstream(task: task), at: now + configuration.upstreamLatencyMillis / 2)
                } else {
                    denials += 1
                    denialDetails[upstreamWindow(now), default: [:]]["\(tasks[task].priority)/\(decision.reason?.rawValue ?? "-")/\(decision.detail?.description ?? "-")", default: 0] += 1
                    let retryAt = (decision.retryAt ?? (now + nodes[index].skew + 1000)) - nodes[index].skew
                    if let onUrgentDenial, tasks[task].priority == .urgent {
                        onUrgentDenial("t=\(Double(now - start) / 1000) n\(index) task\(task) waited=\(now - tasks[task].created) "
                            + "\(decision.reason?.rawValue ?? "-")/\(decision.detail?.description ?? "-") retry_in=\(retryAt - now)")
                    }
                    let jitter = Int64.random(in: 0...20, using: &rng)
                    schedule(.attempt(task: task), at: max(now + 1, retryAt + jitter))
                }
            case .persist:
                nodes[index].persisted = nodes[index].instance?.persistedState()
            case .event(let event):
                if case .recordAccepted = event { recordsAccepted += 1 }
                if case .recordStale = event { recordsStale += 1 }
                if case .peerGraylisted(let origin, _) = event {
                    if origin == nodes[0].key.publicKey && configuration.liar != nil { liarGraylistings += 1 } else { honestGraylistings += 1 }
                }
            case .wake(let at):
                let global = at - nodes[index].skew
                if global < nodes[index].scheduledWake {
                    nodes[index].scheduledWake = global
                    schedule(.wake(node: index), at: global)
                }
            }
        }
    }

    func isCut(_ a: Int, _ b: Int) -> Bool {
        guard let plan = configuration.partition else { return false }
        let from = start + Int64(plan.start * 1000)
        let to = start + Int64(plan.end * 1000)
        guard now >= from && now < to else { return false }
        let boundary = Int(Double(nodes.count) * plan.fraction)
        return (a < boundary) != (b < boundary)
    }

    // MARK: Upstream

    func upstreamWindow(_ time: Int64) -> Int64 { time / configuration.windowMillis }

    /// Whether a task made at `created` and served at `done` waited while the mesh had a right it could
    /// spend: made outside its window's closing edge and opening lead (where no node spends), and served
    /// before the window's last right was spent (a window never spent in full had rights left all along).
    func rightsExisted(whileWaiting created: Int64, until done: Int64) -> Bool {
        let length = configuration.windowMillis
        let edge = min(max(50, configuration.clockSkewMillis + configuration.upstreamLatencyMillis), length / 20)
        let lead = min(configuration.clockSkewMillis, length / 20)
        let window = upstreamWindow(created)
        let offset = created - window * length
        guard offset >= lead, offset < length - edge else { return false }
        if let spentAt = windowSpentAt[window], spentAt <= done { return false }
        return true
    }

    mutating func callUpstream(_ task: Int) {
        upstreamCalls += 1
        upstreamCallTimes.append(now)
        let window = upstreamWindow(now)
        if backlogAtWindowStart[window] == nil { backlogAtWindowStart[window] = pending }
        windowSent[window, default: 0] += 1
        if windowSent[window, default: 0] == Int(configuration.limit) { windowSpentAt[window] = now }
        let limit = configuration.limit
        var headers: [(name: String, value: String)] = [("date", Self.httpDate(now))]
        var status = 200
        switch configuration.upstream {
        case .fixedWindow:
            let accepted = windowAccepted[window, default: 0]
            let windowEnd = (window + 1) * configuration.windowMillis
            if accepted < limit {
                windowAccepted[window] = accepted + 1
            } else {
                status = 429
                headers.append(("retry-after", "\(max(1, (windowEnd - now + 999) / 1000))"))
            }
            headers += [
                ("x-ratelimit-limit", "\(limit)"),
                ("x-ratelimit-remaining", "\(max(0, limit - Int64(windowAccepted[window, default: 0])))"),
                ("x-ratelimit-reset", "\((windowEnd + 999) / 1000)"),
            ]
        case .tokenBucket:
            let refill = Double(limit) / Double(configuration.windowMillis)
            tokens = min(Double(limit), tokens + Double(now - tokensAt) * refill)
            tokensAt = now
            if tokens >= 1 {
                tokens -= 1
                windowAccepted[window, default: 0] += 1
            } else {
                status = 429
                headers.append(("retry-after-ms", "\(Int64(((1 - tokens) / refill).rounded(.up)))"))
            }
            headers += [
                ("ratelimit-policy", "\"default\";q=\(limit);w=\(configuration.windowMillis / 1000)"),
                ("ratelimit", "\"default\";r=\(Int64(tokens));t=\(Int64(((Double(limit) - tokens) / refill / 1000).rounded(.up)))"),
            ]
        }
        let second = (now - start) / 1000
        callsPerSecond[second, default: (0, 0)].sent += 1
        if status == 429 {
            upstream429s += 1
            callsPerSecond[second, default: (0, 0)].rejected += 1
        }
        schedule(.response(task: task, status: status, headers: headers), at: now + configuration.upstreamLatencyMillis / 2)
    }

    // MARK: Convergence probes

    mutating func startProbe(_ index: Int) {
        let liveNodes = nodes.indices.filter { nodes[$0].isUp }
        guard !liveNodes.isEmpty else { return }
        let origin = liveNodes[Int.random(in: 0..<liveNodes.count, using: &rng)]
        let key = QuotaKey(service: "probe\(index)", account: "default")
        drive(origin) { instance, nodeTime in
            var dimension = RateLimitDimension(name: "requests")
            dimension.limit = 1000
            dimension.remaining = 500
            dimension.resetAt = nodeTime + 3_600_000
            var report = RateLimitReport()
            report.dimensions = [dimension]
            return instance.observe(service: key.service, account: nil, status: 200, report: report, now: nodeTime).directives
        }
        probes.append(Probe(origin: origin, key: key))
    }

    mutating func checkProbes() {
        for index in probes.indices where probes[index].convergedAt == nil {
            let probe = probes[index]
            let originKey = nodes[probe.origin].key.publicKey
            let nodes = self.nodes
            let held = { (node: Int) -> RecordVersion? in
                nodes[node].box.inspect { $0.heldVersion(origin: originKey, slot: .quota(probe.key)) } ?? nil
            }
            guard let version = held(probe.origin) else { continue }
            if probe.signedAt == nil { probes[index].signedAt = now }
            let holds = { (other: Int) -> Bool in
                other == probe.origin || !nodes[other].isUp || (held(other).map { $0 >= version } ?? false)
            }
            if let onProbeCheck {
                let missing = nodes.indices.count { !holds($0) }
                onProbeCheck("t=\(Double(now - start) / 1000) probe \(index) version \(version) missing \(missing)")
                if missing == 0 { probes[index].convergedAt = now }
            } else if nodes.indices.allSatisfy(holds) {
                // Stops at the first node that misses it: this runs every round for every spreading probe.
                probes[index].convergedAt = now
            }
        }
    }

    // MARK: Report

    func report(wallSeconds: Double) -> SimulationReport {
        let interval = Double(configuration.gossipIntervalMillis)
        let rounds = probes.compactMap { probe -> Double? in
            guard let signed = probe.signedAt, let converged = probe.convergedAt else { return nil }
            return Double(converged - signed) / interval
        }.sorted()
        let n = Double(configuration.nodes)
        let fanout = Double(configuration.fanout)
        let theory = n > 1 ? log(n) / log(fanout) + log(n) / fanout : 0

        let firstWindow = upstreamWindow(start) + 1
        let lastWindow = upstreamWindow(endTime) - 1
        var worst = 0.0
        var worstPartition: Double?
        var offered = 0.0
        var accepted = 0.0
        var windowRows: [(sent: Int, accepted: Int, offered: Int)] = []
        if lastWindow >= firstWindow {
            for window in firstWindow...lastWindow {
                windowRows.append((
                    windowSent[window, default: 0], windowAccepted[window, default: 0],
                    min(backlogAtWindowStart[window, default: 0] + windowCreated[window, default: 0], Int(configuration.limit))
                ))
                let sent = Double(windowSent[window, default: 0]) / Double(configuration.limit)
                if overlapsPartition(window) {
                    worstPartition = max(worstPartition ?? 0, sent)
                } else {
                    worst = max(worst, sent)
                }
                let demandInWindow = Double(backlogAtWindowStart[window, default: 0] + windowCreated[window, default: 0])
                offered += min(demandInWindow, Double(configuration.limit))
                accepted += Double(windowAccepted[window, default: 0])
            }
        }
        var perPriority: [Priority: (created: Int, succeeded: Int)] = [:]
        var urgentWaits: [Double] = []
        var urgentWaitsWhileRightsLeft: [Double] = []
        var urgentWaitsWhereRightsExist: [Double] = []
        let cutoff = endTime - 2 * configuration.windowMillis
        var urgentCounted = 0
        var urgentSucceeded = 0
        // Fairness counts tasks created before the last two windows, as urgent success does: a task made
        // at the run's end had no time to succeed, and at a node with little demand it would be most of it.
        var createdBeforeCutoff = [Int](repeating: 0, count: nodes.count)
        var succeededBeforeCutoff = [Int](repeating: 0, count: nodes.count)
        for task in tasks {
            if task.created < cutoff {
                createdBeforeCutoff[task.node] += 1
                if task.succeeded != nil { succeededBeforeCutoff[task.node] += 1 }
            }
            var entry = perPriority[task.priority] ?? (0, 0)
            entry.created += 1
            if task.succeeded != nil { entry.succeeded += 1 }
            perPriority[task.priority] = entry
            if task.priority == .urgent && task.created < cutoff {
                urgentCounted += 1
                if let done = task.succeeded {
                    urgentSucceeded += 1
                    urgentWaits.append(Double(done - task.created))
                    if windowSent[upstreamWindow(task.created), default: 0] < Int(configuration.limit) {
                        urgentWaitsWhileRightsLeft.append(Double(done - task.created))
                    }
                    if rightsExisted(whileWaiting: task.created, until: done) {
                        urgentWaitsWhereRightsExist.append(Double(done - task.created))
                    }
                }
            }
        }
        urgentWaits.sort()
        urgentWaitsWhileRightsLeft.sort()
        urgentWaitsWhereRightsExist.sort()
        let seconds = configuration.seconds
        let fairness = Self.maxMinFairness(successes: succeededBeforeCutoff, demands: createdBeforeCutoff)
        var report = SimulationReport(
            nodes: configuration.nodes, seconds: seconds, seed: configuration.seed,
            convergenceRoundsP50: Self.percentile(rounds, 0.5), convergenceRoundsP99: Self.percentile(rounds, 0.99),
            probesConverged: rounds.count, probes: probes.count, theoreticalRounds: theory,
            maxAdmittedRatio: worst, partitionMaxAdmittedRatio: worstPartition,
            utilization: offered > 0 ? accepted / offered : 1,
            jainIndex: FairShare.jainIndex(nodes.map { Double($0.successes) }),
            maxMinIndex: fairness.index, maxMinWorstRatio: fairness.worst,
            urgentSuccessRatio: urgentCounted > 0 ? Double(urgentSucceeded) / Double(urgentCounted) : 1,
            urgentWaitP99Millis: Self.percentile(urgentWaits, 0.99), tasks: perPriority,
            upstreamCalls: upstreamCalls, upstream429s: upstream429s, denials: denials,
            bytesPerNodePerSecond: Double(bytesSent) / n / seconds,
            verificationsPerNodePerSecond: Double(simulated?.verifications ?? 0) / n / seconds,
            datagramsDelivered: delivered, datagramsLost: lost, wallSeconds: wallSeconds, windows: windowRows)
        report.urgentWaitP99WhileRightsLeftMillis = Self.percentile(urgentWaitsWhileRightsLeft, 0.99)
        report.urgentWaitP99WhereRightsExistMillis = urgentWaitsWhereRightsExist.isEmpty
            ? nil : Self.percentile(urgentWaitsWhereRightsExist, 0.99)
        report.liarGraylistings = liarGraylistings
        report.honestGraylistings = honestGraylistings
        report.bucketDepthRatio = Self.bucketDepth(
            upstreamCallTimes, refillPerMillisecond: Double(configuration.limit) / Double(configuration.windowMillis))
            / Double(configuration.limit)
        return report
    }

    func overlapsPartition(_ window: Int64) -> Bool {
        guard let plan = configuration.partition else { return false }
        let windowStart = window * configuration.windowMillis
        let windowEnd = windowStart + configuration.windowMillis
        let from = start + Int64(plan.start * 1000)
        // A window just after the heal still pays for what each side spent.
        let to = start + Int64(plan.end * 1000) + configuration.windowMillis
        return windowStart < to && windowEnd > from
    }

    /// Each node's successful calls against its max-min fair share of them all (the calls water-filled
    /// over the nodes' demands, in tasks): Jain's index over the ratios, and the least ratio. Nodes with
    /// no share (no demand) are left out; with none at all both are 1.
    /// The smallest bucket refilled at `refillPerMillisecond` that admits calls at `times` (sorted): the
    /// most calls any stretch holds beyond what refilled during it, max over i ≥ j of
    /// (i − j + 1) − refill × (tᵢ − tⱼ).
    static func bucketDepth(_ times: [Int64], refillPerMillisecond refill: Double) -> Double {
        var deepest = 0.0
        var lowest = Double.infinity
        for (index, time) in times.enumerated() {
            lowest = min(lowest, Double(index) - refill * Double(time))
            deepest = max(deepest, Double(index + 1) - refill * Double(time) - lowest)
        }
        return deepest
    }

    static func maxMinFairness(successes: [Int], demands: [Int]) -> (index: Double, worst: Double) {
        let shares = FairShare.maxMin(capacity: Double(successes.reduce(0, +)), needs: demands.map(Double.init))
        let ratios = zip(successes, shares).compactMap { success, share in share > 0 ? Double(success) / share : nil }
        guard !ratios.isEmpty else { return (1, 1) }
        return (FairShare.jainIndex(ratios), ratios.min() ?? 1)
    }

    static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let rank = min(sorted.count - 1, Int((q * Double(sorted.count)).rounded(.up)) - 1)
        return sorted[max(0, rank)]
    }

    /// IMF-fixdate for a Unix-ms time, as the upstream's `Date` header.
    static func httpDate(_ millis: Int64) -> String { HTTPDate.imfFixdate(millis) }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension MeshInstance {
    /// Runs `body` on this instance where it is stored, without copying it: lets the simulator change
    /// an instance in place, and read one.
    fileprivate mutating func inPlace<Value>(_ body: (inout MeshInstance) -> Value) -> Value {
        body(&self)
    }
}

/// A simulated node's instance, by reference: see `Simulator.Node.box`.
final class InstanceBox {
    var instance: MeshInstance?

    init(_ instance: MeshInstance?) { self.instance = instance }

    /// What `body` reads off the instance where it is stored (`nil` while the node is down). Reading
    /// through `instance` instead copies the whole instance (a retain and a release of each of its
    /// tables), which the convergence check did for every node every round.
    func inspect<Value>(_ body: (MeshInstance) -> Value) -> Value? {
        instance?.inPlace { body($0) }
    }
}

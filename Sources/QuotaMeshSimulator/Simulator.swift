import QuotaMeshCore
import QuotaMeshCrypto

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
        /// When the node last granted it (the grant of a task that succeeded is the one it succeeded with).
        var granted: Int64?
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
            keys.enumerated().map {
                PeerInfo(
                    name: "n\($0.offset)", key: $0.element.publicKey, endpoint: endpoint($0.offset),
                    weight: configuration.weights(of: $0.offset).vouched)
            })
        self.directory = directory
        let mesh = meshConfiguration()
        for index in 0..<count {
            let skew = configuration.clockSkewMillis > 0
                ? Int64.random(in: -configuration.clockSkewMillis...configuration.clockSkewMillis, using: &rng) : 0
            // A liar makes no calls of its own: what is measured is what its statements do to the others.
            let weight = configuration.liar != nil && index == 0 ? 0 : configuration.skewedDemand ? 1 / Double(index + 1) : 1
            var own = mesh
            own.weight = configuration.weights(of: index).claimed
            let instance = MeshInstance(
                identity: keys[index], configuration: own, directory: directory, restored: nil, now: start + skew,
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
        if let idle = configuration.idle, idle.node == index, now >= start + Int64(Double(endTime - start) * idle.at) {
            return 0
        }
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
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension MeshInstance {
    /// Runs `body` on this instance where it is stored, without copying it: lets the simulator change
    /// an instance in place, and read one.
    mutating func inPlace<Value>(_ body: (inout MeshInstance) -> Value) -> Value {
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

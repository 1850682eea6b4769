import Foundation
import Logging
import QuotaMeshClient
import QuotaMeshCore
import QuotaMeshCrypto
import QuotaMeshNode
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `quotamesh demo`: a local mesh of real nodes on loopback, agents of three priorities calling a stand-in
/// upstream through them, and the merged quota of every node side by side at the end.
///
/// Everything is real except the upstream: each node has its own identity, trust store and state folder
/// in a temporary folder, gossips signed records over UDP, and serves its agents over its loopback HTTP
/// API; the agents use ``QuotaMeshClient`` exactly as an agent would. The folder is removed at the end.
public enum Demo {
    /// What to run.
    public struct Options: Sendable {
        /// Nodes in the mesh (each with its agents).
        public var nodes = 3
        /// How long the agents create tasks.
        public var seconds = 20
        /// The upstream's limit per window.
        public var limit = 60
        /// The upstream's window (seconds).
        public var windowSeconds = 10
        /// Demand as a multiple of the limit.
        public var demand = 2.0
        /// Keep the temporary folder (identities, peers, state, logs) instead of removing it.
        public var keep = false

        /// The defaults: 3 nodes, 20 s, 60 calls per 10 s, demand twice the limit.
        public init() {}

        /// The line the demo starts with, saying what it runs.
        public var header: String {
            "demo: \(nodes) nodes on 127.0.0.1, upstream limit \(limit) per \(windowSeconds) s, demand \(demand)× for \(seconds) s"
        }
    }

    /// The outcome, as printed (and as `--json` prints it).
    public struct Report: Sendable, Encodable {
        /// Each node's merged view of the demo service at the end.
        public var nodes: [NodeView]
        /// Whether every node ended with the same view (remaining, consumption, reset, breaker).
        public var agree: Bool
        /// Calls the upstream answered, and how many of them were 429.
        public var upstreamCalls: Int
        /// Upstream answers 429.
        public var upstream429s: Int
        /// The most calls the upstream admitted in one window, and its limit.
        public var maxAdmittedPerWindow: Int
        /// The upstream's limit per window.
        public var limit: Int
        /// Calls the upstream admitted in the window the nodes' views describe: what their
        /// `consumed_global` must equal.
        public var upstreamAdmittedInViewedWindow: Int?
        /// Tasks by priority (urgent, normal, low).
        public var priorities: [PriorityOutcome]
        /// Requests to a node that got no answer (transport errors); 0 when every agent was answered.
        public var unanswered: Int
        /// Grants the agents received: each is one upstream call, and no call is made without one.
        public var grants: Int
        /// The temporary folder, and whether it was removed.
        public var folder: String
        /// Whether the folder was removed.
        public var removed: Bool

        enum CodingKeys: String, CodingKey {
            case nodes, agree, limit, priorities, unanswered, folder, removed, grants
            case upstreamCalls = "upstream_calls"
            case upstream429s = "upstream_429s"
            case maxAdmittedPerWindow = "max_admitted_per_window"
            case upstreamAdmittedInViewedWindow = "upstream_admitted_in_viewed_window"
        }
    }

    /// One node's view of the demo service.
    public struct NodeView: Sendable, Encodable, Equatable {
        /// The node's name (`node1`…).
        public var name: String
        /// Calls left in the window, if known.
        public var remaining: Int64?
        /// The limit, if known.
        public var limit: Int64?
        /// When the window resets (Unix ms).
        public var resetAtMillis: Int64?
        /// Consumed in the window by every node.
        public var consumedGlobal: Int64
        /// Consumed in the window by this node.
        public var consumedLocal: Int64
        /// The shared breaker's state.
        public var breaker: String
        /// Peers live, and known.
        public var peersLive: Int
        /// Peers in the trust store.
        public var peersKnown: Int

        enum CodingKeys: String, CodingKey {
            case name, remaining, limit, breaker
            case resetAtMillis = "reset_at_ms"
            case consumedGlobal = "consumed_global"
            case consumedLocal = "consumed_local"
            case peersLive = "peers_live"
            case peersKnown = "peers_known"
        }

        /// The part every node must agree on (not the local consumption, nor the name).
        var shared: [Int64?] { [remaining, limit, resetAtMillis, consumedGlobal, breaker == "closed" ? 0 : 1] }
    }

    /// How the tasks of one priority fared.
    public struct PriorityOutcome: Sendable, Encodable {
        /// `urgent`, `normal` or `low`.
        public var priority: String
        /// Tasks created (each needs one successful upstream call).
        public var tasks: Int
        /// Tasks that got their successful call before the demo ended.
        public var succeeded: Int
        /// Tasks told at least once "not now, retry at T".
        public var toldToWait: Int
        /// Time from a task's creation to its successful call: median and 99th percentile (ms).
        public var waitP50Millis: Int?
        /// The 99th percentile.
        public var waitP99Millis: Int?

        enum CodingKeys: String, CodingKey {
            case priority, tasks, succeeded
            case toldToWait = "told_to_wait"
            case waitP50Millis = "wait_p50_ms"
            case waitP99Millis = "wait_p99_ms"
        }
    }

    /// How far the agents are, about every second.
    public struct Progress: Sendable {
        /// Seconds run so far.
        public var elapsedSeconds: Int
        /// Seconds the agents run in all.
        public var totalSeconds: Int
        /// Tasks succeeded and created so far, by priority.
        public var summary: String
    }

    /// The service name the demo configures on every node.
    public static let service = "demo-api"

    /// Runs the demo; `progress` is called about every second while the agents run.
    public static func run(_ options: Options, logger: Logger, progress: @escaping @Sendable (Progress) -> Void) async throws
        -> Report
    {
        guard options.nodes >= 1, options.nodes <= 20 else { throw DemoError("--nodes must be between 1 and 20") }
        guard options.seconds >= 1, options.seconds <= 3600 else { throw DemoError("--seconds must be between 1 and 3600") }
        let folder = FileManager.default.temporaryDirectory
            .appendingPathComponent("quotamesh-demo-\(UUID().uuidString.prefix(8).lowercased())").path
        let upstream = StandInUpstream(limit: options.limit, windowSeconds: options.windowSeconds)
        let upstreamAddress = try await upstream.start(logger: logger)
        var nodes: [EmbeddedNode] = []
        let report: Report
        do {
            nodes = try await startMesh(options, folder: folder, logger: logger)
            let tally = try await runAgents(options, nodes: nodes, upstream: upstreamAddress, progress: progress)
            // Agents stopped: give gossip a moment to settle, then read every node's view.
            let views = try await settledViews(nodes)
            let answered = upstream.answered
            report = Report(
                nodes: views, agree: Set(views.map(\.shared)).count == 1, upstreamCalls: answered.calls,
                upstream429s: answered.rejected, maxAdmittedPerWindow: answered.admittedPerWindow.values.max() ?? 0,
                limit: options.limit,
                upstreamAdmittedInViewedWindow: views.first?.resetAtMillis.map { reset in
                    answered.admittedPerWindow[reset / 1000 - Int64(options.windowSeconds), default: 0]
                },
                priorities: tally.outcomes(), unanswered: tally.unanswered, grants: tally.grants, folder: folder,
                removed: false)
        } catch {
            await stopAll(nodes)
            await upstream.stop()
            if !options.keep { try? FileManager.default.removeItem(atPath: folder) }
            throw error
        }
        await stopAll(nodes)
        await upstream.stop()
        var final = report
        final.removed = !options.keep && (try? FileManager.default.removeItem(atPath: folder)) != nil
        return final
    }

    /// Stops every node at once, each saving its state.
    static func stopAll(_ nodes: [EmbeddedNode]) async {
        await withTaskGroup(of: Void.self) { group in
            for node in nodes { group.addTask { try? await node.stop() } }
        }
    }

    /// Makes `options.nodes` identities and trust stores in `folder`, starts a node for each, and has every
    /// node trust every other.
    static func startMesh(_ options: Options, folder: String, logger: Logger) async throws -> [EmbeddedNode] {
        var nodes: [EmbeddedNode] = []
        var policy = ServicePolicy()
        policy.limit = Int64(options.limit)
        policy.windowMillis = Int64(options.windowSeconds) * 1000
        for index in 1...options.nodes {
            let directory = folder + "/node\(index)"
            try FileManager.default.createDirectory(atPath: directory + "/Peers", withIntermediateDirectories: true)
            var configuration = NodeConfiguration()
            configuration.gossip = Endpoint(host: "127.0.0.1", port: 0)
            configuration.api = Endpoint(host: "127.0.0.1", port: 0)
            configuration.identityPath = directory + "/identity"
            configuration.peersDirectory = directory + "/Peers"
            configuration.stateDirectory = directory + "/state"
            configuration.mesh.services = [service: policy]
            var nodeLogger = logger
            nodeLogger[metadataKey: "node"] = "node\(index)"
            nodes.append(try await EmbeddedNode.start(configuration, logger: nodeLogger))
        }
        // Each node vouches for every other: a peer file in its trust store, as `quotamesh peer add` writes.
        for (index, node) in nodes.enumerated() {
            let store = TrustStore(directory: folder + "/node\(index + 1)/Peers")
            var peers: [PeerInfo] = []
            for (otherIndex, other) in nodes.enumerated() where otherIndex != index {
                let peer = PeerInfo(
                    name: "node\(otherIndex + 1)", key: try VerifyingKey(base64: other.publicKey),
                    endpoint: Endpoint(parsing: other.gossipAddress))
                try store.add(peer)
                peers.append(peer)
            }
            await node.node.replacePeers(peers)
        }
        return nodes
    }

    /// Drives the agents: per node one agent of each priority, together `demand ×` the limit, each task
    /// acquiring, calling the upstream when granted, and reporting the answer.
    static func runAgents(
        _ options: Options, nodes: [EmbeddedNode], upstream: String, progress: @escaping @Sendable (Progress) -> Void
    ) async throws -> AgentTally {
        let tally = AgentTally()
        let configuration = URLSessionConfiguration.ephemeral
        // Waiting acquires hold a connection each; the default of a few per host would queue urgent work
        // behind them in the client, not in the node.
        configuration.httpMaximumConnectionsPerHost = 512
        let session = URLSession(configuration: configuration)
        let perSecond = options.demand * Double(options.limit) / Double(options.windowSeconds)
        let shares: [(QuotaMeshClient.Priority, Double)] = [(.urgent, 0.1), (.normal, 0.5), (.low, 0.4)]
        let clock = ContinuousClock()
        let end = clock.now + .seconds(options.seconds)
        let upstreamURL = URL(string: "http://\(upstream)/call")!
        try await withThrowingTaskGroup(of: Void.self) { group in
            for node in nodes {
                let client = QuotaMeshClient(endpoint: URL(string: "http://\(node.apiAddress)"), session: session)
                for (priority, share) in shares {
                    let rate = perSecond * share / Double(nodes.count)
                    group.addTask {
                        try await agent(
                            priority: priority, rate: rate, until: end, client: client, session: session,
                            upstream: upstreamURL, tally: tally)
                    }
                }
            }
            group.addTask {
                let started = clock.now
                while clock.now < end {
                    try await Task.sleep(for: .seconds(1))
                    let elapsed = min(options.seconds, Int((clock.now - started).components.seconds))
                    progress(Progress(elapsedSeconds: elapsed, totalSeconds: options.seconds, summary: tally.summary))
                }
            }
            try await group.waitForAll()
        }
        session.invalidateAndCancel()
        return tally
    }

    /// One agent: creates tasks at `rate` per second (evenly spaced, with jitter) until `end`, and runs each.
    static func agent(
        priority: QuotaMeshClient.Priority, rate: Double, until end: ContinuousClock.Instant, client: QuotaMeshClient,
        session: URLSession, upstream: URL, tally: AgentTally
    ) async throws {
        guard rate > 0 else { return }
        let clock = ContinuousClock()
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            while clock.now < end {
                tasks.addTask {
                    await runTask(priority: priority, until: end, client: client, session: session, upstream: upstream, tally: tally)
                }
                let gap = Double.random(in: 0.5...1.5) / rate
                try await Task.sleep(for: .milliseconds(Int64(gap * 1000)))
            }
            try await tasks.waitForAll()
        }
    }

    /// One task: one upstream call that must succeed, made only when the node grants it.
    static func runTask(
        priority: QuotaMeshClient.Priority, until end: ContinuousClock.Instant, client: QuotaMeshClient,
        session: URLSession, upstream: URL, tally: AgentTally
    ) async {
        let clock = ContinuousClock()
        let created = clock.now
        tally.created(priority)
        var toldToWait = false
        while clock.now < end {
            let decision: QuotaMeshClient.Decision
            do {
                decision = try await client.acquire(service: service, priority: priority, wait: .seconds(1))
            } catch {
                tally.unansweredRequest()
                try? await Task.sleep(for: .milliseconds(200))
                continue
            }
            guard decision.granted else {
                if !toldToWait { tally.toldToWait(priority) }
                toldToWait = true
                let pause = Duration.milliseconds(max(10, decision.retryAfterMillis ?? 1000))
                guard clock.now + pause < end else { return }
                try? await Task.sleep(for: pause)
                continue
            }
            tally.granted()
            var request = URLRequest(url: upstream, timeoutInterval: 10)
            request.httpMethod = "POST"
            guard let (_, response) = try? await session.data(for: request), let http = response as? HTTPURLResponse else {
                tally.unansweredRequest()
                continue
            }
            do {
                try await client.observe(
                    service: service, account: decision.account, status: http.statusCode,
                    headers: QuotaMeshClient.headers(of: http))
            } catch {
                tally.unansweredRequest()
            }
            if http.statusCode == 200 {
                tally.succeeded(priority, after: clock.now - created)
                return
            }
        }
    }

    /// Every node's view of the demo service once they agree (or after 5 s, as they are).
    static func settledViews(_ nodes: [EmbeddedNode]) async throws -> [NodeView] {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(5)
        while true {
            var views: [NodeView] = []
            for (index, node) in nodes.enumerated() {
                guard let view = await node.node.quotas(service: service).first else { continue }
                views.append(
                    NodeView(
                        name: "node\(index + 1)", remaining: view.remaining, limit: view.limit,
                        resetAtMillis: view.resetAt, consumedGlobal: Int64(view.consumedGlobal),
                        consumedLocal: Int64(view.consumedLocal),
                        breaker: view.breakerState.rawValue, peersLive: view.peersLive, peersKnown: view.peersKnown))
            }
            if Set(views.map(\.shared)).count == 1 || clock.now >= deadline { return views }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}

/// What the agents did, counted as they go.
final class AgentTally: Sendable {
    private struct Counts {
        var created = 0, succeeded = 0, toldToWait = 0
        var waits: [Int] = []
    }

    private let counts = Mutex<[String: Counts]>([:])
    private let unansweredCount = Mutex(0)
    private let grantCount = Mutex(0)

    func created(_ priority: QuotaMeshClient.Priority) { counts.withLock { $0[priority.rawValue, default: Counts()].created += 1 } }
    func toldToWait(_ priority: QuotaMeshClient.Priority) { counts.withLock { $0[priority.rawValue, default: Counts()].toldToWait += 1 } }
    func unansweredRequest() { unansweredCount.withLock { $0 += 1 } }

    func succeeded(_ priority: QuotaMeshClient.Priority, after wait: Duration) {
        let millis = Int(wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000)
        counts.withLock {
            $0[priority.rawValue, default: Counts()].succeeded += 1
            $0[priority.rawValue, default: Counts()].waits.append(millis)
        }
    }

    var unanswered: Int { unansweredCount.withLock { $0 } }
    var grants: Int { grantCount.withLock { $0 } }
    func granted() { grantCount.withLock { $0 += 1 } }

    /// One line for the progress display.
    var summary: String {
        counts.withLock { counts in
            ["urgent", "normal", "low"].map { name in
                let c = counts[name] ?? Counts()
                return "\(name) \(c.succeeded)/\(c.created)"
            }.joined(separator: " · ")
        } + " succeeded/created"
    }

    func outcomes() -> [Demo.PriorityOutcome] {
        counts.withLock { counts in
            ["urgent", "normal", "low"].map { name in
                let c = counts[name] ?? Counts()
                let sorted = c.waits.sorted()
                func percentile(_ p: Double) -> Int? {
                    sorted.isEmpty ? nil : sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * p).rounded()))]
                }
                return Demo.PriorityOutcome(
                    priority: name, tasks: c.created, succeeded: c.succeeded, toldToWait: c.toldToWait,
                    waitP50Millis: percentile(0.5), waitP99Millis: percentile(0.99))
            }
        }
    }
}

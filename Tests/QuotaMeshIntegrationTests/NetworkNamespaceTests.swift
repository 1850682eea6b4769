import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runs a command to completion; throws with its output when it fails.
@discardableResult
func shell(_ arguments: [String]) async throws -> String {
    let result = try await runToCompletion("/usr/bin/env", arguments, timeout: .seconds(60))
    guard result.status == 0 else {
        throw TestFailure("`\(arguments.joined(separator: " "))` exited \(result.status): \(result.output)")
    }
    return result.output
}

/// Whether this process may make network namespaces (root with CAP_NET_ADMIN and iproute2).
func canMakeNamespaces() async -> Bool {
    guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") else { return false }
    let name = "qmprobe\(getpid() % 100_000)"
    guard (try? await shell(["ip", "netns", "add", name])) != nil else { return false }
    deleteNamespace(name)
    return true
}

/// Deletes a named network namespace as `ip netns del` does (detach its mount, remove its file); the
/// namespace itself ends with its last process. Synchronous, for a test's `defer`.
func deleteNamespace(_ name: String) {
    let path = "/run/netns/" + name
    _ = umount2(path, Int32(MNT_DETACH))
    _ = unlink(path)
}

/// Five nodes, each in a network namespace of its own, joined by veth pairs to a bridge in a hub
/// namespace. A partition moves one side's ports to a second bridge; `tc netem` adds delay, jitter (so
/// reordering) and loss on every node's link. The test's own traffic never leaves these namespaces.
final class NamespaceMesh: @unchecked Sendable {
    // Used from one test's task only.
    let tag = String(format: "%04x", UInt32(getpid() % 65_536))
    let count: Int
    let root = makeRoot()
    var nodes: [NodeProcess] = []
    var processes: [ChildProcess?] = []
    /// Whether `tc netem` could be applied (the kernel module may be missing in a container).
    var netem = true

    init(count: Int) { self.count = count }

    var hub: String { "qm\(tag)h" }
    func namespace(_ index: Int) -> String { "qm\(tag)n\(index)" }
    func address(_ index: Int) -> String { "10.77.\(getpid() % 200).\(index + 1)" }
    func nodeEnd(_ index: Int) -> String { "qm\(tag)a\(index)" }
    func hubEnd(_ index: Int) -> String { "qm\(tag)b\(index)" }

    /// Builds the namespaces and the nodes' folders with `config`; with `vouched`, every node's trust store
    /// lists every other (`peer add`), and every node is started.
    func build(config: String, vouched: Bool = true) async throws {
        try await shell(["ip", "netns", "add", hub])
        for bridge in ["br0", "br1"] {
            try await shell(["ip", "-n", hub, "link", "add", bridge, "type", "bridge"])
            try await shell(["ip", "-n", hub, "link", "set", bridge, "up"])
        }
        for index in 0..<count {
            let ns = namespace(index)
            try await shell(["ip", "netns", "add", ns])
            try await shell(["ip", "link", "add", nodeEnd(index), "type", "veth", "peer", "name", hubEnd(index)])
            try await shell(["ip", "link", "set", nodeEnd(index), "netns", ns])
            try await shell(["ip", "link", "set", hubEnd(index), "netns", hub])
            try await shell(["ip", "-n", ns, "addr", "add", "\(address(index))/24", "dev", nodeEnd(index)])
            try await shell(["ip", "-n", ns, "link", "set", nodeEnd(index), "up"])
            try await shell(["ip", "-n", ns, "link", "set", "lo", "up"])
            try await shell(["ip", "-n", hub, "link", "set", hubEnd(index), "master", "br0"])
            try await shell(["ip", "-n", hub, "link", "set", hubEnd(index), "up"])
            // Delay with jitter (so reordering) and loss, where the kernel has netem.
            if netem {
                netem = (try? await shell(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", nodeEnd(index), "root",
                                            "netem", "delay", "5ms", "5ms", "loss", "5%"])) != nil
            }
        }
        for index in 0..<count { nodes.append(try await NodeProcess(name: "n\(index)", root: root)) }
        processes = Array(repeating: nil, count: count)
        for node in nodes { try node.writeConfig(config) }
        guard vouched else { return }
        for (index, node) in nodes.enumerated() {
            for (other, peer) in nodes.enumerated() where other != index {
                let added = try await runCLI(
                    ["peer", "add", peer.name, "--key", peer.publicKey, "--endpoint", "\(address(other)):9720"],
                    in: node.directory)
                guard added.status == 0 else { throw TestFailure("peer add: \(added.output)") }
            }
        }
        for index in 0..<count { try await start(index) }
    }

    func start(_ index: Int) async throws {
        processes[index] = try await ChildProcess.start(
            "/usr/sbin/ip",
            ["netns", "exec", namespace(index), try quotameshBinary(), "run", "--config", "config.json",
             "--gossip", "\(address(index)):9720", "--api", "127.0.0.1:9721"],
            in: nodes[index].directory, output: .append(nodes[index].logPath))
    }

    func kill(_ index: Int, signal: Int32) async {
        guard let child = processes[index], !child.hasExited else { return }
        child.signal(signal)
        if await !child.waitForExit(timeout: .seconds(30)) { await child.killAndWait() }
    }

    /// Runs a `quotamesh` command in node `index`'s folder, inside its namespace.
    func command(_ index: Int, _ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await runToCompletion(
            "/usr/sbin/ip", ["netns", "exec", namespace(index), try quotameshBinary()] + arguments,
            in: nodes[index].directory, timeout: .seconds(60))
    }

    /// Runs a client command against node `index`'s API, inside its namespace.
    func cli(_ index: Int, _ arguments: [String]) async throws -> (status: Int32, json: [String: Any]) {
        let result = try await runToCompletion(
            "/usr/sbin/ip",
            ["netns", "exec", namespace(index), try quotameshBinary()] + arguments + ["--api", "127.0.0.1:9721", "--json"],
            output: .captureStandardOutput, timeout: .seconds(60))
        return (result.status, (try? JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [String: Any] ?? [:])
    }

    func quota(_ index: Int) async throws -> [String: Any]? {
        let result = try await cli(index, ["quota", "api"])
        return result.status == 0 ? result.json : nil
    }

    /// Moves nodes in `side` to the second bridge (cut off from the rest), or back.
    func partition(_ side: [Int], cut: Bool) async throws {
        for index in side {
            try await shell(["ip", "-n", hub, "link", "set", hubEnd(index), "master", cut ? "br1" : "br0"])
        }
    }

    func waitUntil(_ what: String, timeout: Duration = .seconds(90), _ condition: () async throws -> Bool) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestFailure("timed out waiting for \(what)")
    }

    /// Kills the nodes and deletes the namespaces (their links and bridges go with them).
    func tearDown() {
        for child in processes { child?.signal(SIGKILL) }
        for index in 0..<count { deleteNamespace(namespace(index)) }
        deleteNamespace(hub)
    }
}

@Suite(.serialized, .timeLimit(.minutes(5))) struct NetworkNamespaceTests {
    static let limit = 60

    @Test(.enabled("needs root with CAP_NET_ADMIN and iproute2 to make network namespaces") { await canMakeNamespaces() })
    func aPartitionedFiveNodeMeshSpendsWithinTheLimitHealsAndForgetsNothingAcrossSigkill() async throws {
        let mesh = NamespaceMesh(count: 5)
        defer { mesh.tearDown() }
        try await mesh.build(config: """
            {"heartbeat_interval": "500ms", "liveness_timeout": "3s",
             "services": {"api": {"limit": \(Self.limit), "window": "60s", "burst": 1}}}
            """)
        if !mesh.netem { print("note: tc netem is unavailable in this kernel; links have no added delay or loss") }
        try await mesh.waitUntil("every node to see its four peers live") {
            try await (0..<5).asyncMap { index in
                ((try await mesh.quota(index))?["peers"] as? [String: Any])?["live"] as? Int == 4
            }.allSatisfy { $0 }
        }

        // Partition {0, 1} | {2, 3, 4}; every node spends what it may, and one is SIGKILLed mid-way and
        // restarted.
        try await mesh.partition([0, 1], cut: true)
        var grants: [(node: Int, window: Int64, sweep: Int)] = []
        // SIGKILL at a random point (printed, so a failure can be replayed with it).
        let killAt = Int.random(in: 2..<20)
        let victim = Int.random(in: 0..<5)
        print("partition: SIGKILL node \(victim) before sweep \(killAt), restart 4 sweeps later")
        for sweep in 0..<30 {
            if sweep == killAt { await mesh.kill(victim, signal: SIGKILL) }
            if sweep == killAt + 4 { try await mesh.start(victim) }
            for index in 0..<5 {
                let result = try await mesh.cli(index, ["acquire", "api", "--priority", "urgent"])
                if result.status == 0 {
                    // The window the grant was charged to (the view read after it may show the next one).
                    let window = try #require(result.json["window_end_ms"] as? Int, "\(result.json)")
                    grants.append((index, Int64(window), sweep))
                }
            }
        }
        try await mesh.partition([0, 1], cut: false)

        // Each side spends only the rights its members hold, so the two sides together never grant more
        // than the limit in a window. The SIGKILLed node resumes from its saved ledger: what it spent and
        // gave before the kill stays spent, whether or not its gossip had left (before rights, a window
        // could reach twice the limit here, plus the victim's grants around the kill).
        let byWindow = Dictionary(grouping: grants, by: \.window).mapValues(\.count)
        print("partition: admitted per window \(byWindow.sorted { $0.key < $1.key }.map(\.value)) (limit \(Self.limit)); "
            + "side {0,1}: \(grants.filter { $0.node < 2 }.count), side {2,3,4}: \(grants.filter { $0.node >= 2 }.count)")
        for (window, admitted) in byWindow {
            #expect(admitted <= Self.limit, "window ending \(window): \(admitted) admitted, limit \(Self.limit)")
        }
        #expect(!grants.isEmpty, "both sides spent")
        #expect(Set(grants.map(\.node)).count == 5, "every node, on both sides, was granted something")

        // Healed: every node converges on the same view; within the window of the last grants it counts
        // every grant, and the SIGKILLed node remembers its own.
        try await mesh.waitUntil("the five views to agree after the heal") {
            let views = try await (0..<5).asyncMap { try await mesh.quota($0) }
            let windows = Set(views.map { $0?["reset_at_ms"] as? Int ?? -1 })
            let globals = Set(views.map { ($0?["consumed"] as? [String: Any])?["global"] as? Int ?? -1 })
            guard windows.count == 1, globals.count == 1, let window = windows.first, let global = globals.first else {
                return false
            }
            // A window nobody was granted in counts nothing.
            return (byWindow[Int64(window)] ?? 0) == global
        }
        let view = try #require(try await mesh.quota(victim), "node \(victim) answers after its restart")
        let window = try #require(view["reset_at_ms"] as? Int)
        let own = grants.filter { $0.node == victim && $0.window == Int64(window) }.count
        let local = (view["consumed"] as? [String: Any])?["local"] as? Int ?? -1
        #expect(local >= own, "node \(victim) counts \(local) of its own \(own) grants in this window after SIGKILL")
    }

    @Test(.enabled("needs root with CAP_NET_ADMIN and iproute2 to make network namespaces") { await canMakeNamespaces() })
    func threeNodesThatJoinWithInvitationsOnlyConvergeAndEnforce() async throws {
        let mesh = NamespaceMesh(count: 3)
        defer { mesh.tearDown() }
        // Gossip on every address: `invite` and `join` must tell the address the others reach them at.
        func config(_ more: String = "") -> String {
            """
            {"gossip": "0.0.0.0:9720", "heartbeat_interval": "500ms", "liveness_timeout": "3s",
             "services": {"api": {"limit": \(Self.limit), "window": "60s", "burst": 1}}\(more)}
            """
        }
        try await mesh.build(config: config(), vouched: false)
        try await mesh.start(0)
        let invited = try await mesh.command(0, ["invite", "--config", "config.json", "--expires", "10m"])
        #expect(invited.status == 0, "\(invited.output)")
        let token = try #require(invited.output.split(separator: "\n").first.map(String.init))
        #expect(invited.output.contains("at \(mesh.address(0)):9720"), "the token names the address the others reach: \(invited.output)")

        // Nodes 1 and 2 trust what node 0 introduces, and join with its token: no `peer add` anywhere.
        for index in 1...2 {
            try mesh.nodes[index].writeConfig(config(#", "vouching": "introduced-by: \#(mesh.nodes[0].publicKey)""#))
            let joined = try await mesh.command(index, ["join", token, "--config", "config.json"])
            #expect(joined.status == 0, "node \(index) joins: \(joined.output)")
            #expect(joined.output.contains("at \(mesh.address(index)):9720"), "node \(index) gives its own address: \(joined.output)")
            try await mesh.start(index)
        }
        let forged = try await mesh.command(1, ["join", String(token.dropLast(4)) + "AAAA", "--config", "config.json"])
        #expect(forged.status == 65, "an altered token is refused: \(forged.output)")

        try await mesh.waitUntil("every node to trust and see the other two, with agreeing trust stores") {
            // Two peers known on each of three nodes: every trust store lists the other two, so all three
            // split rights among the same members.
            try await (0..<3).asyncMap { index in
                let peers = try await mesh.quota(index)?["peers"] as? [String: Any]
                return peers?["live"] as? Int == 2 && peers?["known"] as? Int == 2
            }.allSatisfy { $0 }
        }

        // Enforced as one mesh: bursts on every node never admit more than the limit in a window, and the
        // views agree on what was consumed.
        var grants: [Int64: Int] = [:]
        for _ in 0..<30 {
            for index in 0..<3 {
                let result = try await mesh.cli(index, ["acquire", "api", "--priority", "urgent"])
                if result.status == 0, let window = result.json["window_end_ms"] as? Int { grants[Int64(window), default: 0] += 1 }
            }
        }
        print("joined mesh: admitted per window \(grants.sorted { $0.key < $1.key }.map(\.value)) (limit \(Self.limit))")
        #expect(!grants.isEmpty)
        for (window, admitted) in grants {
            #expect(admitted <= Self.limit, "window ending \(window): \(admitted) admitted, limit \(Self.limit)")
        }
        try await mesh.waitUntil("the three views to agree on what was consumed") {
            let views = try await (0..<3).asyncMap { try await mesh.quota($0) }
            let windows = Set(views.map { $0?["reset_at_ms"] as? Int ?? -1 })
            let globals = Set(views.map { ($0?["consumed"] as? [String: Any])?["global"] as? Int ?? -1 })
            guard windows.count == 1, globals.count == 1, let window = windows.first else { return false }
            return (grants[Int64(window)] ?? 0) == globals.first
        }
    }
}

import Foundation
import Synchronization
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

/// The `quotamesh` binary built beside the tests.
func quotameshBinary() throws -> String {
    var candidates: [String] = []
    if let first = CommandLine.arguments.first {
        var url = URL(fileURLWithPath: first).deletingLastPathComponent()
        // On some platforms the test bundle is a folder; walk up until the binary is found.
        for _ in 0..<4 {
            candidates.append(url.appendingPathComponent("quotamesh").path)
            url = url.deletingLastPathComponent()
        }
    }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    candidates.append(root.appendingPathComponent(".build/debug/quotamesh").path)
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw TestFailure("quotamesh binary not found in \(candidates)")
    }
    return found
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Ports handed out in this test process, so two nodes never get the same one.
private let handedOut = Mutex<Set<Int>>([])

/// The ports this test process picks from: below the kernel's ephemeral range, so no socket bound to port 0
/// (an embedded node's, a client's) can take a node's port while the node is stopped between two runs.
private let testPorts: Range<Int> = {
    let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
        .split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
    let ephemeralLow = min(range?.first ?? 32768, 32768)
    return 10_000..<max(ephemeralLow, 10_001)
}()

/// A free loopback port (UDP or TCP) outside the ephemeral range, never one handed out before.
func freePort(udp: Bool) -> Int {
    for _ in 0..<1000 {
        let port = Int.random(in: testPorts)
        guard canBind(port, udp: udp) else { continue }
        if handedOut.withLock({ ports in ports.insert(port).inserted }) { return port }
    }
    fatalError("no free loopback port in \(testPorts)")
}

private func canBind(_ port: Int, udp: Bool) -> Bool {
    let fd = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = UInt16(port).bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let length = socklen_t(MemoryLayout<sockaddr_in>.size)
    return withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } } == 0
}

/// Runs a `quotamesh` subcommand to completion (killed, and the test failed, after `timeout`).
@discardableResult
func runCLI(_ arguments: [String], in directory: String, timeout: Duration = .seconds(60)) async throws -> (status: Int32, output: String) {
    try await runToCompletion(try quotameshBinary(), arguments, in: directory, timeout: timeout)
}

/// One real node process in its own folder.
final class NodeProcess: @unchecked Sendable {
    // Mutated only from the test's own task.
    let name: String
    let directory: String
    let gossipPort: Int
    let apiPort: Int
    var child: ChildProcess?
    var publicKey = ""

    init(name: String, root: String) async throws {
        self.name = name
        self.directory = root + "/" + name
        self.gossipPort = freePort(udp: true)
        self.apiPort = freePort(udp: false)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let keygen = try await runCLI(["keygen"], in: directory)
        guard keygen.status == 0 else { throw TestFailure("keygen failed: \(keygen.output)") }
        let id = try await runCLI(["id", "--name", name, "--endpoint", "127.0.0.1:\(gossipPort)"], in: directory)
        publicKey = id.output.split(separator: "\n").first.map(String.init) ?? ""
    }

    var api: String { "127.0.0.1:\(apiPort)" }

    func trust(_ other: NodeProcess, weight: Double? = nil) async throws {
        let result = try await runCLI(
            ["peer", "add", other.name, "--key", other.publicKey, "--endpoint", "127.0.0.1:\(other.gossipPort)"]
                + (weight.map { ["--weight", "\($0)"] } ?? []), in: directory)
        guard result.status == 0 else { throw TestFailure("peer add failed: \(result.output)") }
    }

    func writeConfig(_ json: String) throws {
        try json.write(toFile: directory + "/config.json", atomically: true, encoding: .utf8)
    }

    func start() async throws {
        var arguments = ["run", "--gossip", "127.0.0.1:\(gossipPort)", "--api", api]
        if FileManager.default.fileExists(atPath: directory + "/config.json") { arguments += ["--config", "config.json"] }
        child = try await ChildProcess.start(try quotameshBinary(), arguments, in: directory, output: .append(logPath))
    }

    var logPath: String { directory + "/node.log" }

    /// Sends `signal` and waits (bounded) for the node to exit; SIGKILL after 30 s.
    func kill(signal: Int32 = SIGKILL) async {
        guard let child, !child.hasExited else { return }
        child.signal(signal)
        if await !child.waitForExit(timeout: .seconds(30)) { await child.killAndWait() }
    }

    /// Sends `signal` without waiting: for a test's last word to its node (`defer`).
    func signal(_ signal: Int32) {
        child?.signal(signal)
    }

    // MARK: HTTP

    func request(_ method: String, _ path: String, body: [String: Any]? = nil) async throws -> (Int, [String: Any]) {
        var request = URLRequest(url: URL(string: "http://\(api)\(path)")!, timeoutInterval: 10)
        request.httpMethod = method
        if let body { request.httpBody = try JSONSerialization.data(withJSONObject: body) }
        let (data, response) = try await URLSession.shared.data(for: request)
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, json)
    }

    /// Polls `condition` until it holds or `timeout` passes; the condition is the event awaited.
    func waitUntil(
        _ what: String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool
    ) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        throw TestFailure("\(name): timed out waiting for \(what)\n--- log ---\n\(log.suffix(3000))")
    }

    func waitForAPI() async throws {
        // Generous: other test suites may be loading both cores while the node starts.
        try await waitUntil("the API", timeout: .seconds(60)) { try await self.request("GET", "/healthz").0 == 200 }
    }

    func waitForLivePeers(_ count: Int) async throws {
        try await waitUntil("\(count) live peers", timeout: .seconds(60)) {
            let (_, json) = try await self.request("GET", "/healthz")
            return ((json["peers"] as? [String: Any])?["live"] as? Int ?? 0) >= count
        }
    }

    /// The value of an unlabelled metric from `/metrics`.
    func metric(_ name: String) async throws -> Double? {
        let (data, _) = try await URLSession.shared.data(from: URL(string: "http://\(api)/metrics")!)
        let text = String(decoding: data, as: UTF8.self)
        return text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { $0.split(separator: " ").last }
            .flatMap { Double($0) }
    }

    func quota(_ service: String) async throws -> [String: Any] {
        let (status, json) = try await request("GET", "/v1/quota/\(service)")
        guard status == 200 else { throw TestFailure("quota \(service): HTTP \(status) \(json)") }
        return json
    }
}

/// A temporary folder for one test's nodes.
func makeRoot() -> String {
    let path = NSTemporaryDirectory() + "quotamesh-it-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Builds `count` nodes that all trust each other, with the same configuration, and starts them.
func startMesh(count: Int, config: String?) async throws -> [NodeProcess] {
    let root = makeRoot()
    var nodes: [NodeProcess] = []
    for index in 0..<count { nodes.append(try await NodeProcess(name: "node\(index)", root: root)) }
    for node in nodes {
        for other in nodes where other !== node { try await node.trust(other) }
        if let config { try node.writeConfig(config) }
    }
    for node in nodes { try await node.start() }
    for node in nodes { try await node.waitForAPI() }
    for node in nodes { try await node.waitForLivePeers(count - 1) }
    return nodes
}

extension Sequence {
    /// `map` with an asynchronous transform, in order.
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Real `quotamesh` processes on loopback, with generated keys, talking real UDP and HTTP.
@Suite(.serialized, .timeLimit(.minutes(5))) struct ProcessMeshTests {
    static let config = """
        {"gossip_interval": "100ms", "liveness_timeout": "3s",
         "services": {"openai": {"limit": 100, "window": "1h"}}}
        """

    @Test func a429WithRetryAfterAtOneNodeOpensTheBreakerOnTheOtherTwo() async throws {
        let nodes = try await startMesh(count: 3, config: Self.config)
        defer { nodes.forEach { $0.signal(SIGTERM) } }
        let observed = try await runCLI(
            ["observe", "openai", "--status", "429", "--header", "Retry-After: 30", "--api", nodes[0].api],
            in: nodes[0].directory)
        #expect(observed.status == 0, "\(observed.output)")
        #expect(observed.output.contains("breaker opened"))
        for node in nodes[1...] {
            try await node.waitUntil("breaker open") {
                let quota = try await node.quota("openai")
                return (quota["breaker"] as? [String: Any])?["state"] as? String == "open"
            }
            let acquire = try await runCLI(["acquire", "openai", "--priority", "urgent", "--api", node.api], in: node.directory)
            #expect(acquire.status == 75, "\(acquire.output)")
            #expect(acquire.output.contains("breaker_open"))
        }
    }

    @Test func consumptionAtTwoNodesIsGlobalConsumptionAtTheThirdAndViewsAgree() async throws {
        let nodes = try await startMesh(count: 3, config: Self.config)
        defer { nodes.forEach { $0.signal(SIGTERM) } }
        // Three quick calls at node 0 estimate to more urgent demand than the hour has calls, so node 1's
        // second call may wait for its share until its own demand has been signed (a second or two).
        for (node, calls) in [(nodes[0], 3), (nodes[1], 2)] {
            if node === nodes[1] {
                // Node 1 asks once node 0's calls (and with them its demand) have reached it.
                try await node.waitUntil("node 0's 3 calls") {
                    (try await node.quota("openai")["consumed"] as? [String: Any])?["global"] as? Int == 3
                }
            }
            for _ in 0..<calls {
                let result = try await runCLI(
                    ["acquire", "openai", "--priority", "urgent", "--wait", "10s", "--api", node.api], in: node.directory)
                #expect(result.status == 0, "\(result.output)")
            }
        }
        try await nodes[2].waitUntil("global consumption of 5") {
            let consumed = try await nodes[2].quota("openai")["consumed"] as? [String: Any]
            return consumed?["global"] as? Int == 5
        }
        var views: [[String: Any]] = []
        for node in nodes {
            try await node.waitUntil("global consumption of 5") {
                (try await node.quota("openai")["consumed"] as? [String: Any])?["global"] as? Int == 5
            }
            views.append(try await node.quota("openai"))
        }
        let remaining = Set(views.map { $0["remaining"] as? Int ?? -1 })
        let resets = Set(views.map { $0["reset_at"] as? Int ?? -1 })
        #expect(remaining == [95])
        #expect(resets.count == 1)
        #expect(views.map { ($0["consumed"] as? [String: Any])?["local"] as? Int ?? -1 } == [3, 2, 0])
    }

    @Test func theCLIAcquiresByDimensionAndReportsUsageSoTheDifferenceIsRefunded() async throws {
        let nodes = try await startMesh(count: 1, config: """
            {"services": {"openai": {"limit": 100, "window": "30d", "limits": {"tokens": {"limit": 100000, "window": "30d"}}}}}
            """)
        defer { nodes.forEach { $0.signal(SIGTERM) } }
        let node = nodes[0]
        let acquired = try await runCLI(
            ["acquire", "openai", "--priority", "urgent", "--cost", "requests=1,tokens=1800", "--wait", "5s", "--json", "--api", node.api],
            in: node.directory)
        #expect(acquired.status == 0, "\(acquired.output)")
        #expect(acquired.output.contains("\"tokens\" : 1800") || acquired.output.contains("\"tokens\":1800"), "\(acquired.output)")
        func tokens() async throws -> Int? {
            let limits = try await node.quota("openai")["limits"] as? [[String: Any]] ?? []
            return (limits.first { $0["name"] as? String == "tokens" }?["consumed"] as? [String: Any])?["local"] as? Int
        }
        #expect(try await tokens() == 1800)
        let observed = try await runCLI(
            ["observe", "openai", "--status", "200", "--usage", "tokens=300", "--cost", "tokens=1800", "--api", node.api],
            in: node.directory)
        #expect(observed.status == 0, "\(observed.output)")
        #expect(try await tokens() == 300, "1,500 refunded")
        for bad in [["acquire", "openai", "--cost", "tokens=-1"], ["acquire", "openai", "--cost", "requests=0"],
                    ["acquire", "openai", "--cost", "tokens"], ["observe", "openai", "--status", "200", "--cost", "tokens=5"]] {
            let refused = try await runCLI(bad + ["--api", node.api], in: node.directory)
            #expect(refused.status == 64, "\(bad): \(refused.output)")
        }
    }

    @Test func aSecondNodeOnATakenGossipPortRefusesToStart() async throws {
        let nodes = try await startMesh(count: 1, config: Self.config)
        defer { nodes.forEach { $0.signal(SIGTERM) } }
        let intruder = try await NodeProcess(name: "intruder", root: makeRoot())
        let result = try await runCLI(
            ["run", "--gossip", "127.0.0.1:\(nodes[0].gossipPort)", "--api", "127.0.0.1:\(freePort(udp: false))"],
            in: intruder.directory, timeout: .seconds(30))
        #expect(result.status != 0, "\(result.output)")
        #expect(result.output.contains("cannot listen for gossip on 127.0.0.1:\(nodes[0].gossipPort)"), "\(result.output)")
        // The first node is untouched: still serving.
        #expect(try await nodes[0].request("GET", "/healthz").0 == 200)
    }

    @Test func consumptionSurvivesSigkillAndRestart() async throws {
        let nodes = try await startMesh(count: 1, config: Self.config)
        let node = nodes[0]
        defer { node.signal(SIGTERM) }
        for _ in 0..<4 {
            let result = try await runCLI(["acquire", "openai", "--priority", "urgent", "--api", node.api], in: node.directory)
            #expect(result.status == 0, "\(result.output)")
        }
        let (_, before) = try await node.request("GET", "/healthz")
        await node.kill(signal: SIGKILL)
        try await node.start()
        try await node.waitForAPI()
        let quota = try await node.quota("openai")
        #expect((quota["consumed"] as? [String: Any])?["local"] as? Int == 4)
        #expect(quota["remaining"] as? Int == 96)
        let (_, after) = try await node.request("GET", "/healthz")
        #expect((after["incarnation"] as? Int ?? 0) > (before["incarnation"] as? Int ?? Int.max))
    }

    @Test func runStartsWithNoConfigurationAndCreatesAnIdentity() async throws {
        let root = makeRoot()
        let api = "127.0.0.1:\(freePort(udp: false))"
        let node = try await ChildProcess.start(
            try quotameshBinary(), ["run", "--gossip", "127.0.0.1:\(freePort(udp: true))", "--api", api], in: root)
        defer { node.signal(SIGKILL) }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(20)
        var healthy = false
        while clock.now < deadline && !healthy {
            healthy = (try? await runCLI(["quota", "--api", api], in: root).status) == 0
            if !healthy { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(healthy)
        #expect(FileManager.default.fileExists(atPath: root + "/.quotamesh/identity"))
        node.signal(SIGTERM)
        #expect(await node.waitForExit(timeout: .seconds(30)), "the node did not exit after SIGTERM")
        #expect(node.output.contains("Created a new identity"))
        #expect(node.output.contains("state saved"))
        #expect(node.status == 0)
    }

    /// `run` takes its keys from QUOTAMESH_* variables too: over the file, under the flags; a bad value
    /// names its variable and the node does not start.
    @Test func environmentVariablesConfigureTheNodeBetweenTheFileAndTheFlags() async throws {
        let root = makeRoot()
        let api = "127.0.0.1:\(freePort(udp: false))"
        try Data(#"{"api": "127.0.0.1:1", "services": {"svc": {"limit": 7, "window": "1m"}}}"#.utf8)
            .write(to: URL(fileURLWithPath: root + "/node.json"))
        let node = try await ChildProcess.start(
            try quotameshBinary(), ["run", "--gossip", "127.0.0.1:\(freePort(udp: true))"], in: root,
            environment: ["QUOTAMESH_CONFIG": root + "/node.json", "QUOTAMESH_API": api, "QUOTAMESH_GOSSIP": "127.0.0.1:1"])
        defer { node.signal(SIGKILL) }
        // The file's service, at the variable's API address (the flag's gossip address won over the variable's).
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(20)
        var answer: (status: Int32, output: String) = (1, "")
        while clock.now < deadline {
            answer = try await runCLI(["quota", "svc", "--api", api], in: root)
            if answer.status == 0 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(answer.status == 0, "\(answer.output)")
        #expect(answer.output.contains("7"), "\(answer.output)")
        #expect(!node.output.contains("127.0.0.1:1 "), "the variable's gossip address was not overridden by the flag")

        let bad = try await ChildProcess.start(try quotameshBinary(), ["run"], in: root, environment: ["QUOTAMESH_FANOUT": "many"])
        #expect(await bad.waitForExit(timeout: .seconds(30)))
        #expect(bad.status == 78)
        #expect(bad.output.contains("$QUOTAMESH_FANOUT"), "\(bad.output)")
    }

    @Test func versionIsPrinted() async throws {
        let result = try await runCLI(["--version"], in: makeRoot())
        #expect(result.status == 0)
        #expect(result.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".").count == 3, "\(result.output)")
    }

    @Test func worldReadableIdentityStopsTheNodeWithAClearMessage() async throws {
        let root = makeRoot()
        #expect(try await runCLI(["keygen"], in: root).status == 0)
        chmod(root + "/.quotamesh/identity", 0o644)
        let result = try await runCLI(["run", "--gossip", "127.0.0.1:0", "--api", "127.0.0.1:0"], in: root)
        #expect(result.status != 0)
        #expect(result.output.contains("readable by others"))
    }

    @Test func peerCommandsRejectBadInput() async throws {
        let root = makeRoot()
        let badKey = try await runCLI(["peer", "add", "bob", "--key", "nope", "--endpoint", "127.0.0.1:1"], in: root)
        #expect(badKey.status == 64)
        #expect(badKey.output.contains("--key"))
        let badEndpoint = try await runCLI(["peer", "add", "bob", "--key", String(repeating: "A", count: 43) + "=", "--endpoint", "x"], in: root)
        #expect(badEndpoint.status == 64)
        // `peer list --json` prints the peers as JSON (it printed an empty line once).
        let key = String(repeating: "A", count: 43) + "="
        #expect(try await runCLI(["peer", "add", "carol", "--key", key, "--endpoint", "127.0.0.1:7"], in: root).status == 0)
        let listed = try await runCLI(["peer", "list", "--json"], in: root)
        #expect(listed.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(listed.output.utf8)) as? [String: Any]
        let peers = object?["peers"] as? [[String: Any]]
        #expect(peers?.count == 1)
        #expect(peers?.first?["name"] as? String == "carol")
        #expect(peers?.first?["key"] as? String == key)
        #expect(peers?.first?["endpoint"] as? String == "127.0.0.1:7")
        #expect(object?["problems"] as? [Any] != nil)
        let missing = try await runCLI(["peer", "remove", "nobody"], in: root)
        #expect(missing.status != 0)
        let unreachable = try await runCLI(["acquire", "openai", "--api", "127.0.0.1:\(freePort(udp: false))"], in: root)
        #expect(unreachable.status == 69)
        #expect(unreachable.output.contains("cannot reach"))
    }
}

/// `quotamesh fingerprint` computes the label any language can: Python's hashlib gives the same.
@Suite(.timeLimit(.minutes(2))) struct FingerprintCommandTests {
    static let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first { FileManager.default.isExecutableFile(atPath: $0) }

    @Test(.enabled(if: python != nil, "needs python3 to cross-check"))
    func theLabelMatchesPythonsBlake2b() async throws {
        let root = makeRoot()
        let salt = root + "/salt"
        try Data((0..<32).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }).write(to: URL(fileURLWithPath: salt))
        try "sk-test-key-123\n".write(toFile: root + "/key", atomically: true, encoding: .utf8)
        let ours = try await runToCompletion(
            "/bin/sh", ["-c", "\"$0\" fingerprint --salt-file salt < key", try quotameshBinary()], in: root)
        #expect(ours.status == 0, "\(ours.output)")
        let theirs = try await runToCompletion(
            Self.python ?? "python3",
            ["-c", "import hashlib; print('fp-' + hashlib.blake2b(b'sk-test-key-123', key=open('salt','rb').read(), digest_size=16).hexdigest())"],
            in: root)
        #expect(theirs.status == 0, "\(theirs.output)")
        #expect(ours.output == theirs.output)
        try Data([1, 2, 3, 4, 5, 6, 7, 8]).write(to: URL(fileURLWithPath: root + "/short"))
        let short = try await runCLI(["fingerprint", "--salt-file", "short"], in: root)
        #expect(short.status == 64)
        #expect(short.output.contains("the salt must be 16 to 64 bytes"))
    }
}

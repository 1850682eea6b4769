import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The local API against slow and unauthenticated clients, with a real node process.
@Suite(.serialized, .timeLimit(.minutes(5))) struct APIHardeningTests {
    /// Connects to 127.0.0.1:`port` and sends `bytes`; returns the socket.
    func connectAndSend(port: Int, _ text: String) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TestFailure("connect: \(errno)") }
        _ = text.withCString { send(fd, $0, strlen($0), 0) }
        return fd
    }

    /// Waits up to `seconds` for the peer to close `fd`: `true` if it did, `false` on timeout.
    func closedByPeer(_ fd: Int32, within seconds: Int) -> Bool {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count == 0 { return true }  // orderly close
            if count < 0 { return errno == ECONNRESET }  // EAGAIN: still open when the time ran out
        }
    }

    @Test func aSlowClientIsCutOffWhileOthersAreServedAndTheTokenIsRequired() async throws {
        let node = try await NodeProcess(name: "solo", root: makeRoot())
        let token = node.directory + "/api-token"
        try "a-token-of-twenty-four-chars".write(toFile: token, atomically: true, encoding: .utf8)
        chmod(token, 0o600)
        try node.writeConfig(#"{"api_idle_timeout": "1s", "api_token_file": "api-token"}"#)
        try await node.start()
        defer { node.signal(SIGTERM) }
        // Any answer means the API is up (it is 401 here: the helper sends no token).
        try await node.waitUntil("the API", timeout: .seconds(60)) { try await node.request("GET", "/healthz").0 != 0 }

        // A client that sends half a request and then nothing.
        let slow = try connectAndSend(port: node.apiPort, "GET /v1/quota HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        defer { close(slow) }

        // Meanwhile other agents are answered: with the token, and refused without it.
        let withToken = try await runCLI(["quota", "--api", node.api, "--token-file", token], in: node.directory)
        #expect(withToken.status == 0, "\(withToken.output)")
        let without = try await runCLI(["quota", "--api", node.api], in: node.directory)
        #expect(without.status == 77)
        #expect(without.output.contains("requires an API token"))
        let (status, body) = try await node.request("GET", "/v1/quota")
        #expect(status == 401)
        #expect((body["error"] as? String)?.contains("Bearer") == true)

        // The silent connection is closed by the node after its idle timeout (1 s), not held for ever.
        #expect(closedByPeer(slow, within: 15))
    }
}

/// The trust store changed under a running node.
@Suite(.serialized, .timeLimit(.minutes(5))) struct TrustStoreReloadTests {
    func peerNames(_ node: NodeProcess) async throws -> [String: String] {
        let (_, json) = try await node.request("GET", "/v1/peers")
        let peers = json["peers"] as? [[String: Any]] ?? []
        return Dictionary(uniqueKeysWithValues: peers.compactMap { peer in
            (peer["name"] as? String).map { ($0, peer["key"] as? String ?? "") }
        })
    }

    @Test func aPeerAddedIsTrustedATornFileKeepsTheLastGoodVersionARemovalIsHonoured() async throws {
        let root = makeRoot()
        let node = try await NodeProcess(name: "host", root: root)
        let friend = try await NodeProcess(name: "friend", root: root)
        try await node.start()
        defer { node.signal(SIGTERM) }
        try await node.waitForAPI()
        #expect(try await peerNames(node).isEmpty)

        try await node.trust(friend)
        try await node.waitUntil("the new peer to be trusted") { try await peerNames(node)["friend"] == friend.publicKey }
        // Each peer says whether it is quarantined or graylisted, and its observation score.
        let (_, listing) = try await node.request("GET", "/v1/peers")
        let entry = (listing["peers"] as? [[String: Any]])?.first
        #expect(entry?["quarantined"] is NSNull)
        #expect(entry?["graylisted"] as? Bool == false)
        #expect(entry?["observation_score"] as? Double == 0)

        // A half-written file: skipped with a message, and the peer keeps its last good version.
        try "# friend\nkey = \(friend.publicKey.prefix(10))".write(
            toFile: node.directory + "/Peers/friend.peer", atomically: false, encoding: .utf8)
        try await node.waitUntil("the torn file to be reported") {
            let log = (try? String(contentsOfFile: node.logPath, encoding: .utf8)) ?? ""
            return log.contains("Kept the last good version")
        }
        #expect(try await peerNames(node)["friend"] == friend.publicKey)

        let removed = try await runCLI(["peer", "remove", "friend"], in: node.directory)
        #expect(removed.status == 0, "\(removed.output)")
        try await node.waitUntil("the removal to be honoured") { try await peerNames(node).isEmpty }
    }
}

/// SIGTERM and SIGINT: state saved and a clean exit; waiting agents answered at once; a second signal
/// exits at once.
@Suite(.serialized, .timeLimit(.minutes(5))) struct ShutdownTests {
    @Test func sigtermAnswersWaitingAgentsAndExitsCleanly() async throws {
        let node = try await NodeProcess(name: "term", root: makeRoot())
        try node.writeConfig(#"{"services": {"api": {"limit": 1, "window": "10m"}}}"#)
        try await node.start()
        try await node.waitForAPI()
        #expect(try await node.request("POST", "/v1/acquire", body: ["service": "api", "priority": "urgent"]).0 == 200)

        // An agent waiting for a turn that will not come for an hour.
        let waiting = Task {
            let (status, body) = try await node.request("POST", "/v1/acquire", body: ["service": "api", "wait_ms": 600_000])
            return (status, body["detail"] as? String)
        }
        try await node.waitUntil("the acquire to be waiting") { try await node.metric("quotamesh_acquire_waiting") == 1 }
        let clock = ContinuousClock()
        let signalled = clock.now
        guard let child = node.child else { throw TestFailure("no process") }
        child.signal(SIGTERM)
        let (status, detail) = try await waiting.value
        #expect(status == 429)
        #expect(detail == "shutting_down")
        #expect(await child.waitForExit(timeout: .seconds(30)), "the node did not exit after SIGTERM")
        #expect(clock.now - signalled < .seconds(10), "the waiting agent did not hold the shutdown")
        #expect(child.status == 0)
        let log = (try? String(contentsOfFile: node.logPath, encoding: .utf8)) ?? ""
        #expect(log.contains("state saved"))
    }

    @Test func aSecondSignalExitsAtOnce() async throws {
        let node = try await NodeProcess(name: "twice", root: makeRoot())
        try await node.start()
        try await node.waitForAPI()
        // Half a request keeps the HTTP server's graceful shutdown waiting (until its idle timeout).
        let slow = try APIHardeningTests().connectAndSend(port: node.apiPort, "POST /v1/acquire HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        defer { close(slow) }
        try await Task.sleep(for: .milliseconds(200))
        guard let child = node.child else { throw TestFailure("no process") }
        child.signal(SIGTERM)
        // The node says it is shutting down once it has heard the first signal.
        try await node.waitUntil("the first signal to be heard") {
            ((try? String(contentsOfFile: node.logPath, encoding: .utf8)) ?? "").contains("Shutting down")
        }
        // The half request holds the graceful shutdown (for the idle timeout, 30 s): the node is still there.
        try #require(!child.hasExited, "the half request did not hold the shutdown, so there is no second signal to test")
        let clock = ContinuousClock()
        let signalled = clock.now
        child.signal(SIGTERM)
        #expect(await child.waitForExit(timeout: .seconds(10)), "the node did not exit at the second signal")
        #expect(clock.now - signalled < .seconds(5), "it exited at once, not at the idle timeout")
        #expect(child.status == 130)
        let log = (try? String(contentsOfFile: node.logPath, encoding: .utf8)) ?? ""
        #expect(log.contains("Second signal: exiting at once"))
    }
}

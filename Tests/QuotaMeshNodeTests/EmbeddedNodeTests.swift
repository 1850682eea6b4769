import Foundation
import Logging
import QuotaMeshCore
import QuotaMeshCrypto
import QuotaMeshNode
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Two nodes embedded in this test process: real UDP gossip on loopback, the API on a port the OS chose,
/// no signal handling, and a graceful stop that saves state.
@Suite(.timeLimit(.minutes(2))) struct EmbeddedNodeTests {
    func configuration(_ folder: String, name: String) -> NodeConfiguration {
        var configuration = NodeConfiguration()
        configuration.gossip = Endpoint(host: "127.0.0.1", port: 0)
        configuration.api = Endpoint(host: "127.0.0.1", port: 0)
        configuration.identityPath = "\(folder)/\(name)/identity"
        configuration.peersDirectory = "\(folder)/\(name)/Peers"
        configuration.stateDirectory = "\(folder)/\(name)/state"
        var policy = ServicePolicy()
        policy.limit = 10
        policy.windowMillis = 600_000
        configuration.mesh.services = ["api": policy]
        return configuration
    }

    @Test func twoEmbeddedNodesShareConsumptionAndResumeTheirOwnAfterAStop() async throws {
        let folder = NSTemporaryDirectory() + "quotamesh-embedded-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var logger = Logger(label: "embedded")
        logger.logLevel = .warning
        let a = try await EmbeddedNode.start(configuration(folder, name: "a"), logger: logger)
        let b = try await EmbeddedNode.start(configuration(folder, name: "b"), logger: logger)
        // Port 0 was resolved to real ports, and the API answers over HTTP.
        #expect(!a.apiAddress.hasSuffix(":0"))
        #expect(!a.gossipAddress.hasSuffix(":0"))
        let (health, _) = try await URLSession.shared.data(from: URL(string: "http://\(a.apiAddress)/healthz")!)
        let healthJSON = try JSONSerialization.jsonObject(with: health) as? [String: Any]
        #expect(healthJSON?["identity"] as? String == a.publicKey)

        // Each trusts the other, as `quotamesh peer add` would write it.
        for (node, other, name) in [(a, b, "b"), (b, a, "a")] {
            let peer = PeerInfo(
                name: name, key: try VerifyingKey(base64: other.publicKey), endpoint: Endpoint(parsing: other.gossipAddress))
            await node.node.replacePeers([peer])
        }

        // Granted in-process at a, with no HTTP in between; b learns of it by gossip.
        let decision = await a.node.acquire(AcquireRequest(service: "api", priority: .urgent))
        #expect(decision.granted, "\(decision)")
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(20)
        while clock.now < deadline, await b.node.quotas(service: "api").first?.consumedGlobal != 1 {
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(await b.node.quotas(service: "api").first?.consumedGlobal == 1)
        #expect(await b.node.quotas(service: "api").first?.consumedLocal == 0)

        try await a.stop()
        try await b.stop()
        // Stopped means stopped: the API no longer answers.
        await #expect(throws: (any Error).self) {
            _ = try await URLSession.shared.data(from: URL(string: "http://\(a.apiAddress)/healthz")!)
        }
        // A restart resumes from what was saved, alone (no peer to hear it from again): the same identity,
        // and a's own grant still counted. (What b heard of a's grant is a's to tell again: a node keeps
        // its own consumption and rights, and relearns the others' from them.)
        let restartedA = try await EmbeddedNode.start(configuration(folder, name: "a"), logger: logger)
        let restartedB = try await EmbeddedNode.start(configuration(folder, name: "b"), logger: logger)
        #expect(restartedA.publicKey == a.publicKey)
        #expect(restartedB.publicKey == b.publicKey)
        #expect(await restartedA.node.quotas(service: "api").first?.consumedLocal == 1)
        #expect(await restartedB.node.quotas(service: "api").first?.consumedLocal == 0)
        try await restartedA.stop()
        try await restartedB.stop()
    }

    @Test func trustStoresThatDifferShowInHealthzAndStopGrantsUntilTheyAgree() async throws {
        let folder = NSTemporaryDirectory() + "quotamesh-embedded-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var logger = Logger(label: "embedded")
        logger.logLevel = .critical
        let a = try await EmbeddedNode.start(configuration(folder, name: "a"), logger: logger)
        let b = try await EmbeddedNode.start(configuration(folder, name: "b"), logger: logger)
        let peerA = PeerInfo(name: "a", key: try VerifyingKey(base64: a.publicKey), endpoint: Endpoint(parsing: a.gossipAddress))
        let peerB = PeerInfo(name: "b", key: try VerifyingKey(base64: b.publicKey), endpoint: Endpoint(parsing: b.gossipAddress))
        // A third member, not running, that only a's trust store lists so far.
        let peerC = PeerInfo(name: "c", key: SigningKey().publicKey, endpoint: Endpoint(host: "127.0.0.1", port: 9))
        await a.node.replacePeers([peerB, peerC])
        await b.node.replacePeers([peerA])
        #expect(await a.node.acquire(AcquireRequest(service: "api", priority: .urgent)).granted)

        func health(_ node: EmbeddedNode) async throws -> [String: Any] {
            let (body, _) = try await URLSession.shared.data(from: URL(string: "http://\(node.apiAddress)/healthz")!)
            return try JSONSerialization.jsonObject(with: body) as? [String: Any] ?? [:]
        }
        let clock = ContinuousClock()
        var deadline = clock.now + .seconds(20)
        while clock.now < deadline, (try await health(b))["status"] as? String != "degraded" {
            try await Task.sleep(for: .milliseconds(50))
        }
        let degraded = try await health(b)
        #expect(degraded["status"] as? String == "degraded")
        #expect(degraded["trust_stores_differ"] as? [String] == ["a"])
        // b counts two members, a (all b hears) three: b's set is the odd one out, and b stops.
        #expect(degraded["rights_stopped"] as? Bool == true)
        let refused = await b.node.acquire(AcquireRequest(service: "api", priority: .urgent))
        #expect(!refused.granted)
        #expect(refused.detail?.kind == .trustStoresDiffer, "\(refused)")

        // b's store now lists c too: both name the same three members (b re-signs its records at its next
        // round, so a hears it) and grant again.
        await b.node.replacePeers([peerA, peerC])
        deadline = clock.now + .seconds(20)
        while clock.now < deadline {
            let statusA = try await health(a)["status"] as? String
            let statusB = try await health(b)["status"] as? String
            if statusA == "ok" && statusB == "ok" { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect((try await health(b))["trust_stores_differ"] as? [String] == [])
        #expect((try await health(a))["status"] as? String == "ok")
        // Under the two-member split b may have given a some of its part: its part of the three-member
        // split can then be short, and it asks a for rights, as an agent's call that may wait lets it.
        let again = await b.node.acquire(AcquireRequest(service: "api", priority: .urgent, waitMillis: 5_000))
        #expect(again.granted, "\(again)")
        try await a.stop()
        try await b.stop()
    }

    @Test func anAddressInUseIsAStartupError() async throws {
        let folder = NSTemporaryDirectory() + "quotamesh-embedded-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var logger = Logger(label: "embedded")
        logger.logLevel = .critical
        let first = try await EmbeddedNode.start(configuration(folder, name: "a"), logger: logger)
        var clash = configuration(folder, name: "b")
        clash.api = Endpoint(parsing: first.apiAddress) ?? clash.api
        do {
            _ = try await EmbeddedNode.start(clash, logger: logger)
            Issue.record("a second node started on the same API address")
        } catch let error as StartupError {
            // The message names the address, so an operator knows which setting to change.
            #expect(error.description.contains("cannot listen for the API on \(clash.api)"), "\(error)")
        } catch {
            Issue.record("not a StartupError: \(error)")
        }
        try await first.stop()
    }
}

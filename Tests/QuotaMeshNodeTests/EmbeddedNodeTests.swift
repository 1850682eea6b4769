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

    @Test func twoEmbeddedNodesShareConsumptionAndStopWithStateSaved() async throws {
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
        #expect(FileManager.default.fileExists(atPath: "\(folder)/a/state/state.json"))
        // Stopped means stopped: the API no longer answers.
        await #expect(throws: (any Error).self) {
            _ = try await URLSession.shared.data(from: URL(string: "http://\(a.apiAddress)/healthz")!)
        }
    }

    @Test func anAddressInUseIsAStartupError() async throws {
        let folder = NSTemporaryDirectory() + "quotamesh-embedded-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var logger = Logger(label: "embedded")
        logger.logLevel = .critical
        let first = try await EmbeddedNode.start(configuration(folder, name: "a"), logger: logger)
        var clash = configuration(folder, name: "b")
        clash.api = Endpoint(parsing: first.apiAddress) ?? clash.api
        await #expect(throws: (any Error).self) { _ = try await EmbeddedNode.start(clash, logger: logger) }
        try await first.stop()
    }
}

import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing
import QuotaMeshCore
@testable import QuotaMeshNode
import QuotaMeshCrypto

/// `/metrics` after scripted traffic: names, labels and values.
@Suite struct MetricsTests {
    /// The value of the sample named `name` whose labels include every one of `labels`.
    func value(_ text: String, _ name: String, _ labels: [String: String] = [:]) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
            let head = line.prefix { $0 != " " }
            guard head == name || head.hasPrefix(name + "{") else { continue }
            guard labels.allSatisfy({ head.contains("\($0.key)=\"\($0.value)\"") }) else { continue }
            return line.split(separator: " ").last.flatMap { Double($0) }
        }
        return nil
    }

    @Test func scriptedTrafficShowsUpInTheMetrics() async throws {
        let node = try MeshNode(
            identity: SigningKey(),
            configuration: MeshConfiguration(services: ["openai": ServicePolicy(limit: 6, windowMillis: 3_600_000, burstFraction: 1)]),
            peers: [PeerInfo(name: "friend", key: SigningKey().publicKey, endpoint: Endpoint(host: "127.0.0.1", port: 1))],
            stateStore: nil, logger: Logger(label: "test"))
        await node.startWithoutNetwork()
        let app = Application(router: NodeAPI.buildRouter(node: node))
        try await app.test(.router) { client in
            // Three urgent calls, then a low one costing more than the 3 left: always a denial.
            for _ in 0..<3 {
                _ = try await client.execute(uri: "/v1/acquire", method: .post, body: ByteBuffer(string: #"{"service":"openai","priority":"urgent"}"#)) { _ in }
            }
            _ = try await client.execute(uri: "/v1/acquire", method: .post, body: ByteBuffer(string: #"{"service":"openai","priority":"low","cost":4}"#)) { _ in }
            // A datagram from nobody the node trusts.
            await node.receive([0x51, 0x4D, 1, 1] + [UInt8](repeating: 7, count: 200), from: try SocketAddress(ipAddress: "10.1.2.3", port: 9))

            let (status, type, text) = try await client.execute(uri: "/metrics", method: .get) {
                (Int($0.status.code), $0.headers[.contentType], String(buffer: $0.body))
            }
            #expect(status == 200)
            #expect(type?.hasPrefix("text/plain; version=0.0.4") == true)
            #expect(value(text, "quotamesh_acquire_grants_total", ["service": "openai", "priority": "urgent"]) == 3)
            #expect(value(text, "quotamesh_acquire_denials_total", ["service": "openai", "priority": "low", "reason": "quota_exhausted"]) == 1)
            #expect(value(text, "quotamesh_acquire_wait_seconds_count", ["service": "openai", "priority": "urgent"]) == 3)
            #expect(value(text, "quotamesh_quota_remaining", ["service": "openai", "account": "default"]) == 3)
            #expect(value(text, "quotamesh_quota_limit", ["service": "openai"]) == 6)
            #expect(value(text, "quotamesh_quota_consumed", ["service": "openai", "scope": "local"]) == 3)
            #expect(value(text, "quotamesh_quota_consumed", ["service": "openai", "scope": "global"]) == 3)
            #expect(value(text, "quotamesh_acquire_waiting") == 0)
            #expect(value(text, "quotamesh_peers_known") == 1)
            #expect(value(text, "quotamesh_peers_live") == 0)
            #expect(value(text, "quotamesh_peers_quarantined") == 0)
            #expect(value(text, "quotamesh_peers_graylisted") == 0)
            #expect(value(text, "quotamesh_gossip_packets_in_total") == 1)
            #expect(value(text, "quotamesh_gossip_bytes_in_total") == 204)
            #expect(value(text, "quotamesh_gossip_dropped_total", ["reason": "unknown_sender"]) == 1)
            #expect(value(text, "quotamesh_persistence_failing") == 0)
            // Every metric says what it is, and the quota gauges say which dimension.
            let lines = text.split(separator: "\n")
            for (index, line) in lines.enumerated() where line.hasPrefix("# TYPE ") {
                let name = line.split(separator: " ")[2]
                #expect(index > 0 && lines[index - 1].hasPrefix("# HELP \(name) "), "\(name) has no # HELP line")
            }
            #expect(value(text, "quotamesh_quota_remaining", ["service": "openai", "dimension": "requests"]) == 3)
        }
    }

    @Test func tokenLimitsAreSeriesOfTheirOwnWithADimensionLabel() async throws {
        let node = try MeshNode(
            identity: SigningKey(),
            configuration: MeshConfiguration(services: ["openai": ServicePolicy(
                limit: 100, windowMillis: 3_600_000, burstFraction: 1,
                dimensionLimits: ["tokens": AdvertisedPolicy(limit: 9_000, windowMillis: 3_600_000)])]),
            peers: [], stateStore: nil, logger: Logger(label: "test"))
        await node.startWithoutNetwork()
        let app = Application(router: NodeAPI.buildRouter(node: node))
        try await app.test(.router) { client in
            _ = try await client.execute(
                uri: "/v1/acquire", method: .post,
                body: ByteBuffer(string: #"{"service":"openai","priority":"urgent","cost":{"requests":1,"tokens":1800}}"#)) { _ in }
            let text = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            #expect(value(text, "quotamesh_quota_limit", ["service": "openai", "dimension": "tokens"]) == 9_000)
            #expect(value(text, "quotamesh_quota_limit", ["service": "openai", "dimension": "requests"]) == 100)
            #expect(value(text, "quotamesh_quota_consumed", ["dimension": "tokens", "scope": "local"]) == 1_800)
            #expect(value(text, "quotamesh_quota_remaining", ["dimension": "tokens"]) == 7_200)
        }
    }
}

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Weighted shares with real processes (issue 24): three nodes of weights 1, 1 and 2, each vouched at its
/// weight by the others, with equal normal-priority demand above the limit, are served about 25, 25 and 50%.
@Suite(.serialized, .timeLimit(.minutes(5))) struct WeightedProcessTests {
    static let limit = 40

    actor Grants {
        var byNode: [Int] = [0, 0, 0]
        func record(_ node: Int) { byNode[node] += 1 }
    }

    @Test func weightsOneOneTwoWithEqualDemandAreServedByWeight() async throws {
        let weights = [1.0, 1.0, 2.0]
        let root = makeRoot()
        let nodes = try await (0..<3).asyncMap { try await NodeProcess(name: "node\($0)", root: root) }
        for (index, node) in nodes.enumerated() {
            for (other, peer) in nodes.enumerated() where other != index { try await node.trust(peer, weight: weights[other]) }
            try node.writeConfig("""
                {"gossip_interval": "100ms", "liveness_timeout": "3s", "weight": \(weights[index]),
                 "services": {"api": {"limit": \(Self.limit), "window": "4s"}}}
                """)
        }
        for node in nodes { try await node.start() }
        defer { nodes.forEach { $0.signal(SIGTERM) } }
        for node in nodes { try await node.waitForAPI() }
        for node in nodes { try await node.waitForLivePeers(2) }
        // Each node's peers show the weight it vouches and the one it claims.
        let (_, peers) = try await nodes[0].request("GET", "/v1/peers")
        let heavy = (peers["peers"] as? [[String: Any]] ?? []).first { $0["name"] as? String == "node2" }
        #expect(heavy?["vouched_weight"] as? Double == 2)
        try await nodes[0].waitUntil("node 2's claimed weight to arrive") {
            let (_, peers) = try await nodes[0].request("GET", "/v1/peers")
            let node2 = (peers["peers"] as? [[String: Any]] ?? []).first { $0["name"] as? String == "node2" }
            return node2?["weight"] as? Double == 2 && node2?["claimed_weight"] as? Double == 2
        }

        // Equal demand, well above the limit: four agents per node asking for normal calls for 24 s.
        let grants = Grants()
        let deadline = ContinuousClock.now + .seconds(24)
        await withTaskGroup(of: Void.self) { group in
            for (index, node) in nodes.enumerated() {
                for _ in 0..<4 {
                    group.addTask {
                        while ContinuousClock.now < deadline {
                            guard let (status, _) = try? await node.request(
                                "POST", "/v1/acquire", body: ["service": "api", "priority": "normal", "wait_ms": 500])
                            else { continue }
                            if status == 200 { await grants.record(index) }
                        }
                    }
                }
            }
        }
        let counts = await grants.byNode
        let total = Double(counts.reduce(0, +))
        let shares = counts.map { Double($0) / max(1, total) }
        print("weights 1, 1, 2: grants \(counts), shares \(shares.map { ($0 * 1000).rounded() / 1000 })")
        #expect(total >= Double(Self.limit) * 5, "the mesh kept granting: \(counts)")
        for (share, expected) in zip(shares, [0.25, 0.25, 0.5]) {
            #expect(abs(share - expected) <= 0.05, "shares \(shares)")
        }
    }
}

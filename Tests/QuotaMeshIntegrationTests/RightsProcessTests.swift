import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The cluster never grants more than the limit in a window, with real processes: concurrent bursts of
/// urgent calls at every node, and a node SIGKILLed and restarted while the others keep spending.
@Suite(.serialized, .timeLimit(.minutes(5))) struct RightsProcessTests {
    static let limit = 30
    static let config = """
        {"gossip_interval": "100ms", "liveness_timeout": "3s",
         "services": {"openai": {"limit": \(limit), "window": "4s"}}}
        """

    /// Grants counted by the window they were charged to (the answer's `window_end_ms`, set when the node
    /// decided; the quota view in the answer is read later and can already show the next window).
    actor GrantCounter {
        var byWindow: [Int: Int] = [:]
        var requests = 0
        func record(_ window: Int?) {
            requests += 1
            if let window { byWindow[window, default: 0] += 1 }
        }
    }

    /// Sends urgent acquires to `node` from `workers` concurrent loops until `deadline`.
    func burst(_ node: NodeProcess, workers: Int, until deadline: ContinuousClock.Instant, into counter: GrantCounter)
        async
    {
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    while ContinuousClock.now < deadline {
                        guard let (status, body) = try? await node.request(
                            "POST", "/v1/acquire", body: ["service": "openai", "priority": "urgent"])
                        else { continue }
                        await counter.record(status == 200 ? body["window_end_ms"] as? Int : nil)
                    }
                }
            }
        }
    }

    @Test func concurrentBurstsAtEveryNodeNeverGrantMoreThanTheLimitInAWindow() async throws {
        let nodes = try await startMesh(count: 3, config: Self.config)
        defer { nodes.forEach { $0.signal(SIGTERM) } }
        let counter = GrantCounter()
        let deadline = ContinuousClock.now + .seconds(9)
        await withTaskGroup(of: Void.self) { group in
            for node in nodes { group.addTask { await self.burst(node, workers: 6, until: deadline, into: counter) } }
        }
        let windows = await counter.byWindow
        let requests = await counter.requests
        print("rights burst: \(requests) requests; granted by window: \(windows.sorted { $0.key < $1.key }.map(\.value))")
        #expect(requests > 3 * Self.limit, "the burst asked for more than the limit: \(requests)")
        for (window, granted) in windows.sorted(by: { $0.key < $1.key }) {
            #expect(granted <= Self.limit, "window ending \(window): \(granted) granted, limit \(Self.limit)")
        }
        // Rights move to where the calls are: some window is spent (nearly) to its limit.
        #expect((windows.values.max() ?? 0) >= Self.limit * 8 / 10, "\(windows)")
    }

    @Test func aNodeKilledAndRestartedMidWindowDoesNotLetTheWindowGoOver() async throws {
        let nodes = try await startMesh(count: 3, config: Self.config)
        defer { nodes.forEach { $0.signal(SIGTERM) } }
        let counter = GrantCounter()
        let end = ContinuousClock.now + .seconds(10)
        await withTaskGroup(of: Void.self) { group in
            for node in nodes[0..<2] { group.addTask { await self.burst(node, workers: 4, until: end, into: counter) } }
            group.addTask {
                // Node 2 spends for a while, is killed without warning, and comes back a second later.
                await self.burst(nodes[2], workers: 4, until: ContinuousClock.now + .milliseconds(2_500), into: counter)
                await nodes[2].kill(signal: SIGKILL)
                try? await Task.sleep(for: .seconds(1))
                try? await nodes[2].start()
                try? await nodes[2].waitForAPI()
                await self.burst(nodes[2], workers: 4, until: end, into: counter)
            }
        }
        let windows = await counter.byWindow
        print("rights crash: granted by window: \(windows.sorted { $0.key < $1.key }.map(\.value))")
        for (window, granted) in windows.sorted(by: { $0.key < $1.key }) {
            #expect(granted <= Self.limit, "window ending \(window): \(granted) granted, limit \(Self.limit)")
        }
        #expect((windows.values.max() ?? 0) >= Self.limit * 8 / 10, "\(windows)")
    }
}

import Foundation
import QuotaMeshDemo
import Testing

/// `quotamesh demo` end to end, in its short mode: real embedded nodes, real UDP and HTTP on loopback.
@Suite(.serialized, .timeLimit(.minutes(5))) struct DemoTests {
    @Test func theShortDemoRunsAgreesAndCleansUp() async throws {
        let root = makeRoot()
        let run = try await runToCompletion(
            try quotameshBinary(),
            ["demo", "--nodes", "3", "--seconds", "8", "--limit", "60", "--window", "10s", "--demand", "2", "--json"],
            in: root, timeout: .seconds(120))
        #expect(run.status == 0, "\(run.output)")
        // Progress went to standard error, one line at least (a log, not a terminal).
        #expect(run.output.contains("demo: 5/8 s"), "\(run.output)")
        guard let start = run.output.firstIndex(of: "{"),
            let report = try JSONSerialization.jsonObject(with: Data(run.output[start...].utf8)) as? [String: Any]
        else {
            Issue.record("no JSON report in: \(run.output)")
            return
        }
        let nodes = report["nodes"] as? [[String: Any]] ?? []
        #expect(nodes.count == 3)
        #expect(report["agree"] as? Bool == true, "\(nodes)")
        // Every node sees both others live, and the mesh's consumption is the sum of each node's own.
        #expect(nodes.allSatisfy { $0["peers_live"] as? Int == 2 }, "\(nodes)")
        let locals = nodes.compactMap { $0["consumed_local"] as? Int }
        #expect(nodes.allSatisfy { $0["consumed_global"] as? Int == locals.reduce(0, +) }, "\(nodes)")
        // Demand twice the limit, yet the upstream refused nothing (no window is granted more than its
        // rights, and none is spent in its last 50 ms), and it saw exactly one call per grant: no agent
        // called without asking.
        let calls = report["upstream_calls"] as? Int ?? -1
        #expect(calls > 0)
        #expect(report["upstream_429s"] as? Int == 0, "\(report)")
        #expect(report["grants"] as? Int == calls, "\(report)")
        // Urgent work all succeeded, low-priority work was told to wait, and every agent was answered.
        let priorities = Dictionary(
            uniqueKeysWithValues: (report["priorities"] as? [[String: Any]] ?? []).map { ($0["priority"] as? String ?? "", $0) })
        let urgent = priorities["urgent"] ?? [:]
        #expect((urgent["tasks"] as? Int ?? 0) > 0)
        #expect(urgent["succeeded"] as? Int == urgent["tasks"] as? Int, "\(urgent)")
        #expect((priorities["low"]?["told_to_wait"] as? Int ?? 0) > 0, "\(priorities)")
        #expect(report["unanswered"] as? Int == 0)
        // The temporary folder is gone.
        let folder = report["folder"] as? String ?? ""
        #expect(report["removed"] as? Bool == true)
        #expect(!folder.isEmpty && !FileManager.default.fileExists(atPath: folder))
    }

    @Test func theREADMEsSampleIsARunWithTheDefaults() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let sample = try #require(readme.range(of: "One run with the defaults").map { readme[$0.upperBound...] })
        let lines = sample.split(separator: "\n").drop { !$0.hasPrefix("demo: ") }
        #expect(lines.first.map(String.init) == Demo.Options().header, "the sample's first line is what the defaults print")
        let defaults = Demo.Options()
        #expect(lines.contains { $0.hasPrefix("demo: \(defaults.seconds)/\(defaults.seconds) s") }, "its progress ends at the default length")
        #expect(lines.contains { $0.hasPrefix("limit ") && $0.split(separator: " ").dropFirst().allSatisfy { $0 == "\(defaults.limit)" } })
    }

    @Test func badFlagsAreRefusedWithAMessage() async throws {
        let result = try await runCLI(["demo", "--nodes", "0"], in: makeRoot())
        #expect(result.status == 64)
        #expect(result.output.contains("--nodes must be between 1 and 20"))
        for window in ["soon", "1.5s", "2h"] {
            let refused = try await runCLI(["demo", "--window", window], in: makeRoot())
            #expect(refused.status == 64, "\(window)")
            #expect(refused.output.contains("--window must be whole seconds"), "\(window): \(refused.output)")
        }
    }
}

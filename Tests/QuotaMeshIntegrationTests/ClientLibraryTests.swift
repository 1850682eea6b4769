import Foundation
import QuotaMeshClient
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The Swift client library against a real node process.
@Suite(.serialized, .timeLimit(.minutes(5))) struct ClientLibraryTests {
    @Test func acquireObserveAndQuotaThroughTheClient() async throws {
        let node = try await NodeProcess(name: "client", root: makeRoot())
        try node.writeConfig(#"""
            {"services": {"api": {"limit": 2, "window": "10m", "burst": 1},
                          "llm": {"limit": 100, "window": "10m", "burst": 1, "limits": {"tokens": {"limit": 5000, "window": "10m"}}}}}
            """#)
        try await node.start()
        defer { node.signal(SIGTERM) }
        try await node.waitForAPI()
        let client = QuotaMeshClient(endpoint: URL(string: "http://\(node.api)"))

        let first = try await client.acquire(service: "api", priority: .urgent)
        #expect(first.granted)
        #expect(first.account == "default")
        #expect(first.quota?.consumed.local == 1)

        // An unknown service is denied with a reason, and an observation teaches the node its limit.
        let unknown = try await client.acquire(service: "github")
        #expect(!unknown.granted)
        #expect(unknown.reason == "unknown_service")
        try await client.observe(
            service: "github", status: 200,
            headers: ["x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4321", "x-ratelimit-reset": "\(Int(Date().timeIntervalSince1970) + 600)"])
        let github = try await client.quota(service: "github")
        #expect(github.limit == 5000)
        #expect(github.remaining == 4321)

        // A 429 reported through the client opens the shared breaker.
        try await client.observe(service: "api", status: 429, headers: ["retry-after": "30"])
        let denied = try await client.acquire(service: "api", priority: .urgent)
        #expect(!denied.granted)
        #expect(denied.reason == "breaker_open")
        #expect((25_000...30_000).contains(denied.retryAfterMillis ?? 0))

        // Token budgets: a cost by dimension, and the usage reported back refunds what was not used.
        let tokens = QuotaMeshClient(endpoint: URL(string: "http://\(node.api)"))
        let grant = try await tokens.acquire(service: "llm", priority: .urgent, costs: ["tokens": 3000])
        #expect(grant.granted, "\(grant)")
        #expect(try await tokens.acquire(service: "llm", priority: .urgent, costs: ["tokens": 3000]).granted == false)
        try await tokens.observe(
            service: "llm", account: grant.account, status: 200, headers: [:], usage: ["tokens": 500], costs: ["tokens": 3000])
        #expect(try await tokens.acquire(service: "llm", priority: .urgent, costs: ["tokens": 3000]).granted)
        // The CLI names the dimension it shows when the tightest is not requests: 5,000 - 500 - 3,000 left.
        let table = try await runCLI(["quota", "llm", "--api", node.api], in: node.directory)
        #expect(table.output.contains("1500 tokens"), "\(table.output)")
        let line = try await runCLI(["acquire", "llm", "--priority", "urgent", "--api", node.api], in: node.directory)
        #expect(line.output.contains("of 5000 tokens"), "\(line.output)")

        // Bad input is an error with the node's message, not a decision.
        await #expect(throws: QuotaMeshClient.Failure.self) { try await client.acquire(service: "not a label") }
    }
}

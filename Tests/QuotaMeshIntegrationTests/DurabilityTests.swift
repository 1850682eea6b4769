import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// What `durability` promises, seen in the system calls of a real node: with `synced` every grant is
/// answered after its save was synced to the device; with `process` nothing is synced.
@Suite(.serialized, .timeLimit(.minutes(5))) struct DurabilityTests {
    /// The `fdatasync` and `fsync` calls a node made on its state files while it answered `grants` acquires
    /// one after the other and stopped, traced by strace (`-y` names each call's file).
    func syncCalls(durability: String, grants: Int) async throws -> [String] {
        let node = try await NodeProcess(name: "durable", root: makeRoot())
        try node.writeConfig(#"{"durability": "\#(durability)", "services": {"api": {"limit": 1000, "window": "1h"}}}"#)
        let tracePath = node.directory + "/syscalls.trace"
        let traced = try await ChildProcess.start(
            strace,
            ["-f", "-qq", "-y", "-e", "trace=fdatasync,fsync", "-o", tracePath, try quotameshBinary(), "run",
                "--gossip", "127.0.0.1:\(node.gossipPort)", "--api", node.api, "--config", "config.json"],
            in: node.directory, output: .append(node.logPath))
        defer { traced.signal(SIGKILL) }
        try await node.waitForAPI()
        for _ in 0..<grants {
            let (status, answer) = try await node.request("POST", "/v1/acquire", body: ["service": "api", "priority": "urgent"])
            #expect(status == 200, "\(answer)")
        }
        // The node is strace's child: stopped with SIGTERM, it saves and exits, and strace with it.
        let children = (try? String(contentsOfFile: "/proc/\(traced.pid)/task/\(traced.pid)/children", encoding: .utf8)) ?? ""
        let nodePID = try #require(children.split(separator: " ").first.flatMap { Int32($0) }, "the node under strace")
        kill(nodePID, SIGTERM)
        #expect(await traced.waitForExit(timeout: .seconds(30)))
        let trace = (try? String(contentsOfFile: tracePath, encoding: .utf8)) ?? ""
        return trace.split(separator: "\n").map(String.init).filter { $0.contains("sync(") && $0.contains("/.quotamesh") }
    }

    @Test(.enabled("needs strace (with ptrace allowed) to see the node's system calls") { await canKillMidWrite() })
    func syncedGrantsAreSyncedBeforeTheyAreAnswered() async throws {
        let calls = try await syncCalls(durability: "synced", grants: 3)
        let logSyncs = calls.filter { $0.contains("fdatasync(") && $0.contains("spends.log") }
        // Three acquires, one after the other: each waits for its own save, so each has its own sync.
        #expect(logSyncs.count >= 3, "\(calls)")
        // The snapshots (at the start and at the stop) are synced with their folder.
        #expect(calls.contains { $0.contains("fsync(") && $0.contains("state.json.tmp") }, "\(calls)")
    }

    @Test(.enabled("needs strace (with ptrace allowed) to see the node's system calls") { await canKillMidWrite() })
    func processDurabilitySyncsNothing() async throws {
        let calls = try await syncCalls(durability: "process", grants: 3)
        #expect(calls.isEmpty, "\(calls)")
    }
}

import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

let prlimit = "/usr/bin/prlimit"
let strace = "/usr/bin/strace"

/// Whether this machine can cap a child's file size (prlimit) and stop it at a chosen system call (strace,
/// which needs ptrace).
func canKillMidWrite() async -> Bool {
    let fileManager = FileManager.default
    guard fileManager.isExecutableFile(atPath: prlimit), fileManager.isExecutableFile(atPath: strace) else { return false }
    return (try? await runToCompletion(strace, ["-o", "/dev/null", "/bin/true"], output: .discard, timeout: .seconds(30)).status) == 0
}

/// A node killed in the middle of writing its state file.
@Suite(.serialized, .timeLimit(.minutes(5))) struct CrashMidWriteTests {
    /// A real node process is killed inside a state write: with files capped at half the state's size, its
    /// first write of the new state stops part way, and strace SIGKILLs it as it makes the next `write` to
    /// finish. The state file is still the last good one, byte for byte, and the next start loads it: the
    /// 4 grants made before, no fewer and no more.
    @Test(.enabled("needs prlimit and strace (with ptrace allowed) to kill a node inside a write") { await canKillMidWrite() })
    func aNodeKilledInTheMiddleOfWritingItsStateRestartsFromTheLastGoodState() async throws {
        let node = try await NodeProcess(name: "crash", root: makeRoot())
        try node.writeConfig(ProcessMeshTests.config)
        try await node.start()
        defer { node.signal(SIGTERM) }
        try await node.waitForAPI()
        for _ in 0..<4 {
            let (status, json) = try await node.request("POST", "/v1/acquire", body: ["service": "openai", "priority": "urgent"])
            #expect(status == 200, "\(json)")
        }
        await node.kill(signal: SIGTERM)
        let statePath = node.directory + "/.quotamesh/state.json"
        let temporaryPath = statePath + ".tmp"
        let lastGood = try #require(FileManager.default.contents(atPath: statePath))
        #expect(!FileManager.default.fileExists(atPath: temporaryPath))

        // Restarted, the node saves its new incarnation at once. The cap cuts that save's first `write` short
        // (the kernel writes up to the cap and returns), and strace kills the node as it enters the second
        // `write` to either file. Its output is discarded: a log file would be capped too.
        let cap = lastGood.count / 2
        let crashing = try await ChildProcess.start(
            prlimit,
            ["--fsize=\(cap)", "--", strace, "-f", "-qq", "-o", "/dev/null", "-P", statePath, "-P", temporaryPath,
                "-e", "trace=write", "-e", "inject=write:signal=SIGKILL:when=2",
                try quotameshBinary(), "run", "--gossip", "127.0.0.1:\(node.gossipPort)", "--api", node.api,
                "--config", "config.json"],
            in: node.directory, output: .discard)
        let killed = await crashing.waitForExit(timeout: .seconds(60))
        await crashing.killAndWait()
        #expect(killed && crashing.status == 128 + SIGKILL, "killed inside the write, not \(String(describing: crashing.status))")
        let partial = FileManager.default.contents(atPath: temporaryPath)
        #expect(partial?.count == cap, "the write was cut at the cap: \(String(describing: partial?.count)) of \(lastGood.count) bytes")
        #expect(FileManager.default.contents(atPath: statePath) == lastGood, "the state file is the last good one")

        // A normal start loads the last good state and saves over the partial file.
        try await node.start()
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(60)
        var up = false
        while clock.now < deadline, !up, node.child?.hasExited == false {
            up = (try? await node.request("GET", "/healthz").0) == 200
            if !up { try await Task.sleep(for: .milliseconds(50)) }
        }
        let log = (try? String(contentsOfFile: node.logPath, encoding: .utf8)) ?? ""
        try #require(up, "the node did not start again: \(log.suffix(1500))")
        let quota = try await node.quota("openai")
        #expect((quota["consumed"] as? [String: Any])?["local"] as? Int == 4, "\(quota)")
        #expect(quota["remaining"] as? Int == 96)
        #expect(!FileManager.default.fileExists(atPath: temporaryPath), "the partial file was replaced and renamed")
    }
}

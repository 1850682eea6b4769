import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Mounts a tiny tmpfs at `path` (mount(2)); `false` without the privilege (the test is then skipped,
/// saying why).
func mountTinyFileSystem(at path: String, kilobytes: Int) -> Bool {
    guard getuid() == 0 else { return false }
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return mount("tmpfs", path, "tmpfs", 0, "size=\(kilobytes)k") == 0
}

/// Unmounts what is mounted at `path` (lazily, so an open file cannot keep it).
func unmount(_ path: String) {
    _ = umount2(path, Int32(MNT_DETACH))
}

let canMount: Bool = {
    let probe = NSTemporaryDirectory() + "quotamesh-mount-probe-\(getpid())"
    defer { unmount(probe); try? FileManager.default.removeItem(atPath: probe) }
    return mountTinyFileSystem(at: probe, kilobytes: 16)
}()

@Suite(.serialized, .timeLimit(.minutes(5))) struct DiskFullTests {
    /// Fills the file system under `folder` with one file until the kernel says it is full.
    func fill(_ folder: String) -> String {
        let path = folder + "/filler"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let chunk = [UInt8](repeating: 0xAA, count: 1024)
        while chunk.withUnsafeBytes({ write(fd, $0.baseAddress, chunk.count) }) > 0 {}
        close(fd)
        return path
    }

    /// The `api` key's consumption as a start would read it: the snapshot, then the log's later lines.
    func consumedInStateFile(_ folder: String) throws -> Int {
        func consumed(_ quotas: [[String: Any]]) -> Int? {
            quotas.first { $0["service"] as? String == "api" }
                .flatMap { ($0["state"] as? [String: Any])?["consumption"] as? [String: Any] }?["total"] as? Int
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/state.json"))
        let snapshot = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        var total = consumed(snapshot?["quotas"] as? [[String: Any]] ?? []) ?? -1
        let included = snapshot?["logSequence"] as? Int ?? 0
        let log = (try? String(contentsOfFile: folder + "/spends.log", encoding: .utf8)) ?? ""
        for line in log.split(separator: "\n") {
            guard let entry = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                (entry["sequence"] as? Int ?? 0) > included
            else { continue }
            total = consumed(entry["quotas"] as? [[String: Any]] ?? []) ?? total
        }
        return total
    }

    @Test(.enabled(if: canMount, "needs root (CAP_SYS_ADMIN) to mount a tmpfs for the state folder"))
    func aFullDiskIsReportedAndTheLastGoodStateIsKept() async throws {
        let node = try await NodeProcess(name: "full", root: makeRoot())
        let state = node.directory + "/statefs"
        #expect(mountTinyFileSystem(at: state, kilobytes: 64))
        defer { unmount(state) }
        try node.writeConfig(#"{"state": "statefs", "services": {"api": {"limit": 1000, "window": "1h"}}}"#)
        try await node.start()
        defer { node.signal(SIGTERM) }
        try await node.waitForAPI()

        func acquire() async throws -> Int {
            try await node.request("POST", "/v1/acquire", body: ["service": "api", "priority": "urgent"]).0
        }
        for _ in 0..<3 { #expect(try await acquire() == 200) }
        #expect(try consumedInStateFile(state) == 3)

        let filler = fill(state)
        // A grant is answered only once its spending is on disk. The log's appends go on while they fit in
        // the blocks its file already has (each such grant is on disk); the first that needs a new block is
        // refused, and so is every one after it while saves fail.
        var grantedOnFullDisk = 0
        var refusal: (status: Int, answer: [String: Any]) = (200, [:])
        while refusal.status == 200, grantedOnFullDisk < 200 {
            refusal = try await node.request("POST", "/v1/acquire", body: ["service": "api", "priority": "urgent"])
            if refusal.status == 200 { grantedOnFullDisk += 1 }
        }
        #expect(refusal.status == 429, "\(grantedOnFullDisk) grants on a full disk")
        #expect(refusal.answer["detail"] as? String == "persistence", "\(refusal.answer)")
        #expect(try await acquire() == 429, "and none after it while saves fail")
        let (_, health) = try await node.request("GET", "/healthz")
        #expect(health["status"] as? String == "degraded")
        #expect((health["persistence_error"] as? String)?.contains("No space left") == true, "\(health)")
        let granted = 3 + grantedOnFullDisk
        #expect(try consumedInStateFile(state) == granted, "every grant answered is on disk, and the files read back")

        try FileManager.default.removeItem(atPath: filler)
        // The node tries to save again every round: wait (at most 10 s) until it reports healthy.
        let deadline = ContinuousClock.now + .seconds(10)
        var healed: [String: Any] = [:]
        while ContinuousClock.now < deadline {
            healed = try await node.request("GET", "/healthz").1
            if healed["status"] as? String == "ok" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(healed["status"] as? String == "ok")
        #expect(try await acquire() == 200)
        // The refused call stays counted (it was charged before its save failed: conservative), so + 1 + 1.
        #expect(try consumedInStateFile(state) == granted + 2, "saved again once there is room, nothing lost")
        let log = (try? String(contentsOfFile: node.logPath, encoding: .utf8)) ?? ""
        #expect(log.contains("Cannot save state"))
        #expect(log.contains("State saved again"))
    }
}

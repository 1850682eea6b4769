import Foundation
import Logging
import Synchronization
import Testing
@testable import QuotaMeshCore
@testable import QuotaMeshNode
import QuotaMeshCrypto

/// Group commit: concurrent grants share one write of the state, and no grant is answered before the state
/// that counts it is on disk.
@Suite struct GroupCommitTests {
    /// Grants answered so far, across the concurrent tasks.
    final class AnswerCount: Sendable {
        let value = Mutex(0)
    }

    /// The grants counted in the state file now.
    static func savedCount(_ store: StateStore) throws -> UInt64 {
        try store.load()?.quotas.first { $0.service == "api" }?.state.consumption.windowCount ?? 0
    }

    @Test func concurrentGrantsShareWritesAndNoneIsAnsweredBeforeItIsSaved() async throws {
        let folder = NSTemporaryDirectory() + "quotamesh-commit-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let store = try StateStore(directory: folder)
        let node = try MeshNode(
            identity: SigningKey(),
            configuration: MeshConfiguration(services: ["api": ServicePolicy(limit: 1000, windowMillis: 3_600_000, burstFraction: 1)]),
            peers: [], stateStore: store, logger: Logger(label: "test"))
        await node.startWithoutNetwork()
        let savesBefore = await node.statistics()["state_saves"] ?? 0
        let answered = AnswerCount()
        let grants = 64
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<grants {
                group.addTask {
                    let decision = await node.acquire(AcquireRequest(service: "api", priority: .urgent))
                    #expect(decision.granted)
                    let repliedSoFar = answered.value.withLock { count in
                        count += 1
                        return count
                    }
                    // Every grant answered so far, this one included, is already in the file.
                    let saved = try Self.savedCount(store)
                    #expect(saved >= UInt64(repliedSoFar))
                }
            }
            try await group.waitForAll()
        }
        #expect(try Self.savedCount(store) == UInt64(grants))
        let saves = (await node.statistics()["state_saves"] ?? 0) - savesBefore
        #expect(saves >= 1)
        #expect(saves < grants, "\(saves) writes for \(grants) concurrent grants")
        print("group commit: \(grants) concurrent grants, \(saves) state writes")
    }

    /// A save's file work runs off the node's actor: while a write is held, the node still answers, decides
    /// the next acquire and holds its reply for the next save; the first grant is answered only once its
    /// write is done.
    @Test func theNodeGoesOnWhileASaveIsBeingWritten() async throws {
        let folder = NSTemporaryDirectory() + "quotamesh-commit-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let hold = Mutex(false)
        let held = Mutex(false)
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        var store = try StateStore(directory: folder)
        store.writeObserver = {
            guard hold.withLock({ $0 }) else { return }
            held.withLock { $0 = true }
            entered.signal()
            _ = release.wait(timeout: .now() + 10)
            held.withLock { $0 = false }
        }
        let node = try MeshNode(
            identity: SigningKey(),
            configuration: MeshConfiguration(services: ["api": ServicePolicy(limit: 1000, windowMillis: 3_600_000, burstFraction: 1)]),
            peers: [], stateStore: store, logger: Logger(label: "test"))
        await node.startWithoutNetwork()
        #expect(await node.acquire(AcquireRequest(service: "api", priority: .urgent)).granted)
        hold.withLock { $0 = true }
        let first = AnswerCount()
        let second = AnswerCount()
        let firstTask = Task {
            #expect(await node.acquire(AcquireRequest(service: "api", priority: .urgent)).granted)
            first.value.withLock { $0 += 1 }
        }
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                entered.wait()
                continuation.resume()
            }
        }
        hold.withLock { $0 = false }
        // The write is held: the actor answers anyway.
        _ = await node.statistics()
        #expect(held.withLock { $0 }, "the node answered only once the write was done")
        let secondTask = Task {
            #expect(await node.acquire(AcquireRequest(service: "api", priority: .urgent)).granted)
            second.value.withLock { $0 += 1 }
        }
        // The second acquire is decided while the first grant's write is held; neither is answered yet.
        var consumed: UInt64 = 0
        for _ in 0..<1000 where consumed < 3 {
            consumed = await node.quota(of: QuotaKey(service: "api", account: "default"))?.consumedLocal ?? 0
            if consumed < 3 { await Task.yield() }
        }
        #expect(consumed == 3)
        #expect(first.value.withLock { $0 } == 0)
        #expect(second.value.withLock { $0 } == 0)
        #expect(held.withLock { $0 })
        release.signal()
        await firstTask.value
        await secondTask.value
        #expect(try Self.savedCount(store) == 3)
    }
}


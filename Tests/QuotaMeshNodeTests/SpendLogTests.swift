import Foundation
import Testing
@testable import QuotaMeshCore
@testable import QuotaMeshNode

/// The state folder's snapshot and log of changes: what a save writes, what a start reads back.
@Suite struct SpendLogTests {
    static let keyA = QuotaKey(service: "a")
    static let keyB = QuotaKey(service: "b")

    /// A state with `a` and `b` consumed `countA` and `countB` times.
    static func state(_ countA: UInt64, _ countB: UInt64, incarnation: UInt64 = 5) -> PersistedNodeState {
        PersistedNodeState(
            incarnation: incarnation,
            quotas: [
                PersistedQuota(key: keyA, state: QuotaState(consumption: ConsumptionEntry(total: countA, windowEnd: 9, windowCount: countA))),
                PersistedQuota(key: keyB, state: QuotaState(consumption: ConsumptionEntry(total: countB, windowEnd: 9, windowCount: countB))),
            ])
    }

    /// The log's lines.
    static func lines(_ store: StateStore) -> [String] {
        let text = (try? String(contentsOfFile: store.logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map(String.init)
    }

    /// The consumption of `key` in what a start would read.
    static func loaded(_ store: StateStore, _ key: QuotaKey) throws -> UInt64? {
        try store.load()?.quotas.first { $0.key == key }?.state.consumption.total
    }

    @Test func aSaveAppendsOnlyTheKeysThatChangedAndAStartReadsThemBack() throws {
        let store = try StateStore(directory: temporaryDirectory())
        let writer = StateWriter(store: store, restored: nil)
        try writer.save(Self.state(0, 0))
        #expect(writer.compactions == 1, "a run's first save is a snapshot")
        #expect(Self.lines(store).isEmpty)

        try writer.save(Self.state(1, 0))
        try writer.save(Self.state(2, 0))
        try writer.save(Self.state(2, 7))
        let lines = Self.lines(store)
        #expect(lines.count == 3)
        #expect(lines.allSatisfy { $0.contains("\"service\":\"a\"") != $0.contains("\"service\":\"b\"") }, "one key per line: \(lines)")
        #expect(try Self.loaded(store, Self.keyA) == 2)
        #expect(try Self.loaded(store, Self.keyB) == 7)
        #expect(try store.load()?.incarnation == 5)

        try writer.save(Self.state(2, 7))
        #expect(Self.lines(store).count == 3, "nothing changed, nothing written")
        try writer.save(Self.state(2, 7, incarnation: 6))
        #expect(try store.load()?.incarnation == 6, "a new incarnation is saved too")
        #expect(writer.appends == 4)
    }

    @Test func aLastLineCutShortIsLeftOutAndADamagedEarlierLineStopsTheStart() throws {
        let store = try StateStore(directory: temporaryDirectory())
        let writer = StateWriter(store: store, restored: nil)
        try writer.save(Self.state(0, 0))
        try writer.save(Self.state(3, 0))
        let good = try #require(FileManager.default.contents(atPath: store.logPath))

        // A crash in the middle of an append: its grants were never answered.
        let torn = good + Data(#"{"sequence":2,"incarnation":5,"quotas":[{"serv"#.utf8)
        try torn.write(to: URL(fileURLWithPath: store.logPath))
        #expect(try Self.loaded(store, Self.keyA) == 3)

        // A damaged line with good lines after it is not a torn append: the start stops and names the line.
        let damaged = Data("garbage\n".utf8) + good
        try damaged.write(to: URL(fileURLWithPath: store.logPath))
        do {
            _ = try store.load()
            Issue.record("a damaged log was read")
        } catch let error as FileError {
            #expect(error.path == store.logPath)
            #expect(error.reason.contains("line 1"), "\(error)")
        }
    }

    /// A crash after a compaction renamed its snapshot but before it emptied the log: the log's entries are
    /// older than the snapshot, which names the last one it includes, and are not applied again.
    @Test func entriesTheSnapshotIncludesAreNotAppliedAgain() throws {
        let store = try StateStore(directory: temporaryDirectory())
        let writer = StateWriter(store: store, restored: nil)
        try writer.save(Self.state(0, 0))
        try writer.save(Self.state(1, 0))
        try writer.save(Self.state(2, 0))
        let log = try #require(FileManager.default.contents(atPath: store.logPath))
        var snapshot = Self.state(9, 4)
        snapshot.logSequence = 2
        try Files.writeAtomically([UInt8](try JSONEncoder().encode(snapshot)), to: store.path)
        try log.write(to: URL(fileURLWithPath: store.logPath))
        #expect(try Self.loaded(store, Self.keyA) == 9, "not 2, from an entry older than the snapshot")
        #expect(try Self.loaded(store, Self.keyB) == 4)

        // A restart from it goes on numbering after the snapshot's last entry.
        let restored = try #require(try store.load())
        let next = StateWriter(store: store, restored: restored)
        try next.save(restored)
        var later = restored
        later.quotas[0].state.consumption.total = 10
        try next.save(later)
        #expect(try Self.loaded(store, Self.keyA) == 10)
    }

    @Test func theLogIsCompactedIntoTheSnapshotOnceItOutgrowsIt() throws {
        let store = try StateStore(directory: temporaryDirectory())
        let writer = StateWriter(store: store, restored: nil)
        var largest = 0
        for count in 0..<2_000 as Range<UInt64> {
            try writer.save(Self.state(count, count / 2))
            let size = (try? FileManager.default.attributesOfItem(atPath: store.logPath)[.size] as? Int) ?? 0
            largest = max(largest, size)
        }
        #expect(writer.compactions > 1, "\(writer.compactions) snapshots in 2,000 saves")
        #expect(largest <= StateWriter.minimumLogBytes + 1_024, "the log stayed bounded: \(largest) bytes")
        #expect(try Self.loaded(store, Self.keyA) == 1_999)
        #expect(try Self.loaded(store, Self.keyB) == 999)

        // A graceful stop leaves the whole state in the snapshot.
        writer.compactAtNextSave()
        try writer.save(Self.state(1_999, 999))
        #expect(Self.lines(store).isEmpty)
        let snapshot = try JSONDecoder().decode(PersistedNodeState.self, from: try #require(FileManager.default.contents(atPath: store.path)))
        #expect(snapshot.quotas.first { $0.key == Self.keyA }?.state.consumption.total == 1_999)
    }

    /// An append that fails (here: the log's path is taken by a folder) is not followed by appends: the next
    /// save that can be written is a snapshot, and the log is emptied with it.
    @Test func aFailedAppendIsFollowedByASnapshot() throws {
        let store = try StateStore(directory: temporaryDirectory())
        let writer = StateWriter(store: store, restored: nil)
        try writer.save(Self.state(0, 0))
        try FileManager.default.createDirectory(atPath: store.logPath, withIntermediateDirectories: false)
        #expect(throws: FileError.self) { try writer.save(Self.state(1, 0)) }
        try FileManager.default.removeItem(atPath: store.logPath)
        try Data("torn".utf8).write(to: URL(fileURLWithPath: store.logPath))
        try writer.save(Self.state(2, 0))
        #expect(writer.compactions == 2)
        #expect(Self.lines(store).isEmpty, "the partial line is gone")
        #expect(try Self.loaded(store, Self.keyA) == 2)
    }

    @Test func durabilityIsConfiguredByName() throws {
        let synced = try NodeConfiguration.parse(json: Data(#"{"durability": "synced"}"#.utf8), source: "test.json")
        #expect(synced.durability == .synced)
        let process = try NodeConfiguration.parse(json: Data(#"{"durability": "process"}"#.utf8), source: "test.json")
        #expect(process.durability == .process)
        #expect(NodeConfiguration().durability == .synced)
        #expect(throws: ConfigurationError.self) {
            try NodeConfiguration.parse(json: Data(#"{"durability": "fsync"}"#.utf8), source: "test.json")
        }
        let fromEnvironment = try NodeConfiguration.load(file: nil, environment: ["durability": "process"])
        #expect(fromEnvironment.durability == .process)
    }
}

import Foundation
import QuotaMeshCore

/// The node's state folder: `state.json`, a snapshot replaced atomically, and `spends.log`, an
/// append-only log of what changed since that snapshot, one JSON line per save (``StateWriter``).
/// Reading takes the snapshot and then every log entry after the one it includes.
public struct StateStore: Sendable {
    /// The folder.
    public let directory: String
    /// What a save promises: on disk for the kernel (`.process`) or synced to the device (`.synced`).
    public let durability: Durability

    /// Called on the writing thread as each save's file work begins: a test's way to hold a write and see
    /// what the node does meanwhile.
    var writeObserver: (@Sendable () -> Void)?

    /// The default state folder, relative to the working directory.
    public static let defaultDirectory = ".quotamesh"

    /// How far a save goes before a grant it counts is answered.
    public enum Durability: String, Sendable, CaseIterable {
        /// Written and synced to the device (`fdatasync`): a grant survives a crash of the machine.
        case synced
        /// Written to the kernel: a grant survives the node's crash or SIGKILL; a power loss may lose the
        /// last ones, which peers' copies of this node's records then bring back.
        case process
    }

    /// Opens the store, creating the folder (mode 0700) if needed.
    public init(directory: String, durability: Durability = .synced) throws {
        self.directory = directory
        self.durability = durability
        try Files.makeDirectory(directory)
    }

    /// The snapshot.
    public var path: String { (directory as NSString).appendingPathComponent("state.json") }

    /// The log of changes since the snapshot.
    public var logPath: String { (directory as NSString).appendingPathComponent("spends.log") }

    /// Reads the saved state: the snapshot with the log's later entries applied; `nil` if there is none.
    /// - Throws: `FileError` if a file exists but cannot be read or decoded: the node must not start and
    ///   silently forget what it consumed. A last log line cut short (a crash in the middle of an append,
    ///   whose grants were never answered) is left out.
    public func load() throws -> PersistedNodeState? {
        var state: PersistedNodeState?
        if let bytes = try Files.read(path) {
            do {
                state = try JSONDecoder().decode(PersistedNodeState.self, from: Data(bytes))
            } catch {
                throw FileError(
                    path: path,
                    reason: "cannot be decoded (\(error)); move it aside to start with no saved consumption")
            }
        }
        let entries = try readLog()
        let included = state?.logSequence ?? 0
        for entry in entries where entry.sequence > included {
            var merged = state ?? PersistedNodeState(incarnation: 0, quotas: [])
            merged.apply(entry)
            state = merged
        }
        return state
    }

    /// The log's entries in order. Every line but a last one without its newline must decode.
    func readLog() throws -> [StateLogEntry] {
        guard let bytes = try Files.read(logPath) else { return [] }
        let decoder = JSONDecoder()
        var entries: [StateLogEntry] = []
        var start = 0
        var lineNumber = 0
        while start < bytes.count {
            lineNumber += 1
            guard let end = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else { break }
            do {
                entries.append(try decoder.decode(StateLogEntry.self, from: Data(bytes[start..<end])))
            } catch {
                throw FileError(
                    path: logPath,
                    reason: "line \(lineNumber) cannot be decoded (\(error)); move it aside to start from state.json alone")
            }
            start = end + 1
        }
        return entries
    }

    /// Writes `state` as the snapshot and empties the log (a compaction); synced when ``durability`` says so.
    /// - Returns: the snapshot's size in bytes.
    @discardableResult
    public func save(_ state: PersistedNodeState) throws -> Int {
        let bytes = try snapshotBytes(state)
        try writeSnapshot(bytes)
        return bytes.count
    }

    /// `state` as the snapshot's bytes.
    func snapshotBytes(_ state: PersistedNodeState) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return [UInt8](try encoder.encode(state))
    }

    /// Replaces the snapshot with `bytes` and empties the log; synced when ``durability`` says so.
    func writeSnapshot(_ bytes: [UInt8]) throws {
        try Files.writeAtomically(bytes, to: path, mode: 0o600, sync: durability == .synced)
        if FileManager.default.fileExists(atPath: logPath) { try Files.truncate(logPath, sync: durability == .synced) }
    }
}

/// One save's changes, as a line of the log: the keys whose state changed (each whole, so the last entry
/// for a key is its state), the incarnation, and the quarantines when they changed.
struct StateLogEntry: Codable, Equatable {
    /// Counts entries across compactions; a snapshot names the last one it includes.
    var sequence: UInt64
    var incarnation: UInt64
    var quotas: [PersistedQuota]
    var quarantined: [PersistedQuarantine]?
}

extension PersistedNodeState {
    /// This state with a log entry's changes.
    mutating func apply(_ entry: StateLogEntry) {
        incarnation = max(incarnation, entry.incarnation)
        for quota in entry.quotas {
            if let index = quotas.firstIndex(where: { $0.key == quota.key }) {
                quotas[index] = quota
            } else {
                quotas.append(quota)
            }
        }
        if let quarantined = entry.quarantined { self.quarantined = quarantined }
        logSequence = entry.sequence
    }
}

/// Saves the node's state for ``StateStore``: each save appends what changed since the last one as one log
/// line (one `write`, synced with `fdatasync` where the store's durability says so), so a grant costs the
/// bytes of its key and not a rewrite of every key. The log is compacted into a new snapshot when it has
/// grown to several snapshots' size, at the first save of a run, and after a write failed (so that a
/// partial line is never followed by good ones).
///
/// A save is three steps, so that the blocking file work can run off the node's actor: ``prepare(_:)``
/// works out what to write, ``StateWrite/perform()`` writes it, ``finish(_:error:)`` takes the result
/// into account. One write at a time: the next is prepared only once the last is finished.
final class StateWriter {
    let store: StateStore
    /// What the files hold together, by key.
    private var savedQuotas: [QuotaKey: PersistedQuota] = [:]
    private var savedIncarnation: UInt64?
    private var savedQuarantined: [PersistedQuarantine]?
    /// The last log entry written.
    private var sequence: UInt64
    private var log: Int32 = -1
    private var logBytes = 0
    private var snapshotBytes = 0
    private var mustCompact = true
    /// Saves that appended and saves that wrote a snapshot, for statistics.
    private(set) var appends = 0
    private(set) var compactions = 0

    /// The log is compacted once it is this many times the snapshot's size (and at least ``minimumLogBytes``).
    static let compactionRatio = 4
    static let minimumLogBytes = 64 * 1024

    init(store: StateStore, restored: PersistedNodeState?) {
        self.store = store
        self.sequence = restored?.logSequence ?? 0
    }

    deinit {
        if log >= 0 { close(log) }
    }

    /// Saves `state` at once, on the caller's thread: ``prepare(_:)``, the write, ``finish(_:error:)``.
    /// Throws when it is not on disk (as durable as the store promises).
    func save(_ state: PersistedNodeState) throws {
        guard let write = try prepare(state) else { return }
        do {
            try write.perform()
        } catch {
            finish(write, error: error)
            throw error
        }
        finish(write, error: nil)
    }

    /// What saving `state` takes: nothing (`nil`) when nothing changed, one line for the log when some keys
    /// did, a snapshot when the log is due for compaction.
    func prepare(_ state: PersistedNodeState) throws -> StateWrite? {
        if mustCompact || logBytes > max(Self.minimumLogBytes, Self.compactionRatio * snapshotBytes) {
            // Nothing is appended to the log until the snapshot that empties it is written.
            if log >= 0 {
                close(log)
                log = -1
            }
            var snapshot = state
            snapshot.logSequence = sequence
            return StateWrite(
                operation: .snapshot(bytes: try store.snapshotBytes(snapshot)), store: store, quotas: state.quotas,
                incarnation: state.incarnation, quarantined: state.quarantined, quarantineChanged: true)
        }
        let changed = state.quotas.filter { savedQuotas[$0.key] != $0 }
        let quarantineChanged = state.quarantined != savedQuarantined
        guard !changed.isEmpty || quarantineChanged || state.incarnation != savedIncarnation else { return nil }
        let entry = StateLogEntry(
            sequence: sequence + 1, incarnation: state.incarnation, quotas: changed,
            quarantined: quarantineChanged ? (state.quarantined ?? []) : nil)
        var line = [UInt8](try JSONEncoder().encode(entry))
        line.append(UInt8(ascii: "\n"))
        do {
            try openLog()
        } catch {
            mustCompact = true
            throw error
        }
        return StateWrite(
            operation: .append(line: line, log: log), store: store, quotas: changed, incarnation: state.incarnation,
            quarantined: state.quarantined, quarantineChanged: quarantineChanged)
    }

    /// Takes a performed write into account: what the files hold now, or (`error` set) that the next save
    /// must write a snapshot, since whatever part of a line reached the log must not be followed by good
    /// lines.
    func finish(_ write: StateWrite, error: (any Error)?) {
        guard error == nil else {
            mustCompact = true
            return
        }
        switch write.operation {
        case .append(let line, _):
            sequence += 1
            logBytes += line.count
            appends += 1
            for quota in write.quotas { savedQuotas[quota.key] = quota }
        case .snapshot(let bytes):
            snapshotBytes = bytes.count
            savedQuotas = Dictionary(write.quotas.map { ($0.key, $0) }, uniquingKeysWith: { _, last in last })
            compactions += 1
            logBytes = 0
            mustCompact = false
        }
        savedIncarnation = write.incarnation
        if write.quarantineChanged { savedQuarantined = write.quarantined }
    }

    /// Makes the next save a snapshot (at shutdown, so that `state.json` alone is the whole state).
    func compactAtNextSave() {
        mustCompact = true
    }

    private func openLog() throws {
        guard log < 0 else { return }
        log = try Files.openForAppending(store.logPath)
        logBytes = Int(lseek(log, 0, SEEK_END))
    }
}

/// One save's file work, as ``StateWriter/prepare(_:)`` worked it out: blocking I/O (a write and, where the
/// store promises "synced", an `fdatasync`) that the node runs off its actor, so that a slow disk holds up
/// the grants that wait for this save and nothing else.
struct StateWrite: Sendable {
    enum Operation: Sendable {
        /// A line appended to the open log.
        case append(line: [UInt8], log: Int32)
        /// The whole state as the new snapshot, and the log emptied.
        case snapshot(bytes: [UInt8])
    }

    let operation: Operation
    let store: StateStore
    /// The keys written: those that changed for a line, every key for a snapshot.
    fileprivate let quotas: [PersistedQuota]
    fileprivate let incarnation: UInt64
    fileprivate let quarantined: [PersistedQuarantine]?
    fileprivate let quarantineChanged: Bool

    /// Writes it; throws when it is not on disk as durable as the store promises.
    func perform() throws {
        store.writeObserver?()
        switch operation {
        case .append(let line, let log):
            try Files.append(line, to: log, path: store.logPath, sync: store.durability == .synced)
        case .snapshot(let bytes):
            try store.writeSnapshot(bytes)
        }
    }
}

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
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes = [UInt8](try encoder.encode(state))
        try Files.writeAtomically(bytes, to: path, mode: 0o600, sync: durability == .synced)
        if FileManager.default.fileExists(atPath: logPath) { try Files.truncate(logPath, sync: durability == .synced) }
        return bytes.count
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
/// grown to several snapshots' size, at the first save of a run, and after an append failed (so that a
/// partial line is never followed by good ones).
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

    /// Saves `state`: nothing when nothing changed, one appended line when some keys did, a snapshot when
    /// the log is due for compaction. Throws when it is not on disk (as durable as the store promises).
    func save(_ state: PersistedNodeState) throws {
        if mustCompact || logBytes > max(Self.minimumLogBytes, Self.compactionRatio * snapshotBytes) {
            try compact(state)
            return
        }
        let changed = state.quotas.filter { savedQuotas[$0.key] != $0 }
        let quarantineChanged = state.quarantined != savedQuarantined
        guard !changed.isEmpty || quarantineChanged || state.incarnation != savedIncarnation else { return }
        let entry = StateLogEntry(
            sequence: sequence + 1, incarnation: state.incarnation, quotas: changed,
            quarantined: quarantineChanged ? (state.quarantined ?? []) : nil)
        var line = [UInt8](try JSONEncoder().encode(entry))
        line.append(UInt8(ascii: "\n"))
        do {
            try openLog()
            try Files.append(line, to: log, path: store.logPath, sync: store.durability == .synced)
        } catch {
            // Whatever part of the line reached the file must not be followed by good lines: the next save
            // writes a snapshot and empties the log.
            mustCompact = true
            throw error
        }
        sequence += 1
        logBytes += line.count
        appends += 1
        for quota in changed { savedQuotas[quota.key] = quota }
        savedIncarnation = state.incarnation
        if quarantineChanged { savedQuarantined = state.quarantined }
    }

    /// Writes `state` as the snapshot, naming the last log entry it includes, and empties the log. Until the
    /// log is empty nothing is appended to it (a restart skips the entries the snapshot names).
    private func compact(_ state: PersistedNodeState) throws {
        if log >= 0 {
            close(log)
            log = -1
        }
        var snapshot = state
        snapshot.logSequence = sequence
        snapshotBytes = try store.save(snapshot)
        savedQuotas = Dictionary(state.quotas.map { ($0.key, $0) }, uniquingKeysWith: { _, last in last })
        savedIncarnation = state.incarnation
        savedQuarantined = state.quarantined
        compactions += 1
        logBytes = 0
        mustCompact = false
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

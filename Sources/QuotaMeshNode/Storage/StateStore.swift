import Foundation
import QuotaMeshCore

/// The node's state folder: `state.json` holds what `PersistedNodeState` says, replaced atomically.
public struct StateStore: Sendable {
    /// The folder.
    public let directory: String

    /// The default state folder, relative to the working directory.
    public static let defaultDirectory = ".quotamesh"

    /// Opens the store, creating the folder (mode 0700) if needed.
    public init(directory: String) throws {
        self.directory = directory
        try Files.makeDirectory(directory)
    }

    /// The state file.
    public var path: String { (directory as NSString).appendingPathComponent("state.json") }

    /// Reads the saved state; `nil` if there is none.
    /// - Throws: `FileError` if the file exists but cannot be read or decoded: the node must not start
    ///   and silently forget what it consumed.
    public func load() throws -> PersistedNodeState? {
        guard let bytes = try Files.read(path) else { return nil }
        do {
            return try JSONDecoder().decode(PersistedNodeState.self, from: Data(bytes))
        } catch {
            throw FileError(
                path: path,
                reason: "cannot be decoded (\(error)); move it aside to start with no saved consumption")
        }
    }

    /// Saves the state atomically.
    public func save(_ state: PersistedNodeState) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(state)
        // No fsync per save: the rename is atomic and the page cache survives SIGKILL; a power loss may
        // lose the last few grants, which peers' copies of our records then restore.
        try Files.writeAtomically([UInt8](data), to: path, mode: 0o600, sync: false)
    }
}

import Foundation
import QuotaMeshCore
import QuotaMeshCrypto

/// A problem found in one peer file; the file is skipped (never half-trusted) and the node goes on.
public struct TrustStoreProblem: Error, CustomStringConvertible, Sendable, Equatable {
    /// The peer file.
    public var file: String
    /// The line (1-based), or 0 for the whole file.
    public var line: Int
    /// What is wrong.
    public var reason: String

    public var description: String { line > 0 ? "\(file):\(line): \(reason)" : "\(file): \(reason)" }
}

/// The trust store: a folder with one `NAME.peer` file per vouched peer.
///
/// ```
/// # QuotaMesh peer
/// name = alice
/// key = <base64 Ed25519 public key>
/// endpoint = 127.0.0.1:9720
/// ```
/// Lines starting with `#` and blank lines are ignored. Other files (such as `README.md`) are ignored.
public struct TrustStore: Sendable {
    /// The folder.
    public let directory: String

    /// The file extension of peer files.
    public static let fileExtension = "peer"

    /// Opens (but does not create) the store at `directory`.
    public init(directory: String) { self.directory = directory }

    /// The result of reading the folder: the valid peers and a problem per rejected file.
    public struct Contents: Sendable {
        /// Valid peers, sorted by name.
        public var peers: [PeerInfo]
        /// One entry per file that was skipped.
        public var problems: [TrustStoreProblem]
    }

    /// Reads every peer file. A missing folder is an empty store. A folder that others than its owner may
    /// write to is refused whole (anyone who can write it could vouch for any key), and so is each peer
    /// file others may write to; the problem names the `chmod` that fixes it.
    public func load() -> Contents {
        var peers: [PeerInfo] = []
        var problems: [TrustStoreProblem] = []
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            return Contents(peers: [], problems: [])
        }
        if let mode = try? Files.mode(of: directory), mode & 0o022 != 0 {
            let problem = TrustStoreProblem(
                file: directory, line: 0,
                reason: "the trust folder is writable by others (mode \(String(mode, radix: 8))), so nobody in it is "
                    + "trusted; run `chmod go-w \(directory)`")
            return Contents(peers: [], problems: [problem])
        }
        var seenKeys: [VerifyingKey: String] = [:]
        for name in names.sorted() where name.hasSuffix("." + Self.fileExtension) {
            let path = (directory as NSString).appendingPathComponent(name)
            do {
                let peer = try Self.parse(file: path, fallbackName: String(name.dropLast(Self.fileExtension.count + 1)))
                if let other = seenKeys[peer.key] {
                    problems.append(TrustStoreProblem(file: path, line: 0, reason: "same key as \(other); skipped"))
                    continue
                }
                seenKeys[peer.key] = path
                peers.append(peer)
            } catch let problem as TrustStoreProblem {
                problems.append(problem)
            } catch {
                problems.append(TrustStoreProblem(file: path, line: 0, reason: "\(error)"))
            }
        }
        return Contents(peers: peers.sorted { $0.name < $1.name }, problems: problems)
    }

    /// Parses one peer file.
    /// - Throws: `TrustStoreProblem` naming the line.
    public static func parse(file path: String, fallbackName: String) throws -> PeerInfo {
        if let mode = try? Files.mode(of: path), mode & 0o022 != 0 {
            throw TrustStoreProblem(
                file: path, line: 0,
                reason: "writable by others (mode \(String(mode, radix: 8))), so not trusted; run `chmod go-w \(path)`")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrustStoreProblem(file: path, line: 0, reason: "cannot be read")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TrustStoreProblem(file: path, line: 0, reason: "not UTF-8 text")
        }
        var name: String?
        var key: VerifyingKey?
        var endpoint: Endpoint?
        var weight = Weight.one
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw TrustStoreProblem(file: path, line: lineNumber, reason: "expected `name = value`")
            }
            let field = line[..<equals].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            switch field {
            case "name":
                guard isValidPeerName(value) else {
                    throw TrustStoreProblem(
                        file: path, line: lineNumber, reason: "name must be 1-64 letters, digits, '-', '_' or '.'")
                }
                name = value
            case "key":
                do {
                    key = try VerifyingKey(base64: value)
                } catch {
                    throw TrustStoreProblem(file: path, line: lineNumber, reason: "key: \(error)")
                }
            case "endpoint":
                guard let parsed = Endpoint(parsing: value), parsed.port > 0 else {
                    throw TrustStoreProblem(file: path, line: lineNumber, reason: "endpoint must be HOST:PORT")
                }
                endpoint = parsed
            case "weight":
                guard let number = Double(value), let parsed = Weight(number) else {
                    throw TrustStoreProblem(file: path, line: lineNumber, reason: "weight must be a number from 0.001 to 1000")
                }
                weight = parsed
            default:
                throw TrustStoreProblem(file: path, line: lineNumber, reason: "unknown field `\(field)`")
            }
        }
        guard let key else { throw TrustStoreProblem(file: path, line: 0, reason: "no `key = …` line") }
        return PeerInfo(name: name ?? fallbackName, key: key, endpoint: endpoint, weight: weight)
    }

    /// `true` for names usable as file names and labels.
    public static func isValidPeerName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= 64, bytes.first != UInt8(ascii: ".") else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == 0x2D || b == 0x5F || b == 0x2E
        }
    }

    /// Writes `NAME.peer` for a new peer.
    /// - Throws: if the name is invalid, the key is already trusted under another name, or the file exists.
    public func add(_ peer: PeerInfo, overwrite: Bool = false) throws {
        guard Self.isValidPeerName(peer.name) else {
            throw TrustStoreProblem(file: peer.name, line: 0, reason: "name must be 1-64 letters, digits, '-', '_' or '.'")
        }
        let path = self.path(for: peer.name)
        if !overwrite, FileManager.default.fileExists(atPath: path) {
            throw TrustStoreProblem(file: path, line: 0, reason: "a peer with this name exists (remove it first)")
        }
        if let existing = load().peers.first(where: { $0.key == peer.key && $0.name != peer.name }) {
            throw TrustStoreProblem(file: path, line: 0, reason: "this key is already trusted as `\(existing.name)`")
        }
        try Files.makeDirectory(directory, mode: 0o755)
        var text = "# QuotaMesh peer: one vouched node. Format: Peers/README.md\n"
        text += "name = \(peer.name)\nkey = \(peer.key.base64)\n"
        if let endpoint = peer.endpoint { text += "endpoint = \(endpoint)\n" }
        if peer.weight != .one { text += "weight = \(peer.weight)\n" }
        try Files.writeAtomically(Array(text.utf8), to: path, mode: 0o644)
    }

    /// Deletes `NAME.peer`.
    /// - Returns: `false` if there was no such peer.
    @discardableResult
    public func remove(name: String) throws -> Bool {
        let path = self.path(for: name)
        guard Self.isValidPeerName(name), FileManager.default.fileExists(atPath: path) else { return false }
        try FileManager.default.removeItem(atPath: path)
        return true
    }

    /// The file for a peer name.
    public func path(for name: String) -> String {
        (directory as NSString).appendingPathComponent("\(name).\(Self.fileExtension)")
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import QuotaMeshCrypto

/// Why an identity could not be created or loaded.
public enum IdentityError: Error, CustomStringConvertible, Sendable {
    /// The secret file can be read by group or others.
    case tooOpen(path: String, mode: UInt32)
    /// The file is not a valid identity (line and reason).
    case malformed(path: String, line: Int, reason: String)
    /// An identity already exists where a new one would be written.
    case exists(path: String)
    /// No identity at the path.
    case missing(path: String)
    /// The file system refused.
    case file(FileError)

    public var description: String {
        switch self {
        case .tooOpen(let path, let mode):
            return "\(path): secret key is readable by others (mode \(String(mode, radix: 8))); "
                + "run `chmod 600 \(path)` and start again"
        case .malformed(let path, let line, let reason):
            return "\(path):\(line): \(reason)"
        case .exists(let path):
            return "\(path): an identity already exists (use --force to replace it)"
        case .missing(let path):
            return "\(path): no identity; create one with `quotamesh keygen --identity \(path)`"
        case .file(let error):
            return error.description
        }
    }
}

/// Reads and writes the node's Ed25519 identity: a small text file, mode 0600, never inside the repo.
///
/// ```
/// # QuotaMesh identity: SECRET, keep it mode 0600 and never share it
/// public = <base64 public key>
/// secret = <base64 64-byte libsodium secret key>
/// ```
public enum IdentityStore {
    /// The default identity path, relative to the working directory.
    public static let defaultPath = ".quotamesh/identity"

    /// Creates a new identity at `path` (mode 0600, parent folder 0700).
    /// - Throws: `IdentityError.exists` unless `overwrite`.
    @discardableResult
    public static func create(at path: String, overwrite: Bool = false) throws(IdentityError) -> SigningKey {
        if !overwrite, FileManager.default.fileExists(atPath: path) { throw .exists(path: path) }
        let parent = (path as NSString).deletingLastPathComponent
        do {
            if !parent.isEmpty { try Files.makeDirectory(parent) }
            let key = SigningKey()
            let text = """
                # QuotaMesh identity: SECRET, keep it mode 0600 and never share it
                public = \(key.publicKey.base64)
                secret = \(encodeBase64(key.rawRepresentation))

                """
            try Files.writeAtomically(Array(text.utf8), to: path, mode: 0o600)
            chmod(path, 0o600)
            return key
        } catch let error as FileError {
            throw .file(error)
        } catch {
            throw .file(FileError(path: path, reason: "\(error)"))
        }
    }

    /// Loads the identity at `path`, refusing a secret readable by group or others.
    public static func load(from path: String) throws(IdentityError) -> SigningKey {
        guard FileManager.default.fileExists(atPath: path) else { throw .missing(path: path) }
        let mode: mode_t
        let bytes: [UInt8]
        do {
            mode = try Files.mode(of: path)
            bytes = try Files.read(path) ?? []
        } catch let error as FileError {
            throw .file(error)
        } catch {
            throw .file(FileError(path: path, reason: "\(error)"))
        }
        guard mode & 0o077 == 0 else { throw .tooOpen(path: path, mode: UInt32(mode)) }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw .malformed(path: path, line: 1, reason: "not UTF-8 text")
        }
        var secret: SigningKey?
        var publicText: (String, Int)?
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw .malformed(path: path, line: index + 1, reason: "expected `name = value`")
            }
            let name = line[..<equals].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            switch name {
            case "secret":
                do {
                    secret = try SigningKey(rawRepresentation: decodeBase64(value))
                } catch {
                    throw .malformed(path: path, line: index + 1, reason: "secret: \(error)")
                }
            case "public":
                publicText = (value, index + 1)
            default:
                throw .malformed(path: path, line: index + 1, reason: "unknown field `\(name)`")
            }
        }
        guard let secret else { throw .malformed(path: path, line: 1, reason: "no `secret = …` line") }
        if let (value, line) = publicText, value != secret.publicKey.base64 {
            throw .malformed(path: path, line: line, reason: "public key does not match the secret key")
        }
        return secret
    }

    static func encodeBase64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    static func decodeBase64(_ text: String) throws(CryptoError) -> [UInt8] {
        guard let data = Data(base64Encoded: text) else { throw .invalidBase64 }
        return [UInt8](data)
    }
}

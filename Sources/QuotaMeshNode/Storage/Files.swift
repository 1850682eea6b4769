#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Small POSIX file helpers with the guarantees the node needs: atomic replacement, explicit modes.
enum Files {
    /// Reads a whole file, or `nil` if it does not exist.
    static func read(_ path: String) throws -> [UInt8]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FileError(path: path, reason: "cannot be read")
        }
        return [UInt8](data)
    }

    /// Creates `path` and its parents with `mode` if missing.
    static func makeDirectory(_ path: String, mode: mode_t = 0o700) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw FileError(path: path, reason: "exists and is not a folder") }
            return
        }
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: Int(mode)])
        } catch {
            throw FileError(path: path, reason: "cannot create folder: \(error.localizedDescription)")
        }
    }

    /// Writes `bytes` to a temporary file beside `path`, flushes it to disk and renames it over `path`, so
    /// a reader (or a restart after SIGKILL) sees the old or the new contents, never a mix.
    static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600, sync: Bool = true) throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else { throw FileError(path: temporary, reason: String(cString: strerror(errno))) }
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                write(fd, buffer.baseAddress.map { $0 + written }, bytes.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                close(fd)
                unlink(temporary)
                throw FileError(path: temporary, reason: reason)
            }
            written += result
        }
        if sync, fsync(fd) != 0 {
            let reason = String(cString: strerror(errno))
            close(fd)
            unlink(temporary)
            throw FileError(path: temporary, reason: reason)
        }
        // A late write error (a full disk on some file systems) can surface only here.
        guard close(fd) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw FileError(path: temporary, reason: reason)
        }
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw FileError(path: path, reason: reason)
        }
    }

    /// The permission bits of `path`.
    static func mode(of path: String) throws -> mode_t {
        var info = stat()
        guard stat(path, &info) == 0 else { throw FileError(path: path, reason: String(cString: strerror(errno))) }
        return info.st_mode & 0o777
    }
}

/// A file operation failed; names the file and the reason.
public struct FileError: Error, CustomStringConvertible, Sendable {
    /// The file.
    public var path: String
    /// What went wrong.
    public var reason: String

    public var description: String { "\(path): \(reason)" }
}

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

    /// Writes `bytes` to a temporary file beside `path` and renames it over `path`, so a reader (or a restart
    /// after SIGKILL) sees the old or the new contents, never a mix; with `sync`, the file and the rename are
    /// synced to the device first.
    static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600, sync: Bool = true) throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode)
        guard fd >= 0 else { throw FileError(path: temporary, reason: String(cString: strerror(errno))) }
        do {
            try writeAll(bytes, to: fd, path: temporary)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
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
        // The rename itself is durable only once the folder is synced.
        if sync { try syncDirectory(of: path) }
    }

    /// Syncs the folder that holds `path`, so that a file created or renamed in it survives a power loss.
    static func syncDirectory(of path: String) throws {
        let folder = (path as NSString).deletingLastPathComponent
        let fd = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw FileError(path: folder, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw FileError(path: folder, reason: String(cString: strerror(errno))) }
    }

    /// Opens `path` for appending (created with mode 0600 if missing).
    static func openForAppending(_ path: String) throws -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        guard fd >= 0 else { throw FileError(path: path, reason: String(cString: strerror(errno))) }
        return fd
    }

    /// Appends `bytes` to the open file `fd` (`path` names it in errors), then syncs its data when `sync`.
    /// On a failure the file may hold part of `bytes`.
    static func append(_ bytes: [UInt8], to fd: Int32, path: String, sync: Bool) throws {
        try writeAll(bytes, to: fd, path: path)
        if sync, fdatasync(fd) != 0 { throw FileError(path: path, reason: String(cString: strerror(errno))) }
    }

    /// Writes all of `bytes` to `fd` (`path` names it in errors), going on after short writes.
    private static func writeAll(_ bytes: [UInt8], to fd: Int32, path: String) throws {
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { buffer in
                write(fd, buffer.baseAddress.map { $0 + written }, bytes.count - written)
            }
            if result < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, reason: String(cString: strerror(errno)))
            }
            written += result
        }
    }

    /// Empties the file at `path`, synced when `sync`.
    static func truncate(_ path: String, sync: Bool) throws {
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { throw FileError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        guard ftruncate(fd, 0) == 0 else { throw FileError(path: path, reason: String(cString: strerror(errno))) }
        if sync, fsync(fd) != 0 { throw FileError(path: path, reason: String(cString: strerror(errno))) }
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

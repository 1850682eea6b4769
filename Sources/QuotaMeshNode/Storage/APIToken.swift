import Foundation

/// The bearer token that guards the local API when it listens beyond loopback. It lives in a file of its
/// own, readable by its owner only (like the identity), and is compared in constant time.
public struct APIToken: Sendable, Equatable {
    /// The shortest token accepted, in bytes.
    public static let minimumLength = 16

    /// The token's bytes.
    public let bytes: [UInt8]

    /// Wraps a token, refusing one that is too short or contains whitespace or control characters.
    public init(_ text: String) throws(StartupError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.utf8.count >= Self.minimumLength else {
            throw StartupError(message: "the API token must be at least \(Self.minimumLength) characters")
        }
        guard trimmed.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw StartupError(message: "the API token must be printable ASCII without spaces")
        }
        bytes = Array(trimmed.utf8)
    }

    /// Loads the token from `path`, refusing a file readable by group or others.
    public static func load(from path: String) throws(StartupError) -> APIToken {
        let mode: mode_t
        let contents: [UInt8]?
        do {
            mode = try Files.mode(of: path)
            contents = try Files.read(path)
        } catch {
            throw StartupError(message: "API token file \(error)")
        }
        guard let contents else { throw StartupError(message: "API token file \(path): does not exist") }
        guard mode & 0o077 == 0 else {
            throw StartupError(
                message: "API token file \(path): readable by others (mode \(String(mode, radix: 8))); run `chmod 600 \(path)`")
        }
        guard let text = String(validating: contents, as: UTF8.self) else {
            throw StartupError(message: "API token file \(path): not UTF-8 text")
        }
        do {
            return try APIToken(text)
        } catch {
            throw StartupError(message: "API token file \(path): \(error.message)")
        }
    }
}

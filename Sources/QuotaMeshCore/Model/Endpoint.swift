import QuotaMeshCrypto

/// A host and UDP port as written in peer files and flags (`HOST:PORT`, `[v6]:PORT`).
public struct Endpoint: Hashable, Sendable, Codable, CustomStringConvertible {
    /// A host name or IP literal (without brackets).
    public var host: String
    /// The port, 1–65535 (0 only for "pick any" when binding).
    public var port: Int

    /// Creates an endpoint from its parts.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` or `[IPv6]:PORT`; returns `nil` for anything else.
    public init?(parsing text: String) {
        let trimmed = text.trimmingASCIIWhitespace()
        var host: Substring
        var portText: Substring
        if trimmed.hasPrefix("[") {
            guard let close = trimmed.firstIndex(of: "]") else { return nil }
            host = trimmed[trimmed.index(after: trimmed.startIndex)..<close]
            let rest = trimmed[trimmed.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = trimmed.lastIndex(of: ":") else { return nil }
            host = trimmed[..<colon]
            portText = trimmed[trimmed.index(after: colon)...]
            if host.contains(":") { return nil }
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { return nil }
        self.host = String(host)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

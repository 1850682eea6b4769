import QuotaMeshCrypto

/// Wall-clock time in milliseconds since the Unix epoch. The core never reads a clock: the shell passes
/// `now` into every call.
public typealias UnixMillis = Int64

/// What a quota is counted against: an upstream service, one of its accounts (a label, never a
/// credential), and the dimension counted (`requests`, `tokens`, `input_tokens`, `output_tokens`, or an
/// IETF policy name). Every dimension of an account has its own limit, window and consumption.
public struct QuotaKey: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// The longest service or account label accepted, in UTF-8 bytes, so that every record fits a packet.
    public static let maxLabelBytes = 64
    /// The dimension every call counts in: one request per call unless the cost says otherwise.
    public static let requests = "requests"

    /// The three labels hashed once, when the key is made: the decision path looks a key up in several
    /// tables, and hashing three strings each time was a third of its cost. Compared first, so keys that
    /// differ usually differ here.
    private var fingerprint: Int
    /// The upstream service, e.g. `openai` or `github`.
    public var service: String { didSet { fingerprint = Self.fingerprint(service, account, dimension) } }
    /// The account label within the service; `default` when the service has a single account.
    public var account: String { didSet { fingerprint = Self.fingerprint(service, account, dimension) } }
    /// What is counted: `requests` (the default), `tokens`, …
    public var dimension: String { didSet { fingerprint = Self.fingerprint(service, account, dimension) } }

    /// Creates a key. Use `isValidLabel` first on input from outside.
    public init(service: String, account: String = "default", dimension: String = QuotaKey.requests) {
        self.fingerprint = Self.fingerprint(service, account, dimension)
        self.service = service
        self.account = account
        self.dimension = dimension
    }

    private static func fingerprint(_ service: String, _ account: String, _ dimension: String) -> Int {
        var hasher = Hasher()
        hasher.combine(service)
        hasher.combine(account)
        hasher.combine(dimension)
        return hasher.finalize()
    }

    /// Feeds the fingerprint, which stands for the three labels.
    public func hash(into hasher: inout Hasher) { hasher.combine(fingerprint) }

    /// Equal labels; the fingerprints are compared first, so unequal keys usually differ at once.
    public static func == (lhs: QuotaKey, rhs: QuotaKey) -> Bool {
        lhs.fingerprint == rhs.fingerprint && lhs.service == rhs.service && lhs.account == rhs.account
            && lhs.dimension == rhs.dimension
    }

    /// The same service and account, counting `dimension`.
    public func counting(_ dimension: String) -> QuotaKey {
        QuotaKey(service: service, account: account, dimension: dimension)
    }

    enum CodingKeys: String, CodingKey { case service, account, dimension }

    /// Decodes a key; state saved before dimensions existed counts requests.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            service: try container.decode(String.self, forKey: .service),
            account: try container.decode(String.self, forKey: .account),
            dimension: try container.decodeIfPresent(String.self, forKey: .dimension) ?? QuotaKey.requests)
    }

    /// Encodes the three labels.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(service, forKey: .service)
        try container.encode(account, forKey: .account)
        try container.encode(dimension, forKey: .dimension)
    }

    /// `true` if `label` is 1–64 bytes of letters, digits, `-`, `_`, `.` or `:`.
    public static func isValidLabel(_ label: String) -> Bool {
        let bytes = Array(label.utf8)
        guard !bytes.isEmpty, bytes.count <= maxLabelBytes else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == 0x2D || b == 0x5F || b == 0x2E || b == 0x3A
        }
    }

    public static func < (lhs: QuotaKey, rhs: QuotaKey) -> Bool {
        (lhs.service, lhs.account, lhs.dimension) < (rhs.service, rhs.account, rhs.dimension)
    }

    public var description: String {
        dimension == QuotaKey.requests ? "\(service)/\(account)" : "\(service)/\(account)/\(dimension)"
    }
}

/// How urgent an agent's call is. Higher priorities may dig deeper into the window's limit.
public enum Priority: String, CaseIterable, Sendable, Codable, Comparable {
    /// Work a user is waiting on; may use all of the limit.
    case urgent
    /// Ordinary work; stops when the reserve for urgent work is reached.
    case normal
    /// Background work; stops first.
    case low

    /// 0 for urgent, 1 for normal, 2 for low: the order waiting requests are served in.
    public var rank: Int {
        switch self {
        case .urgent: 0
        case .normal: 1
        case .low: 2
        }
    }

    public static func < (lhs: Priority, rhs: Priority) -> Bool { lhs.rank < rhs.rank }
}

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

extension StringProtocol {
    /// The text without leading and trailing spaces, tabs, CR and LF.
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(self[first...last])
    }
}

/// A vouched peer as the core sees it: its identity and where to reach it first.
public struct PeerInfo: Hashable, Sendable {
    /// The peer's display name (the trust store's file name).
    public var name: String
    /// The peer's Ed25519 public key: its identity.
    public var key: VerifyingKey
    /// Where to send to it until it is heard from elsewhere.
    public var endpoint: Endpoint?
    /// The weight this node vouches for the peer: the most of its own claim this node believes.
    public var weight: Weight

    /// Creates a peer entry.
    public init(name: String, key: VerifyingKey, endpoint: Endpoint?, weight: Weight = .one) {
        self.name = name
        self.key = key
        self.endpoint = endpoint
        self.weight = weight
    }
}

/// A node's entitlement relative to the others' (`weight`, default 1): weighted max-min shares split what
/// is left in proportion to it among nodes with unmet demand. Kept in thousandths, so that every node
/// reads and compares the same value: 0.001 to 1000.
public struct Weight: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    /// The weight × 1000.
    public let thousandths: UInt32

    /// Weight 1, everyone's unless configured.
    public static let one = Weight(thousandths: 1_000)
    /// The range of thousandths accepted: 0.001 to 1000.
    public static let allowedThousandths: ClosedRange<UInt32> = 1...1_000_000

    /// A weight from its thousandths, clamped to the allowed range.
    public init(thousandths: UInt32) {
        self.thousandths = min(max(thousandths, Self.allowedThousandths.lowerBound), Self.allowedThousandths.upperBound)
    }

    /// `value` (0.001 to 1000, at most three decimals kept), or `nil` outside the range.
    public init?(_ value: Double) {
        guard value.isFinite else { return nil }
        let scaled = (value * 1000).rounded()
        guard scaled >= Double(Self.allowedThousandths.lowerBound), scaled <= Double(Self.allowedThousandths.upperBound) else {
            return nil
        }
        self.thousandths = UInt32(scaled)
    }

    /// The weight as a number.
    public var value: Double { Double(thousandths) / 1000 }

    public static func < (lhs: Weight, rhs: Weight) -> Bool { lhs.thousandths < rhs.thousandths }

    public var description: String {
        let whole = thousandths / 1000
        let fraction = thousandths % 1000
        guard fraction != 0 else { return "\(whole)" }
        var digits = String(fraction)
        while digits.count < 3 { digits = "0" + digits }
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }
}

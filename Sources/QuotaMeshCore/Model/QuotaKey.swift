import QuotaMeshCrypto

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

    /// What dictionaries and sets hash a key by, in place of a `Hasher` run over ``hash(into:)`` (the
    /// standard library's hook for this, which its own integers use): the fingerprint is already a seeded
    /// SipHash of the labels, so mixing in the table's seed is enough, and a look-up by key skips a
    /// hasher's set-up and finalization.
    public func _rawHashValue(seed: Int) -> Int {
        var mixed = UInt64(bitPattern: Int64(fingerprint ^ seed))
        mixed = (mixed ^ (mixed >> 30)) &* 0xbf58_476d_1ce4_e5b9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94d0_49bb_1331_11eb
        return Int(bitPattern: UInt(mixed ^ (mixed >> 31)))
    }

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

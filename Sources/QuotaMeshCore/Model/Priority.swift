import QuotaMeshCrypto

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

import QuotaMeshCrypto

/// Why a packet or record was dropped: a fixed vocabulary for metrics and logs.
public enum DropReason: String, Sendable, CaseIterable {
    /// Shorter than its header or its own length fields say.
    case truncated
    /// Larger than a packet may be (1200 bytes).
    case oversized
    /// Not a QuotaMesh packet: the first bytes are wrong.
    case badMagic = "bad_magic"
    /// A wire version this node does not speak.
    case unknownVersion = "unknown_version"
    /// A packet or record type this node does not know.
    case unknownType = "unknown_type"
    /// Fields that do not decode: a bad label, a length out of range.
    case malformed
    /// Bytes left over after the last field.
    case trailingBytes = "trailing_bytes"
    /// The packet's sender is not in the trust store.
    case unknownSender = "unknown_sender"
    /// A record's origin is not in the trust store.
    case unknownOrigin = "unknown_origin"
    /// A packet that was already seen, or is older than the replay window.
    case replayed
    /// A packet or record signature that does not verify.
    case badSignature = "bad_signature"
    /// A packet or record stamped too far in the future.
    case fromFuture = "from_future"
    /// A packet that claims to come from this node.
    case fromSelf = "from_self"
    /// Two different records signed with the same origin and version.
    case equivocation
    /// A signed record whose times or counts are out of any plausible range.
    case absurd = "absurd_values"
    /// A packet or record from an origin quarantined for contradicting itself.
    case quarantined
    /// A record naming a service, account or dimension beyond this node's caps.
    case overCap = "over_cap"
    /// A packet from a source whose packets failed their signature checks too often lately: not checked.
    case overBudget = "over_budget"
    /// A packet from a vouched peer that sent more verified packets lately than any peer needs: not checked.
    case rateLimited = "rate_limited"

    init(_ error: DecodeError) {
        switch error {
        case .truncated: self = .truncated
        case .oversized: self = .oversized
        case .badMagic: self = .badMagic
        case .unknownVersion: self = .unknownVersion
        case .unknownType: self = .unknownType
        case .malformed: self = .malformed
        case .trailingBytes: self = .trailingBytes
        }
    }
}

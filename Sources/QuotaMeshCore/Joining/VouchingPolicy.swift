import QuotaMeshCrypto

/// Why a join request was refused.
public enum JoinRefusal: String, Sendable, Hashable {
    /// The invitation's expiry has passed.
    case expired
    /// The proof does not match an invitation of this node's (a forged or altered token).
    case badProof = "bad_proof"
}

/// Whose introductions of other peers a node trusts (configuration `vouching`).
public enum VouchingPolicy: Hashable, Sendable, CustomStringConvertible {
    /// Only peers in its own trust store, added there by hand or by a join with its own invitation.
    case direct
    /// Also every peer that one of these introduces: each a trusted peer's name or base64 public key.
    case introducedBy([String])

    /// Whether `introducer`'s introductions are trusted.
    public func trusts(_ introducer: PeerInfo) -> Bool {
        switch self {
        case .direct: false
        case .introducedBy(let names): names.contains(introducer.name) || names.contains(introducer.key.base64)
        }
    }

    /// `direct`, or `introduced-by: K[, K…]`, as the configuration writes it.
    public init?(parsing text: String) {
        let trimmed = text.trimmingASCIIWhitespace()
        if trimmed == "direct" {
            self = .direct
            return
        }
        let prefix = "introduced-by:"
        guard trimmed.hasPrefix(prefix) else { return nil }
        let names = trimmed.dropFirst(prefix.count).split(separator: ",").map { String($0).trimmingASCIIWhitespace() }
        guard !names.isEmpty, !names.contains(where: \.isEmpty) else { return nil }
        self = .introducedBy(names)
    }

    public var description: String {
        switch self {
        case .direct: "direct"
        case .introducedBy(let names): "introduced-by: " + names.joined(separator: ", ")
        }
    }
}

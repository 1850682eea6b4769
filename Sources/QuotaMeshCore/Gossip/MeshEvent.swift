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

/// Something worth logging or counting.
public enum MeshEvent: Hashable, Sendable {
    /// A packet (or one record in it) was dropped.
    case dropped(DropReason, from: Endpoint?, sender: VerifyingKey?)
    /// A record newer than what was held was accepted.
    case recordAccepted(origin: VerifyingKey, slot: RecordSlot)
    /// A record no newer than what was held was ignored.
    case recordStale(origin: VerifyingKey)
    /// A peer was heard from after being down or unknown.
    case peerUp(VerifyingKey)
    /// A peer stayed silent past the liveness timeout.
    case peerDown(VerifyingKey)
    /// This node opened the shared breaker for a key.
    case breakerOpened(QuotaKey, until: UnixMillis)
    /// This node closed the shared breaker after a successful probe.
    case breakerClosed(QuotaKey)
    /// A service was learned from an upstream observation or a peer's record.
    case serviceLearned(String)
    /// A peer signed two records that contradict each other; everything from it is set aside.
    case peerQuarantined(VerifyingKey, reason: QuarantineReason)
    /// A success contradicted a peer's claim that a key's breaker was open: its breaker claims no longer
    /// count for the key.
    case breakerClaimsIgnored(VerifyingKey, key: QuotaKey)
    /// A peer's upstream observations or breaker openings contradicted this node's own calls often enough
    /// that its observations no longer count (until the score decays), nor its breaker claims.
    case peerGraylisted(VerifyingKey, score: Double)
    /// A peer signs another member set than this node's (their trust stores differ; `count` is how many
    /// members it counts); `stopped`: this node spends no rights until they agree (its own set is the odd
    /// one out, see ``MeshInstance/rightsStopped``).
    case membersDiffer(VerifyingKey, count: Int, stopped: Bool)
    /// Every peer heard from signs this node's member set again.
    case membersAgree
    /// A join request was refused: its invitation expired, or its proof does not match one this node gave.
    case joinRefused(VerifyingKey, reason: JoinRefusal, from: Endpoint)
    /// A peer introduced another that this node does not trust, and its `vouching` does not take the
    /// peer's introductions (reported once per introduced key).
    case introductionIgnored(VerifyingKey, endpoint: Endpoint, by: VerifyingKey)
}

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

/// Why a peer was quarantined: each is a contradiction proven by two records it signed.
public enum QuarantineReason: String, Sendable, Hashable, Codable {
    /// Two different records at one version.
    case equivocation
    /// A later record whose rights ledger, in the same window, shows less spent, refunded or given than an
    /// earlier one: it took back what it had signed (a fork that shows each receiver a different gift).
    case ledgerRegressed = "ledger_regressed"
}

/// The proof behind a quarantine: the two records, exactly as signed.
public struct QuarantineEvidence: Sendable, Hashable {
    /// Why.
    public var reason: QuarantineReason
    /// The record held before.
    public var earlier: SignedRecord
    /// The record that contradicts it.
    public var later: SignedRecord
    /// When this node saw the contradiction.
    public var at: UnixMillis
}

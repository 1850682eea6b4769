import QuotaMeshCrypto

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

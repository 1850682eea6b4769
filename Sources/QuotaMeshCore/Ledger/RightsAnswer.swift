import QuotaMeshCrypto

/// What a node does with a peer's request for rights (``QuotaLedger/answer(_:from:now:)``).
enum RightsAnswer: Sendable, Hashable {
    /// Not for the current window's open part, or saves fail: no answer.
    case ignored
    /// Rights of `window` were given: the new ledger goes back with the records that show where they
    /// came from.
    case gave(RightsWindow)
    /// None to spare: the ledger as it stands goes back, so that the asker asks others, with the records
    /// of the peers named in `hints` (for urgent work: those this node believes hold rights).
    case nothingToSpare(hints: [VerifyingKey])
}

import QuotaMeshCrypto

/// What a node does with a peer's request for rights (``QuotaLedger/answer(_:from:now:)``).
enum RightsAnswer: Sendable, Hashable {
    /// Not for the current window's open part, or saves fail: no answer.
    case ignored
    /// Rights of `window` were given: the new ledger goes back with the records that show where they
    /// came from.
    case gave(RightsWindow)
    /// This node's ledger names its last receiver, and the asker is not one of them: what was asked for
    /// urgent work went to `relay`, a receiver it names that can still give the asker some, and the
    /// asker is shown where it went (the new ledger, with the records that show where it came from, and
    /// the relay's record).
    case relayed(RightsWindow, through: VerifyingKey)
    /// None to spare: the ledger as it stands goes back, so that the asker asks others, with the records
    /// of the peers named in `hints` (for urgent work: those this node believes hold rights).
    case nothingToSpare(hints: [VerifyingKey])
}

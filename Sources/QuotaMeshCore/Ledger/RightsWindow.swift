import QuotaMeshCrypto

/// A key's window split and every member's balance, as worked out from the ledgers last seen.
struct RightsCache: Sendable {
    var allotment: RightsAllotment
    var aggregateVersion: UInt64
    var ownVersion: UInt64
    var balances: RightsBalances

    /// Follows this node's spend of `amount` rights it held (its ledger at version `versionBefore` until
    /// then, `versionAfter` since), where the cache was current for the window ending at `windowEnd`.
    mutating func follow(
        spent amount: UInt64, by owner: VerifyingKey, windowEnd: UnixMillis, versionBefore: UInt64, versionAfter: UInt64
    ) {
        if ownVersion == versionBefore, allotment.windowEnd == windowEnd, balances.noteSpent(amount, by: owner) {
            ownVersion = versionAfter
        }
    }
}

/// The window a key's rights are counted in: its limit, length and end, and how many of its rights exist
/// yet.
struct RightsWindow: Sendable, Hashable {
    var limit: Int64
    var windowMillis: Int64
    var windowEnd: UnixMillis
    /// The rights dealt so far: the limit, or for an upstream that refills continuously, the limit times
    /// the part of the window gone by (rounded down).
    var unlocked: Int64
    /// When the next right is dealt: the window's end once all are.
    var nextUnlockAt: UnixMillis
    /// Whether the limit comes back at the window's end or refills over it.
    var refill: ServicePolicy.Refill
    var windowStart: UnixMillis { windowEnd - windowMillis }

    init(limit: Int64, windowMillis: Int64, windowEnd: UnixMillis, refill: ServicePolicy.Refill = .window, now: UnixMillis) {
        self.limit = limit
        self.windowMillis = windowMillis
        self.windowEnd = windowEnd
        self.refill = refill
        switch refill {
        case .window:
            unlocked = limit
            nextUnlockAt = windowEnd
        case .continuous:
            let elapsed = max(0, min(windowMillis, now.saturatingSubtract(windowEnd - windowMillis)))
            // In 128 bits: a limit of 10¹² and a window of a month overflow 64.
            let product = limit.multipliedFullWidth(by: elapsed)
            unlocked = min(limit, Int64(truncatingIfNeeded: windowMillis.dividingFullWidth(product).quotient))
            if unlocked >= limit {
                nextUnlockAt = windowEnd
            } else {
                // The first ms at which limit × elapsed ÷ window reaches unlocked + 1.
                let next = windowMillis.multipliedFullWidth(by: unlocked + 1)
                let (quotient, remainder) = limit.dividingFullWidth(next)
                nextUnlockAt = windowEnd - windowMillis + Int64(truncatingIfNeeded: quotient) + (remainder > 0 ? 1 : 0)
            }
        }
    }
}

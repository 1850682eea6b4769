import QuotaMeshCrypto

/// The other live nodes' demand rates for one key, sorted by tier, kept while the round, the live peers
/// and the claimants stay the same (``QuotaLedger/shareOfWhatIsLeft(_:remaining:limit:policy:resetAt:windowMillis:now:)``).
struct ShareCache: Sendable {
    var round: UInt64
    var liveVersion: UInt64
    var claimants: Int
    /// Other live nodes' demand rates per tier: urgent, then the rest.
    var tiers: [TierRates]
}

import QuotaMeshCrypto

/// Rights this node lacks for calls its agents asked for.
struct RightsWant: Sendable {
    /// The window they are for.
    var windowEnd: UnixMillis
    /// How many to ask for.
    var amount: UInt64
    /// The highest priority waiting.
    var priority: Priority
    /// When a call last found too few rights (a want nobody renews is dropped).
    var notedAt: UnixMillis
    /// When peers were last asked.
    var askedAt: UnixMillis = .min
    /// The priority they were last asked for.
    var askedPriority: Priority = .low
    /// The peers last asked that have not answered yet (no record of theirs for the key since).
    var awaiting: Set<VerifyingKey> = []
    /// Asks made in a row because every peer asked had answered, since the last one the timer made.
    var answeredAsks = 0
    /// Peers asked that answered it, and when: for ``QuotaLedger/rightsRefusalMillis`` they are asked again
    /// only if this node's view credits them with rights, not on the strength of gifts it cannot credit
    /// yet. Their answer carried their own ledger; asking them again at once went round loops of peers
    /// that each counted on a gift to the other that neither could credit yet.
    var refused: [VerifyingKey: UnixMillis] = [:]

    /// Notes that `peer` answered it at `now`, forgetting answers older than `millis` (a want that lasts a
    /// long window keeps only a round's worth).
    mutating func noteRefused(by peer: VerifyingKey, at now: UnixMillis, keepingFor millis: Int64) {
        refused = refused.filter { now.saturatingSubtract($0.value) < millis }
        refused[peer] = now
    }

    /// The peers that refused it within `millis` before `now`.
    func refused(within millis: Int64, now: UnixMillis) -> Set<VerifyingKey> {
        Set(refused.lazy.filter { now.saturatingSubtract($0.value) < millis }.map(\.key))
    }
}

/// What deciding a call does to the rights a node lacks for its key (``QuotaLedger/rightsVerdict(_:window:cost:priority:now:)``).
enum RightsWantChange: Sendable {
    /// Nothing (the call was refused before rights were looked at).
    case unchanged
    /// The node holds enough: nothing is wanted.
    case met
    /// The node lacks rights: this want is to be asked of peers.
    case noted(RightsWant)
}

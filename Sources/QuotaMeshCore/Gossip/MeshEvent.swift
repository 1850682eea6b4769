import QuotaMeshCrypto

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

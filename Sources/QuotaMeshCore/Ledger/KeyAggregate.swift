import QuotaMeshCrypto

/// Peers' states for one key, merged as records arrive: consumption by per-origin join, observations and
/// breakers by lattice join, demands and policies as last signed.
struct KeyAggregate: Sendable {
    /// What one origin said of the key: its consumption (joined), and its demand and policy as last signed.
    struct OriginEntry: Sendable {
        var consumption = ConsumptionEntry()
        var demand = Demand.zero
        /// When the origin signed the record its demand came in (its clock).
        var demandStamp: UnixMillis = .min
        var policy: AdvertisedPolicy?
        /// The origin's rights ledger, joined (the latest window's).
        var ledger: RightsLedger?
        /// The origin's breaker claims, joined, as it signed them (not capped).
        var breaker = BreakerRegister()
        /// When the origin's current run of openings began: openings that each start before the last one's
        /// end are one run, as a 429 and the reopenings of failed probes are.
        var breakerRunStart: UnixMillis = 0
        /// What of the origin's claims counts towards the shared breaker: a run holds it open for at most
        /// the service's open time from the run's start, and a new run counts only once that long has
        /// passed since the last counted one ended, so that probes get their turn in between.
        var countedBreaker = BreakerRegister()
        /// The origin's upstream observations, joined (bounded as this node believes them).
        var observation: UpstreamObservation?

        /// The origin's demand if it was signed at `freshAfter` or later, none (idle) otherwise: a demand
        /// signed more than a window ago counts as idle.
        func demand(signedAfter freshAfter: UnixMillis) -> Demand {
            demandStamp >= freshAfter ? demand : Demand.zero
        }
    }

    /// Every origin's entry, found with one look-up per arriving record.
    var origins: [VerifyingKey: OriginEntry] = [:]
    /// The sums of the origins' consumption, kept as entries change, so that a decision reads them
    /// without a pass over every origin.
    var consumption = ConsumptionSums()
    /// The two origins whose observations are furthest along (a later window, then less left), the
    /// furthest first. Each origin's observation only moves further, so two slots suffice.
    private(set) var leading: [(origin: VerifyingKey, observation: UpstreamObservation)] = []
    var breaker = BreakerRegister()
    var lowestPolicy: AdvertisedPolicy?
    /// Bumped whenever an origin's ledger changes, so balances are worked out again only then.
    var ledgerVersion: UInt64 = 0

    /// Origins whose breaker claims a success contradicted: their openings no longer count here.
    var ignoredBreakers: Set<VerifyingKey> = []
    /// The longest a peer's opening holds the breaker (the service's open time); its probe then decides.
    var peerOpenMillis: Int64 = 30_000

    /// What was observed upstream, as far as two origins agree, with `own` (this node's own observation)
    /// one of the voices: of the two furthest observations, the furthest when the second is in the same
    /// window and says about as much is left (within ``agreement(_:)``), else the second; then `own` in
    /// full. So no single peer can say on its own that less is left than anyone else saw: a vouched liar
    /// saying every window is spent would otherwise stop every node, and no node would then call the
    /// upstream to find out otherwise.
    func observation(own: UpstreamObservation?) -> UpstreamObservation? {
        var voices = leading.map(\.observation)
        if let own {
            voices.insert(own, at: voices.firstIndex { own.merging($0) == own } ?? voices.count)
        }
        guard voices.count >= 2 else { return own }
        let (first, second) = (voices[0], voices[1])
        let agrees = first.resetAt == second.resetAt
            && first.remaining >= second.remaining.saturatingSubtract(Self.agreement(max(first.limit, second.limit)))
        let chosen = agrees ? first : second
        return own.map { chosen.merging($0) } ?? chosen
    }

    /// How much less one origin may say is left than another saw in the same window and still agree: a
    /// twentieth of the limit, at least 2 (the calls made between two observations, and replicas of the
    /// upstream that lag a little). All a single origin can take off what the others saw.
    static func agreement(_ limit: Int64) -> Int64 { max(2, limit / 20) }

    /// Places `origin`'s observation, which only ever moves further, among the two furthest.
    private mutating func lead(_ origin: VerifyingKey, _ observation: UpstreamObservation) {
        leading.removeAll { $0.origin == origin }
        let place = leading.firstIndex { observation.merging($0.observation) == observation } ?? leading.count
        leading.insert((origin, observation), at: place)
        if leading.count > 2 { leading.removeLast() }
    }

    /// Sets `origin`'s breaker claims aside and joins the others' again.
    mutating func ignoreBreaker(of origin: VerifyingKey) {
        guard ignoredBreakers.insert(origin).inserted else { return }
        breaker = origins.reduce(BreakerRegister()) { joined, entry in
            ignoredBreakers.contains(entry.key) ? joined : joined.merging(entry.value.countedBreaker)
        }
    }

    /// Joins an origin's breaker claim into its entry: the claim as signed, its run, and what counts.
    static func joinBreaker(_ signed: BreakerRegister, into entry: inout OriginEntry, openMillis: Int64) {
        let earlier = entry.breaker
        let claim = earlier.merging(signed)
        guard claim != earlier else { return }
        entry.breaker = claim
        var counted = entry.countedBreaker
        counted.closedAt = max(counted.closedAt, claim.closedAt)
        if claim.openedAt > earlier.openedAt && (earlier.openedAt == 0 || earlier.openUntil <= claim.openedAt) {
            entry.breakerRunStart = claim.openedAt
            if counted.openedAt == 0 || claim.openedAt >= counted.openUntil.saturatingAdd(openMillis) {
                counted.openedAt = claim.openedAt
                counted.openUntil = min(claim.openUntil, claim.openedAt.saturatingAdd(openMillis))
            }
        } else if counted.openedAt == entry.breakerRunStart {
            // The counted run goes on: it may end sooner than claimed, never later than its cap, and its
            // opening stays where the run began (re-signing it does not reopen a breaker a success closed).
            counted.openUntil = max(counted.openUntil, min(claim.openUntil, counted.openedAt.saturatingAdd(openMillis)))
        }
        entry.countedBreaker = counted
    }

    /// Joins an origin's state. `countObservation`: whether its upstream observation counts towards the
    /// key's (not when the origin is graylisted); it is kept in the origin's entry either way.
    mutating func update(origin: VerifyingKey, state: QuotaState, stamp: UnixMillis, countObservation: Bool = true) {
        if let signed = state.observation.map(Self.sanitized) {
            let joined = origins[origin]?.observation.merging(signed) ?? signed
            origins[origin, default: OriginEntry()].observation = joined
            if countObservation { lead(origin, joined) }
        }
        if state.breaker != origins[origin]?.breaker {
            Self.joinBreaker(state.breaker, into: &origins[origin, default: OriginEntry()], openMillis: peerOpenMillis)
            if !ignoredBreakers.contains(origin), let counted = origins[origin]?.countedBreaker {
                breaker = breaker.merging(counted)
            }
        }
        if let ledger = state.ledger {
            let before = origins[origin]?.ledger
            let joined = before.merging(ledger)
            if joined != before {
                origins[origin, default: OriginEntry()].ledger = joined
                ledgerVersion &+= 1
            }
        }
        // In place: one look-up of the origin, not a read and a write.
        let previous = Self.merge(state, stamp: stamp, into: &origins[origin, default: OriginEntry()], sums: &consumption)
        guard previous != state.policy else { return }
        if let policy = state.policy, previous == nil || previous != lowestPolicy {
            // A new policy, or one replacing a policy other than the lowest: the lowest is the lower of
            // the two, with no scan, so that a start-up with N origins stays linear.
            lowestPolicy = Self.lower(lowestPolicy, policy)
        } else {
            lowestPolicy = origins.values.reduce(nil) { lowest, entry in
                entry.policy.map { Self.lower(lowest, $0) } ?? lowest
            }
        }
    }

    /// Joins `state` into one origin's entry and the sums; returns the origin's policy before.
    private static func merge(
        _ state: QuotaState, stamp: UnixMillis, into entry: inout OriginEntry, sums: inout ConsumptionSums
    ) -> AdvertisedPolicy? {
        let joined = entry.consumption.merging(state.consumption)
        if joined != entry.consumption {
            sums.remove(entry.consumption)
            sums.add(joined)
            entry.consumption = joined
        }
        entry.demand = state.demand
        entry.demandStamp = stamp
        let previous = entry.policy
        entry.policy = state.policy
        return previous
    }

    static func sanitized(_ observation: UpstreamObservation) -> UpstreamObservation {
        var clean = observation
        clean.remaining = max(0, clean.remaining)
        if clean.limit > 0 { clean.remaining = min(clean.remaining, clean.limit) }
        return clean
    }

    /// Of two advertised limits the lower is the safe one; ties by the longer window.
    static func lower(_ a: AdvertisedPolicy?, _ b: AdvertisedPolicy) -> AdvertisedPolicy {
        guard let a else { return b }
        return (b.limit, -b.windowMillis) < (a.limit, -a.windowMillis) ? b : a
    }
}

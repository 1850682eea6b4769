import QuotaMeshCrypto

/// Bounds on what a statement may claim, from this node's configuration: a peer's signed record or an
/// agent's report may lower what the node enforces, never lift it, and no claim reaches further ahead than
/// one window (or the longest a breaker may stay open).
extension QuotaLedger {
    /// How far ahead of its statement a claim about `key` may reach: its configured window, else
    /// `maxLearnedWindowMillis`.
    func claimHorizon(_ key: QuotaKey) -> Int64 {
        configuration.services[key.service]?.configuredLimit(key.dimension)?.windowMillis
            ?? configuration.maxLearnedWindowMillis
    }

    /// `state` (stated at `stamp`) as far as this node believes it: an observation whose reset lies more
    /// than a window ahead is dropped, a configured limit caps the observed limit and remaining, a
    /// consumption window ending more than a window ahead counts nothing, and a count in one window is at
    /// most the configured limit.
    func bounded(_ state: QuotaState, key: QuotaKey, stamp: UnixMillis) -> QuotaState {
        var state = state
        let horizon = stamp.saturatingAdd(claimHorizon(key))
        let configured = configuration.services[key.service]?.configuredLimit(key.dimension)
        if let observation = state.observation {
            state.observation = observation.resetAt > horizon ? nil : bounded(observation, key: key)
        }
        if state.consumption.windowEnd > horizon {
            state.consumption.windowEnd = 0
            state.consumption.windowCount = 0
            state.consumption.windowRefund = 0
        } else if let configured, state.consumption.windowCount > UInt64(configured.limit) {
            let excess = state.consumption.windowCount - UInt64(configured.limit)
            state.consumption.windowCount = UInt64(configured.limit)
            state.consumption.windowRefund = state.consumption.windowRefund.saturatingSubtract(excess)
        }
        // A breaker cannot have opened or closed after the statement about it was made (give or take the
        // clocks' skew): such a claim would hold a breaker "open" from the future, out of any success's reach.
        let latest = stamp.saturatingAdd(configuration.maxClockSkewMillis)
        if state.breaker.openedAt > latest || state.breaker.closedAt > latest { state.breaker = BreakerRegister() }
        // A peer's breaker claim is otherwise kept as signed, so that a later success can be seen to
        // contradict it; it counts towards the shared breaker for at most the service's open time
        // (KeyAggregate.joinBreaker).
        return state
    }

    /// `observation` with its limit and remaining capped by `key`'s configured limit, if it has one (an
    /// observation without a limit takes the configured one).
    func bounded(_ observation: UpstreamObservation, key: QuotaKey) -> UpstreamObservation {
        guard let configured = configuration.services[key.service]?.configuredLimit(key.dimension) else {
            return observation
        }
        var capped = observation
        capped.limit = observation.limit > 0 ? min(observation.limit, configured.limit) : configured.limit
        capped.remaining = min(observation.remaining, configured.limit)
        return capped
    }

    /// Sets aside the breaker claims of every origin that another node's success, or this node's own,
    /// contradicts: a successful call made while the origin still claimed the breaker open (after its run
    /// of openings began, before the end it claimed). A vouched liar that keeps the breaker open is thus
    /// ignored once one probe succeeds; an honest origin whose `Retry-After` was longer than the upstream
    /// needed loses only its say over the shared breaker (each node still opens its own on its own 429s).
    mutating func checkBreakerClaims(_ key: QuotaKey, into out: inout [MeshDirective]) {
        guard var aggregate = remote[key] else { return }
        let own = local[key]?.state.breaker.closedAt ?? 0
        // The latest two closings (this node's own among them), so that an origin's own closing is not held
        // against it.
        var first: (origin: VerifyingKey?, at: UnixMillis) = (nil, own)
        var second: UnixMillis = 0
        for (origin, entry) in aggregate.origins where entry.breaker.closedAt > second {
            if entry.breaker.closedAt > first.at {
                second = first.at
                first = (origin, entry.breaker.closedAt)
            } else {
                second = entry.breaker.closedAt
            }
        }
        var changed = false
        for (origin, entry) in aggregate.origins.sorted(by: { $0.key < $1.key })
        where entry.breaker.openedAt > 0 && !aggregate.ignoredBreakers.contains(origin) {
            let closed = first.origin == origin ? second : first.at
            if closed > entry.breakerRunStart && closed < entry.breaker.openUntil {
                aggregate.ignoreBreaker(of: origin)
                out.append(.event(.breakerClaimsIgnored(origin, key: key)))
                changed = true
            }
        }
        if changed { remote[key] = aggregate }
    }
}

/// Why a new name was refused: the node tracks a bounded number of them, so that its memory, its state
/// file and its metrics do not grow with whatever names agents or peers make up.
public enum NameRefusal: String, Sendable, Hashable, CaseIterable {
    /// More services than `max_services` (configured ones always count and are always kept).
    case tooManyServices = "too_many_services"
    /// More accounts of one service than `max_accounts`.
    case tooManyAccounts = "too_many_accounts"
    /// More dimensions of one service than `max_dimensions`.
    case tooManyDimensions = "too_many_dimensions"
    /// An account that the service's configuration does not list (it would be a phantom account that later
    /// acquires are routed to).
    case unconfiguredAccount = "unconfigured_account"
}

/// Bounds on what a statement may claim, from this node's configuration: a peer's signed record or an
/// agent's report may lower what the node enforces, never lift it, and no claim reaches further ahead than
/// one window (or the longest a breaker may stay open).
extension MeshInstance {
    /// How far ahead of its statement a claim about `key` may reach: its configured window, else
    /// `maxLearnedWindowMillis`.
    func claimHorizon(_ key: QuotaKey) -> Int64 {
        configuration.services[key.service]?.configuredLimit(key.dimension)?.windowMillis
            ?? configuration.maxLearnedWindowMillis
    }

    /// `state` (stated at `stamp`) as far as this node believes it: an observation whose reset lies more
    /// than a window ahead is dropped, a configured limit caps the observed limit and remaining, a
    /// consumption window ending more than a window ahead counts nothing, a count in one window is at most
    /// the configured limit, and a breaker opens for at most `maxBreakerOpenMillis`.
    func bounded(_ state: QuotaState, key: QuotaKey, stamp: UnixMillis) -> QuotaState {
        var state = state
        let horizon = stamp.saturatingAdd(claimHorizon(key))
        let configured = configuration.services[key.service]?.configuredLimit(key.dimension)
        if var observation = state.observation {
            if observation.resetAt > horizon {
                state.observation = nil
            } else {
                if let configured {
                    observation.limit = observation.limit > 0 ? min(observation.limit, configured.limit) : configured.limit
                    observation.remaining = min(observation.remaining, configured.limit)
                }
                state.observation = observation
            }
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
        let longest = state.breaker.openedAt.saturatingAdd(configuration.maxBreakerOpenMillis)
        if state.breaker.openUntil > longest { state.breaker.openUntil = longest }
        return state
    }
}

import QuotaMeshCrypto

extension QuotaLedger {
    // MARK: - Upstream responses

    /// Takes an upstream response the agent reports: merges what its rate-limit headers say and drives
    /// the shared breaker; waiting acquires are decided again. Replies and events go to `out`.
    /// - Parameters:
    ///   - service: the upstream service.
    ///   - account: the account used, if the agent names one.
    ///   - status: the HTTP status the upstream answered.
    ///   - report: what the headers said (`RateLimitHeaderParser.parse`).
    ///   - now: the current time.
    ///   - corrections: what the call really cost minus what its acquire reserved, by dimension other
    ///     than requests (negative: a refund), applied to this node's own consumption.
    ///   - records: every record held, to merge again should a contradiction graylist an origin.
    ///   - rng: the instance's generator (waiting acquires are decided again).
    ///   - out: where replies, events and the save go.
    mutating func observe(
        service: String, account: String?, status: Int, report: RateLimitReport, corrections: [String: Int64],
        now: UnixMillis, records: [SignedRecord], rng: inout SplitMix64, into out: inout [MeshDirective]
    ) -> MeshInstance.ObserveOutcome {
        var outcome = MeshInstance.ObserveOutcome(key: nil, serviceKnown: false, openedBreaker: false, closedBreaker: false)
        if let policy = configuration.services[service], let account, !policy.accounts.contains(account) {
            outcome.refused = .unconfiguredAccount
            return outcome
        }
        // Requests are counted under the service's key; every other dimension (tokens, and each window the
        // upstream states over requests, such as an hourly and a daily IETF policy) under a key of its own.
        // A response whose only statement about requests is one IETF policy describes the requests quota
        // itself (as most IETF upstreams send one), unless this node's agents reported it under a key of
        // its own before.
        var counted = report.dimensions.filter { $0.name != QuotaKey.requests }
        var primary = report.dimensions.first { $0.name == QuotaKey.requests }
        let windows = counted.filter { ServiceCatalog.countsRequests($0.name, configured: configuration.services[service]) }
        if primary == nil, windows.count == 1, let only = windows.first, !catalog.hasReported(only.name, of: service) {
            primary = RateLimitDimension(
                name: QuotaKey.requests, limit: only.limit, remaining: only.remaining, resetAt: only.resetAt,
                windowSeconds: only.windowSeconds)
            counted.removeAll { $0.name == only.name }
        }
        if !catalog.isKnown(service) {
            guard (primary.map { [$0] } ?? []).contains(where: { $0.limit != nil || $0.remaining != nil })
                || counted.contains(where: { $0.limit != nil || $0.remaining != nil })
            else {
                return outcome
            }
            if let refusal = catalog.refusal(ofNew: QuotaKey(service: service, account: account ?? "default")) {
                outcome.refused = refusal
                return outcome
            }
            catalog.learn(service)
            out.append(.event(.serviceLearned(service)))
        }
        outcome.serviceKnown = true
        let key = QuotaKey(service: service, account: account ?? catalog.accounts(of: service).first ?? "default")
        if let refusal = catalog.refusal(ofNew: key) {
            outcome.refused = refusal
            return outcome
        }
        outcome.key = key
        absorb(
            status: status, report: report, primary: primary, counted: counted, corrections: corrections, into: key,
            outcome: &outcome, out: &out, now: now, records: records)
        // What the upstream says about an account of a scope holds for the scope: its limits, and a 429
        // that must hold back every account the provider counts together.
        if let scope = catalog.policy(service).scopeAccount(of: key.account) {
            var scoped = outcome
            absorb(
                status: status, report: report, primary: primary, counted: counted, corrections: corrections,
                into: QuotaKey(service: service, account: scope), outcome: &scoped, out: &out, now: now, records: records)
        }
        out.append(.persist)
        pendingPersist = false
        serveWaiters(now: now, rng: &rng, into: &out)
        return outcome
    }

    /// Merges one upstream response into `key` (an account, or a scope) and its token dimensions: the
    /// observations, the usage corrections and the shared breaker.
    private mutating func absorb(
        status: Int, report: RateLimitReport, primary: RateLimitDimension?, counted: [RateLimitDimension],
        corrections: [String: Int64], into key: QuotaKey, outcome: inout MeshInstance.ObserveOutcome, out: inout [MeshDirective],
        now: UnixMillis, records: [SignedRecord]
    ) {
        catalog.note(key)
        var quota = local[key] ?? LocalQuota()
        let merged = mergedView(key, now: now)

        // An observation of a call that went through is compared with what peers observed.
        let made = primary.flatMap { record($0, into: &quota, key: key, merged: merged, now: now) }
        let observed = (200...399).contains(status) ? made : nil
        for dimension in counted {
            let partKey = key.counting(dimension.name)
            if let refusal = catalog.refusal(ofNew: partKey) {
                outcome.ignored.append(IgnoredHeader(
                    name: dimension.name, reason: "dimension `\(dimension.name)` not recorded: \(refusal.rawValue) (max_dimensions)"))
                continue
            }
            catalog.noteReported(partKey)
            var part = local[partKey] ?? LocalQuota()
            let before = part.state
            record(dimension, into: &part, key: partKey, merged: mergedView(partKey, now: now), now: now)
            part.noteReported(since: before, urgent: false)
            local[partKey] = part
        }
        for (dimension, delta) in corrections where delta != 0 && dimension != QuotaKey.requests {
            let partKey = key.counting(dimension)
            guard var part = local[partKey] else { continue }
            part.state.consumption.correct(by: delta, now: now)
            part.dirty = true
            local[partKey] = part
            correctRights(partKey, by: delta, now: now)
        }

        let policy = catalog.policy(key.service)
        let breakerNow = merged.breaker.state(at: now)
        let failed = status == 429 || status == 529 || (500...599).contains(status) || report.isRateLimited
            || report.isOverloaded
        if failed {
            quota.consecutiveFailures += 1
            var openUntil: UnixMillis?
            if let retryAt = report.retryAt, status == 429 || status == 503 || status == 529 || report.isRateLimited {
                openUntil = retryAt
            } else if status == 429 || report.isRateLimited {
                let exhausted = ((primary.map { [$0] } ?? []) + counted).filter { $0.remaining == 0 }
                if let reset = exhausted.compactMap(\.resetAt).max() {
                    openUntil = reset
                } else {
                    openUntil = now + policy.breaker.openMillis
                }
            } else if quota.consecutiveFailures >= policy.breaker.failureThreshold || breakerNow == .halfOpen {
                openUntil = now + policy.breaker.openMillis
            }
            if let until = openUntil.map({ min($0, now.saturatingAdd(configuration.maxBreakerOpenMillis)) }), until > now {
                let openedAt = max(now, merged.breaker.openedAt.saturatingAdd(1), merged.breaker.closedAt.saturatingAdd(1))
                quota.state.breaker = quota.state.breaker.merging(
                    BreakerRegister(openedAt: openedAt, openUntil: until, closedAt: 0))
                outcome.openedBreaker = true
                out.append(.event(.breakerOpened(key, until: until)))
            }
        } else if (200...399).contains(status) {
            quota.consecutiveFailures = 0
            // A call of this node's own that succeeded closes the breaker, half-open or still open: the
            // upstream serves, whatever the statement that opened it said.
            if breakerNow != .closed {
                quota.state.breaker = quota.state.breaker.merging(
                    BreakerRegister(openedAt: 0, openUntil: 0, closedAt: max(now, merged.breaker.openedAt.saturatingAdd(1))))
                quota.probeGrantedAt = nil
                outcome.closedBreaker = true
                out.append(.event(.breakerClosed(key)))
            }
        }
        quota.noteReported(since: local[key]?.state ?? QuotaState(), urgent: failed)
        local[key] = quota
        if outcome.closedBreaker { checkBreakerClaims(key, into: &out) }
        if let observed { judgeObservations(key, own: observed, now: now, records: records, into: &out) }
    }

    /// Merges one reported dimension into `quota` (an observation, and the limit it implies when none is
    /// configured); returns the observation made, if one was.
    @discardableResult
    private func record(
        _ dimension: RateLimitDimension, into quota: inout LocalQuota, key: QuotaKey, merged: Merged, now: UnixMillis
    ) -> UpstreamObservation? {
        guard let remaining = dimension.remaining else {
            // A limit stated without what is left (the remaining field malformed, or not sent) still
            // teaches the limit; no observation is made of it. A remaining without a limit invents none.
            learnLimit(dimension, into: &quota, key: key, now: now)
            return nil
        }
        // Just after a restart this node has not yet heard again what the others consumed: an observation
        // anchored on that partial view would make every node that merges it count the calls before it
        // twice, and the window would be believed spent early. So none is
        // kept until learning ends, unless it says nothing is left (which no anchor can overstate); what
        // the upstream said still drives the breaker. Any restart counts, also of a node that had granted
        // nothing and so saved no cluster consumption: its view of the others is just as partial. (At a
        // node's first start there is no saved state; at a cluster's, nothing was consumed before.)
        guard remaining <= 0 || !isRestart || !isLearning(now: now) else { return nil }
        let windowMillis = min(
            dimension.windowSeconds.map { $0.saturatingMultiply(1000) } ?? merged.policy?.windowMillis ?? 0,
            claimHorizon(key))
        let limit = dimension.limit ?? merged.policy?.limit ?? 0
        let resetAt = dimension.resetAt ?? (merged.window?.resetAt ?? now + max(windowMillis, 1000))
        // A statement that its window resets further ahead than any window of the key is not believed at
        // all (its other numbers come from the same misreading); the status still drives the breaker.
        guard resetAt <= now.saturatingAdd(claimHorizon(key)) else { return nil }
        // What an agent reports may lower what is enforced, never lift it: a configured limit caps it.
        let observation = bounded(
            UpstreamObservation(
                resetAt: resetAt, remaining: max(0, limit > 0 ? min(remaining, limit) : remaining), limit: limit,
                windowMillis: windowMillis, observedAt: now,
                consumedTotalAtObservation: max(merged.lifetimeTotal, quota.restoredClusterConsumed)),
            key: key)
        quota.state.observation = quota.state.observation.merging(observation)
        if configuration.services[key.service]?.configuredLimit(key.dimension) == nil, limit > 0 {
            // Without a stated window, the time to reset (in whole seconds) is the best estimate.
            let window = windowMillis > 0 ? windowMillis : max(1000, (resetAt - now + 999) / 1000 * 1000)
            quota.state.policy = AdvertisedPolicy(limit: limit, windowMillis: window)
        }
        return observation
    }

    /// Learns `dimension`'s limit and window when the configuration sets none: the stated window, else
    /// the time to the stated reset (in whole seconds); nothing when neither is stated.
    private func learnLimit(_ dimension: RateLimitDimension, into quota: inout LocalQuota, key: QuotaKey, now: UnixMillis) {
        guard configuration.services[key.service]?.configuredLimit(key.dimension) == nil,
            let limit = dimension.limit, limit > 0
        else { return }
        var window = dimension.windowSeconds.map { $0.saturatingMultiply(1000) } ?? 0
        if window <= 0, let resetAt = dimension.resetAt, resetAt > now { window = (resetAt - now + 999) / 1000 * 1000 }
        guard window > 0, window <= claimHorizon(key) else { return }
        quota.state.policy = AdvertisedPolicy(limit: limit, windowMillis: window)
    }
}

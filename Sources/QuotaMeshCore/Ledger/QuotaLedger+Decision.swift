import QuotaMeshCrypto

extension QuotaLedger {
    // MARK: - Merged state

    struct Window {
        var resetAt: UnixMillis
        var limit: Int64?
        var windowMillis: Int64?
        /// Whether the edges come from the upstream's own reset times (observed, or projected from one),
        /// not from windows aligned to the epoch.
        var observed = false
    }

    struct Merged {
        /// The other nodes' consumption, summed.
        var consumption = ConsumptionSums()
        var ownConsumption = ConsumptionEntry()
        var observation: UpstreamObservation?
        var breaker = BreakerRegister()
        var policy: AdvertisedPolicy?
        var window: Window?
        /// For a configured limit that refills continuously (a token bucket): the refill per ms, by which
        /// what an observation said was left grows until a newer one says otherwise; 0 otherwise.
        var refillPerMillisecond: Double = 0

        func windowTotal(at now: UnixMillis) -> UInt64 {
            consumption.windowTotal(at: now).saturatingAdd(ownConsumption.count(at: now))
        }

        var lifetimeTotal: UInt64 { consumption.lifetimeTotal.saturatingAdd(ownConsumption.total) }
    }

    func mergedView(_ key: QuotaKey, now: UnixMillis) -> Merged {
        let configured = configuration.services[key.service]
        return mergedView(
            key, own: local[key], configuredLimit: configured?.configuredLimit(key.dimension),
            refill: configured?.refill ?? .window, now: now)
    }

    /// ``mergedView(_:now:)`` with this node's own state of the key and its configured limit already
    /// looked up.
    func mergedView(
        _ key: QuotaKey, own: LocalQuota?, configuredLimit: AdvertisedPolicy?, refill: ServicePolicy.Refill = .window,
        now: UnixMillis
    ) -> Merged {
        var merged = Merged()
        var advertised: AdvertisedPolicy?
        let ownObservation = own?.state.observation.map(KeyAggregate.sanitized)
        merged.observation = ownObservation
        if let aggregate = remote[key] {
            merged.consumption = aggregate.consumption
            // The peers' observations as far as two voices agree, this node's own one of them.
            merged.observation = aggregate.observation(own: ownObservation)
            merged.breaker = aggregate.breaker
            advertised = aggregate.lowestPolicy
        }
        if let own {
            merged.ownConsumption = own.state.consumption
            merged.breaker = merged.breaker.merging(own.state.breaker)
            if let policy = own.state.policy { advertised = KeyAggregate.lower(advertised, policy) }
        }
        if let configured = configuredLimit {
            merged.policy = configured
            if refill == .continuous && key.dimension == QuotaKey.requests && configured.windowMillis > 0 {
                merged.refillPerMillisecond = Double(configured.limit) / Double(configured.windowMillis)
            }
        } else {
            merged.policy = advertised
        }
        // A bucket's observation says when it will be full, not when a window ends: counting toward that
        // moment, which every call's answer moves later, would never close the count. Its windows are the
        // configured ones, aligned to the epoch as the rights' are.
        let observationShapesWindow = merged.refillPerMillisecond == 0
        merged.window = Self.window(
            observation: observationShapesWindow ? merged.observation : nil, policy: merged.policy, now: now)
        return merged
    }

    static func window(observation: UpstreamObservation?, policy: AdvertisedPolicy?, now: UnixMillis) -> Window? {
        if let observation, observation.resetAt > now {
            // An observation may lower the limit the policy gives (the lowest any origin advertises, or the
            // configured one), never raise it.
            return Window(
                resetAt: observation.resetAt,
                limit: observation.limit > 0 ? min(observation.limit, policy?.limit ?? .max) : policy?.limit,
                windowMillis: observation.windowMillis > 0 ? observation.windowMillis : policy?.windowMillis,
                observed: true)
        }
        let length = policy?.windowMillis ?? (observation.map { $0.windowMillis } ?? 0)
        let limit = policy?.limit ?? observation.flatMap { $0.limit > 0 ? $0.limit : nil }
        guard length > 0 else { return nil }
        if let observation, policy == nil || observation.windowMillis > 0, observation.resetAt > 0 {
            // Project the upstream's last known window forward.
            let elapsed = now.saturatingSubtract(observation.resetAt)
            let periods = elapsed / length + 1
            let end = observation.resetAt.saturatingAdd(periods.saturatingMultiply(length))
            if end > now { return Window(resetAt: end, limit: limit, windowMillis: length, observed: true) }
        }
        // Windows aligned to the epoch, so every node agrees on their edges.
        return Window(resetAt: (now / length + 1).saturatingMultiply(length), limit: limit, windowMillis: length)
    }

    /// What is left in the current window, estimated from the limit, the counted consumption and the
    /// latest upstream observation (minus what was consumed since it).
    func remaining(_ merged: Merged, now: UnixMillis) -> Int64? {
        remaining(merged, windowTotal: merged.windowTotal(at: now), now: now)
    }

    /// ``remaining(_:now:)`` with the window's total (a pass over every origin) already summed.
    ///
    /// `recount`: how many calls the upstream may have counted before an observation although the observer
    /// had not heard of them yet, so that subtracting what was consumed since counts them twice. Where the
    /// two estimates (limit less what was counted; the upstream's word less what was consumed since)
    /// differ by no more than that, the difference is taken for such calls and the first is used; what
    /// they differ by beyond it is taken for calls of clients outside the mesh.
    func remaining(_ merged: Merged, windowTotal: UInt64, recount: Int64 = 0, now: UnixMillis) -> Int64? {
        var estimate: Int64?
        if let window = merged.window, let limit = window.limit {
            estimate = limit.saturatingSubtract(Int64(clamping: windowTotal))
        }
        if let observation = merged.observation, observation.resetAt > now {
            let lifetime = merged.lifetimeTotal
            let since = lifetime >= observation.consumedTotalAtObservation
                ? lifetime - observation.consumedTotalAtObservation : 0
            var said = observation.remaining
            if merged.refillPerMillisecond > 0 {
                // A token bucket refills while no call reports on it: what it held then, plus what it gained.
                let gained = merged.refillPerMillisecond * Double(max(0, now.saturatingSubtract(observation.observedAt)))
                let full = observation.limit > 0 ? observation.limit : (merged.window?.limit ?? .max)
                said = min(full, said.saturatingAdd(Int64(gained.rounded(.down))))
            }
            let fromUpstream = said.saturatingSubtract(Int64(clamping: since))
            if let counted = estimate {
                let outside = max(0, counted.saturatingSubtract(fromUpstream).saturatingSubtract(max(0, recount)))
                estimate = counted.saturatingSubtract(outside)
            } else {
                estimate = fromUpstream
            }
        }
        return estimate.map { max(0, $0) }
    }

    /// How many calls may be counted twice by ``remaining(_:windowTotal:recount:now:)`` for a window of
    /// `key`: what the mesh consumed in it per ms so far, times ``recountRounds`` gossip intervals, and at
    /// least one call once anything was consumed.
    func recount(windowTotal: UInt64, windowLength: Double, resetAt: UnixMillis, now: UnixMillis) -> Int64 {
        let elapsed = max(1, windowLength - Double(max(resetAt - now, 0)))
        let lag = Double(Self.recountRounds * configuration.gossipIntervalMillis)
        let calls = Double(windowTotal)
        return Int64(min(calls, max(calls > 0 ? 1 : 0, calls / elapsed * lag)).rounded(.up))
    }

    /// Gossip rounds an observation may lag behind the calls the upstream counted in it.
    static let recountRounds: Int64 = 3

    // MARK: - Enforcement

    /// A decision for one key, worked out without changing anything, with what acting on it changes
    /// (``apply(_:to:)``; a grant is then charged by ``commit(_:request:assessment:now:)``).
    struct Assessment {
        var decision: AcquireDecision
        var headroom: Double
        /// The pacing rate (calls per ms) the decision used, 0 if unpaced.
        var rate: Double
        var resetAt: UnixMillis
        /// The turn a grant of one of a window's last calls took, `.min` if none.
        var turnSlot: Int64 = .min
        /// The key's pacing bucket as it stands after this decision (a window entered, a wait, a hold), when
        /// it changed.
        var bucket: LeakyBucket? = nil
        /// The other nodes' demand tiers worked out for the key, when they were not cached.
        var shareCache: ShareCache? = nil
        /// Every member's balance worked out for the key, when it was not cached.
        var rightsCache: RightsCache? = nil
        /// What becomes of the rights this node lacks for the key.
        var want: RightsWantChange = .unchanged
        /// The window whose rights a grant spends (`nil`: none apply); ``assess(_:request:policy:now:rng:)``
        /// sets it on every decision that can grant.
        var rights: RightsWindow? = nil
    }

    /// Stores what deciding `key` changed: its bucket, the caches worked out, and the rights it lacks.
    mutating func apply(_ assessment: Assessment, to key: QuotaKey) {
        if let bucket = assessment.bucket { local[key, default: LocalQuota()].bucket = bucket }
        if let cache = assessment.shareCache { shareCache[key] = cache }
        if let cache = assessment.rightsCache { rightsCache[key] = cache }
        note(assessment.want, of: key)
    }

    mutating func decide(_ request: AcquireRequest, now: UnixMillis, rng: inout SplitMix64) -> AcquireDecision {
        decide(request, entry: catalog.entry(request.service), now: now, rng: &rng)
    }

    /// ``decide(_:now:)`` with the service's entry already looked up.
    mutating func decide(
        _ request: AcquireRequest, entry: ServiceEntry, now: UnixMillis, rng: inout SplitMix64
    ) -> AcquireDecision {
        guard let policy = entry.policy else {
            return .deny(
                .unknownService, key: nil, retryAt: now + 1000, detail: .unknownService)
        }
        if entry.keys.count == 1, request.costs.isEmpty, policy.scopes.isEmpty, entry.requestWindows.isEmpty {
            // The common case, one account counting requests only: the loop below, without its bookkeeping.
            let key = entry.keys[0]
            let assessment = assess(key, request: request, policy: policy, now: now, rng: &rng)
            apply(assessment, to: key)
            if assessment.decision.granted { commit(key, request: request, assessment: assessment, now: now) }
            return assessment.decision
        }
        var best: (key: QuotaKey, assessment: Assessment, parts: [(QuotaKey, AcquireRequest, Assessment)])?
        var soonestDenial: AcquireDecision?
        let counted = request.costs.isEmpty ? [] : catalog.dimensions(of: request.service)
        for key in entry.keys {
            let account = key.account
            var assessment = assess(key, request: request, policy: policy, now: now, rng: &rng)
            apply(assessment, to: key)
            // Every other dimension the call costs, and whose limit is known, must grant too; so must the
            // account's scope, in every dimension, when the provider limits it with other accounts.
            var parts: [(QuotaKey, AcquireRequest, Assessment)] = []
            var checks: [(QuotaKey, AcquireRequest)] = []
            for (dimension, amount) in request.costs.sorted(by: { $0.key < $1.key })
            where amount > 0 && dimension != QuotaKey.requests && counted.contains(dimension) {
                var part = request
                part.cost = amount
                checks.append((key.counting(dimension), part))
            }
            // The upstream's other windows over requests (an hourly and a daily policy): every call counts
            // in each, at its requests cost.
            for dimension in entry.requestWindows where request.costs[dimension] == nil {
                checks.append((key.counting(dimension), request))
            }
            if !policy.scopes.isEmpty, let scope = policy.scopeAccount(of: account) {
                let scoped = QuotaKey(service: key.service, account: scope)
                checks += [(scoped, request)] + checks.map { (scoped.counting($0.0.dimension), $0.1) }
            }
            if assessment.decision.granted {
                for (partKey, part) in checks {
                    let partAssessment = assess(partKey, request: part, policy: policy, now: now, rng: &rng)
                    apply(partAssessment, to: partKey)
                    guard partAssessment.decision.granted else {
                        var decision = partAssessment.decision
                        decision.key = key
                        decision.detail = DecisionDetail(
                            decision.detail?.kind ?? .exhausted,
                            dimension: partKey.dimension == QuotaKey.requests ? nil : partKey.dimension,
                            scope: partKey.account.hasPrefix(ServicePolicy.scopePrefix))
                        assessment = Assessment(decision: decision, headroom: 0, rate: 0, resetAt: assessment.resetAt)
                        parts = []
                        break
                    }
                    parts.append((partKey, part, partAssessment))
                }
            }
            if assessment.decision.granted {
                if best.map({ assessment.headroom > $0.assessment.headroom }) ?? true { best = (key, assessment, parts) }
            } else if (assessment.decision.retryAt ?? .max) < (soonestDenial?.retryAt ?? .max) || soonestDenial == nil {
                soonestDenial = assessment.decision
            }
        }
        guard let chosen = best else {
            return soonestDenial ?? .deny(.quotaExhausted, key: nil, retryAt: now + configuration.gossipIntervalMillis)
        }
        commit(chosen.key, request: request, assessment: chosen.assessment, now: now)
        for (partKey, part, partAssessment) in chosen.parts {
            commit(partKey, request: part, assessment: partAssessment, now: now)
        }
        return chosen.assessment.decision
    }

    /// Everything needed to decide for one key, without changing anything.
    /// The decision for `key`, changing nothing (``Assessment`` says what acting on it changes). `rng` is
    /// the generator a random draw comes from; it moves on only by what was drawn.
    func assess(_ key: QuotaKey, request: AcquireRequest, now: UnixMillis, rng: inout SplitMix64) -> Assessment {
        assess(key, request: request, policy: catalog.policy(key.service), now: now, rng: &rng)
    }

    /// ``assess(_:request:now:)`` with the service's policy already looked up: the estimate's decision,
    /// then the rights a grant must hold (``rightsDenial(_:window:cost:priority:now:)``).
    func assess(
        _ key: QuotaKey, request: AcquireRequest, policy: ServicePolicy, now: UnixMillis, rng: inout SplitMix64
    ) -> Assessment {
        if persistenceFailing {
            // A grant is answered only once its spending is on disk: none while saves fail.
            return Assessment(
                decision: .deny(.quotaExhausted, key: key, retryAt: now + 1000, detail: .persistence), headroom: 0,
                rate: 0, resetAt: 0)
        }
        let rights = rightsWindow(key, policy: policy, now: now)
        if rights != nil && membership.stopped {
            // This node's trust store is the odd one out: its part of the split may be too large.
            return Assessment(
                decision: .deny(.quotaExhausted, key: key, retryAt: now + 1000, detail: .trustStoresDiffer),
                headroom: 0, rate: 0, resetAt: 0)
        }
        var assessment = assessEstimate(key, request: request, policy: policy, byRights: rights != nil, now: now, rng: &rng)
        assessment.rights = rights
        guard assessment.decision.granted, let rights else { return assessment }
        let verdict = rightsVerdict(key, window: rights, cost: max(1, request.cost), priority: request.priority, now: now)
        assessment.rightsCache = verdict.cache
        assessment.want = verdict.want
        guard let denial = verdict.denial else {
            assessment.decision.windowEnd = rights.windowEnd
            return assessment
        }
        assessment.decision = denial
        assessment.headroom = 0
        return assessment
    }

    /// The decision from the estimate of what is left: breaker, reserves, fair share and pacing. `byRights`:
    /// whether the key's grants also need rights (a known limit), which makes the estimate's own guards
    /// against overshoot (unseen grants, turns) unnecessary.
    func assessEstimate(
        _ key: QuotaKey, request: AcquireRequest, policy: ServicePolicy, byRights: Bool, now: UnixMillis,
        rng: inout SplitMix64
    ) -> Assessment {
        let own = local[key]
        // A learned service's default policy configures no limit, so this is the configured limit or nil.
        let merged = mergedView(
            key, own: own, configuredLimit: policy.configuredLimit(key.dimension), refill: policy.refill, now: now)
        let quota = own ?? LocalQuota()
        let cost = Double(max(1, request.cost))
        let resetAt = merged.window?.resetAt ?? 0
        // The demand tiers worked out for the share (not cached yet), once they are.
        var sharesWorkedOut: ShareCache?
        func result(_ decision: AcquireDecision, headroom: Double = 0, rate: Double = 0) -> Assessment {
            var assessment = Assessment(decision: decision, headroom: headroom, rate: rate, resetAt: resetAt)
            assessment.shareCache = sharesWorkedOut
            return assessment
        }
        switch merged.breaker.state(at: now) {
        case .open:
            return result(.deny(.breakerOpen, key: key, retryAt: merged.breaker.openUntil))
        case .halfOpen:
            if let probe = quota.probeGrantedAt, now < probe.saturatingAdd(policy.breaker.probeTimeoutMillis) {
                // The probe's answer is usually back within a round or two; look again then.
                let retry = min(
                    probe.saturatingAdd(policy.breaker.probeTimeoutMillis), now + 2 * configuration.gossipIntervalMillis)
                return result(.deny(.breakerOpen, key: key, retryAt: retry, detail: .halfOpenProbeInFlight))
            }
            // One node probes, not every node whose agent is waiting: the first in an order every node
            // derives alike from the breaker's opening; the next takes over only if no answer has spread
            // by its turn. A failed probe reopens the breaker, with a new order.
            let turn = probeTurn(key, breaker: merged.breaker)
            if now < turn {
                let retry = min(turn, now + 2 * configuration.gossipIntervalMillis)
                return result(.deny(.breakerOpen, key: key, retryAt: retry, detail: .halfOpenProbeElsewhere))
            }
            return result(.grant(key, detail: .halfOpenProbe))
        case .closed:
            break
        }
        // Learning after a start: until an anti-entropy exchange or two have brought in what the peers
        // consumed, this node's view undercounts, so only urgent work may go ahead (Doorman's learning mode).
        if isLearning(now: now) && request.priority != .urgent {
            return result(.deny(.quotaExhausted, key: key, retryAt: learningEndsAt, detail: .learning))
        }
        let windowTotal = merged.windowTotal(at: now)
        // Where rights bound what the mesh sends, an observation that lags the calls the upstream counted
        // in it must not strand the window's last rights (a few percent of every window in the simulator).
        let recount = byRights && merged.window != nil
            ? self.recount(
                windowTotal: windowTotal,
                windowLength: Double(merged.window?.windowMillis ?? 0),
                resetAt: merged.window?.resetAt ?? now, now: now)
            : 0
        guard let window = merged.window,
            let remainingCount = remaining(merged, windowTotal: windowTotal, recount: recount, now: now)
        else {
            // A known service with no limit and no current observation: nothing to enforce but the breaker.
            return result(.grant(key, detail: .noLimitKnown), headroom: .infinity)
        }
        let limit = Double(window.limit ?? remainingCount)
        let windowLength = Double(window.windowMillis ?? max(window.resetAt - now, 1))
        // A clock that runs ahead sees the next window begin before the upstream does, and one that runs
        // behind still spends a window the upstream has closed: either call lands in a neighbouring window.
        // Normal and low work keeps clear of both edges when they are the upstream's own (windows aligned
        // to the epoch are this node's guess, with nothing to keep clear of); urgent work is not held back.
        let edge = windowEdge(window, length: windowLength, priority: request.priority)
        if edge > 0 {
            let untilReset = Double(max(window.resetAt - now, 0))
            if windowLength - untilReset < edge && window.windowMillis != nil {
                let retry = now + Int64((edge - (windowLength - untilReset)).rounded(.up))
                return result(.deny(.quotaExhausted, key: key, retryAt: retry, detail: .windowEdge))
            }
            if untilReset < edge {
                return result(.deny(
                    .quotaExhausted, key: key, retryAt: window.resetAt + Int64(edge.rounded(.up)), detail: .windowEdge))
            }
        }
        // Other nodes' grants of the last moments have not reached this node yet: about what they granted
        // per ms so far in this window, times the time gossip takes to bring it here. Without this, every
        // node sees the last calls of a window as still free and grants them in the same final moment.
        // Urgent work too: where most work is urgent, exempting it let several nodes grant a window's last
        // calls at once (two over the limit on one side of a partition in NetworkNamespaceTests).
        // Where rights apply, a grant needs a right, so grants not heard of yet cannot overshoot: no estimate.
        let unseen = byRights ? 0 : unseenConsumption(
            merged, windowTotal: windowTotal, windowLength: windowLength, resetAt: window.resetAt, now: now)
        let remaining = Double(remainingCount) - unseen
        if remaining < cost && Double(remainingCount) >= cost {
            let retry = min(window.resetAt, now + Self.propagationRounds * configuration.gossipIntervalMillis)
            return result(.deny(.quotaExhausted, key: key, retryAt: retry, detail: .settling))
        }
        // A reserve holds back what higher priorities may still need in the rest of the window, so it
        // shrinks as the window runs out and nothing is left unused at the reset.
        let timeLeft = min(1, Double(max(window.resetAt - now, 0)) / max(windowLength, 1))
        let floor = policy.reserves[request.priority] * limit * timeLeft
        if cost > limit {
            // Can never succeed in any window: say so at once rather than let the agent wait.
            return result(.deny(.quotaExhausted, key: key, retryAt: window.resetAt, detail: .costExceedsLimit))
        }
        if remaining < cost {
            return result(.deny(.quotaExhausted, key: key, retryAt: window.resetAt, detail: .window))
        }
        if remaining - cost < floor {
            return result(.deny(.reservedForHigherPriority, key: key, retryAt: window.resetAt, detail: .reserve))
        }
        let shares = shareOfWhatIsLeft(
            key, own: own, remaining: remaining, limit: limit, policy: policy, resetAt: window.resetAt,
            windowMillis: windowLength, now: now)
        let share = shares.share
        sharesWorkedOut = shares.cache
        let usable = share * (remaining - floor)
        // The node's share is enforced by pacing it over the rest of the window: calls are spaced
        // `cost ÷ rate` apart, with rate = share × what is left ÷ time left (reserves are enforced above,
        // on the merged total). Summed over the nodes that is what is left ÷ time left, so the cluster
        // drains the window evenly however many nodes there are, and a share worth less than one call
        // becomes a call with that probability (each node starts a window at a random phase).
        let rate = pace(share: share, remaining: remaining, resetAt: window.resetAt, edge: edge, now: now)
        guard rate > 0 else {
            // Urgent work where rights apply is not paced (below): a share of nothing does not hold it back.
            if byRights && request.priority == .urgent { return result(.grant(key), headroom: usable - cost) }
            // No pace, so nothing of the bucket's debt is paid meanwhile: paid on at the last rate, the debt
            // of every node would run out while their shares were nothing, and they would all grant at once
            // when the shares came back (BENCHMARKS.md, "Enforcement as N grows").
            var held: LeakyBucket?
            if quota.bucket.windowEnd == window.resetAt {
                held = quota.bucket
                held?.hold(now: now)
            }
            let retry = min(window.resetAt, now + max(configuration.gossipIntervalMillis * 5, 1000))
            var denied = result(.deny(.quotaExhausted, key: key, retryAt: retry, detail: .share))
            denied.bucket = held
            return denied
        }
        // A window's last calls go by turns when nodes outnumber them: independent grants of the last one or
        // two calls, each made before the others' reached it, bunch past the limit. Where nodes outnumber
        // the whole window's calls, most shares are worth less than a call, each node's calls come at
        // random phases, and in the last moments several grants at once can outrun every node's view of
        // what was left (BENCHMARKS.md, "The window's last slot by turns"): there the window's last slot
        // goes by turns whatever is left, after a quiet half slot
        // that lets earlier grants reach every node. Urgent work keeps its pace there (it is a tenth of
        // the work, and a turn could keep it waiting until the reset). See ``tailTurn(_:remaining:cost:
        // quota:resetAt:closingEdge:windowMillis:now:)``.
        var turnSlot: Int64 = .min
        // Every node closes the window's turns at the same edge (normal work's), whatever the priority.
        let closingEdge = window.resetAt
            - Int64(windowEdge(window, length: windowLength, priority: .normal).rounded(.up))
        let claimants = Double(live.count + pendingClaimants(now: now) + 1)
        // Turns exist to keep independent grants of a window's last calls within the limit; where rights
        // are held (a known limit), a grant needs a right, so no turns are needed to bound them.
        let outnumbered = limit < claimants
        let lastSlotByTurns = outnumbered && request.priority != .urgent && !byRights
        let inLastSlot = lastSlotByTurns && Double(closingEdge - now) < turnSlotMillis + spreadMillis
        if byRights && outnumbered && Double(closingEdge - now) < turnSlotMillis + spreadMillis {
            // The window's last slot, where nodes outnumber its calls: most shares are worth less than a call,
            // so paced calls land past the reset and the window's last rights would go unused. Whoever holds
            // a right spends it now, whatever its pace (rights bound the total); whoever has a call and no
            // right asks a holder.
            return result(.grant(key), headroom: usable - cost, rate: rate)
        }
        if !byRights && remaining < claimants && (remaining <= Self.tailTurnCalls || inLastSlot) {
            switch tailTurn(
                key, remaining: remaining, cost: cost, quota: quota, resetAt: window.resetAt, closingEdge: closingEdge,
                windowMillis: windowLength, now: now)
            {
            case .success(let slot) where inLastSlot:
                // The turn is the allotment: one call, whatever the node's pace would allow.
                var granted = result(.grant(key), headroom: usable - cost, rate: rate)
                granted.turnSlot = slot
                return granted
            case .success(let slot):
                turnSlot = slot
            case .failure(let wait):
                return result(.deny(.quotaExhausted, key: key, retryAt: min(window.resetAt, wait.until), detail: .turn))
            }
        }
        var bucket = quota.bucket
        if bucket.windowEnd != window.resetAt {
            // The random phase spreads the first calls of many nodes over the window and turns a share
            // worth less than one call into a call with that probability. A node alone with the whole
            // limit needs neither: it must not wait a random part of an hour for its first call.
            let phase = share >= 1 ? 0 : Double.random(in: 0..<1, using: &rng) * cost / rate
            bucket.enter(windowEnd: window.resetAt, now: now, phase: phase)
        }
        // What the bucket still owes is paid at the rate that holds now. A grant re-times it the same way
        // when it charges it, so the bucket is stored here only when a window begins or the call waits.
        let entered = bucket.windowEnd != quota.bucket.windowEnd
        bucket.retime(ratePerMillisecond: rate, now: now)
        let stored: LeakyBucket? = entered ? bucket : nil
        // Urgent calls may run a few calls ahead of the pacing while a healthy part of the normal reserve
        // is left (that reserve exists for them), so that a burst of them is not queued behind the pace;
        // they are charged to it, so the node's other work slows.
        let urgentMargin = policy.reserves.normal * limit * timeLeft / 2
        let burst = share * policy.burstFraction * limit
        var tolerance = burst / rate
        // Where rights apply, what urgent work may spend is what this node holds or is given: it goes at once,
        // and rights (which follow urgent demand first) share it out when it exceeds the limit.
        if request.priority == .urgent && byRights {
            tolerance = .infinity
        } else if request.priority == .urgent && remaining - cost >= urgentMargin {
            tolerance += Self.urgentBurstCalls * cost / rate
            // While every node's urgent demand fits in what is left, urgent work is not paced at all: the
            // first tier has already set that much aside for it, and every other node's pace shrinks as it
            // is spent. Only when urgent demand alone exceeds what is left is it paced like the rest.
            let tiers = sharesWorkedOut?.tiers ?? shareCache[key]?.tiers
            if urgentDemandFits(key, remaining: remaining, resetAt: window.resetAt, tiers: tiers, now: now) {
                tolerance = .infinity
            }
        }
        let earliest = bucket.earliestAdmission(tolerance: tolerance)
        if earliest > Double(now) {
            var retry = earliest < 9e15 ? UnixMillis(earliest.rounded(.up)) : window.resetAt
            // Paced at an idle node's floor while its own demand is not signed yet: its share grows once it
            // is, so the wait is no longer than that (an agent waiting that long is then served).
            if let refresh = ownDemandRefresh(key, windowMillis: windowLength, now: now) { retry = min(retry, refresh) }
            // Where the window's last slot goes by turns, a waiting call asks again when it opens.
            let lastSlot = closingEdge - Int64(turnSlotMillis)
            if (lastSlotByTurns || (byRights && outnumbered)) && now < lastSlot { retry = min(retry, lastSlot) }
            var paced = result(.deny(.quotaExhausted, key: key, retryAt: min(retry, window.resetAt), detail: .paced))
            paced.bucket = bucket
            return paced
        }
        var granted = result(.grant(key), headroom: usable - cost, rate: rate)
        granted.turnSlot = turnSlot
        granted.bucket = stored
        return granted
    }

    /// How many calls left in a window (after grants not yet heard of) go by turns when nodes outnumber
    /// them: the fewest that kept every simulated window within the limit (BENCHMARKS.md, "The window's
    /// last slot by turns").
    static let tailTurnCalls = 2.0

    /// How long a slot of turns is: two ``spreadMillis``, a half to grant in and a half for the grants to
    /// reach every node.
    var turnSlotMillis: Double { max(2 * spreadMillis.rounded(.up), 2) }

    /// When a node may not take a turn yet, and until when.
    struct TurnWait: Error { var until: UnixMillis }

    /// Whether this node may grant one of a window's last calls now, and in which slot. Time is cut into
    /// slots ``turnSlotMillis`` long, counted back from the window's closing edge. In the first half of a
    /// slot, the nodes ranked below what is left may grant one call each, in an order every node derives
    /// alike from the window and the slot (as for half-open probes): nodes whose signed demand is busy
    /// first, so that turns go to nodes with calls to make. The second half lets those grants reach every
    /// node before the next slot's nodes decide. At most what is left is granted in a slot, and a new
    /// order each slot passes the turns around. The slot is named by its start (ms).
    func tailTurn(
        _ key: QuotaKey, remaining: Double, cost: Double, quota: LocalQuota, resetAt: UnixMillis,
        closingEdge: UnixMillis, windowMillis: Double, now: UnixMillis
    ) -> Result<Int64, TurnWait> {
        let spread = spreadMillis
        let length = Int64(turnSlotMillis)
        let untilEdge = closingEdge - now
        guard untilEdge > 0 else { return .failure(TurnWait(until: resetAt)) }
        // Slots count back from the closing edge, so that the last one ends there.
        let back = (untilEdge - 1) / length
        let slot = closingEdge - (back + 1) * length
        let next = TurnWait(until: back == 0 ? resetAt : slot + length)
        if Double(now - slot) >= spread || quota.lastTurnSlot == slot { return .failure(next) }
        let salt = UInt64(bitPattern: resetAt) ^ (UInt64(bitPattern: slot) &* 0x9E37_79B9_7F4A_7C15)
        func order(_ node: VerifyingKey) -> UInt64 { Self.turnOrder(node, salt: salt) }
        // Nodes whose signed demand is busy (fresh, as for shares) go first, so that turns go to nodes that
        // have calls to make; every node reads the same signed records, so every node ranks alike.
        let freshAfter = now.saturatingSubtract(Int64(windowMillis))
        let aggregate = remote[key]
        let ownBusy = quota.signedDemand(signedAfter: freshAfter).total > 0
        let own = order(publicKey)
        var ahead = 0.0
        for peer in live {
            let busy = (aggregate?.origins[peer]?.demand(signedAfter: freshAfter).total ?? 0) > 0
            if busy != ownBusy ? busy : order(peer) < own { ahead += 1 }
        }
        return ahead + cost <= remaining ? .success(slot) : .failure(next)
    }

    mutating func commit(_ key: QuotaKey, request: AcquireRequest, assessment: Assessment, now: UnixMillis) {
        let rights = assessment.rights
        let before = ledgerVersion
        // In place: one look-up of the key, not a read and a write.
        Self.charge(&local[key, default: LocalQuota()], request: request, assessment: assessment, rights: rights, now: now)
        if let rights { noteRightsSpent(key, amount: UInt64(max(1, request.cost)), window: rights, versionBefore: before) }
    }

    /// Counts a granted call in `quota`: its consumption in the window, its pacing bucket, and the rights
    /// of `rights` it spends.
    private static func charge(
        _ quota: inout LocalQuota, request: AcquireRequest, assessment: Assessment, rights: RightsWindow?,
        now: UnixMillis
    ) {
        let cost = UInt64(max(1, request.cost))
        if let rights {
            var ledger = quota.rightsLedger(windowEnd: rights.windowEnd)
            ledger.spent = ledger.spent.saturatingAdd(cost)
            quota.state.ledger = ledger
        }
        var entry = quota.state.consumption
        entry.total = entry.total.saturatingAdd(cost)
        if assessment.resetAt > entry.windowEnd && now >= entry.windowEnd {
            // A new window.
            entry.windowEnd = assessment.resetAt
            entry.windowCount = cost
            entry.windowRefund = 0
        } else {
            // The same window, perhaps with its end moved later by a fresher observation: keep counting.
            entry.windowEnd = max(entry.windowEnd, assessment.resetAt)
            entry.windowCount = entry.windowCount.saturatingAdd(cost)
        }
        quota.state.consumption = entry
        if assessment.decision.detail?.kind == .halfOpenProbe { quota.probeGrantedAt = now }
        if assessment.turnSlot != .min { quota.lastTurnSlot = assessment.turnSlot }
        if assessment.rate > 0 {
            if quota.bucket.windowEnd != assessment.resetAt {
                quota.bucket.enter(windowEnd: assessment.resetAt, now: now, phase: 0)
            }
            quota.bucket.charge(cost: Double(cost), ratePerMillisecond: assessment.rate, now: now)
        }
        quota.dirty = true
    }

    /// How much more than its measured urgent demand each node is allotted in the urgent tier. More than 1
    /// would let bursts of urgent work queue less, but every node's allocation then swings with a noisy
    /// estimate and simulated windows went over the limit (BENCHMARKS.md, "Simulator"): the burst
    /// tolerance below serves bursts instead.
    static let urgentHeadroom = 1.0

    /// How many calls urgent work may run ahead of its node's pacing (while the reserve it draws on is
    /// healthy). Three instead of one changed neither the worst window nor urgent waits measurably in the
    /// simulator, so it stays one.
    static let urgentBurstCalls = 1.0

    /// This node's fraction of what is left, in two tiers over the demand of every live node (rates from
    /// their signed records, this node's own from its last signed record too, so every node computes the
    /// same allocation): urgent demand anywhere first, max-min fair, then the rest of the demand, max-min
    /// fair. Within a node, waiting urgent calls go first and reserves hold back normal and low work.
    ///
    /// Every live node is deemed to need at least a small floor (its share of the burst), so a node that
    /// was idle can make its first call at once; its demand reaches the others within a round.
    mutating func fairShare(
        _ key: QuotaKey, remaining: Double, limit: Double, policy: ServicePolicy, resetAt: UnixMillis,
        windowMillis: Double, now: UnixMillis
    ) -> Double {
        let shares = shareOfWhatIsLeft(
            key, own: local[key], remaining: remaining, limit: limit, policy: policy, resetAt: resetAt,
            windowMillis: windowMillis, now: now)
        if let cache = shares.cache { shareCache[key] = cache }
        return shares.share
    }

    /// ``fairShare(_:remaining:limit:policy:resetAt:windowMillis:now:)`` changing nothing: the share, and
    /// the other nodes' demand tiers when they were worked out rather than taken from the cache. `own`: this
    /// node's state of `key`, already looked up.
    func shareOfWhatIsLeft(
        _ key: QuotaKey, own ownQuota: LocalQuota?, remaining: Double, limit: Double, policy: ServicePolicy,
        resetAt: UnixMillis, windowMillis: Double, now: UnixMillis
    ) -> (share: Double, cache: ShareCache?) {
        guard remaining > 0 else { return (0, nil) }
        // Until a liveness timeout has passed since start, peers not heard from yet still count (with no
        // demand): a node that has just started must not believe it is alone and spend everyone's share.
        let pending = pendingClaimants(now: now)
        if live.isEmpty && pending == 0 { return (1, nil) }
        if weightsApply {
            let share = weightedFairShare(
                key, remaining: remaining, limit: limit, policy: policy, resetAt: resetAt, windowMillis: windowMillis,
                pending: pending, now: now)
            return (share, nil)
        }
        // Other live nodes' demand rates per tier, sorted, cached for the round.
        let tiers: [TierRates]
        var workedOut: ShareCache?
        if let cached = shareCache[key], cached.round == round, cached.liveVersion == liveVersion,
            cached.claimants == live.count + pending
        {
            tiers = cached.tiers
        } else {
            let aggregate = remote[key]
            let freshAfter = now.saturatingSubtract(Int64(windowMillis))
            let demands = live.map { peer in
                aggregate?.origins[peer]?.demand(signedAfter: freshAfter) ?? Demand.zero
            }
            let busy = demands.filter { $0.total > 0 }
            let idle = demands.count - busy.count + pending
            tiers = [
                TierRates(busy.map(\.urgent), idle: idle), TierRates(busy.map { $0.normal + $0.low }, idle: idle),
            ]
            workedOut = ShareCache(round: round, liveVersion: liveVersion, claimants: live.count + pending, tiers: tiers)
        }
        let own = ownQuota?.signedDemand(signedAfter: now.saturatingSubtract(Int64(windowMillis))) ?? Demand.zero
        let seconds = Double(max(resetAt - now, 1)) / 1000
        let count = live.count + pending + 1
        let floorNeed = min(remaining, policy.burstFraction * limit) / Double(count)
        let scales: InlineArray<2, Double> = [seconds * Self.urgentHeadroom, seconds]
        let ownNeeds: InlineArray<2, Double> = [own.urgent * scales[0], (own.normal + own.low) * scales[1]]
        let allocation = FairShare.tieredAllocation(
            capacity: remaining, ownNeeds: ownNeeds, others: tiers, scales: scales, floor: floorNeed, claimants: count)
        return (min(1, allocation / remaining), workedOut)
    }

    /// ``fairShare(_:remaining:limit:policy:resetAt:windowMillis:now:)`` where some node's weight is not 1:
    /// the same two tiers, each weighted max-min fair by effective weight (``effectiveWeight(of:)``), and
    /// what no tier needs split by weight.
    func weightedFairShare(
        _ key: QuotaKey, remaining: Double, limit: Double, policy: ServicePolicy, resetAt: UnixMillis,
        windowMillis: Double, pending: Int, now: UnixMillis
    ) -> Double {
        let freshAfter = now.saturatingSubtract(Int64(windowMillis))
        let seconds = Double(max(resetAt - now, 1)) / 1000
        let aggregate = remote[key]
        func claim(_ demand: Demand, weight: Weight) -> WeightedFairShare.Claim {
            WeightedFairShare.Claim(
                urgent: demand.urgent * seconds * Self.urgentHeadroom, rest: (demand.normal + demand.low) * seconds,
                weight: weight.value)
        }
        var claims = live.map { peer in
            claim(aggregate?.origins[peer]?.demand(signedAfter: freshAfter) ?? Demand.zero, weight: effectiveWeight(of: peer))
        }
        claims += Array(repeating: claim(Demand.zero, weight: .one), count: pending)
        claims.append(claim(local[key]?.signedDemand(signedAfter: freshAfter) ?? Demand.zero, weight: configuration.weight))
        let floorNeed = min(remaining, policy.burstFraction * limit) / Double(claims.count)
        let allocation = WeightedFairShare.tieredAllocation(
            capacity: remaining, claimants: claims, own: claims.count - 1, floor: floorNeed)
        return min(1, allocation / remaining)
    }

    /// Peers not heard from yet that still count as claimants: all of them until a liveness timeout has
    /// passed since start, none after.
    func pendingClaimants(now: UnixMillis) -> Int {
        now.saturatingSubtract(startedAt) < livenessTimeout ? unheard : 0
    }

    /// How far (ms) a call of `priority` keeps from the edges of `window`: `windowEdgeMillis`, at most a
    /// tenth of the window, for normal and low calls in a window whose edges are the upstream's own; 0 for
    /// urgent calls and for windows this node aligns to the epoch on its own.
    func windowEdge(_ window: Window, length: Double, priority: Priority) -> Double {
        priority == .urgent || !window.observed ? 0 : normalEdgeMillis(length: length)
    }

    /// How far normal and low work keeps from each edge of an observed window `length` ms long:
    /// `windowEdgeMillis`, at most a tenth of the window.
    func normalEdgeMillis(length: Double) -> Double {
        min(Double(configuration.windowEdgeMillis), length / 10)
    }

    /// The pace (calls per ms) at which this node spends `share` of `remaining` over the rest of the window:
    /// before its closing edge, and over no less than the time a grant takes to reach the other nodes. In
    /// the last moments of a window no node can see the others' grants, and what is left ÷ time left
    /// would grow without bound while every node's view of what is left stands still.
    func pace(share: Double, remaining: Double, resetAt: UnixMillis, edge: Double, now: UnixMillis) -> Double {
        let millisLeft = max(Double(resetAt - now) - edge, 1)
        return share * remaining / max(millisLeft, spreadMillis)
    }

    /// About how long an update takes to reach a typical node: log_fanout(N + 1) gossip rounds (push
    /// gossip's spread; ``Simulator`` measures it), at least one.
    var spreadMillis: Double {
        let fanout = Double(max(2, configuration.fanout))
        let rounds = max(1, Self.roughLog2(Double(mesh.peerCount + 1)) / Self.roughLog2(fanout))
        return rounds * Double(configuration.gossipIntervalMillis)
    }

    /// log₂(x) for x ≥ 1, to within 0.09 (the core imports no maths library): the exponent plus the
    /// significand's linear interpolation.
    static func roughLog2(_ x: Double) -> Double {
        guard x >= 1, x.isFinite else { return 0 }
        return Double(x.exponent) + (x.significand - 1)
    }

    /// When this node may probe a half-open breaker: the breaker's reopening time plus one gossip interval
    /// for every live node ahead of it in an order hashed from each node's key and the opening time. Every
    /// node derives the same order, each opening a different one. A node whose agent has nothing to send
    /// lets its turn pass; a node that probes is answered within about a round trip, and the answer
    /// reaches the others within ``spreadMillis``, so a handful of nodes probe at most, not every node.
    func probeTurn(_ key: QuotaKey, breaker: BreakerRegister) -> UnixMillis {
        func order(_ node: VerifyingKey) -> UInt64 { Self.turnOrder(node, salt: UInt64(bitPattern: breaker.openedAt)) }
        let own = order(publicKey)
        var ahead: Int64 = 0
        for peer in live where order(peer) < own { ahead += 1 }
        return breaker.openUntil.saturatingAdd(ahead.saturatingMultiply(configuration.gossipIntervalMillis))
    }

    /// A node's place in an order every node derives alike from its key and `salt`: who goes first to probe
    /// a half-open breaker, or to take one of a window's last calls.
    static func turnOrder(_ node: VerifyingKey, salt: UInt64) -> UInt64 {
        var mixer = SplitMix64(
            seed: node.words.0 ^ (node.words.1 &* 3) ^ (node.words.2 &* 5) ^ (node.words.3 &* 7) ^ salt)
        return mixer.next()
    }

    /// When this node's own demand for `key` will next be in a signed record, if the last one it signed
    /// counts as idle (it said so, or was signed more than `windowMillis` ago) while agents have asked
    /// since: the next demand estimate, no earlier than the demand-update pace allows, then the round
    /// that signs it. Nil otherwise.
    func ownDemandRefresh(_ key: QuotaKey, windowMillis: Double, now: UnixMillis) -> UnixMillis? {
        guard let quota = local[key], quota.demand.total > 0 || quota.requested.total > 0,
            quota.signedDemand(signedAfter: now.saturatingSubtract(Int64(windowMillis))).total == 0
        else { return nil }
        let estimate = demandWindowStart.saturatingAdd(configuration.demandIntervalMillis)
        let allowed = lastDemandSignAt.map { $0.saturatingAdd(demandUpdateInterval) } ?? estimate
        return max(estimate, allowed, now).saturatingAdd(configuration.gossipIntervalMillis)
    }

    /// Gossip rounds a grant elsewhere takes to be counted here (a push, then a relay), for
    /// ``unseenConsumption(_:windowTotal:windowLength:resetAt:now:)``.
    static let propagationRounds: Int64 = 1

    /// What other nodes have probably granted that has not reached this node yet: their consumption in
    /// this window so far, per ms, times ``propagationRounds`` gossip intervals (0 at a window's start).
    func unseenConsumption(
        _ merged: Merged, windowTotal total: UInt64, windowLength: Double, resetAt: UnixMillis, now: UnixMillis
    ) -> Double {
        let lag = Double(Self.propagationRounds * configuration.gossipIntervalMillis)
        let elapsed = windowLength - Double(max(resetAt - now, 0))
        guard elapsed > lag else { return 0 }
        let own = merged.ownConsumption.count(at: now)
        let others = Double(total >= own ? total - own : 0)
        return min(others, others / elapsed * lag)
    }

    /// Whether the urgent demand of every live node (this one's included), over the rest of the window,
    /// fits in what is left: the first tier of ``fairShare(_:remaining:limit:policy:resetAt:now:)`` is
    /// then met in full.
    func urgentDemandFits(
        _ key: QuotaKey, remaining: Double, resetAt: UnixMillis, tiers: [TierRates]?, now: UnixMillis
    ) -> Bool {
        let seconds = Double(max(resetAt - now, 1)) / 1000
        let scale = seconds * Self.urgentHeadroom
        let own = (local[key]?.signedDemand.urgent ?? 0) * scale
        guard let tiers, let urgent = tiers.first else { return own <= remaining }
        return urgent.totalNeed(scale: scale, floor: 0) + own <= remaining
    }

    /// The merged view of `key` for the API; `rng` is the instance's generator, copied (nothing changes).
    func view(of key: QuotaKey, now: UnixMillis, rng: SplitMix64) -> QuotaView {
        var scratch = self
        var rng = rng
        let merged = scratch.mergedView(key, now: now)
        let remainingCount = scratch.remaining(merged, now: now)
        var next: [Priority: Int64] = [:]
        let windows = key.dimension == QuotaKey.requests ? catalog.entry(key.service).requestWindows : []
        for priority in Priority.allCases {
            let probe = AcquireRequest(service: key.service, priority: priority, cost: 1)
            // The latest any dimension a call counts in could grant it.
            var wait: Int64 = 0
            for partKey in [key] + windows.map({ key.counting($0) }) {
                let assessment = scratch.assess(partKey, request: probe, now: now, rng: &rng)
                scratch.apply(assessment, to: partKey)
                let decision = assessment.decision
                if !decision.granted { wait = max(wait, (decision.retryAt ?? now).saturatingSubtract(now)) }
            }
            next[priority] = wait
        }
        let breakerState = merged.breaker.state(at: now)
        var share = 1.0
        if let count = remainingCount, let window = merged.window {
            share = scratch.fairShare(
                key, remaining: Double(count), limit: Double(window.limit ?? count), policy: catalog.policy(key.service),
                resetAt: window.resetAt, windowMillis: Double(window.windowMillis ?? max(window.resetAt - now, 1)),
                now: now)
        }
        var view = QuotaView(
            key: key, limit: merged.window?.limit ?? merged.policy?.limit,
            windowMillis: merged.window?.windowMillis ?? merged.policy?.windowMillis, remaining: remainingCount,
            resetAt: merged.window?.resetAt, nextAvailableMillis: next, consumedGlobal: merged.windowTotal(at: now),
            consumedLocal: local[key]?.state.consumption.count(at: now) ?? 0, breakerState: breakerState,
            breakerOpenUntil: breakerState == .closed ? nil : merged.breaker.openUntil,
            peersLive: live.count, peersKnown: mesh.peerCount, observation: merged.observation, share: share)
        view.rights = rightsHeld(key, now: now)
        if key.dimension == QuotaKey.requests {
            view.dimensions = catalog.dimensions(of: key.service).map { name in
                let partKey = key.counting(name)
                let part = name == QuotaKey.requests ? merged : scratch.mergedView(partKey, now: now)
                return DimensionView(
                    name: name, limit: part.window?.limit ?? part.policy?.limit,
                    windowMillis: part.window?.windowMillis ?? part.policy?.windowMillis,
                    remaining: scratch.remaining(part, now: now), resetAt: part.window?.resetAt,
                    consumedGlobal: part.windowTotal(at: now),
                    consumedLocal: local[partKey]?.state.consumption.count(at: now) ?? 0)
            }
        }
        return view
    }

    /// When learning after a start ends: two anti-entropy periods.
    var learningEndsAt: UnixMillis {
        startedAt + 2 * Int64(digestPeriodRounds) * configuration.gossipIntervalMillis
    }

    /// Whether this node is still learning the cluster's state after a start (never when it is alone).
    func isLearning(now: UnixMillis) -> Bool {
        // The digest period is at most the configured one: past twice that, no need to work it out.
        let latest = startedAt + 2 * Int64(max(1, configuration.antiEntropyEveryRounds)) * configuration.gossipIntervalMillis
        return now < latest && mesh.peerCount > 0 && now < learningEndsAt
    }

    // MARK: - Demand and waiting

    mutating func noteDemand(_ request: AcquireRequest, entry: ServiceEntry) {
        guard let policy = entry.policy else { return }
        // The common case (requests only, no scopes) allocates nothing.
        let counted = request.costs.isEmpty ? [] : Set(catalog.dimensions(of: request.service))
        var keys = entry.keys
        if !policy.scopes.isEmpty {
            keys += Set(keys.compactMap { policy.scopeAccount(of: $0.account) }).sorted()
                .map { QuotaKey(service: request.service, account: $0) }
        }
        for key in keys {
            local[key, default: LocalQuota()].requested[request.priority] += Double(max(0, request.cost))
            for dimension in entry.requestWindows where request.costs[dimension] == nil {
                local[key.counting(dimension), default: LocalQuota()].requested[request.priority] += Double(max(0, request.cost))
            }
            for (dimension, amount) in request.costs where amount > 0 && counted.contains(dimension) {
                let partKey = key.counting(dimension)
                var part = local[partKey] ?? LocalQuota()
                part.requested[request.priority] += Double(amount)
                local[partKey] = part
            }
        }
    }

    mutating func updateDemand(now: UnixMillis) {
        let elapsed = now.saturatingSubtract(demandWindowStart)
        guard elapsed >= configuration.demandIntervalMillis else { return }
        demandWindowStart = now
        let seconds = Double(elapsed) / 1000
        for key in local.keys {
            guard var quota = local[key] else { continue }
            var changed = false
            for priority in Priority.allCases {
                let rate = quota.requested[priority] / seconds
                let old = quota.demand[priority]
                var next = 0.5 * rate + 0.5 * old
                if next < 0.01 { next = 0 }
                if (old == 0) != (next == 0) || abs(next - old) > 0.2 * max(old, next) { changed = true }
                quota.demand[priority] = next
            }
            quota.requested = Demand.zero
            // A demand signed more than a window ago counts as idle, so a node still busy re-signs its
            // demand at half a window (within the demand-update pace) even when it has not changed.
            let window = configuration.services[key.service]?.windowMillis ?? quota.state.policy?.windowMillis
            if quota.demand.total > 0, let window, window > 0,
                quota.signedDemandAt < now.saturatingSubtract(window / 2)
            {
                changed = true
            }
            // Even a node going from idle to busy or back waits for the demand-update pace: signed at the
            // next round instead, those changes crowd out the rest in large clusters under load, for more
            // utilization only where the nodes outnumber the calls (docs/PROTOCOL.md, "Quota records").
            if changed { quota.demandDirty = true }
            local[key] = quota
        }
    }

    /// How long a refused acquire may wait for a grant, `nil` if it is answered at once: what the agent
    /// allows, and at least ``rightsWaitMillis`` when only rights are missing and peers holding some were
    /// asked (their answer is a round trip away, far sooner than any agent's retry).
    static func waitAllowed(_ request: AcquireRequest, decision: AcquireDecision) -> Int64? {
        guard decision.reason != .unknownService, decision.detail?.kind != .costExceedsLimit else { return nil }
        // For the account's requests, or another dimension or the scope of the call.
        let lacksRights = decision.detail?.kind == .rights
        let wait = lacksRights ? max(request.waitMillis, rightsWaitMillis) : request.waitMillis
        return wait > 0 ? wait : nil
    }

    /// How long an acquire waits for rights asked of peers before it is refused (ms).
    static let rightsWaitMillis: Int64 = 250

    /// Decides the waiting acquires again and answers those granted or out of time (a save before each
    /// grant's answer).
    mutating func serveWaiters(now: UnixMillis, rng: inout SplitMix64, into out: inout [MeshDirective]) {
        guard !waitQueue.isEmpty else { return }
        // The queue is taken out while it is served: each decision changes this instance.
        var queue = waitQueue
        waitQueue = WaitQueue()
        let answers = queue.serve(now: now) { decide($0, now: now, rng: &rng) }
        waitQueue = queue
        var grantedAny = false
        for answer in answers {
            if answer.decision.granted {
                grantedAny = true
                out.append(.persist)
            }
            out.append(.reply(ticket: answer.ticket, answer.decision))
        }
        if grantedAny { pendingPersist = false }
    }
}

extension Int64 {
    /// `self × other`, or the largest/smallest value instead of overflowing.
    func saturatingMultiply(_ other: Int64) -> Int64 {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        if !overflow { return product }
        return (self < 0) == (other < 0) ? .max : .min
    }
}

extension QuotaLedger {
    /// The pieces of the remaining estimate for `key`, for diagnosis: (limit − window total, observation
    /// estimate, window total, lifetime total, the observation's anchor and remaining) and the estimate.
    func remainingBreakdown(_ key: QuotaKey, now: UnixMillis) -> [String: Int64] {
        let merged = mergedView(key, now: now)
        var out: [String: Int64] = [
            "window_total": Int64(clamping: merged.windowTotal(at: now)),
            "lifetime": Int64(clamping: merged.lifetimeTotal),
            "reset_at": merged.window?.resetAt ?? -1,
        ]
        if let limit = merged.window?.limit { out["limit_estimate"] = limit - out["window_total", default: 0] }
        if let observation = merged.observation {
            out["obs_remaining"] = observation.remaining
            out["obs_anchor"] = Int64(clamping: observation.consumedTotalAtObservation)
            out["obs_reset"] = observation.resetAt
        }
        if let left = remaining(merged, now: now) { out["remaining"] = left }
        return out
    }
}

extension QuotaLedger {
    /// The inputs of this node's pacing for `key`, for diagnosis: live peers, peers not heard from yet,
    /// what is left, the unseen-grant estimate, this node's fraction, and its pace for a normal call (calls
    /// per second), worked out by the same functions as ``assess(_:request:policy:now:)``.
    mutating func pacingBreakdown(_ key: QuotaKey, now: UnixMillis) -> [String: Double] {
        let policy = catalog.policy(key.service)
        let merged = mergedView(
            key, own: local[key], configuredLimit: policy.configuredLimit(key.dimension), refill: policy.refill, now: now)
        let total = merged.windowTotal(at: now)
        guard let window = merged.window, let left = remaining(merged, windowTotal: total, now: now) else { return [:] }
        let limit = Double(window.limit ?? left)
        let length = Double(window.windowMillis ?? max(window.resetAt - now, 1))
        let unseen = unseenConsumption(merged, windowTotal: total, windowLength: length, resetAt: window.resetAt, now: now)
        let share = fairShare(
            key, remaining: Double(left) - unseen, limit: limit, policy: policy, resetAt: window.resetAt,
            windowMillis: length, now: now)
        let edge = windowEdge(window, length: length, priority: .normal)
        let rate = pace(share: share, remaining: Double(left) - unseen, resetAt: window.resetAt, edge: edge, now: now)
        return [
            "live": Double(live.count), "unheard": Double(unheard), "remaining": Double(left), "unseen": unseen,
            "share": share, "pace_per_s": rate * 1000,
            "own_demand": local[key]?.signedDemand.total ?? 0,
            "tat_in": (local[key]?.bucket.theoreticalArrival ?? 0) - Double(now),
            "bucket_rate_per_s": (local[key]?.bucket.rate ?? 0) * 1000,
        ]
    }
}

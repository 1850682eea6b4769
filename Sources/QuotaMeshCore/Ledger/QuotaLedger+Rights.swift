import QuotaMeshCrypto

extension QuotaLedger {
    // MARK: - Rights (escrow)

    /// How long before a window's end no rights of it are spent: a call granted in the last moments reaches
    /// the upstream after the reset. At most a twentieth of the window. (Its start keeps
    /// `rightsLeadMillis` clear, for clocks a little ahead.)
    func rightsEdgeMillis(_ window: RightsWindow) -> Int64 {
        min(configuration.rightsEdgeMillis, window.windowMillis / 20)
    }

    /// The window `key`'s rights are counted in at `now`: the key's limit and window (configured, else the
    /// lowest any origin advertises; never raised by an observation), aligned to the epoch so that every
    /// node names it alike. `nil` when no limit is known: nothing to split.
    func rightsWindow(_ key: QuotaKey, now: UnixMillis) -> RightsWindow? {
        rightsWindow(key, policy: configuration.services[key.service], now: now)
    }

    /// ``rightsWindow(_:now:)`` with the service's policy already looked up (the configured one, or a
    /// learned service's default, which configures no limit).
    func rightsWindow(_ key: QuotaKey, policy service: ServicePolicy?, now: UnixMillis) -> RightsWindow? {
        let configured = service?.configuredLimit(key.dimension)
        var policy = configured
        if policy == nil {
            policy = remote[key]?.lowestPolicy
            if let own = local[key]?.state.policy { policy = KeyAggregate.lower(policy, own) }
        }
        guard let policy, policy.limit > 0, policy.windowMillis > 0 else { return nil }
        let end = (now / policy.windowMillis + 1).saturatingMultiply(policy.windowMillis)
        // A configured refill holds for the configured requests limit; dimensions and learned limits are
        // counted per window.
        let refill = configured != nil && key.dimension == QuotaKey.requests
            ? service?.refill ?? .window : .window
        return RightsWindow(
            limit: policy.limit, windowMillis: policy.windowMillis, windowEnd: end, refill: refill, now: now)
    }

    /// Every member's balance in `window` of `key`, from the ledgers held (cached until one changes).
    mutating func balances(_ key: QuotaKey, window: RightsWindow) -> RightsBalances {
        let (balances, workedOut) = currentBalances(key, window: window)
        if let workedOut { rightsCache[key] = workedOut }
        return balances
    }

    /// ``balances(_:window:)`` changing nothing: the balances, and the cache entry when they were worked
    /// out rather than taken from the cache.
    func currentBalances(_ key: QuotaKey, window: RightsWindow) -> (RightsBalances, RightsCache?) {
        let aggregateVersion = remote[key]?.ledgerVersion ?? 0
        let cached = rightsCache[key]
        if let cached, cached.allotment.windowEnd == window.windowEnd, cached.allotment.limit == window.limit,
            cached.allotment.unlocked == window.unlocked, cached.aggregateVersion == aggregateVersion,
            cached.ownVersion == ledgerVersion
        {
            return (cached.balances, nil)
        }
        let allotment = cached.flatMap {
            $0.allotment.windowEnd == window.windowEnd && $0.allotment.limit == window.limit
                ? $0.allotment.dealing(window.unlocked) : nil
        } ?? RightsAllotment(members: members, limit: window.limit, windowEnd: window.windowEnd, unlocked: window.unlocked)
        // The versions credited before still count while they balance (``RightsBalances``).
        let credited = cached.flatMap { $0.allotment.windowEnd == window.windowEnd ? $0.balances.creditedLedgers : nil }
        let balances = computeBalances(key, allotment: allotment, credited: credited ?? [:])
        return (
            balances,
            RightsCache(allotment: allotment, aggregateVersion: aggregateVersion, ownVersion: ledgerVersion, balances: balances)
        )
    }

    /// ``balances(_:window:)`` worked out afresh, changing nothing; `credited`: the versions of the givers'
    /// ledgers credited before in the same window.
    func computeBalances(
        _ key: QuotaKey, allotment: RightsAllotment, credited: [VerifyingKey: RightsLedger] = [:]
    ) -> RightsBalances {
        var ledgers: [VerifyingKey: RightsLedger] = [:]
        if let aggregate = remote[key] {
            for (origin, entry) in aggregate.origins {
                if let ledger = entry.ledger, ledger.windowEnd == allotment.windowEnd { ledgers[origin] = ledger }
            }
        }
        if let own = local[key]?.state.ledger, own.windowEnd == allotment.windowEnd { ledgers[publicKey] = own }
        return RightsBalances(ledgers: ledgers, allotment: allotment, credited: credited)
    }

    /// The rights this node holds for `key` now, `nil` when the key has no known limit (for the API).
    func rightsHeld(_ key: QuotaKey, now: UnixMillis) -> Int64? {
        guard let window = rightsWindow(key, now: now) else { return nil }
        // The cached balances while they are current: an answer's view need not work out every member's.
        return max(0, currentBalances(key, window: window).0.holding(of: publicKey))
    }

    /// This node's ledger of `key` for `window`: the one held if it is for that window, else an empty one.
    func ownLedger(_ key: QuotaKey, window: RightsWindow) -> RightsLedger {
        local[key]?.rightsLedger(windowEnd: window.windowEnd) ?? RightsLedger(windowEnd: window.windowEnd)
    }

    /// Why a call of `cost` on `key` may not spend rights now, or `nil` when this node holds enough
    /// (``rightsVerdict(_:window:cost:priority:now:)``, acted on).
    mutating func rightsDenial(
        _ key: QuotaKey, window: RightsWindow, cost: Int64, priority: Priority, now: UnixMillis
    ) -> AcquireDecision? {
        let verdict = rightsVerdict(key, window: window, cost: cost, priority: priority, now: now)
        if let cache = verdict.cache { rightsCache[key] = cache }
        note(verdict.want, of: key)
        return verdict.denial
    }

    /// Records what deciding a call did to the rights this node lacks for `key`.
    mutating func note(_ change: RightsWantChange, of key: QuotaKey) {
        switch change {
        case .unchanged: break
        case .met: if !rightsWants.isEmpty { rightsWants[key] = nil }
        case .noted(let want): rightsWants[key] = want
        }
    }

    /// Why a call of `cost` on `key` may not spend rights now (`nil` when this node holds enough), changing
    /// nothing: with what becomes of the rights it lacks (a shortfall is noted, and peers that hold rights
    /// are asked for them when the call's directives are finished, ``rightsAsks(now:rng:)``) and the
    /// balances when they were worked out rather than cached.
    func rightsVerdict(
        _ key: QuotaKey, window: RightsWindow, cost: Int64, priority: Priority, now: UnixMillis
    ) -> (denial: AcquireDecision?, want: RightsWantChange, cache: RightsCache?) {
        let edge = rightsEdgeMillis(window)
        let lead = min(configuration.rightsLeadMillis, window.windowMillis / 20)
        if now < window.windowStart + lead {
            return (.deny(.quotaExhausted, key: key, retryAt: window.windowStart + lead, detail: .windowEdge), .unchanged, nil)
        }
        if now >= window.windowEnd - edge {
            return (.deny(.quotaExhausted, key: key, retryAt: window.windowEnd + lead, detail: .windowEdge), .unchanged, nil)
        }
        let (balances, cache) = currentBalances(key, window: window)
        let held = balances.holding(of: publicKey)
        let kept = priority == .urgent ? 0 : max(urgentKeep(window, now: now), closingKeep(window, balances: balances, now: now))
        if held - kept >= cost {
            return (nil, .met, cache)
        }
        // Ask for this call and for what this node's demand will want over the next couple of seconds, so a
        // busy node does not ask once per call.
        let ahead = (local[key]?.demand.total ?? 0) * Double(min(window.windowEnd - now, 2_000)) / 1000
        let shortfall = UInt64(max(0, cost - max(0, held - kept)))
        var amount = shortfall + UInt64(max(0, ahead.rounded(.up)))
        if let cap = heldRightsCap(key) {
            // No more than the cap lets it hold, but always the call itself.
            amount = max(shortfall, min(amount, UInt64(max(0, cap - max(0, held)))))
        }
        var want = rightsWants[key] ?? RightsWant(windowEnd: window.windowEnd, amount: amount, priority: priority, notedAt: now)
        if want.windowEnd != window.windowEnd {
            want = RightsWant(windowEnd: window.windowEnd, amount: amount, priority: priority, notedAt: now)
        }
        want.amount = max(want.amount, amount)
        want.priority = min(want.priority, priority)
        want.notedAt = now
        if !live.contains(where: { balances.believedHolding(of: $0) >= 1 }) {
            // Nobody this node knows of holds any: the window is spent, as far as it can tell. Its view of
            // the others' ledgers can lag, so look again after a few rounds rather than at the reset.
            // Where rights accrue, the next one dealt may be this node's.
            var retry = min(window.windowEnd + lead, now + 5 * configuration.gossipIntervalMillis, max(now + 1, window.nextUnlockAt))
            // Urgent work asks live peers at random meanwhile, or the peers the split dealt rights to that
            // this node has not heard from yet (``rightsHolders``): it looks again once their answers had
            // time to come, and so waits for them where the agent allows a wait.
            if priority == .urgent && (!live.isEmpty || pendingClaimants(now: now) > 0) {
                retry = min(retry, now + Self.rightsUrgentAskMillis)
            }
            // What this node keeps for urgent calls is its own work's once the window's closing part begins.
            if kept > 0 { retry = min(retry, urgentKeepReleasedAt(window)) }
            return (.deny(.quotaExhausted, key: key, retryAt: retry, detail: .rights), .noted(want), cache)
        }
        // A holder answers at once: look again after about a round trip.
        return (.deny(.quotaExhausted, key: key, retryAt: now + Self.rightsRetryMillis, detail: .rights), .noted(want), cache)
    }

    /// The rights a node keeps from its own normal and low work for urgent calls, here or asked for by a
    /// peer, until the window's closing part: one, where a window has ``urgentKeepPerMember`` rights or
    /// more per member, or ``urgentKeepPerMemberWhereRightsAccrue`` where rights accrue (a kept right waits
    /// for an urgent call, and the next right dealt takes its place); with fewer, one kept right is too
    /// large a part of what a node can spend (BENCHMARKS.md, "Urgent work where rights exist" and "Token
    /// buckets: windows that close"). Where the members outnumber a window's calls, one through the
    /// window's last slot, in which holders spend whatever their pace: without it the window went in that
    /// slot's first second and urgent calls later in it found none (BENCHMARKS.md, "A right kept through
    /// the last slot").
    func urgentKeep(_ window: RightsWindow, now: UnixMillis) -> Int64 {
        let perMember = window.refill == .continuous ? Self.urgentKeepPerMemberWhereRightsAccrue : Self.urgentKeepPerMember
        if window.refill == .window && outnumber(window, claimants: members.count) {
            return now >= lastSlotOpensAt(window) && now < urgentKeepReleasedAt(window) ? 1 : 0
        }
        guard window.limit >= perMember * Int64(max(1, members.count)) else {
            return 0
        }
        return now < urgentKeepReleasedAt(window) ? 1 : 0
    }

    /// Where the members outnumber a window's calls, how many of the holders of the rights kept through its
    /// last slot (``urgentKeep(_:now:)``) keep theirs past the release, through the closing part to the
    /// spend edge, for urgent calls made there: one per ``closingKeepPerRights`` rights of the window, and
    /// one more, since views of who holds differ at the release by a gift or a spend here and there. 0
    /// where that is none, or rights accrue. Released, every kept right went to its holder's own normal
    /// work within moments, and an urgent call made in the closing part waited for the next window.
    func closingKeepers(_ window: RightsWindow) -> Int {
        guard window.refill == .window, outnumber(window, claimants: members.count) else { return 0 }
        let keepers = Int(window.limit / Self.closingKeepPerRights)
        return keepers > 0 ? keepers + 1 : 0
    }

    /// The holders that keep their right through the closing part (``closingKeepers(_:)``) as this view
    /// has them: the first in the window's dealing order among the members credited with a right (not
    /// those set aside, whose ledgers are not heard). Rights kept through the last slot stay put, so the
    /// holders' views of each other mostly agree at the release; an urgent call in the closing part asks
    /// these, one at a time, in this order.
    func closingHolders(_ window: RightsWindow, balances: RightsBalances) -> [VerifyingKey] {
        let count = closingKeepers(window)
        guard count > 0 else { return [] }
        var holders: [(key: VerifyingKey, place: Int)] = []
        for member in members where balances.holding(of: member) >= 1 && !setAside.contains(member) {
            if let place = balances.allotment.place(of: member) { holders.append((member, place)) }
        }
        holders.sort { $0.place < $1.place }
        return holders.prefix(count).map(\.key)
    }

    /// The right this node keeps from normal and low work, its own and its peers', from the release to the
    /// spend edge: one where it is among the window's ``closingHolders(_:balances:)``.
    func closingKeep(_ window: RightsWindow, balances: RightsBalances, now: UnixMillis) -> Int64 {
        guard now >= urgentKeepReleasedAt(window), now < window.windowEnd - rightsEdgeMillis(window),
            balances.holding(of: owner) >= 1
        else { return 0 }
        return closingHolders(window, balances: balances).contains(owner) ? 1 : 0
    }

    /// A right kept through the closing part per this many rights of a window (``closingKeepers(_:)``).
    static let closingKeepPerRights: Int64 = 50

    /// When what a node keeps for urgent calls goes to its own work: before the window's closing edge, by a
    /// twentieth of the window at most.
    func urgentKeepReleasedAt(_ window: RightsWindow) -> UnixMillis {
        window.windowEnd - rightsEdgeMillis(window) - min(window.windowMillis / 20, Self.urgentKeepReleaseMillis)
    }

    /// Where the members outnumber a window's calls, when its last slot opens (``assessEstimate``: a turn
    /// slot and a spread before the closing edge that normal work keeps from an observed window's end,
    /// ``normalEdgeMillis(length:)``).
    func lastSlotOpensAt(_ window: RightsWindow) -> UnixMillis {
        window.windowEnd - Int64(normalEdgeMillis(length: Double(window.windowMillis)).rounded(.up))
            - Int64((turnSlotMillis + spreadMillis).rounded(.up))
    }

    static let urgentKeepPerMember: Int64 = 8
    /// Where rights accrue, a kept right is taken back by the next one dealt rather than lost to a window's
    /// normal work, so a smaller part keeps one (BENCHMARKS.md, "Token buckets: windows that close").
    static let urgentKeepPerMemberWhereRightsAccrue: Int64 = 4
    static let urgentKeepReleaseMillis: Int64 = 500

    /// How soon a call refused for want of rights asks again while peers have been asked (ms): about a
    /// round trip and a save at the holder.
    static let rightsRetryMillis: Int64 = 20

    /// Live peers believed to hold at least one right for `key` in the window, most first (at most `count`);
    /// among equal holdings in a random order, so that many nodes short of rights do not all ask the same
    /// few holders (where nodes outnumber the calls, most holders hold one right each). While this node
    /// knows of none its view credits: the peers it has not heard from since it started (`neverHeard`; only
    /// where `askUnheard`: some are and the start is recent) that the window's split dealt rights to, taken in
    /// turn with the peers that gifts not covered in this view would make holders. A gift from the first is
    /// credited at once, one from the second only once the records that cover it arrive; in a mesh that
    /// has just started, liveness and those records come seconds after the first window opens where nodes
    /// are many, while the split is known at once. Peers in `refused` (they answered lately) count only for
    /// the rights this view credits them with. `keepers`: the holders that keep a right for urgent calls
    /// through the window's closing part (``closingHolders(_:balances:)``), in the order every node ranks
    /// them; the first not in `refused` is asked, alone of them, with the holders most credited.
    mutating func rightsHolders(
        _ key: QuotaKey, balances: RightsBalances, count: Int, rng: inout SplitMix64,
        excluding refused: Set<VerifyingKey> = [], askUnheard: Bool = false,
        neverHeard: (VerifyingKey) -> Bool = { _ in false }, keepers: [VerifyingKey] = []
    ) -> [VerifyingKey] {
        typealias Holder = (key: VerifyingKey, held: Int64, order: UInt64)
        let mostFirst: (Holder, Holder) -> Bool = { ($0.held, $0.order) > ($1.held, $1.order) }
        var holders: [Holder] = []
        for peer in live {
            let held = balances.holding(of: peer)
            if held >= 1 && !keepers.contains(peer) { holders.append((peer, held, rng.next())) }
        }
        if let keeper = keepers.first(where: { $0 != owner && !refused.contains($0) }) {
            // One keeper at a time, in the order every node ranks them: asked at once, two would each give
            // the one call a right, and the second would be lost with the window.
            holders.sort(by: mostFirst)
            return [keeper] + holders.prefix(count - 1).map(\.key)
        }
        if !holders.isEmpty {
            holders.sort(by: mostFirst)
            return holders.prefix(count).map(\.key)
        }
        var dealt: [Holder] = []
        if askUnheard {
            for peer in members where peer != publicKey && !refused.contains(peer) && neverHeard(peer) {
                let held = balances.holding(of: peer)
                if held >= 1 { dealt.append((peer, held, rng.next())) }
            }
        }
        for peer in live where !refused.contains(peer) {
            let held = balances.believedHolding(of: peer)
            if held >= 1 { holders.append((peer, held, rng.next())) }
        }
        dealt.sort(by: mostFirst)
        holders.sort(by: mostFirst)
        var picked: [VerifyingKey] = []
        var (first, second) = (dealt[...], holders[...])
        while picked.count < count, !first.isEmpty || !second.isEmpty {
            if let next = first.popFirst() { picked.append(next.key) }
            if picked.count < count, let next = second.popFirst() { picked.append(next.key) }
        }
        return picked
    }

    /// Where this node's ledger of `key` names its last receiver and `asker` is not one of them: a live
    /// receiver it names that can still give `asker` rights, as far as its ledger in view says (the one
    /// that holds least first, so that the relayed rights do not pile up where rights already are).
    func relay(_ key: QuotaKey, window: RightsWindow, for asker: VerifyingKey) -> VerifyingKey? {
        let ledger = ownLedger(key, window: window)
        guard !ledger.canGive(to: asker) else { return nil }
        let live = Set(self.live)
        let balances = currentBalances(key, window: window).0
        return ledger.given.map(\.receiver)
            .filter { $0 != asker && live.contains($0) && mayGive($0, to: asker, key: key, windowEnd: window.windowEnd) }
            .min { (balances.holding(of: $0), $0) < (balances.holding(of: $1), $1) }
    }

    /// Whether `peer` can give `receiver` rights of `key` in the window ending at `windowEnd`, as far as
    /// its ledger in view says: not once it names its last receiver (``RightsLedger/maxReceivers``) and
    /// `receiver` is not one of them. Receivers only grow within a window, so a full ledger stays full.
    func mayGive(_ peer: VerifyingKey, to receiver: VerifyingKey, key: QuotaKey, windowEnd: UnixMillis) -> Bool {
        guard let ledger = remote[key]?.origins[peer]?.ledger, ledger.windowEnd == windowEnd else { return true }
        return ledger.canGive(to: receiver)
    }

    /// Replaces this node's ledger of `key`: re-signed at the next round, saved before it leaves the node,
    /// and the balances worked out again.
    mutating func setOwnLedger(_ ledger: RightsLedger, of key: QuotaKey) {
        local[key, default: LocalQuota()].state.ledger = ledger
        local[key, default: LocalQuota()].dirty = true
        ledgerVersion &+= 1
        undurableLedgers[key] = ledgerVersion
    }

    /// Notes that this node spent `amount` of its rights of `key` in `window` (its ledger already
    /// charged, its version `versionBefore` until then): the ledger is to be saved and re-signed, and the
    /// cached balances follow the spend.
    mutating func noteRightsSpent(_ key: QuotaKey, amount: UInt64, window: RightsWindow, versionBefore before: UInt64) {
        ledgerVersion &+= 1
        undurableLedgers[key] = ledgerVersion
        // A spend of rights held changes this node's holding alone: the cached balances follow it, so a
        // grant does not make the next decision work out every member's balance again.
        // Changed in place: a copy would copy every member's holding to change one.
        // Through the values by index: the subscript's `modify` by key allocates a coroutine frame that
        // holds the whole entry.
        guard let index = rightsCache.index(forKey: key) else { return }
        rightsCache.values[index].follow(
            spent: amount, by: owner, windowEnd: window.windowEnd, versionBefore: before, versionAfter: ledgerVersion)
    }

    /// Corrects what this node spent of `key`'s rights in the current window by what a call really cost
    /// minus what its acquire reserved: more spent when it cost more, a refund (never more than was spent)
    /// when it cost less.
    mutating func correctRights(_ key: QuotaKey, by delta: Int64, now: UnixMillis) {
        guard delta != 0, let window = rightsWindow(key, now: now),
            var ledger = local[key]?.state.ledger, ledger.windowEnd == window.windowEnd
        else { return }
        if delta > 0 {
            ledger.spent = ledger.spent.saturatingAdd(UInt64(delta))
        } else {
            ledger.refunded = min(ledger.spent, ledger.refunded.saturatingAdd(delta.magnitude))
        }
        setOwnLedger(ledger, of: key)
    }

    /// Moves `amount` of this node's rights for `key` in `window` to `receiver`, or more when `receiver`
    /// takes the ledger's last place; returns what was given, 0 if its ledger has no room for another
    /// receiver this window.
    @discardableResult
    mutating func giveRights(
        _ amount: UInt64, of key: QuotaKey, window: RightsWindow, to receiver: VerifyingKey, now: UnixMillis
    ) -> UInt64 {
        var ledger = ownLedger(key, window: window)
        var amount = amount
        if amount > 0, ledger.given.count == RightsLedger.maxReceivers - 1, ledger.given(to: receiver) == 0 {
            // The ledger's last receiver this window: what this node can spare for any work goes with the
            // gift, since after it this node can give nobody new anything and its surplus would be stranded
            // here; the receiver has a whole ledger of receivers to pass it on to.
            var surplus = spareRights(key, window: window, priority: .low, horizon: Self.rightsKeepMillis, now: now)
            if let cap = heldRightsCap(key) {
                // Not beyond what one node may hold.
                surplus = min(surplus, cap - balances(key, window: window).holding(of: receiver))
            }
            amount = max(amount, UInt64(clamping: surplus))
        }
        guard amount > 0, ledger.give(amount, to: receiver) else { return 0 }
        setOwnLedger(ledger, of: key)
        pendingPersist = true
        return amount
    }

    /// What this node can spare of `key`'s rights for work of `priority` elsewhere: what it holds less
    /// what its own work of that priority or higher is expected to need over `horizon` ms.
    mutating func spareRights(_ key: QuotaKey, window: RightsWindow, priority: Priority, horizon: Int64, now: UnixMillis) -> Int64 {
        let balances = balances(key, window: window)
        let held = balances.holding(of: publicKey)
        let demand = local[key]?.demand ?? Demand.zero
        let waiting = waitQueue.cost(of: key.service, atOrAbove: priority)
        let rate = Priority.allCases.filter { $0 <= priority }.reduce(0.0) { $0 + demand[$1] }
        // Calls waiting are kept for in full; expected ones only in whole calls, so that a node expecting a
        // fraction of a call still passes on the right it holds (it can ask for one when a call comes).
        let expected = waiting + (rate * Double(max(0, min(horizon, window.windowEnd - now))) / 1000).rounded(.down)
        // A holder whose part of the burst is a call or more keeps one, so that its own first call goes at
        // once; not from urgent work elsewhere, nor in the window's last moments, where a right kept for a
        // call that may not come is a right the window loses.
        let burst = (configuration.services[key.service]?.burstFraction ?? 0.1) * Double(window.limit)
            / Double(max(1, members.count))
        let closing = window.windowEnd - now <= Self.rightsKeepMillis
        let keep = priority == .urgent || closing ? expected : max(expected, min(burst.rounded(.down), 1))
        // A closing keeper's right is for urgent work alone.
        let kept = priority == .urgent ? 0 : closingKeep(window, balances: balances, now: now)
        let spare = held - Int64(keep.rounded(.up)) - kept
        // What it holds over the cap goes, whatever it expects to need.
        guard let cap = heldRightsCap(key) else { return spare }
        return max(spare, held - cap)
    }

    /// The most rights of `key` one node holds (``ServicePolicy/maxHeldRights``; requests only).
    func heldRightsCap(_ key: QuotaKey) -> Int64? {
        key.dimension == QuotaKey.requests ? configuration.services[key.service]?.maxHeldRights : nil
    }

    /// How far ahead a holder keeps rights for its own work when asked for them (ms).
    static let rightsKeepMillis: Int64 = 2_000

    /// What this node does with a peer's request for rights: gives what it can spare for work of the
    /// request's priority (and, where weights apply, what the asker lacks of its weighted part), or says
    /// it has none to spare, or ignores a request that is not for the current window's open part.
    mutating func answer(_ request: RightsRequest, from sender: VerifyingKey, now: UnixMillis) -> RightsAnswer {
        guard !persistenceFailing, request.amount > 0, let window = rightsWindow(request.key, now: now),
            window.windowEnd == request.windowEnd, now < window.windowEnd - rightsEdgeMillis(window)
        else { return .ignored }
        var spare = spareRights(
            request.key, window: window, priority: request.priority, horizon: Self.rightsKeepMillis, now: now)
        if weightsApply {
            // An asker short of its weighted part gets what this node holds beyond its own.
            let (excess, shortfalls) = weightedExcess(request.key, window: window, now: now)
            if let short = shortfalls.first(where: { $0.peer == sender }) { spare = max(spare, min(excess, short.amount)) }
        }
        if spare >= 1 {
            let amount = min(UInt64(spare), request.amount)
            if giveRights(amount, of: request.key, window: window, to: sender, now: now) > 0 { return .gave(window) }
            // A full ledger strands what it holds: urgent work elsewhere gets it through a receiver it names.
            if request.priority == .urgent, window.refill == .window,
                let relay = relay(request.key, window: window, for: sender),
                giveRights(amount, of: request.key, window: window, to: relay, now: now) > 0
            {
                return .relayed(window, through: relay)
            }
        }
        // Urgent work is pointed at the live peers this node believes hold rights, so that the asker's next
        // request goes where they are rather than where its own (older) view put them; not where rights
        // accrue (a right dealt is spent within moments, so no view of holders is current).
        guard request.priority == .urgent, window.refill == .window else { return .nothingToSpare(hints: []) }
        let balances = balances(request.key, window: window)
        var holders = live.filter { $0 != sender }.map { (peer: $0, held: balances.believedHolding(of: $0)) }
            .filter { $0.held >= 1 }
        holders.sort { ($0.held, $1.peer) > ($1.held, $0.peer) }
        return .nothingToSpare(hints: holders.prefix(Self.rightsHints).map(\.peer))
    }

    /// How many believed holders a node that has no rights to spare points urgent work at.
    static let rightsHints = 2

    /// Which peers to ask for the rights this node's agents wait for, and what to ask: each want goes to
    /// the holders believed to hold most, again each round while it lasts (urgent work sooner, and at once
    /// when a more urgent call joins it). Wants no call renewed for two rounds are dropped.
    mutating func rightsAsks(
        now: UnixMillis, rng: inout SplitMix64, neverHeard: (VerifyingKey) -> Bool = { _ in false }
    ) -> [(holder: VerifyingKey, request: RightsRequest)] {
        guard !rightsWants.isEmpty else { return [] }
        var asks: [(holder: VerifyingKey, request: RightsRequest)] = []
        for key in rightsWants.keys.sorted() {
            guard var want = rightsWants[key] else { continue }
            let window = rightsWindow(key, now: now)
            guard let window, window.windowEnd == want.windowEnd,
                now.saturatingSubtract(want.notedAt) <= 2 * configuration.gossipIntervalMillis
            else {
                rightsWants[key] = nil
                continue
            }
            let again = want.priority == .urgent ? Self.rightsUrgentAskMillis : configuration.gossipIntervalMillis
            // Urgent work asks again as soon as every peer asked has answered without covering it; not where
            // rights accrue, where the answers come as fast as rights are dealt and the asks chased them
            // round the mesh (BENCHMARKS.md, "Urgent work asks again once answered"). At most
            // ``rightsAnsweredAsks`` times in a row before the timer's next ask: refusals that change nothing
            // come back within a loopback round trip, and a waiting call must not turn into a stream of asks.
            let answered = want.priority == .urgent && want.askedAt != .min && want.awaiting.isEmpty
                && window.refill == .window && want.answeredAsks < Self.rightsAnsweredAsks
            let due = want.priority < want.askedPriority || now.saturatingSubtract(want.askedAt) >= again
            guard due || answered else { continue }
            let balances = balances(key, window: window)
            // Where rights accrue, a peer that just answered may be dealt the next right in moments: no
            // answer stands (BENCHMARKS.md, "Asked peers that answered, and a mesh just started").
            let refused = window.refill == .window ? want.refused(within: Self.rightsRefusalMillis, now: now) : []
            // Peers not heard from count only while the start is recent (as for fair shares): one down
            // since then is not asked for ever.
            var holders = rightsHolders(
                key, balances: balances, count: Self.rightsAskPeers, rng: &rng, excluding: refused,
                askUnheard: pendingClaimants(now: now) > 0, neverHeard: neverHeard,
                keepers: want.priority == .urgent && now >= urgentKeepReleasedAt(window)
                    // A keeper asked last time that has not answered (down, or the ask was lost) is passed
                    // over for the next: unlike a holder, it would otherwise be asked first at every ask.
                    ? closingHolders(window, balances: balances).filter { !want.awaiting.contains($0) } : [])
            if holders.isEmpty && want.priority == .urgent {
                // Nobody is known to hold any, but this node's view of the others' ledgers can lag (where
                // many nodes share few calls, a right changes hands every few rounds): ask live peers at
                // random; those that hold none say so with their ledger (and are not asked again for it).
                var picked = Set<Int>()
                var draws = 0
                while picked.count < min(Self.rightsAskPeers, live.count) && draws < 8 * Self.rightsAskPeers {
                    draws += 1
                    let index = Int(rng.next() % UInt64(live.count))
                    if !refused.contains(live[index]) { picked.insert(index) }
                }
                holders = picked.sorted().map { live[$0] }
            }
            guard !holders.isEmpty else { continue }
            want.answeredAsks = due ? 0 : want.answeredAsks + 1
            want.askedAt = now
            want.askedPriority = want.priority
            want.awaiting = Set(holders)
            rightsWants[key] = want
            let request = RightsRequest(key: key, windowEnd: window.windowEnd, amount: want.amount, priority: want.priority)
            asks += holders.map { (holder: $0, request: request) }
        }
        return asks
    }

    /// How soon peers are asked again for urgent work that their answers did not cover (ms): a round trip
    /// and a save at the holder, with room to spare.
    static let rightsUrgentAskMillis: Int64 = 50

    /// How many times in a row urgent work asks again at once because every peer asked has answered, before
    /// it waits for ``rightsUrgentAskMillis`` (a round trip in the simulator is 10-25 ms, on loopback a
    /// tenth of a millisecond).
    static let rightsAnsweredAsks = 3

    /// How long a peer that answered a want without covering it is not asked again for it (ms): a round,
    /// long enough to ask others, short enough that a peer given rights since is asked again.
    static let rightsRefusalMillis: Int64 = 200

    /// How many holders one want is sent to at once.
    static let rightsAskPeers = 2

    /// Every fifth round: rights this node will not need before the window ends go to live peers whose
    /// signed demand their holdings do not cover, urgent demand first, so that rights follow demand without
    /// waiting to be asked.
    ///
    /// Not where the nodes outnumber a window's calls: there a node re-signs its demand only every
    /// N × half a round, so the demand seen is seconds old, and a gift rides gossip for as many rounds as
    /// the mesh needs to spread a record: the surplus passed at a window's start would sit in transit and
    /// then at nodes no longer busy (BENCHMARKS.md, "Rights"). There the calls waiting ask for rights and
    /// holders answer at once (``answerRightsRequest(_:from:now:into:)``).
    mutating func passSurplusRights(now: UnixMillis) {
        guard !persistenceFailing, !live.isEmpty else { return }
        for key in local.keys.sorted() {
            guard let window = rightsWindow(key, now: now), now < window.windowEnd - rightsEdgeMillis(window),
                let aggregate = remote[key], !outnumber(window, claimants: live.count + 1)
            else { continue }
            let timeLeft = Double(window.windowEnd - now) / 1000
            if weightsApply {
                passRightsByWeight(key, window: window, now: now)
                continue
            }
            var spare = spareRights(key, window: window, priority: .low, horizon: window.windowMillis, now: now)
            guard spare >= 1 else { continue }
            let balances = balances(key, window: window)
            let freshAfter = now.saturatingSubtract(window.windowMillis)
            var needs: [(peer: VerifyingKey, urgent: Double, total: Double)] = []
            for peer in live {
                let demand = aggregate.origins[peer]?.demand(signedAfter: freshAfter) ?? Demand.zero
                let held = Double(balances.holding(of: peer))
                let total = demand.total * timeLeft - held
                guard total >= 1 else { continue }
                needs.append((peer, demand.urgent * timeLeft - held, total))
            }
            needs.sort { ($0.urgent, $0.total, $1.peer) > ($1.urgent, $1.total, $0.peer) }
            let cap = heldRightsCap(key)
            for need in needs.prefix(Self.rightsPassPeers) where spare >= 1 {
                var amount = min(spare, Int64(need.total.rounded(.down)))
                if let cap { amount = min(amount, cap - balances.holding(of: need.peer)) }
                guard amount >= 1 else { continue }
                spare -= Int64(clamping: giveRights(UInt64(amount), of: key, window: window, to: need.peer, now: now))
            }
        }
    }

    /// Where weights apply, what this node holds beyond its weighted max-min fair part of the rights the
    /// live members hold (their signed demand over the rest of the window as needs, effective weights), and
    /// how far each live peer holds less than its part. A node gives only rights it holds, so whatever
    /// weights each node believes, the rights in the window stay what they were (docs/PROTOCOL.md,
    /// "Weights").
    mutating func weightedExcess(
        _ key: QuotaKey, window: RightsWindow, now: UnixMillis
    ) -> (spare: Int64, shortfalls: [(peer: VerifyingKey, amount: Int64, held: Int64)]) {
        let balances = balances(key, window: window)
        let freshAfter = now.saturatingSubtract(window.windowMillis)
        let timeLeft = Double(max(0, window.windowEnd - now)) / 1000
        let members = [publicKey] + live
        let held = members.map { max(0, balances.holding(of: $0)) }
        let needs = members.map { member -> Double in
            let demand = member == publicKey
                ? (local[key]?.demand ?? Demand.zero)
                : (remote[key]?.origins[member]?.demand(signedAfter: freshAfter) ?? Demand.zero)
            return demand.total * timeLeft
        }
        let entitled = WeightedFairShare.allocate(
            capacity: Double(held.reduce(0, +)), needs: needs, weights: members.map { effectiveWeight(of: $0).value })
        // Calls waiting here are part of this node's demand, so its part already counts them.
        let spare = held[0] - Int64(entitled[0].rounded(.up))
        let shortfalls = members.indices.dropFirst()
            .map { (peer: members[$0], amount: Int64(entitled[$0].rounded(.down)) - held[$0], held: held[$0]) }
            .filter { $0.amount >= 1 }
            .sorted { ($0.amount, $1.peer) > ($1.amount, $0.peer) }
        return (spare, shortfalls)
    }

    /// Where weights apply: what this node holds beyond its weighted part goes to the live peers holding
    /// less than theirs, the largest shortfall first (``weightedExcess(_:window:now:)``).
    mutating func passRightsByWeight(_ key: QuotaKey, window: RightsWindow, now: UnixMillis) {
        var (spare, shortfalls) = weightedExcess(key, window: window, now: now)
        let cap = heldRightsCap(key)
        for receiver in shortfalls where spare >= 1 {
            var amount = min(spare, receiver.amount)
            if let cap { amount = min(amount, cap - receiver.held) }
            guard amount >= 1 else { continue }
            spare -= Int64(clamping: giveRights(UInt64(amount), of: key, window: window, to: receiver.peer, now: now))
        }
    }

    /// Whether `claimants` nodes outnumber the calls of `window`.
    func outnumber(_ window: RightsWindow, claimants: Int) -> Bool { Int64(claimants) > window.limit }

    /// How many peers one round's surplus goes to, per key.
    static let rightsPassPeers = 2

    // MARK: - Durability

    /// The state last asked to be saved could not be: no grant and no gift until a save succeeds.
    mutating func persistenceDidFail() {
        persistenceFailing = true
    }

    /// The state as it stood at `mark` (``ledgerVersion`` when it was taken) was saved: the ledger changes
    /// up to then are durable; those made while it was being written are not yet.
    mutating func persistenceDidSucceed(upTo mark: UInt64) {
        persistenceFailing = false
        undurableLedgers = undurableLedgers.filter { $0.value > mark }
    }

    /// Which slots' records must not leave this node yet: its own, for keys whose ledger changed since the
    /// last good save, while saves fail. A predicate that holds what it needs, so that the record store
    /// can apply it while it changes.
    func withheldSlots() -> (SlotID) -> Bool {
        guard persistenceFailing, !undurableLedgers.isEmpty else { return { _ in false } }
        let own = publicKey
        let undurable = undurableLedgers
        return { id in
            guard id.origin == own, case .quota(let key) = id.slot else { return false }
            return undurable[key] != nil
        }
    }
}

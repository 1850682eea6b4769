import QuotaMeshCrypto

/// How often one origin's upstream observations or breaker openings contradicted what this node saw
/// upstream itself: a decaying count, after gossipsub v1.1's peer scores. An origin whose count reaches
/// ``ObservationScores/graylistScore`` is graylisted: its observations stop counting until the count decays to
/// half of that, and its breaker claims for good (as a peer's whose opening a success contradicted).
struct ObservationScore: Sendable {
    /// The count as of `updatedAt`.
    var value: Double = 0
    var updatedAt: UnixMillis = .min
    /// Per key, when the origin's last judged observation was made (each is judged once).
    var judged: [QuotaKey: UnixMillis] = [:]

    /// The count at `now`: halved every `halfLife` ms.
    func value(at now: UnixMillis, halfLife: Int64) -> Double {
        guard value > 0, updatedAt > .min else { return 0 }
        let halvings = Double(max(0, now.saturatingSubtract(updatedAt))) / Double(max(1, halfLife))
        return value * Self.half(halvings)
    }

    /// 2^−x for x ≥ 0 (the core imports no maths library): whole halvings exactly, the rest linearly.
    static func half(_ x: Double) -> Double {
        guard x < 64 else { return 0 }
        let whole = x.rounded(.down)
        var result = 1.0
        for _ in 0..<Int(whole) { result /= 2 }
        return result * (1 - (x - whole) / 2)
    }
}

/// Every origin's observation score, the graylist it leads to, and which of its observations and breaker
/// openings were judged already (each is judged once). Counting and decay only: what contradicts what is
/// worked out by the instance (``MeshInstance/judgeObservations(_:own:now:into:)``,
/// ``MeshInstance/judgeBreakerOpening(_:origin:openedAt:)``).
struct ObservationScores: Sendable {
    /// The score that graylists an origin's observations: three contradictions within about a quarter of
    /// an hour (each counts 1, halved every half-life), more when they are further apart.
    static let graylistScore = 2.5
    /// How long a contradiction takes to count half (ms).
    static let halfLifeMillis: Int64 = 30 * 60_000

    private var scores: [VerifyingKey: ObservationScore] = [:]
    /// Per origin and key, the latest breaker opening judged.
    private var judgedOpenings: [VerifyingKey: [QuotaKey: UnixMillis]] = [:]
    /// Origins whose observations and breaker claims do not count (their score reached ``graylistScore``).
    private(set) var graylisted: Set<VerifyingKey> = []

    /// `origin`'s score at `now` (0 when none).
    func score(of origin: VerifyingKey, now: UnixMillis) -> Double {
        scores[origin]?.value(at: now, halfLife: Self.halfLifeMillis) ?? 0
    }

    /// When `origin`'s last judged observation of `key` was made (`.min` when none was).
    func judgedObservation(of origin: VerifyingKey, key: QuotaKey) -> UnixMillis { scores[origin]?.judged[key] ?? .min }

    /// Notes that `origin`'s observation of `key` made at `observedAt` was judged.
    mutating func noteJudgedObservation(of origin: VerifyingKey, key: QuotaKey, observedAt: UnixMillis) {
        scores[origin, default: ObservationScore()].judged[key] = observedAt
    }

    /// Notes a breaker opening of `origin` for `key` at `openedAt`; `false` if it or a later one was
    /// judged already.
    mutating func judgeOpening(of origin: VerifyingKey, key: QuotaKey, openedAt: UnixMillis) -> Bool {
        guard openedAt > (judgedOpenings[origin]?[key] ?? .min) else { return false }
        judgedOpenings[origin, default: [:]][key] = openedAt
        return true
    }

    /// Counts one contradiction against `origin` at `now`; returns its score when that graylisted it.
    mutating func count(against origin: VerifyingKey, now: UnixMillis) -> Double? {
        var entry = scores[origin] ?? ObservationScore()
        entry.value = score(of: origin, now: now) + 1
        entry.updatedAt = max(entry.updatedAt, now)
        scores[origin] = entry
        guard entry.value >= Self.graylistScore, graylisted.insert(origin).inserted else { return nil }
        return entry.value
    }

    /// Lifts the graylist of origins whose score has decayed to half the threshold; `true` if any was.
    mutating func liftDecayed(now: UnixMillis) -> Bool {
        let lifted = graylisted.filter { score(of: $0, now: now) < Self.graylistScore / 2 }
        graylisted.subtract(lifted)
        return !lifted.isEmpty
    }

    /// Forgets every origin `isKept` does not keep (it left the trust store).
    mutating func keep(only isKept: (VerifyingKey) -> Bool) {
        scores = scores.filter { isKept($0.key) }
        judgedOpenings = judgedOpenings.filter { isKept($0.key) }
        graylisted = graylisted.filter(isKept)
    }
}

extension QuotaLedger {
    // MARK: - Observation scores

    /// How far apart an origin's observation and this node's may be made and still be compared (ms).
    static let comparableMillis: Int64 = 5_000

    /// Judges every origin's latest observation of `key` against `own`, the observation this node has
    /// just made upstream. In a window that gives its limit back only at the reset, what is left only
    /// falls: an observation made earlier that says less was left than this node saw later, or one made
    /// later that says more, contradicts it (beyond a slack for refunds, rounding and, for a continuous
    /// refill, what refilled in between); so does a different limit for the same window. Each such
    /// observation counts once against its origin.
    mutating func judgeObservations(
        _ key: QuotaKey, own: UpstreamObservation, now: UnixMillis, records: [SignedRecord], into out: inout [MeshDirective]
    ) {
        guard let aggregate = remote[key], own.observedAt == now else { return }
        let policy = configuration.services[key.service]
        let continuous = policy?.refill == .continuous && key.dimension == QuotaKey.requests
        let limit = max(own.limit, 0)
        let window = judgedWindow(key, own: own)
        for (origin, entry) in aggregate.origins {
            guard let theirs = entry.observation, theirs.observedAt > scores.judgedObservation(of: origin, key: key),
                abs(theirs.resetAt.saturatingSubtract(own.resetAt)) <= 1_000
            else { continue }
            let apart = own.observedAt.saturatingSubtract(theirs.observedAt)
            guard abs(apart) <= Self.comparableMillis + clockSpread else { continue }
            // What the mesh can spend while the two clocks disagree, and for a continuous refill what
            // refills between the two observations.
            var slack = max(2, limit / 50).saturatingAdd(Self.calls(in: clockSpread, limit: limit, window: window) + 1)
            if continuous {
                slack = slack.saturatingAdd(Self.calls(in: abs(apart), limit: limit, window: window) + 1)
            }
            // Which of the two came first is known only when they are further apart than the clocks may be:
            // closer, either may be the earlier (a burst of unpaced calls can spend the window in less time
            // than that), and neither contradicts the other by what is left.
            let earlierSaysLess = apart > clockSpread && theirs.remaining.saturatingAdd(slack) < own.remaining
            let laterSaysMore = apart < -clockSpread && theirs.remaining > own.remaining.saturatingAdd(slack)
            let otherLimit = theirs.limit > 0 && own.limit > 0 && theirs.limit != own.limit
            guard earlierSaysLess || laterSaysMore || otherLimit else { continue }
            scores.noteJudgedObservation(of: origin, key: key, observedAt: theirs.observedAt)
            if let event = countContradiction(by: origin, now: now, records: records) { out.append(.event(event)) }
        }
    }

    /// Counts one contradiction against `origin` at `now`; when that graylists it, its observations are
    /// merged again without it and the event is returned.
    mutating func countContradiction(by origin: VerifyingKey, now: UnixMillis, records: [SignedRecord]) -> MeshEvent? {
        guard let score = scores.count(against: origin, now: now) else { return nil }
        rebuildAggregates(from: records)
        return .peerGraylisted(origin, score: score)
    }

    /// Judges a peer's claim that `key`'s breaker opened at `openedAt` (a 429, or failures in a row) against
    /// this node's own latest call: one that went through shortly before, in the same window, with more
    /// left than the mesh could have spent in between, contradicts it. A liar that opens the breaker again
    /// and again (each run short enough that no probe falls in it) is so graylisted after three, and its
    /// breaker claims stop counting.
    mutating func judgeBreakerOpening(
        _ key: QuotaKey, origin: VerifyingKey, openedAt: UnixMillis, records: [SignedRecord]
    ) {
        guard let quota = local[key], quota.consecutiveFailures == 0,
            let own = quota.state.observation, own.resetAt > openedAt, own.observedAt <= openedAt,
            openedAt.saturatingSubtract(own.observedAt) <= Self.comparableMillis,
            scores.judgeOpening(of: origin, key: key, openedAt: openedAt)
        else { return }
        let limit = max(own.limit, 0)
        let spendable = Self.calls(in: openedAt - own.observedAt + clockSpread, limit: limit, window: judgedWindow(key, own: own))
        guard own.remaining > max(2, limit / 20).saturatingAdd(spendable) else { return }
        if let event = countContradiction(by: origin, now: openedAt, records: records) { pendingEvents.append(event) }
    }

    /// Lifts the graylist of origins whose count has decayed to half the threshold.
    mutating func liftGraylists(now: UnixMillis, records: [SignedRecord]) {
        guard !scores.graylisted.isEmpty, scores.liftDecayed(now: now) else { return }
        rebuildAggregates(from: records)
    }

    /// The window length `key`'s observations are judged in (ms): the configured one, else `own`'s.
    func judgedWindow(_ key: QuotaKey, own: UpstreamObservation) -> Int64 {
        max(1, configuration.services[key.service]?.windowMillis ?? own.windowMillis)
    }

    /// The calls the mesh can make in `millis` at `limit` per `window` (rounded down).
    static func calls(in millis: Int64, limit: Int64, window: Int64) -> Int64 {
        limit.saturatingMultiply(millis) / window
    }

    /// How far apart two nodes' clocks are taken to be when their times are compared (ms): the spread the
    /// rights' lead allows for, and a gossip round.
    var clockSpread: Int64 { configuration.rightsLeadMillis + configuration.gossipIntervalMillis }

    /// `origin`'s observation score at `now` (0 when none).
    func observationScore(of origin: VerifyingKey, now: UnixMillis) -> Double { scores.score(of: origin, now: now) }
}

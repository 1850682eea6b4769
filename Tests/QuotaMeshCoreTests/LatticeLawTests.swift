import PropertyBased
import Testing
@testable import QuotaMeshCore
import QuotaMeshCrypto

/// The merge laws that make every replica converge: commutativity, associativity, idempotence.
@Suite struct LatticeLawTests {
    static let times = Gen.int64(in: 0...1_000)

    static let entry = zip(Gen.uint64(in: 0...50), times, Gen.uint64(in: 0...20)).map {
        ConsumptionEntry(total: $0, windowEnd: $1, windowCount: $2)
    }
    static let observation = zip(times, Gen.int64(in: -5...100), Gen.int64(in: 0...100), Gen.uint64(in: 0...30)).map {
        UpstreamObservation(
            resetAt: $0, remaining: $1, limit: $2, windowMillis: 60_000, observedAt: 0, consumedTotalAtObservation: $3)
    }
    static let breaker = zip(times, times, times).map { BreakerRegister(openedAt: $0, openUntil: $1, closedAt: $2) }
    static let counter = Gen.int(in: 0...4).array(of: 0...5).map { origins in
        var counter = ConsumptionCounter<Int>()
        for (index, origin) in origins.enumerated() {
            counter = counter.merging(ConsumptionCounter(entries: [origin: ConsumptionEntry(total: UInt64(index), windowEnd: Int64(origin * 3), windowCount: UInt64(index % 3))]))
        }
        return counter
    }

    func checkLaws<T: JoinSemilattice>(_ a: T, _ b: T, _ c: T) {
        #expect(a.merging(b) == b.merging(a), "commutative")
        #expect(a.merging(b).merging(c) == a.merging(b.merging(c)), "associative")
        #expect(a.merging(a) == a, "idempotent")
        #expect(a.merging(b).merging(b) == a.merging(b), "absorbs repeats")
    }

    @Test func consumptionEntryIsALattice() async {
        await propertyCheck(count: 300, input: Self.entry, Self.entry, Self.entry) { checkLaws($0, $1, $2) }
    }

    @Test func consumptionCounterIsALattice() async {
        await propertyCheck(count: 300, input: Self.counter, Self.counter, Self.counter) { checkLaws($0, $1, $2) }
    }

    @Test func observationIsALattice() async {
        await propertyCheck(count: 300, input: Self.observation, Self.observation, Self.observation) { checkLaws($0, $1, $2) }
    }

    @Test func optionalObservationIsALattice() async {
        let optional = Self.observation.optional
        await propertyCheck(count: 200, input: optional, optional, optional) { checkLaws($0, $1, $2) }
    }

    @Test func breakerIsALattice() async {
        await propertyCheck(count: 300, input: Self.breaker, Self.breaker, Self.breaker) { checkLaws($0, $1, $2) }
    }

    @Test func laterWindowSupersedesAndLowestRemainingWinsWithinAWindow() {
        let early = UpstreamObservation(resetAt: 100, remaining: 5, limit: 100, windowMillis: 0, observedAt: 0, consumedTotalAtObservation: 0)
        let late = UpstreamObservation(resetAt: 200, remaining: 90, limit: 100, windowMillis: 0, observedAt: 0, consumedTotalAtObservation: 0)
        #expect(early.merging(late).remaining == 90)
        var lower = late
        lower.remaining = 40
        #expect(late.merging(lower).remaining == 40)
        #expect(lower.merging(late).remaining == 40)
    }

    @Test func counterSumsOriginsInCurrentWindowsOnly() {
        let counter = ConsumptionCounter(entries: [
            1: ConsumptionEntry(total: 10, windowEnd: 500, windowCount: 4),
            2: ConsumptionEntry(total: 7, windowEnd: 500, windowCount: 3),
            3: ConsumptionEntry(total: 9, windowEnd: 100, windowCount: 9),
        ])
        #expect(counter.windowTotal(at: 200) == 7)
        #expect(counter.lifetimeTotal == 26)
        #expect(counter.windowTotal(at: 600) == 0)
    }

    /// The sums a key's aggregate keeps as records arrive equal the counter's passes over every origin,
    /// through later windows, refunds, windows that end, and totals large enough to saturate.
    @Test func aKeysRunningConsumptionSumsEqualTheCountersPassesOverEveryOrigin() {
        var random = SplitMix64(seed: 7)
        var aggregate = KeyAggregate()
        var counter = ConsumptionCounter<VerifyingKey>()
        let origins = (0..<12).map { testKey($0).publicKey }
        for step in 0..<3_000 {
            let origin = origins[Int(random.next() % UInt64(origins.count))]
            let count = random.next() % 40
            var entry = ConsumptionEntry(
                total: step % 500 == 499 ? UInt64.max - random.next() % 10 : UInt64(step) * 10 + random.next() % 10,
                windowEnd: Int64(random.next() % 8) * 1_000, windowCount: count,
                windowRefund: random.next() % 3 == 0 ? random.next() % (count + 1) : 0)
            if step % 7 == 0 { entry.windowCount = 0 }
            aggregate.update(origin: origin, state: QuotaState(consumption: entry), stamp: 0)
            counter = counter.merging(ConsumptionCounter(entries: [origin: entry]))
            let now = Int64(random.next() % 9_000)
            #expect(aggregate.consumption.windowTotal(at: now) == counter.windowTotal(at: now), "step \(step) at \(now)")
            #expect(aggregate.consumption.lifetimeTotal == counter.lifetimeTotal, "step \(step)")
        }
        #expect(counter.lifetimeTotal == .max, "the totals saturated, as they were meant to")
    }

    @Test func breakerOpensThenHalfOpensThenClosesOnProbe() {
        var breaker = BreakerRegister(openedAt: 100, openUntil: 200, closedAt: 0)
        #expect(breaker.state(at: 150) == .open)
        #expect(breaker.state(at: 200) == .halfOpen)
        breaker = breaker.merging(BreakerRegister(closedAt: 210))
        #expect(breaker.state(at: 220) == .closed)
        breaker = breaker.merging(BreakerRegister(openedAt: 300, openUntil: 400))
        #expect(breaker.state(at: 350) == .open)
    }
}

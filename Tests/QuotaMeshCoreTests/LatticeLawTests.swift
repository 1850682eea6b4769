import PropertyBased
import Testing
@testable import QuotaMeshCore

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

import Testing
@testable import QuotaMeshCore
import QuotaMeshCrypto

@Suite struct MeshBehaviourTests {
    @Test func observationsAtTwoNodesConvergeEverywhere() {
        // What is left needs two voices (docs/PROTOCOL.md, "Observations need a second voice"): node 2 sees
        // 1234 left, node 3 a little later 1230, and every node takes the later.
        var mesh = TestMesh(count: 5)
        let reset = mesh.now + 30_000
        mesh.observe(2, service: "github", status: 200, report: report(limit: 5000, remaining: 1234, resetAt: reset))
        mesh.run(for: 1_000)
        #expect(mesh.view(0, "github")?.limit == 5000, "the limit a lone observation teaches spreads")
        #expect(mesh.view(0, "github")?.remaining == 5000, "what is left, on one peer's word alone, does not")
        mesh.observe(3, service: "github", status: 200, report: report(limit: 5000, remaining: 1230, resetAt: reset))
        mesh.run(for: 2_000)
        for index in 0..<5 {
            let view = mesh.view(index, "github")
            #expect(view?.remaining == 1230, "node \(index)")
            #expect(view?.resetAt == reset)
            #expect(view?.limit == 5000)
        }
    }

    @Test func consumptionAtTwoNodesSumsAtTheThird() {
        var mesh = TestMesh(count: 3, services: ["openai": ServicePolicy(limit: 100, windowMillis: 60_000)])
        mesh.run(for: 400)
        for _ in 0..<3 { #expect(mesh.acquire(0, AcquireRequest(service: "openai", priority: .urgent))?.granted == true) }
        for _ in 0..<2 { #expect(mesh.acquire(1, AcquireRequest(service: "openai", priority: .urgent))?.granted == true) }
        mesh.run(for: 1_000)
        let views = (0..<3).map { mesh.view($0, "openai") }
        #expect(views[2]?.consumedGlobal == 5)
        #expect(views[2]?.consumedLocal == 0)
        #expect(views[0]?.consumedLocal == 3)
        #expect(Set(views.map { $0?.remaining }) == [95])
    }

    @Test func urgentCallsSpendTheRightsHeldAtOnceWhileAnotherNodesUrgentDemandOutrunsTheWindow() {
        // Node 0's urgent calls, a few a second, would spend far more than 100 calls in an hour: the urgent
        // tier wants it all, and the estimate's share for node 1 is a floor. Where rights apply, urgent work
        // is not paced: node 1's urgent calls go at once, one after another, from the rights it holds.
        var mesh = TestMesh(count: 3, services: ["openai": ServicePolicy(limit: 100, windowMillis: 3_600_000)])
        mesh.run(for: 400)
        for _ in 0..<3 {
            #expect(mesh.acquire(0, AcquireRequest(service: "openai", priority: .urgent))?.granted == true)
            mesh.run(for: 100)
        }
        mesh.run(for: 1_000)
        // Node 1 has passed most of its rights on to node 0's demand by now; it asks for them back.
        for call in 0..<5 {
            let decision = mesh.acquire(1, AcquireRequest(service: "openai", priority: .urgent))
            #expect(decision?.granted == true, "call \(call): \(String(describing: decision))")
        }
        #expect(mesh.view(1, "openai")?.consumedLocal == 5)
        // Normal work is still paced over the window: the next normal call waits.
        let normal = (0..<3).map { _ in mesh.acquire(1, AcquireRequest(service: "openai", priority: .normal)) }
        #expect(normal.contains { $0?.granted == false && $0?.detail == DecisionDetail(.paced) }, "\(normal)")
    }

    @Test func aDemandSignedMoreThanAWindowAgoCountsAsIdle() {
        // Demand estimated (so re-signed) only every 30 s, as in a large cluster; 5 calls per 10 s window.
        let services = ["svc": ServicePolicy(limit: 5, windowMillis: 10_000)]
        var configuration = MeshConfiguration(services: services)
        configuration.livenessTimeoutMillis = 5_000
        configuration.demandIntervalMillis = 30_000
        var mesh = TestMesh(count: 3, services: services)
        let peers = (0..<3).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) }
        for index in 0..<3 {
            mesh.nodes[index] = MeshInstance(
                identity: testKey(index), configuration: configuration, peers: peers, restored: nil, now: mesh.now,
                seed: UInt64(index))
        }
        // Node 0's agents ask four times a second for 30 s, far more than the limit; then stop.
        for _ in 0..<60 {
            for _ in 0..<2 { _ = mesh.acquire(0, AcquireRequest(service: "svc", priority: .normal)) }
            mesh.run(for: 500)
        }
        mesh.run(for: 2_000)
        // Its demand, signed at 30 s, leaves idle node 1 a floor only.
        let whileBusy = mesh.view(1, "svc")?.share ?? 1
        #expect(whileBusy < 0.1, "\(whileBusy)")
        // More than a window later with nothing newer signed, node 0 counts as idle: the calls are split equally.
        mesh.run(for: 12_000)
        let afterwards = mesh.view(1, "svc")?.share ?? 0
        #expect(afterwards > 0.3, "\(afterwards)")
    }

    @Test func aBusyNodeReSignsItsSteadyDemandBeforeItWouldCountAsIdle() {
        let services = ["svc": ServicePolicy(limit: 100, windowMillis: 10_000)]
        var mesh = TestMesh(count: 3, services: services)
        mesh.run(for: 1_000)
        // The upstream says to wait two minutes: every call is refused, so nothing consumed re-signs the record.
        let until = mesh.now + 120_000
        mesh.observe(
            0, service: "svc", status: 429,
            report: report(limit: 100, remaining: 0, resetAt: until, retryAt: until, limited: true))
        let slot = RecordSlot.quota(QuotaKey(service: "svc"))
        var versions: [RecordVersion?] = []
        // Node 0's agents ask four times a second, evenly: the estimate settles within a few seconds, then
        // holds (within the ±20% that re-signs a changed demand).
        for step in 0..<88 {
            _ = mesh.acquire(0, AcquireRequest(service: "svc", priority: .normal))
            mesh.run(for: 250)
            if step == 39 || step == 87 { versions.append(mesh.nodes[1].heldVersion(origin: testKey(0).publicKey, slot: slot)) }
        }
        // Unchanged demand is still re-signed within a window, so the others do not take node 0 as idle.
        guard let settled = versions[0], let later = versions[1] else {
            Issue.record("node 1 holds no record of node 0's demand")
            return
        }
        #expect(later > settled)
    }

    @Test func partitionedNodeCatchesUpThroughAntiEntropy() {
        var mesh = TestMesh(count: 3, services: ["openai": ServicePolicy(limit: 100, windowMillis: 60_000)])
        mesh.cut = [[0, 2], [1, 2], [2, 0], [2, 1]]
        for _ in 0..<4 { _ = mesh.acquire(0, AcquireRequest(service: "openai", priority: .urgent)) }
        // Long enough for every push retransmission to be spent while node 2 is cut off.
        mesh.run(for: 10_000)
        #expect(mesh.view(2, "openai")?.consumedGlobal == 0)
        mesh.cut = []
        mesh.run(for: 3_000)
        #expect(mesh.view(2, "openai")?.consumedGlobal == 4)
        let held = (0..<3).map { Set(mesh.nodes[$0].heldRecords.filter { $0.origin == testKey(0).publicKey }) }
        #expect(held[1] == held[2])
    }

    @Test func priorityReservesStopLowThenNormal() {
        var mesh = TestMesh(count: 1, services: ["svc": ServicePolicy(limit: 10, windowMillis: 3_600_000, burstFraction: 1)])
        var outcomes: [Priority: [Bool]] = [:]
        for _ in 0..<12 {
            for priority in [Priority.low, .normal, .urgent] {
                outcomes[priority, default: []].append(mesh.acquire(0, AcquireRequest(service: "svc", priority: priority))?.granted == true)
            }
        }
        // Asked in turns low, normal, urgent: low goes while a call leaves at least half the limit (its turns
        // find 10 and 7 left), normal while one leaves a tenth (9, 6, 4 and 2 left), urgent takes the rest;
        // never above the limit.
        #expect(outcomes[.low] == [true, true] + Array(repeating: false, count: 10))
        #expect(outcomes[.normal] == [true, true, true, true] + Array(repeating: false, count: 8))
        #expect(outcomes[.urgent] == [true, true, true, true] + Array(repeating: false, count: 8))
        let low = mesh.acquire(0, AcquireRequest(service: "svc", priority: .low))
        #expect(low?.reason == .quotaExhausted)
    }

    /// Normal work stops where what is left is a tenth of the limit, while urgent work still goes.
    @Test func normalStopsAtItsReserveWhileUrgentGoes() {
        var mesh = TestMesh(count: 1, services: ["svc": ServicePolicy(limit: 10, windowMillis: 3_600_000, burstFraction: 1)])
        for _ in 0..<9 { #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .normal))?.granted == true) }
        let normal = mesh.acquire(0, AcquireRequest(service: "svc", priority: .normal))
        #expect(normal?.granted == false)
        #expect(normal?.reason == .reservedForHigherPriority)
        #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))?.granted == true)
        #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))?.granted == false)
    }

    @Test func lowIsReservedWhileUrgentStillGranted() {
        var mesh = TestMesh(count: 1, services: ["svc": ServicePolicy(limit: 10, windowMillis: 3_600_000, burstFraction: 1)])
        for _ in 0..<5 { #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))?.granted == true) }
        let low = mesh.acquire(0, AcquireRequest(service: "svc", priority: .low))
        #expect(low?.granted == false)
        #expect(low?.reason == .reservedForHigherPriority)
        #expect(low?.retryAt == mesh.view(0, "svc")?.resetAt)
        #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .normal))?.granted == true)
        #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))?.granted == true)
    }

    @Test(arguments: 1...20) func aLoneNodeWithASmallLimitGrantsItsFirstCallAtOnce(seed: Int) {
        // With the default burst, pacing would once wait a random part of the hour before the first call.
        var mesh = TestMesh(count: 1, services: ["svc": ServicePolicy(limit: 1, windowMillis: 3_600_000)], seed: UInt64(seed))
        #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))?.granted == true, "seed \(seed)")
        let second = mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))
        #expect(second?.granted == false)
        #expect(second?.retryAt == mesh.view(0, "svc")?.resetAt, "the next call waits for the reset, and says so")
    }

    @Test func unknownServiceIsDeniedWithReason() {
        var mesh = TestMesh(count: 1)
        let decision = mesh.acquire(0, AcquireRequest(service: "nobody"))
        #expect(decision?.granted == false)
        #expect(decision?.reason == .unknownService)
    }

    @Test func a429WithRetryAfterOpensTheBreakerEverywhereUntilThen() {
        var mesh = TestMesh(count: 3, services: ["openai": ServicePolicy(limit: 100, windowMillis: 60_000)])
        mesh.run(for: 400)
        let until = mesh.now + 20_000
        mesh.observe(0, service: "openai", status: 429, report: report(limit: nil, remaining: nil, resetAt: nil, retryAt: until, limited: true))
        mesh.run(for: 1_000)
        for index in 0..<3 {
            let decision = mesh.acquire(index, AcquireRequest(service: "openai", priority: .urgent))
            #expect(decision?.reason == .breakerOpen, "node \(index)")
            #expect(decision?.retryAt == until)
            #expect(mesh.view(index, "openai")?.breakerState == .open)
        }
        // When the time has passed: half-open, one node probes; a successful probe closes it for all.
        mesh.run(for: until - mesh.now)
        #expect(mesh.view(1, "openai")?.breakerState == .halfOpen)
        let probes = (0..<3).filter { mesh.acquire($0, AcquireRequest(service: "openai", priority: .normal))?.granted == true }
        #expect(probes.count == 1)
        guard let prober = probes.first else { return }
        let second = mesh.acquire(prober, AcquireRequest(service: "openai", priority: .normal))
        #expect(second?.reason == .breakerOpen)
        mesh.observe(prober, service: "openai", status: 200, report: RateLimitReport())
        mesh.run(for: 1_000)
        for index in 0..<3 { #expect(mesh.view(index, "openai")?.breakerState == .closed, "node \(index)") }
    }

    @Test func aHalfOpenBreakerIsProbedByOneNodeAtATimeNotByAll() {
        // Every node's agent asks the moment the breaker turns half-open: one is let through; the next node
        // in the shared order gets its turn one gossip interval later only if no answer has come by then.
        let count = 8
        var mesh = TestMesh(count: count, services: ["openai": ServicePolicy(limit: 100, windowMillis: 60_000)])
        mesh.run(for: 1_000)
        let until = mesh.now + 10_000
        mesh.observe(0, service: "openai", status: 429, report: report(limit: nil, remaining: nil, resetAt: nil, retryAt: until, limited: true))
        mesh.run(for: until - mesh.now, step: 100)
        #expect(mesh.now == until)
        func askAll() -> (granted: [Int], elsewhere: Int) {
            var granted: [Int] = []
            var elsewhere = 0
            for index in 0..<count {
                let decision = mesh.acquire(index, AcquireRequest(service: "openai", priority: .normal))
                if decision?.granted == true { granted.append(index) }
                if decision?.detail?.kind == .halfOpenProbeElsewhere {
                    elsewhere += 1
                    #expect(decision?.reason == .breakerOpen)
                    #expect((decision?.retryAt ?? 0) > mesh.now, "told to come back later")
                }
            }
            return (granted, elsewhere)
        }
        let first = askAll()
        #expect(first.granted.count == 1, "one probe, not \(first.granted.count)")
        #expect(first.elsewhere == count - 1)
        // No answer yet: one interval later the next node's turn has come, and only its.
        mesh.run(for: 200, step: 100)
        let second = askAll()
        #expect(second.granted.count == 1)
        #expect(Set(second.granted).isDisjoint(with: first.granted))
        // The first probe succeeds: closed everywhere, and the next acquire anywhere is an ordinary one.
        mesh.observe(first.granted[0], service: "openai", status: 200, report: RateLimitReport())
        mesh.run(for: 2_000)
        for index in 0..<count { #expect(mesh.view(index, "openai")?.breakerState == .closed, "node \(index)") }
    }

    @Test func consecutiveFailuresOpenTheBreakerAndAFailedProbeReopensIt() {
        var policy = ServicePolicy(limit: 100, windowMillis: 60_000)
        policy.breaker = BreakerPolicy(failureThreshold: 3, openMillis: 5_000)
        var mesh = TestMesh(count: 1, services: ["svc": policy])
        for _ in 0..<2 { mesh.observe(0, service: "svc", status: 503, report: RateLimitReport()) }
        #expect(mesh.view(0, "svc")?.breakerState == .closed)
        mesh.observe(0, service: "svc", status: 500, report: RateLimitReport())
        #expect(mesh.view(0, "svc")?.breakerState == .open)
        mesh.run(for: 5_000)
        #expect(mesh.view(0, "svc")?.breakerState == .halfOpen)
        mesh.observe(0, service: "svc", status: 502, report: RateLimitReport())
        #expect(mesh.view(0, "svc")?.breakerState == .open)
    }

    @Test func maxMinFairSharesAreWaterFilled() {
        #expect(FairShare.maxMin(capacity: 100, needs: [10]) == [100])
        #expect(FairShare.maxMin(capacity: 90, needs: [10, 100, 100]) == [10, 40, 40])
        #expect(FairShare.maxMin(capacity: 60, needs: [10, 20, 0]) == [20, 30, 10])
        #expect(FairShare.maxMin(capacity: 30, needs: [100, 100, 100]) == [10, 10, 10])
        #expect(FairShare.jainIndex([5, 5, 5]) == 1)
        #expect(abs(FairShare.jainIndex([9, 0, 0]) - 1.0 / 3) < 1e-9)
    }

    @Test func tieredAllocationServesTheFirstTierBeforeTheRest() {
        // Three others with urgent rates 0, 0, 1 and other rates 5, 5, 5 per s; 10 s left; 60 calls.
        let others = [TierRates([0, 0, 1]), TierRates([5, 5, 5])]
        let scales: InlineArray<2, Double> = [10, 10]
        // An urgent need of 20 is met in full before anyone's other work; 30 are left for 4 × 50 of it.
        let urgent = FairShare.tieredAllocation(
            capacity: 60, ownNeeds: [20, 0], others: others, scales: scales, floor: 0, claimants: 4)
        #expect(urgent == 20)
        let busy = FairShare.tieredAllocation(
            capacity: 60, ownNeeds: [0, 50], others: others, scales: scales, floor: 0, claimants: 4)
        #expect(busy == 12.5)  // 60 − 10 urgent = 50 for four claimants of other work, each needing 50
        // When no tier needs it all, what is left is split equally among every claimant.
        let idle = FairShare.tieredAllocation(
            capacity: 200, ownNeeds: [0, 0], others: others, scales: scales, floor: 0, claimants: 4)
        #expect(idle == (200 - 10 - 150) / 4.0)
        // A floor in the last tier gives an idle claimant a call's worth even when others want it all.
        let floored = FairShare.tieredAllocation(
            capacity: 60, ownNeeds: [0, 0], others: others, scales: scales, floor: 1, claimants: 4)
        #expect(floored == 1)
        // An idle claimant's floor is in the first tier: it is met even when urgent demand elsewhere alone
        // wants more than there is. A busy claimant's floor stays in the last tier.
        let flooded = [TierRates([100], idle: 1), TierRates([0], idle: 1)]
        let idleFirst = FairShare.tieredAllocation(
            capacity: 60, ownNeeds: [0, 0], others: flooded, scales: scales, floor: 1, claimants: 3)
        #expect(idleFirst == 1)
        let busyNormal = FairShare.tieredAllocation(
            capacity: 60, ownNeeds: [0, 5], others: flooded, scales: scales, floor: 1, claimants: 3)
        #expect(busyNormal == 0)
        // Both idle claimants' floors come out of the first tier before the urgent claimant's share.
        #expect(flooded[0].totalNeed(scale: 10, floor: 0, idleNeed: 1) == 1 + 1000)
        #expect(flooded[0].waterLevel(capacity: 60, ownNeed: 1, scale: 10, floor: 0, idleNeed: 1) == 58)
        // The tier's total and its water level agree with a plain max-min division.
        let rates = TierRates([3, 1, 2])
        #expect(rates.sorted == [1, 2, 3])
        #expect(rates.totalNeed(scale: 10, floor: 15) == 15 + 20 + 30)
        #expect(rates.waterLevel(capacity: 40, ownNeed: 100, scale: 10, floor: 0) == FairShare.maxMin(capacity: 40, needs: [10, 20, 30, 100])[3])
    }

    @Test func aBucketRetimesWhatItOwesWhenTheRateChanges() {
        var bucket = LeakyBucket()
        bucket.enter(windowEnd: 10_000, now: 0)
        // One call at 1 per second owes 1000 ms.
        bucket.charge(cost: 1, ratePerMillisecond: 0.001, now: 0)
        #expect(bucket.earliestAdmission(tolerance: 0, ratePerMillisecond: 0.001, now: 0) == 1000)
        // At 10 per second the same call is owed 100 ms: the share grew, so the wait shrinks.
        #expect(bucket.earliestAdmission(tolerance: 0, ratePerMillisecond: 0.01, now: 0) == 100)
        // Half-way through the debt at the old rate, half of the call is still owed at the new one.
        #expect(bucket.earliestAdmission(tolerance: 0, ratePerMillisecond: 0.01, now: 500) == 550)
        #expect(bucket.admit(cost: 1, ratePerMillisecond: 0.01, tolerance: 0, now: 500) == 550)
        #expect(bucket.admit(cost: 1, ratePerMillisecond: 0.01, tolerance: 0, now: 550) == nil)
        #expect(bucket.theoreticalArrival == 650)
    }

    @Test func aHeldBucketPaysNothingUntilItsPaceReturns() {
        var bucket = LeakyBucket()
        bucket.enter(windowEnd: 10_000, now: 0)
        bucket.charge(cost: 1, ratePerMillisecond: 0.001, now: 0)
        // 400 ms paid at 1 per second, then the pace falls to nothing for 5 s: 600 ms still owed after it.
        bucket.hold(now: 400)
        // (The held rate is tiny, not nil: 5 s of it pays a few billionths of a call.)
        #expect(abs(bucket.earliestAdmission(tolerance: 0, ratePerMillisecond: 0.001, now: 5_400) - 6_000) < 0.01)
        // Unheld, the same bucket would have let the call pass long before.
        var paid = LeakyBucket()
        paid.enter(windowEnd: 10_000, now: 0)
        paid.charge(cost: 1, ratePerMillisecond: 0.001, now: 0)
        #expect(paid.earliestAdmission(tolerance: 0, ratePerMillisecond: 0.001, now: 5_400) == 1_000)
        // A bucket not charged yet in its window keeps its phase.
        var fresh = LeakyBucket()
        fresh.enter(windowEnd: 10_000, now: 0, phase: 700)
        fresh.hold(now: 100)
        #expect(fresh.earliestAdmission(tolerance: 0, ratePerMillisecond: 0.001, now: 100) == 700)
    }

    @Test func whereNodesOutnumberTheWindowsCallsOnlyHoldersOfRightsGrantThem() {
        // 12 nodes share 6 calls a window, none spent yet: six nodes hold one right each. In the window's last
        // moments every node asks at once, before any has heard of the others' grants: at most the window's
        // calls are granted (before rights, each node's estimate let several grant the same last calls).
        let policy = ServicePolicy(limit: 6, windowMillis: 10_000)
        var mesh = TestMesh(count: 12, services: ["svc": policy])
        mesh.now = (mesh.now / 10_000 + 1) * 10_000
        mesh.run(for: 10_000)
        let resetAt = (mesh.now / 10_000 + 1) * 10_000
        let held = (0..<12).map { mesh.nodes[$0].quotas(service: "svc", now: mesh.now).first?.rights ?? -1 }
        #expect(held.reduce(0, +) == 6, "the initial rights add up to the limit: \(held)")
        mesh.now = resetAt - 1_000
        mesh.cut = Set((0..<12).flatMap { a in (0..<12).map { [a, $0] } })
        var granted = 0
        for index in 0..<12 {
            if mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent))?.granted == true { granted += 1 }
        }
        #expect(granted == 6, "each holder spends its own right, nobody else's: \(granted)")
        // Cut off from one another, nobody can ask for more: a second round grants nothing.
        var again = 0
        for index in 0..<12 {
            if mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent))?.granted == true { again += 1 }
        }
        #expect(again == 0)
    }

    @Test func urgentWorkAnywhereGoesBeforeNormalWorkElsewhere() {
        // Node 0 has only urgent work, 1 call a second; nodes 1 to 3 only normal work, 2 a second each;
        // the limit is 2 a second in all. Urgent work is served first, cluster-wide, and the normal nodes
        // share the rest.
        let policy = ServicePolicy(limit: 120, windowMillis: 60_000)
        var mesh = TestMesh(count: 4, services: ["svc": policy])
        mesh.now = (mesh.now / 60_000 + 1) * 60_000
        mesh.run(for: 3_000)
        var asked = [0, 0, 0, 0]
        var granted = [0, 0, 0, 0]
        // 40 s, all within the one window.
        for step in 0..<(40 * 2) {
            for index in 0..<4 where index > 0 || step % 2 == 0 {
                asked[index] += 1
                let priority: Priority = index == 0 ? .urgent : .normal
                if mesh.acquire(index, AcquireRequest(service: "svc", priority: priority))?.granted == true {
                    granted[index] += 1
                }
            }
            mesh.run(for: 500)
        }
        #expect(granted.reduce(0, +) <= 120, "\(granted)")
        // The urgent node got nearly all it asked for; each normal node less than half of what it asked.
        #expect(Double(granted[0]) >= 0.9 * Double(asked[0]), "\(granted) of \(asked)")
        for index in 1..<4 { #expect(granted[index] < asked[index] / 2, "\(granted) of \(asked)") }
        // At least the window's pace over the 40 s (2 a second: 80) goes; 99 here.
        #expect(granted.reduce(0, +) >= 80, "the limit should not be wasted: \(granted)")
    }

    @Test func grantsNotYetHeardOfAreEstimatedFromTheWindowsPace() {
        let mesh = TestMesh(count: 2, services: ["svc": ServicePolicy(limit: 100, windowMillis: 10_000)])
        let instance = mesh.nodes[0]
        var merged = QuotaLedger.Merged()
        merged.consumption.add(ConsumptionEntry(total: 50, windowEnd: 10_000, windowCount: 50))
        merged.ownConsumption = ConsumptionEntry(total: 10, windowEnd: 10_000, windowCount: 10)
        #expect(merged.windowTotal(at: 5_000) == 60)
        // 5 s into a 10 s window the others granted 50, 0.01 a ms: over the rounds a grant takes to arrive,
        // that many more are probably granted already. This node's own grants are never unseen.
        let lag = Double(QuotaLedger.propagationRounds * instance.configuration.gossipIntervalMillis)
        #expect(instance.ledger.unseenConsumption(merged, windowTotal: 60, windowLength: 10_000, resetAt: 10_000, now: 5_000) == 0.01 * lag)
        // Too early in the window to tell a pace: nothing is estimated.
        #expect(instance.ledger.unseenConsumption(merged, windowTotal: 60, windowLength: 10_000, resetAt: 10_000, now: Int64(lag) / 2) == 0)
    }

    @Test func urgentWorkIsNotPacedWhileEveryonesUrgentDemandFits() {
        let policy = ServicePolicy(limit: 100, windowMillis: 60_000)
        var mesh = TestMesh(count: 2, services: ["svc": policy])
        mesh.now = (mesh.now / 60_000 + 1) * 60_000
        mesh.run(for: 3_000)
        // Twelve urgent calls at one instant: well beyond the pace and burst of a node with half the limit.
        for call in 0..<12 {
            #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))?.granted == true, "call \(call)")
        }
        // The node's other work is paced behind them.
        let normal = mesh.acquire(0, AcquireRequest(service: "svc", priority: .normal))
        #expect(normal?.granted == false)
        #expect(normal?.detail == DecisionDetail(.paced))
    }

    @Test func busyNodesSplitTheLimitFairlyAndNeverExceedIt() {
        let policy = ServicePolicy(limit: 60, windowMillis: 60_000, burstFraction: 0.05)
        var mesh = TestMesh(count: 3, services: ["svc": policy])
        // Align to a window start.
        mesh.now = (mesh.now / 60_000 + 1) * 60_000
        mesh.run(for: 1_000)
        var granted = [0, 0, 0]
        for _ in 0..<(58 * 5) {
            for index in 0..<3 where mesh.acquire(index, AcquireRequest(service: "svc", priority: .normal))?.granted == true {
                granted[index] += 1
            }
            mesh.run(for: 200)
        }
        let total = granted.reduce(0, +)
        #expect(total <= 60)
        // At least 0.95 of the limit goes (59 of 60 here).
        #expect(total >= 57, "the limit should not be wasted: \(granted)")
        #expect(FairShare.jainIndex(granted.map(Double.init)) > 0.9, "\(granted)")
    }

    @Test func waitingAcquiresAreServedHigherPriorityFirst() {
        var mesh = TestMesh(count: 1, services: ["svc": ServicePolicy(limit: 10, windowMillis: 10_000, reserves: Reserves(urgent: 0, normal: 0, low: 0), burstFraction: 0)])
        mesh.now = (mesh.now / 10_000) * 10_000
        // Use the burst with normal calls (urgent ones are not paced), so the next calls are paced.
        while mesh.acquire(0, AcquireRequest(service: "svc", priority: .normal))?.granted == true {}
        let lowTicket = mesh.nextTicket
        _ = mesh.acquire(0, AcquireRequest(service: "svc", priority: .low, waitMillis: 9_000))
        // Arrives later, but outranks the waiting low call.
        let urgentTicket = mesh.nextTicket
        _ = mesh.acquire(0, AcquireRequest(service: "svc", priority: .normal, waitMillis: 9_000))
        #expect(mesh.replies[0]?[lowTicket] == nil)
        #expect(mesh.replies[0]?[urgentTicket] == nil)
        var order: [UInt64] = []
        for _ in 0..<90 where order.count < 2 {
            mesh.run(for: 100, step: 100)
            for ticket in [urgentTicket, lowTicket] where !order.contains(ticket) && mesh.replies[0]?[ticket]?.granted == true {
                order.append(ticket)
            }
        }
        #expect(order == [urgentTicket, lowTicket])
    }

    @Test func normalWorkKeepsClearOfTheUpstreamsWindowEdgesUrgentWorkDoesNot() {
        // The upstream said its window resets in 2 s. A clock a few hundred ms off would put a call made
        // in the last moments into the next window, or one made in the first moments into the last.
        var mesh = TestMesh(count: 1, services: ["svc": ServicePolicy(limit: 100, windowMillis: 10_000)])
        let reset = mesh.now + 2_000
        mesh.observe(0, service: "svc", status: 200, report: report(limit: 100, remaining: 90, resetAt: reset))
        mesh.run(for: 1_600, step: 100)
        let late = mesh.acquire(0, AcquireRequest(service: "svc", priority: .normal))
        #expect(late?.granted == false)
        #expect(late?.detail?.kind == .windowEdge)
        #expect(late?.retryAt == reset + mesh.nodes[0].configuration.windowEdgeMillis)
        #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))?.granted == true)
        // Just after the reset: still at the edge; past it, normal work flows again.
        mesh.run(for: 600, step: 100)
        #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .low))?.detail?.kind == .windowEdge)
        mesh.run(for: 500, step: 100)
        #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .normal))?.granted == true)
    }

    @Test func windowsThisNodeOnlyGuessesHaveNoEdgesToKeepClearOf() {
        // No observation: the windows are aligned to the epoch by this node alone, and a call at the very
        // start of one passes.
        var mesh = TestMesh(count: 1, services: ["svc": ServicePolicy(limit: 100, windowMillis: 10_000)])
        mesh.now = (mesh.now / 10_000) * 10_000 + 100
        #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .low))?.granted == true)
    }

    @Test func waitBeyondTheRetryTimeIsAnsweredAtOnce() {
        var mesh = TestMesh(count: 1, services: ["svc": ServicePolicy(limit: 1, windowMillis: 60_000)])
        mesh.now = (mesh.now / 60_000) * 60_000 + 1_000
        #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))?.granted == true)
        let decision = mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent, waitMillis: 1_000))
        #expect(decision?.granted == false)
        #expect(decision?.reason == .quotaExhausted)
        #expect(decision?.retryAt == (mesh.now / 60_000 + 1) * 60_000)
    }

    @Test func aServiceLearnedBeforeARestartIsStillKnownAfterIt() {
        // No configuration names "github": the node learned it from the upstream's headers, and saved it.
        var state = QuotaState()
        state.policy = AdvertisedPolicy(limit: 5000, windowMillis: 3_600_000)
        let saved = PersistedNodeState(incarnation: 3, quotas: [PersistedQuota(key: QuotaKey(service: "github"), state: state)])
        var instance = MeshInstance(
            identity: testKey(0), configuration: MeshConfiguration(), peers: [], restored: saved,
            now: 1_800_000_000_000, seed: 1)
        #expect(instance.isKnown(service: "github"))
        let out = instance.acquire(AcquireRequest(service: "github", priority: .normal), ticket: 1, now: 1_800_000_000_000)
        var decision: AcquireDecision?
        for case .reply(_, let reply) in out { decision = reply }
        #expect(decision?.granted == true, "\(String(describing: decision))")
    }

    @Test func restartKeepsConsumptionAndUsesANewerIncarnation() {
        var mesh = TestMesh(count: 2, services: ["svc": ServicePolicy(limit: 100, windowMillis: 3_600_000)])
        for _ in 0..<5 { _ = mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent)) }
        guard let saved = mesh.persisted[0] else {
            Issue.record("nothing persisted")
            return
        }
        mesh.run(for: 1_000)
        let oldIncarnation = mesh.nodes[0].incarnation
        var configuration = MeshConfiguration(services: ["svc": ServicePolicy(limit: 100, windowMillis: 3_600_000)])
        configuration.livenessTimeoutMillis = 5_000
        let peers = (0..<2).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) }
        mesh.nodes[0] = MeshInstance(identity: testKey(0), configuration: configuration, peers: peers, restored: saved, now: mesh.now, seed: 9)
        #expect(mesh.nodes[0].incarnation > oldIncarnation)
        #expect(mesh.view(0, "svc")?.consumedLocal == 5)
        _ = mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))
        mesh.run(for: 1_000)
        #expect(mesh.view(1, "svc")?.consumedGlobal == 6)
    }

    /// A restarted node hears again what the others consumed only over the next rounds. Observations it
    /// made meanwhile were anchored on its partial view, and every node that merged one counted the calls
    /// before it twice: with 10 simulated nodes, a window believed spent at 64 calls of 100.
    @Test func aRestartedNodesFirstObservationsDoNotMakeTheOthersCountCallsTwice() {
        let services = ["svc": ServicePolicy(limit: 1000, windowMillis: 3_600_000)]
        var mesh = TestMesh(count: 3, services: services)
        mesh.run(for: 400)
        for index in 0..<3 {
            for _ in 0..<15 { #expect(mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent))?.granted == true) }
        }
        mesh.run(for: 2_000)
        // A grant saves node 0's state, now with what it knows of all 45 calls before it.
        let last = mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))
        #expect(last?.granted == true, "\(String(describing: last))")
        mesh.run(for: 1_000)
        #expect(mesh.view(0, "svc")?.consumedGlobal == 46)
        guard let saved = mesh.persisted[0] else {
            Issue.record("nothing persisted")
            return
        }
        // What the node knew of the whole cluster is saved with its own state.
        #expect(saved.quotas.first?.clusterConsumed == 46)

        var configuration = MeshConfiguration(services: services)
        configuration.livenessTimeoutMillis = 5_000
        let peers = (0..<3).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) }
        mesh.nodes[0] = MeshInstance(identity: testKey(0), configuration: configuration, peers: peers, restored: saved, now: mesh.now, seed: 9)
        // Still learning: the upstream says 954 are left, and node 0 knows only its own 16 calls. (Node 2
        // saw one more left just before: a second voice that agrees, so node 0's observation is the one
        // the others take.)
        let reset = mesh.now + 3_000_000
        mesh.observe(2, service: "svc", status: 200, report: report(limit: 1000, remaining: 955, resetAt: reset))
        mesh.observe(0, service: "svc", status: 200, report: report(limit: 1000, remaining: 954, resetAt: reset))
        mesh.run(for: 2_000)
        for index in 0..<3 { #expect(mesh.view(index, "svc")?.remaining == 954, "node \(index) after the restart") }
        // Learning is over and the view whole again: an observation is kept, anchored where it should be.
        mesh.observe(2, service: "svc", status: 200, report: report(limit: 1000, remaining: 951, resetAt: reset))
        mesh.observe(0, service: "svc", status: 200, report: report(limit: 1000, remaining: 950, resetAt: reset))
        mesh.run(for: 2_000)
        for index in 0..<3 { #expect(mesh.view(index, "svc")?.remaining == 950, "node \(index) later") }
        #expect(mesh.nodes[1].remainingBreakdown(QuotaKey(service: "svc"), now: mesh.now)["obs_anchor"] == 46)
    }

    /// A restarted node that had granted nothing before (so saved no cluster consumption) keeps no
    /// observation that says calls are left while it learns, as any restarted node; a first start does.
    @Test func aRestartedNodeThatHadGrantedNothingKeepsNoObservationWhileItLearns() {
        let services = ["svc": ServicePolicy(limit: 100, windowMillis: 3_600_000)]
        let peers = (0..<3).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) }
        let start: UnixMillis = 1_800_000_000_000
        let saved = PersistedNodeState(
            incarnation: 3, quotas: [PersistedQuota(key: QuotaKey(service: "svc"), state: QuotaState(), clusterConsumed: 0)])
        func remainingAfterObserving(restored: PersistedNodeState?, at offset: Int64) -> Int64? {
            var instance = MeshInstance(
                identity: testKey(0), configuration: MeshConfiguration(services: services), peers: peers,
                restored: restored, now: start, seed: 1)
            _ = instance.tick(now: start + offset)
            _ = instance.observe(
                service: "svc", account: nil, status: 200,
                report: report(limit: 100, remaining: 30, resetAt: start + 3_000_000), now: start + offset)
            return instance.quota(of: QuotaKey(service: "svc"), now: start + offset)?.remaining
        }
        #expect(remainingAfterObserving(restored: saved, at: 100) == 100)
        #expect(remainingAfterObserving(restored: saved, at: 60_000) == 30)
        #expect(remainingAfterObserving(restored: nil, at: 100) == 30)
    }

    /// Until a restarted node has heard from the others, its observations are anchored no lower than
    /// what it knew the cluster had consumed before the restart.
    @Test func aRestartedNodeAnchorsObservationsOnWhatItKnewBefore() {
        let services = ["svc": ServicePolicy(limit: 100, windowMillis: 3_600_000)]
        var state = QuotaState()
        state.consumption = ConsumptionEntry(total: 10, windowEnd: 0, windowCount: 0)
        let saved = PersistedNodeState(
            incarnation: 3, quotas: [PersistedQuota(key: QuotaKey(service: "svc"), state: state, clusterConsumed: 60)])
        let peers = (0..<3).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) }
        let start: UnixMillis = 1_800_000_000_000
        var instance = MeshInstance(
            identity: testKey(0), configuration: MeshConfiguration(services: services), peers: peers, restored: saved,
            now: start, seed: 1)
        // Nothing heard from the others (no datagram is delivered), learning long over.
        let later = start + 10_000
        _ = instance.tick(now: later)
        _ = instance.observe(
            service: "svc", account: nil, status: 200,
            report: report(limit: 100, remaining: 30, resetAt: later + 3_000_000), now: later)
        let pieces = instance.remainingBreakdown(QuotaKey(service: "svc"), now: later)
        #expect(pieces["obs_remaining"] == 30)
        #expect(pieces["obs_anchor"] == 60)
        #expect(pieces["lifetime"] == 10)
        // A saved state from before the floor existed still loads; the node's own total is the floor.
        let old = PersistedNodeState(incarnation: 3, quotas: [PersistedQuota(key: QuotaKey(service: "svc"), state: state)])
        var oldInstance = MeshInstance(
            identity: testKey(0), configuration: MeshConfiguration(services: services), peers: peers, restored: old,
            now: start, seed: 1)
        _ = oldInstance.observe(
            service: "svc", account: nil, status: 200,
            report: report(limit: 100, remaining: 30, resetAt: later + 3_000_000), now: later)
        #expect(oldInstance.remainingBreakdown(QuotaKey(service: "svc"), now: later)["obs_anchor"] == 10)
    }
}

@Suite struct WaiterWakeTests {
    @Test func aLowerPriorityWaiterBehindAHigherOneDoesNotBusyWake() {
        var mesh = TestMesh(count: 1, services: ["svc": ServicePolicy(limit: 10, windowMillis: 60_000, reserves: Reserves(urgent: 0, normal: 0, low: 0), burstFraction: 0)])
        mesh.now = (mesh.now / 60_000) * 60_000
        while mesh.acquire(0, AcquireRequest(service: "svc", priority: .normal))?.granted == true {}
        _ = mesh.acquire(0, AcquireRequest(service: "svc", priority: .normal, waitMillis: 30_000))
        _ = mesh.acquire(0, AcquireRequest(service: "svc", priority: .low, waitMillis: 30_000))
        #expect(mesh.nodes[0].waitingCount == 2)
        var wakes: [UnixMillis] = []
        for case .wake(let at) in mesh.nodes[0].tick(now: mesh.now + 1) { wakes.append(at) }
        let wake = wakes.last ?? 0
        #expect(wake >= mesh.now + 100, "wakes \(wake - mesh.now) ms later")
    }
}

/// Token budgets beside request budgets: every dimension gossiped under its own key, costs granted all or
/// none, refunds merged like admissions.
@Suite struct DimensionTests {
    static let services = [
        "llm": ServicePolicy(
            limit: 100, windowMillis: 3_600_000, burstFraction: 1,
            dimensionLimits: ["tokens": AdvertisedPolicy(limit: 10_000, windowMillis: 3_600_000)])
    ]

    func tokens(_ mesh: TestMesh, _ index: Int) -> DimensionView? {
        mesh.view(index, "llm")?.dimensions.first { $0.name == "tokens" }
    }

    @Test func tokenConsumptionAndRefundsReachEveryNode() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 3_000)
        let granted = mesh.acquire(0, AcquireRequest(service: "llm", priority: .urgent, costs: ["tokens": 6_000]))
        #expect(granted?.granted == true)
        mesh.run(for: 3_000)
        #expect(tokens(mesh, 2)?.consumedGlobal == 6_000)
        #expect(tokens(mesh, 2)?.remaining == 4_000)
        #expect(mesh.view(2, "llm")?.consumedGlobal == 1, "one request")

        // The call used 1,000 tokens of the 6,000 reserved: the refund reaches the others.
        let result = mesh.nodes[0].observe(
            service: "llm", account: nil, status: 200, report: RateLimitReport(), corrections: ["tokens": -5_000],
            now: mesh.now)
        mesh.apply(result.directives, from: 0)
        mesh.run(for: 3_000)
        for index in 0..<3 { #expect(tokens(mesh, index)?.remaining == 9_000, "node \(index)") }
    }

    @Test func aCostOverAnyDimensionIsDeniedAndNothingIsCharged() {
        var mesh = TestMesh(count: 1, services: Self.services)
        mesh.run(for: 1_000)
        let denied = mesh.acquire(0, AcquireRequest(service: "llm", priority: .urgent, costs: ["tokens": 10_001]))
        #expect(denied?.granted == false)
        #expect(denied?.detail == DecisionDetail(.costExceedsLimit, dimension: "tokens"))
        #expect(denied?.detail?.description == "tokens_cost_exceeds_limit")
        let over = mesh.acquire(0, AcquireRequest(service: "llm", priority: .urgent, costs: ["tokens": 9_000]))
        #expect(over?.granted == true)
        let second = mesh.acquire(0, AcquireRequest(service: "llm", priority: .urgent, costs: ["tokens": 2_000]))
        #expect(second?.granted == false)
        #expect(second?.detail == DecisionDetail(.window, dimension: "tokens"))
        // The denied calls charged neither dimension.
        #expect(mesh.view(0, "llm")?.consumedLocal == 1)
        #expect(tokens(mesh, 0)?.consumedLocal == 9_000)
        // A dimension with no known limit is not enforced (and not invented).
        let unknown = mesh.acquire(0, AcquireRequest(service: "llm", priority: .urgent, costs: ["images": 5]))
        #expect(unknown?.granted == true)
        #expect(mesh.view(0, "llm")?.dimensions.map(\.name) == ["requests", "tokens"])
    }
}

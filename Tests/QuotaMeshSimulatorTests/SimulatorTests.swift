import Testing
import QuotaMeshCore
@testable import QuotaMeshSimulator

/// Fixed-seed simulations of the real protocol core. Every expectation names its seed, so a failure can
/// be replayed with `quotamesh simulate --seed K` and the same flags.
@Suite struct SimulatorTests {
    /// Runs one simulation, off the cooperative pool (see `onASimulationThread`).
    func run(_ build: (inout SimulationConfiguration) -> Void) async -> SimulationReport {
        await simulate(build) { $0.run() }
    }

    /// Builds a simulator from `build` and hands it to `body` on a simulation thread.
    func simulate<Result: Sendable>(
        _ build: (inout SimulationConfiguration) -> Void, _ body: @escaping @Sendable (inout Simulator) -> Result
    ) async -> Result {
        var configuration = SimulationConfiguration()
        build(&configuration)
        return await onASimulationThread { [configuration] in
            var simulator = Simulator(configuration)
            return body(&simulator)
        }
    }

    @Test func theSameSeedReplaysExactly() async {
        let configure: (inout SimulationConfiguration) -> Void = {
            $0.nodes = 8
            $0.seconds = 20
            $0.loss = 0.1
            $0.seed = 42
        }
        let first = await run(configure)
        let second = await run(configure)
        #expect(first.upstreamCalls == second.upstreamCalls)
        #expect(first.denials == second.denials)
        #expect(first.datagramsDelivered == second.datagramsDelivered)
        #expect(first.convergenceRoundsP99 == second.convergenceRoundsP99)
        let other = await run {
            configure(&$0)
            $0.seed = 43
        }
        #expect(other.datagramsDelivered != first.datagramsDelivered)
    }

    @Test func nodesSharingOneCopyOfEachRecordRunExactlyAsNodesWithTheirOwn() async {
        // Sharing is the simulator's memory saving: it must change nothing the nodes decide or send.
        let configure: (inout SimulationConfiguration) -> Void = {
            $0.nodes = 30
            $0.seconds = 30
            $0.loss = 0.1
            $0.crashes = 2
            $0.seed = 5
        }
        let (withSharing, sharedCount) = await simulate(configure) { shared in
            (shared.run(), shared.sharedRecords.sharedCount)
        }
        let own = await run {
            configure(&$0)
            $0.shareRecords = false
        }
        #expect(sharedCount > 0)
        #expect(withSharing.datagramsDelivered == own.datagramsDelivered)
        #expect(withSharing.bytesPerNodePerSecond == own.bytesPerNodePerSecond)
        #expect(withSharing.upstreamCalls == own.upstreamCalls)
        #expect(withSharing.denials == own.denials)
        #expect(withSharing.maxAdmittedRatio == own.maxAdmittedRatio)
        #expect(withSharing.convergenceRoundsP50 == own.convergenceRoundsP50)
        #expect(withSharing.convergenceRoundsP99 == own.convergenceRoundsP99)
        #expect(withSharing.windows.map(\.sent) == own.windows.map(\.sent))
    }

    /// A run at half demand (the convergence benchmark's load) with `probes` probes.
    func convergenceRun(nodes: Int, seconds: Double, loss: Double, seed: UInt64, probes: Int) async -> SimulationReport {
        await run {
            $0.nodes = nodes
            $0.seconds = seconds
            $0.loss = loss
            $0.seed = seed
            $0.probes = probes
            $0.demand = 0.5
        }
    }

    @Test(arguments: [(UInt64(1), 0.0), (UInt64(2), 0.2)])
    func observationsReachEveryNode(seed: UInt64, loss: Double) async {
        let report = await convergenceRun(nodes: 40, seconds: 20, loss: loss, seed: seed, probes: 6)
        #expect(report.probesConverged == report.probes, "seed \(seed)")
        if loss > 0 {
            // Every push is also a pull, so a node the pushes missed pulls a record from the next peer it
            // pushes to, where pushes of records alone took 21-41 rounds (BENCHMARKS.md, "Every push a
            // pull, at every size"). Pulls are answered oldest first: over seeds 1-12 the slowest of six
            // probes took 5-6 rounds (4-8 newest first; the estimate is 4.6) and the median one 4-5, a
            // round more than newest first (BENCHMARKS.md, "Pulls answered oldest first").
            #expect(report.convergenceRoundsP50 <= report.theoreticalRounds + 1, "seed \(seed)")
            #expect(report.convergenceRoundsP99 <= 1.5 * report.theoreticalRounds, "seed \(seed): \(report.convergenceRoundsP99) rounds")
        } else {
            #expect(report.convergenceRoundsP50 <= 2 * report.theoreticalRounds, "seed \(seed)")
            #expect(report.convergenceRoundsP99 <= 3 * report.theoreticalRounds, "seed \(seed): \(report.convergenceRoundsP99) rounds")
        }
    }

    @Test(arguments: [UInt64(1), 2])
    func inALargeClusterEveryPushIsAPullAndTheTailUnderLossStaysShort(seed: UInt64) async {
        // 240 nodes: pushes carry a filter of what their sender received lately and announce what they had
        // no room for, so a node the pushes missed pulls a record from the next peer it pushes to. Before
        // pushes pulled (64f7f7a) these seeds took 15 and 21 rounds at p99 (BENCHMARKS.md, "Every push a pull").
        let report = await convergenceRun(nodes: 240, seconds: 16, loss: 0.2, seed: seed, probes: 6)
        #expect(report.probesConverged == report.probes, "seed \(seed)")
        #expect(report.convergenceRoundsP50 <= report.theoreticalRounds, "seed \(seed)")
        #expect(report.convergenceRoundsP99 <= 1.5 * report.theoreticalRounds, "seed \(seed): \(report.convergenceRoundsP99) rounds")
    }

    @Test(arguments: [UInt64(1), 2])
    func aRecordAPushMissedIsPulledBeforeNewerOnesCrowdItOut(seed: UInt64) async {
        // Pulls are answered oldest first: answered newest first, the newest updates (which every node
        // lacks while they spread) filled each answer, and a record a node's pushes had missed waited for a
        // digest. fbf4e78 (newest first) takes these seeds to 42 and 18 rounds at p99; oldest first, 10
        // and 8 (BENCHMARKS.md, "Pulls answered oldest first"; the estimate is 5.7).
        let report = await convergenceRun(nodes: 100, seconds: 30, loss: 0.1, seed: seed, probes: 10)
        #expect(report.probesConverged == report.probes, "seed \(seed)")
        #expect(report.convergenceRoundsP99 <= 2 * report.theoreticalRounds, "seed \(seed): \(report.convergenceRoundsP99) rounds")
    }

    @Test(arguments: [UInt64(1), 2, 3])
    func demandAtTwiceTheLimitNeverOvershootsAndUsesTheLimit(seed: UInt64) async {
        let report = await run {
            $0.nodes = 10
            $0.seconds = 50
            $0.seed = seed
            $0.demand = 2
        }
        // Rights: never over the limit. BENCHMARKS.md ("Rights"): every seed uses at least 0.95 of the
        // limit at 2× demand (these give 0.965-0.975), Jain's index 0.98 and more.
        #expect(report.maxAdmittedRatio <= 1.0, "seed \(seed)")
        #expect(report.upstream429s == 0, "seed \(seed)")
        #expect(report.utilization >= 0.95, "seed \(seed): utilization \(report.utilization)")
        #expect(report.jainIndex >= 0.98, "seed \(seed): \(report.jainIndex)")
        #expect(report.urgentSuccessRatio == 1, "seed \(seed)")
    }

    @Test(arguments: [UInt64(1), 3, 4, 13, 44, 84])
    func nodesWithLessThanOneCallEachDoNotAllSpendTheWindowsEnd(seed: UInt64) async {
        // 60 nodes share 20 calls a window: a third of a call each, so most nodes' pacing puts their next
        // call past the window's end. Those calls must wait for the next window, not all pass in its last
        // moments (where no node can see the others' grants yet); and a cluster-wide 429 must not let
        // every node probe the half-open breaker at once.
        let report = await run {
            $0.nodes = 60
            $0.seconds = 40
            $0.limit = 20
            $0.seed = seed
            $0.demand = 2
        }
        // Before, these windows reached 2.5 to 4 × the limit at N = 300 and 1000. Seeds 4 and 13 went
        // over until a node's pacing debt stood still while its share was nothing (seed 4 was 1.10: eight
        // nodes' debts ran out together and they granted at once when their shares came back) and a
        // window's last two calls went by turns (seed 13 was 1.05: three nodes granted its last calls
        // within 300 ms, none seeing the others'). Seeds 44 and 84 still went over (1.05 and 1.10: five or
        // six nodes granted a window's last three calls within half a second, each seeing more left than
        // there was) until the window's last slot went by turns wherever nodes outnumber the window's
        // calls. With rights no window goes over, and these seeds use 0.967 to 1.0 of the limit
        // (BENCHMARKS.md, "Rights": N = 60 sharing 20 uses at least 0.95 on every seed).
        #expect(report.maxAdmittedRatio <= 1.0, "seed \(seed)")
        #expect(report.upstream429s == 0, "seed \(seed)")
        #expect(report.utilization >= 0.95, "seed \(seed): utilization \(report.utilization)")
    }

    @Test func urgentWorkSucceedsWhileLowDemandIsTenTimesTheLimit() async {
        let seed: UInt64 = 7
        let report = await run {
            $0.nodes = 10
            $0.seconds = 50
            $0.seed = seed
            $0.demand = 10
            $0.priorityMix = (0.02, 0.08, 0.9)
        }
        #expect(report.urgentSuccessRatio == 1, "seed \(seed)")
        // Before the pace stopped growing without bound at the window's end (no node sees the others' last
        // grants), the flood pushed this seed to 1.04; with rights no window goes over.
        #expect(report.maxAdmittedRatio <= 1.0, "seed \(seed)")
        #expect(report.upstream429s == 0, "seed \(seed)")
        let low = report.tasks[.low] ?? (0, 0)
        #expect(low.succeeded < low.created, "low work is held back, seed \(seed)")
    }

    @Test func crashesAndRestartsNeverOverAdmit() async {
        let seed: UInt64 = 11
        let report = await run {
            $0.nodes = 10
            $0.seconds = 50
            $0.seed = seed
            $0.crashes = 6
            $0.downtimeMillis = 1_500
        }
        // A node resumes from its saved ledger: never over. A crashed node's rights stay with it until the
        // window ends (docs/TUNING.md): BENCHMARKS.md's six-crash run uses 0.944 of the limit; at least
        // 0.94 here.
        #expect(report.maxAdmittedRatio <= 1.0, "seed \(seed)")
        #expect(report.upstream429s == 0, "seed \(seed)")
        #expect(report.utilization >= 0.94, "seed \(seed): \(report.utilization)")
    }

    @Test(arguments: [UInt64(2), 28])
    func aRestartDoesNotLeaveAWindowBelievedSpent(seed: UInt64) async {
        // Before, the restarted node's first upstream observations were anchored on what it had heard
        // again so far (its own calls): every node merged them and counted the window's earlier calls
        // twice, and the window closed with 64 (seed 2) or 59 (seed 28) of 100 calls made. With rights, a
        // crash also strands what the crashed node held in that window (its part, 10 here, and what it had
        // been given; docs/TUNING.md): seeds 1 to 30 give windows of 81 to 98 calls.
        let report = await run {
            $0.nodes = 10
            $0.seconds = 60
            $0.seed = seed
            $0.demand = 2
            $0.crashes = 5
        }
        #expect(report.maxAdmittedRatio <= 1.0, "seed \(seed)")
        for (index, window) in report.windows.enumerated() {
            #expect(window.accepted >= 80, "seed \(seed): window \(index) made \(window.accepted) calls of 100")
        }
    }

    /// Duplicated and reordered packets (30% duplicated, latency 1-150 ms) keep every guarantee of the same
    /// runs without duplication, and change utilization and max-min fairness by little on average.
    @Test func duplicatedPacketsKeepEveryGuaranteeOfRunsWithout() async {
        func report(seed: UInt64, duplication: Double) async -> SimulationReport {
            await run {
                $0.nodes = 10
                $0.seconds = 40
                $0.seed = seed
                $0.duplication = duplication
                $0.latencyMillis = 1...150
            }
        }
        var plain: [SimulationReport] = []
        var duplicated: [SimulationReport] = []
        for seed in UInt64(1)...4 {
            plain.append(await report(seed: seed, duplication: 0))
            duplicated.append(await report(seed: seed, duplication: 0.3))
        }
        for (index, run) in (plain + duplicated).enumerated() {
            let name = "\(index < 4 ? "plain" : "duplicated"), seed \(index % 4 + 1)"
            #expect(run.maxAdmittedRatio <= 1.0, "\(name)")
            #expect(run.upstream429s == 0, "\(name)")
            #expect(run.urgentSuccessRatio == 1, "\(name)")
            #expect(run.probesConverged == run.probes, "\(name)")
        }
        // A single seed's pair differs by chance as much as by duplication (up to 0.04 of the limit either
        // way: a duplicate draws other random numbers); the means over seeds 1-4 differ by 0.012 and 0.000.
        func mean(_ runs: [SimulationReport], _ value: (SimulationReport) -> Double) -> Double {
            runs.map(value).reduce(0, +) / Double(runs.count)
        }
        let utilization = (mean(plain, \.utilization), mean(duplicated, \.utilization))
        let maxMin = (mean(plain, \.maxMinIndex), mean(duplicated, \.maxMinIndex))
        #expect(abs(utilization.1 - utilization.0) <= 0.02, "\(utilization)")
        #expect(abs(maxMin.1 - maxMin.0) <= 0.02, "\(maxMin)")
    }

    @Test func aHealedPartitionConvergesAndNoSideSpendsMoreThanItsRights() async throws {
        let seed: UInt64 = 3
        let report = await run {
            $0.nodes = 10
            $0.seconds = 60
            $0.seed = seed
            $0.partition = PartitionPlan(start: 15, end: 32, fraction: 0.5)
            $0.probes = 10
        }
        // Each side spends only the rights its members hold: no window goes over, the partitioned ones
        // included (before rights, each side spent what it believed was left: up to twice the limit).
        #expect(report.maxAdmittedRatio <= 1.0, "seed \(seed)")
        let partitioned = try #require(report.partitionMaxAdmittedRatio, "windows overlapped the partition")
        #expect(partitioned <= 1.0, "seed \(seed)")
        #expect(report.upstream429s == 0, "seed \(seed)")
        #expect(report.probesConverged == report.probes, "seed \(seed): every probe, including those made during the partition, reached every node after the heal")
    }

    @Test func skewedClocksAndSkewedDemandStayWithinTheLimit() async {
        let seed: UInt64 = 9
        let report = await run {
            $0.nodes = 12
            $0.seconds = 50
            $0.seed = seed
            $0.clockSkewMillis = 400
            $0.skewedDemand = true
            $0.demandShiftAt = 0.5
        }
        // Sub-second skew cannot be corrected from `Date` (one-second resolution): a node whose clock runs
        // ahead opens the next window a little early; normal and low calls therefore keep clear of the
        // upstream's window edges. With rights, seeds 1 to 12 give at most 0.96 to 1.00 of the limit in a
        // window and use 0.94 to 0.97 of it (this seed was the worst, 1.06, before rights).
        #expect(report.maxAdmittedRatio <= 1.0, "seed \(seed)")
        #expect(report.upstream429s == 0, "seed \(seed)")
        #expect(report.utilization >= 0.94, "seed \(seed): \(report.utilization)")
    }

    @Test func unequalDemandIsSharedMaxMinFairly() async {
        // Node i asks for 1/(i+1) of the demand: Jain's index over raw calls is low by design, and the
        // calls ÷ max-min shares is what says whether the few calls of a quiet node were served. The bounds
        // are BENCHMARKS.md's ("Fairness under unequal demand"): a median of 0.95 or more, no seed under
        // 0.92, no node under 0.6 of its share (the quietest node asks for a dozen calls, so one call is
        // 0.08 of its share). Seeds 4-6 give 0.960, 0.952 and 0.985 (worst nodes 0.62, 0.78, 0.82).
        let seeds: [UInt64] = [4, 5, 6]
        let reports = await withTaskGroup(of: SimulationReport.self) { group in
            for seed in seeds {
                group.addTask {
                    await run {
                        $0.nodes = 12
                        $0.seconds = 50
                        $0.seed = seed
                        $0.skewedDemand = true
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let indices = reports.map(\.maxMinIndex).sorted()
        for report in reports {
            #expect(report.jainIndex < 0.95, "seed \(report.seed): demand is skewed")
            #expect(report.maxMinIndex >= 0.92, "seed \(report.seed): \(report.maxMinIndex)")
            #expect(report.maxMinWorstRatio >= 0.6, "seed \(report.seed): \(report.maxMinWorstRatio)")
        }
        #expect(indices[indices.count / 2] >= 0.95, "median of \(indices)")
    }

    @Test func maxMinFairnessComparesEachNodeWithItsWaterFilledShare() {
        // 100 calls over demands 10, 10 and 200: max-min shares 10, 10 and 80.
        let fair = Simulator.maxMinFairness(successes: [10, 10, 80], demands: [10, 10, 200])
        #expect(fair.index == 1)
        #expect(fair.worst == 1)
        // The same calls in proportion to demand short-change the quiet nodes (5 of their 10 each).
        let proportional = Simulator.maxMinFairness(successes: [5, 5, 90], demands: [10, 10, 200])
        #expect(proportional.index < 0.9)
        #expect(proportional.worst == 0.5)
        // A node with no demand has no share and is left out.
        #expect(Simulator.maxMinFairness(successes: [5, 0], demands: [5, 0]).index == 1)
        #expect(Simulator.maxMinFairness(successes: [], demands: []) == (1, 1))
    }

    @Test(arguments: [1, 2, 3] as [UInt64])
    func rightsAccruingAtTheRefillRateNeverOutrunATokenBucket(seed: UInt64) async {
        // A bucket of `limit` tokens refilled at `limit` per window. With `refill: continuous` rights are
        // dealt at the refill rate, so no stretch of time sends more than the limit plus what refilled
        // during it: a bucket of the limit (the upstream's) never refuses a call. All-urgent demand at 3x
        // (unpaced, so every window opens with a burst) and the default mix.
        var allUrgentDepth = 0.0
        for mix in [(1.0, 0.0, 0.0), (0.1, 0.6, 0.3)] {
            let report = await run {
                $0.nodes = 10
                $0.seconds = 40
                $0.seed = seed
                $0.demand = 3
                $0.priorityMix = mix
                $0.upstream = .tokenBucket
            }
            #expect(report.bucketDepthRatio <= 1.0, "seed \(seed), mix \(mix)")
            #expect(report.upstream429s == 0, "seed \(seed), mix \(mix)")
            #expect(report.maxAdmittedRatio <= 1.0, "seed \(seed), mix \(mix)")
            #expect(report.utilization >= 0.97, "seed \(seed), mix \(mix): \(report.utilization)")
            if mix.0 == 1 { allUrgentDepth = report.bucketDepthRatio }
        }
        // Configured as a fixed window instead, the rights of a window all exist at its start: the bursts
        // need a bucket deeper by more than half the limit (0.94-1.01 of the limit against 0.01-0.02 on
        // seeds 1-3; one 429 on seeds 1 and 3).
        let window = await run {
            $0.nodes = 10
            $0.seconds = 40
            $0.seed = seed
            $0.demand = 3
            $0.priorityMix = (1.0, 0.0, 0.0)
            $0.upstream = .tokenBucket
            $0.refill = .window
        }
        #expect(window.bucketDepthRatio > allUrgentDepth + 0.5, "seed \(seed): \(window.bucketDepthRatio)")
    }

    @Test func theBucketDepthIsTheWorstStretchBeyondWhatRefilled() {
        // Refill 1 per 10 ms: calls at 0, 0, 0 need a bucket of 3; spaced 10 ms apart, of 1.
        #expect(Simulator.bucketDepth([0, 0, 0], refillPerMillisecond: 0.1) == 3)
        #expect(Simulator.bucketDepth([0, 10, 20, 30], refillPerMillisecond: 0.1) == 1)
        // Two bursts of 2, 100 ms apart: the second finds the bucket refilled.
        #expect(Simulator.bucketDepth([0, 0, 100, 100], refillPerMillisecond: 0.1) == 2)
        #expect(Simulator.bucketDepth([], refillPerMillisecond: 0.1) == 0)
    }

    @Test func httpDatesAreFormattedAsIMFFixdate() {
        #expect(Simulator.httpDate(784_111_777_000) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(Simulator.httpDate(1_700_000_000_000) == "Tue, 14 Nov 2023 22:13:20 GMT")
    }
}

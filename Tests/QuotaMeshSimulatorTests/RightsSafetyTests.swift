import Testing
import QuotaMeshCore
@testable import QuotaMeshSimulator

/// The first promise, checked over many seeds: no window ever admits more than the limit, with concurrent
/// bursts on every node, loss, duplication and reordering, a partition, crash-restarts at random points
/// and skewed clocks, each drawn from the seed. Partitioned windows are held to the limit too: a node
/// spends only rights it holds, so the sides of a partition together spend at most the limit.
@Suite struct RightsSafetyTests {
    /// The faults and load of one run, drawn from its seed.
    static func configuration(seed: UInt64) -> SimulationConfiguration {
        var rng = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15)
        var configuration = SimulationConfiguration()
        configuration.seed = seed
        configuration.nodes = Int.random(in: 3...12, using: &rng)
        configuration.limit = Int64.random(in: 5...60, using: &rng)
        configuration.windowMillis = 2_000
        configuration.seconds = 12
        configuration.probes = 0
        configuration.demand = [1.0, 2.0, 5.0, 10.0][Int.random(in: 0..<4, using: &rng)]
        configuration.skewedDemand = Bool.random(using: &rng)
        configuration.loss = [0, 0.05, 0.2, 0.3][Int.random(in: 0..<4, using: &rng)]
        configuration.duplication = [0, 0.1, 0.2][Int.random(in: 0..<3, using: &rng)]
        configuration.crashes = Int.random(in: 0...3, using: &rng)
        configuration.downtimeMillis = Int64.random(in: 200...3_000, using: &rng)
        configuration.clockSkewMillis = [0, 5, 20, 40][Int.random(in: 0..<4, using: &rng)]
        configuration.priorityMix = Bool.random(using: &rng) ? (1, 0, 0) : (0.1, 0.6, 0.3)
        if Bool.random(using: &rng) {
            let start = Double.random(in: 1...6, using: &rng)
            configuration.partition = PartitionPlan(
                start: start, end: start + Double.random(in: 1...5, using: &rng),
                fraction: Double.random(in: 0.2...0.8, using: &rng))
        }
        return configuration
    }

    @Test(arguments: 0..<8)
    func noWindowEverAdmitsMoreThanTheLimit(batch: Int) async {
        for seed in UInt64(batch * 20 + 1)...UInt64(batch * 20 + 20) {
            let configuration = Self.configuration(seed: seed)
            let report = await onASimulationThread { var simulator = Simulator(configuration); return simulator.run() }
            let worst = max(report.maxAdmittedRatio, report.partitionMaxAdmittedRatio ?? 0)
            #expect(
                worst <= 1.0,
                "seed \(seed): \(worst) × the limit (nodes \(configuration.nodes), limit \(configuration.limit), loss \(configuration.loss), crashes \(configuration.crashes), skew \(configuration.clockSkewMillis), partition \(configuration.partition != nil))"
            )
            #expect(report.upstream429s == 0, "seed \(seed): \(report.upstream429s) answered 429")
            #expect(report.honestGraylistings == 0, "seed \(seed): an honest node's observations were graylisted")
        }
    }

    /// The same faults where the members outnumber a window's 50 or more calls, so that holders keep rights
    /// through the window's closing part for urgent calls (``QuotaLedger/closingKeepers(_:)``), which the runs
    /// above, at most 12 nodes, never reach.
    @Test(arguments: 0..<2)
    func noWindowEverAdmitsMoreThanTheLimitWhereRightsAreKeptThroughTheClose(batch: Int) async {
        for seed in UInt64(batch * 4 + 1)...UInt64(batch * 4 + 4) {
            var configuration = Self.configuration(seed: seed)
            var rng = SplitMix64(seed: seed)
            configuration.nodes = Int.random(in: 56...64, using: &rng)
            configuration.limit = Int64.random(in: 50...55, using: &rng)
            let report = await onASimulationThread { [configuration] in
                var simulator = Simulator(configuration)
                return simulator.run()
            }
            let worst = max(report.maxAdmittedRatio, report.partitionMaxAdmittedRatio ?? 0)
            #expect(worst <= 1.0, "seed \(seed): \(worst) × the limit (nodes \(configuration.nodes), limit \(configuration.limit))")
            #expect(report.upstream429s == 0, "seed \(seed): \(report.upstream429s) answered 429")
        }
    }
}

/// One lying vouched peer in a mesh of 5 and of 50 (issue 19): whatever it signs (absurd limits, resets and
/// consumption; rights it does not hold; a fork that shows each receiver a different gift), the cluster
/// never admits more than the limit and the honest nodes keep their parts of it. The liar makes no calls of
/// its own, so its own part of each window is lost: against the same mesh with no liar, the honest nodes
/// keep at least (N − 1) ÷ N of the utilization, less 5%.
@Suite struct LiarTests {
    func run(nodes: Int, liar: LiarKind?) async -> SimulationReport {
        var configuration = SimulationConfiguration()
        configuration.nodes = nodes
        configuration.seconds = 40
        configuration.demand = 2
        configuration.liar = liar
        configuration.probes = 0
        return await onASimulationThread { [configuration] in
            var simulator = Simulator(configuration)
            return simulator.run()
        }
    }

    @Test(arguments: [5, 50])
    func aLiarHoldingTheBreakerOpenIsIgnoredAfterOneOpenPeriod(nodes: Int) async {
        // The liar signs a breaker open for a year every round. A peer's opening holds the shared breaker
        // for the service's open time (30 s) from the start of its run; then one node probes, its success
        // contradicts the claim, and the liar's breaker claims stop counting. From the fifth 10 s window on,
        // the honest nodes spend as they would with no liar.
        var configuration = SimulationConfiguration()
        configuration.nodes = nodes
        configuration.seconds = 90
        configuration.demand = 2
        configuration.liar = .breaker
        configuration.probes = 0
        let report = await onASimulationThread { [configuration] in
            var simulator = Simulator(configuration)
            return simulator.run()
        }
        let later = report.windows.dropFirst(4)
        let accepted = later.reduce(0) { $0 + $1.accepted }
        let offered = later.reduce(0) { $0 + $1.offered }
        let fairShare = Double(nodes - 1) / Double(nodes)
        #expect(report.maxAdmittedRatio <= 1.0)
        // Its openings came right after calls of the honest nodes that found plenty left: the honest nodes
        // that saw three of them (most, within the run) graylist it, and no honest node is graylisted.
        #expect(report.liarGraylistings >= (nodes - 1) * 3 / 4, "N = \(nodes): \(report.liarGraylistings)")
        #expect(report.honestGraylistings == 0)
        #expect(offered > 0 && Double(accepted) >= 0.85 * fairShare * Double(offered), "N = \(nodes): \(accepted) of \(offered)")
    }

    @Test(arguments: [5, 50])
    func oneLiarCannotTakeTheMeshOver(nodes: Int) async {
        let honest = await run(nodes: nodes, liar: nil)
        #expect(honest.honestGraylistings == 0)
        let fairShare = Double(nodes - 1) / Double(nodes) * honest.utilization
        for kind in [LiarKind.claims, .overgive, .fork, .starve] {
            let report = await run(nodes: nodes, liar: kind)
            #expect(report.maxAdmittedRatio <= 1.0, "\(kind), N = \(nodes): \(report.maxAdmittedRatio) × the limit")
            #expect(report.upstream429s == 0, "\(kind), N = \(nodes)")
            #expect(
                report.utilization >= 0.95 * fairShare,
                "\(kind), N = \(nodes): utilization \(report.utilization), the honest nodes' part \(fairShare)")
            #expect(report.urgentSuccessRatio == 1, "\(kind), N = \(nodes)")
            #expect(report.honestGraylistings == 0, "\(kind), N = \(nodes)")
            if kind == .starve {
                #expect(report.liarGraylistings >= (nodes - 1) * 3 / 4, "N = \(nodes): \(report.liarGraylistings)")
            }
        }
    }
}

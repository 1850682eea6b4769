import ArgumentParser
import Foundation
import QuotaMeshCore
import QuotaMeshSimulator

/// `quotamesh simulate`: runs the deterministic network simulator over many real protocol cores.
struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Simulate a cluster in virtual time: convergence, overshoot, fairness, faults.",
        discussion: "The same flags and --seed always reproduce the same run. Build with -c release for large N.")

    @Option(help: "Number of nodes.") var nodes: Int = 10
    @Option(help: "Virtual seconds to run.") var seconds: Double = 60
    @Option(help: "Datagram loss probability (0-1).") var loss: Double = 0
    @Option(help: "Seed for every random choice.") var seed: UInt64 = 1
    @Option(help: "Total demand as a multiple of the upstream limit.") var demand: Double = 2
    @Option(help: "Datagram duplication probability (0-1).") var duplication: Double = 0
    @Option(help: "One-way latency range in ms, MIN-MAX (uniform, so packets reorder).") var latency: String = "1-20"
    @Flag(help: "Zipf-like demand: node i weighs 1/(i+1).") var skewed = false
    @Option(help: "Rotate the demand to other nodes at this fraction of the run (0-1).") var shiftAt: Double?
    @Option(help: "Each node's weight, e.g. 1,1,2 (repeated across the nodes); default 1.") var weights: String?
    @Option(help: "A node that goes idle at a fraction of the run, NODE:FRACTION, e.g. 2:0.5.") var idle: String?
    @Option(help: "The weight every node vouches for each node (repeated likewise); default what each claims.")
    var vouchedWeights: String?
    @Option(help: "Upstream limit per window.") var limit: Int64 = 100
    @Option(help: "Upstream window, e.g. 10s.") var window: String = "10s"
    @Option(help: "Upstream kind: fixed (window) or bucket (token bucket).") var upstream: String = "fixed"
    @Option(help: "The nodes' configured refill: window or continuous (default: continuous for a bucket upstream, window for a fixed one).")
    var refill: String?
    @Option(help: "A partition START-END[:FRACTION] in virtual seconds, e.g. 20-35:0.5.") var partition: String?
    @Option(help: "Crash-restart events (memory lost, state folder kept).") var crashes: Int = 0
    @Option(help: "A lying vouched peer (node 0, no calls of its own): claims, breaker, overgive, fork or starve.") var liar: String?
    @Option(help: "Per-node clock skew bound, e.g. 500ms.") var clockSkew: String = "0"
    @Option(help: "Convergence probes.") var probes: Int = 10
    @Option(help: "Gossip interval, e.g. 200ms.") var interval: String = "200ms"
    @Option(help: "Gossip fanout.") var fanout: Int = 3
    @Option(help: "Retransmit multiplier: pushes per record per node = this × ⌈log10(N+1)⌉.")
    var retransmit: Int = MeshConfiguration.defaultRetransmitMultiplier
    @Option(help: "Send an anti-entropy digest every this many rounds.")
    var digestEvery: Int = MeshConfiguration.defaultAntiEntropyEveryRounds
    @Option(help: "Task mix urgent,normal,low (shares).") var mix: String = "0.1,0.6,0.3"
    @Option(help: "Priority reserves urgent,normal,low: the fraction of the limit each priority leaves to those above it.")
    var reserves: String = "0,0.1,0.5"
    @Flag(help: "Use real Ed25519 signatures (slow) instead of the simulated MAC.") var realSignatures = false
    @Flag(help: "Give every node its own copy of each record, as real nodes have, instead of one shared copy (more memory; the same results).")
    var ownRecords = false
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard nodes >= 1, nodes <= 100_000 else { throw ValidationError("--nodes must be 1-100000") }
        guard seconds > 0, seconds <= 86_400 else { throw ValidationError("--seconds must be in (0, 86400]") }
        guard (0...1).contains(loss), (0...1).contains(duplication) else {
            throw ValidationError("--loss and --duplication are probabilities (0-1)")
        }
        guard demand >= 0 else { throw ValidationError("--demand must be >= 0") }
        guard parseLatency() != nil else { throw ValidationError("--latency must be MIN-MAX in ms, e.g. 1-20") }
        guard limit >= 1 else { throw ValidationError("--limit must be >= 1") }
        guard let windowMillis = DurationText.milliseconds(window), windowMillis >= 1000 else {
            throw ValidationError("--window must be a duration of at least 1s")
        }
        guard UpstreamKind(rawValue: upstream) != nil else { throw ValidationError("--upstream must be fixed or bucket") }
        if let refill, ServicePolicy.Refill(rawValue: refill) == nil {
            throw ValidationError("--refill must be window or continuous")
        }
        if let liar, LiarKind(rawValue: liar) == nil { throw ValidationError("--liar must be claims, breaker, overgive, fork or starve") }
        if partition != nil, parsePartition() == nil {
            throw ValidationError("--partition must be START-END[:FRACTION], e.g. 20-35:0.5")
        }
        guard DurationText.milliseconds(clockSkew) != nil else { throw ValidationError("--clock-skew must be a duration") }
        guard let intervalMillis = DurationText.milliseconds(interval), intervalMillis >= 10 else {
            throw ValidationError("--interval must be a duration of at least 10ms")
        }
        guard fanout >= 1 else { throw ValidationError("--fanout must be >= 1") }
        guard retransmit >= 1 else { throw ValidationError("--retransmit must be >= 1") }
        guard digestEvery >= 1 else { throw ValidationError("--digest-every must be >= 1") }
        guard parseMix() != nil else { throw ValidationError("--mix must be three non-negative shares, e.g. 0.1,0.6,0.3") }
        guard parseReserves() != nil else {
            throw ValidationError("--reserves must be three fractions 0-1, urgent ≤ normal ≤ low, e.g. 0,0.1,0.5")
        }
        if let shiftAt, !(0...1).contains(shiftAt) { throw ValidationError("--shift-at must be 0-1") }
        if let idle, parseIdle(idle) == nil { throw ValidationError("--idle must be NODE:FRACTION, e.g. 2:0.5") }
        for (flag, text) in [("--weights", weights), ("--vouched-weights", vouchedWeights)] {
            guard let text else { continue }
            guard let list = Self.weightList(text) else {
                throw ValidationError("\(flag) must be numbers from 0.001 to 1000 separated by commas, e.g. 1,1,2")
            }
            _ = list
        }
    }

    func parseLatency() -> ClosedRange<Int64>? {
        let parts = latency.split(separator: "-").compactMap { Int64($0) }
        guard parts.count == 2, parts[0] >= 0, parts[0] <= parts[1] else { return nil }
        return parts[0]...parts[1]
    }

    func parsePartition() -> PartitionPlan? {
        guard let partition else { return nil }
        let fractionSplit = partition.split(separator: ":")
        let range = fractionSplit[0].split(separator: "-").compactMap { Double($0) }
        let fraction = fractionSplit.count > 1 ? Double(fractionSplit[1]) : 0.5
        guard range.count == 2, range[0] >= 0, range[0] < range[1], let fraction, fraction > 0, fraction < 1 else {
            return nil
        }
        return PartitionPlan(start: range[0], end: range[1], fraction: fraction)
    }

    func parseMix() -> (Double, Double, Double)? {
        let parts = mix.split(separator: ",").compactMap { Double($0) }
        guard parts.count == 3, parts.allSatisfy({ $0 >= 0 }), parts.reduce(0, +) > 0 else { return nil }
        return (parts[0], parts[1], parts[2])
    }

    func parseReserves() -> Reserves? {
        let parts = reserves.split(separator: ",").compactMap { Double($0) }
        guard parts.count == 3, parts.allSatisfy({ (0...1).contains($0) }), parts[0] <= parts[1], parts[1] <= parts[2] else {
            return nil
        }
        return Reserves(urgent: parts[0], normal: parts[1], low: parts[2])
    }

    /// `2:0.5` as (node 2, half-way), `nil` for anything else.
    func parseIdle(_ text: String) -> (node: Int, at: Double)? {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let node = Int(parts[0]), (0..<nodes).contains(node), let at = Double(parts[1]),
            (0...1).contains(at)
        else { return nil }
        return (node, at)
    }

    /// `1,1,2` as weights, `nil` when any is not a number from 0.001 to 1000.
    static func weightList(_ text: String) -> [Double]? {
        let values = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0.flatMap(Weight.init) != nil }) else { return nil }
        return values.compactMap { $0 }
    }

    func makeConfiguration() -> SimulationConfiguration {
        var configuration = SimulationConfiguration()
        configuration.nodes = nodes
        configuration.seconds = seconds
        configuration.loss = loss
        configuration.seed = seed
        configuration.demand = demand
        configuration.duplication = duplication
        configuration.latencyMillis = parseLatency() ?? 1...20
        configuration.skewedDemand = skewed
        configuration.demandShiftAt = shiftAt
        configuration.idle = idle.flatMap(parseIdle)
        configuration.weights = weights.flatMap(Self.weightList)
        configuration.vouchedWeights = vouchedWeights.flatMap(Self.weightList)
        configuration.limit = limit
        configuration.windowMillis = DurationText.milliseconds(window) ?? 10_000
        configuration.upstream = UpstreamKind(rawValue: upstream) ?? .fixedWindow
        configuration.refill = refill.flatMap(ServicePolicy.Refill.init(rawValue:))
        configuration.partition = parsePartition()
        configuration.crashes = crashes
        configuration.liar = liar.flatMap(LiarKind.init(rawValue:))
        configuration.clockSkewMillis = DurationText.milliseconds(clockSkew) ?? 0
        configuration.probes = probes
        configuration.gossipIntervalMillis = DurationText.milliseconds(interval) ?? 200
        configuration.fanout = fanout
        configuration.retransmitMultiplier = retransmit
        configuration.antiEntropyEveryRounds = digestEvery
        if let (urgent, normal, low) = parseMix() { configuration.priorityMix = (urgent, normal, low) }
        if let reserves = parseReserves() { configuration.reserves = reserves }
        configuration.realSignatures = realSignatures
        configuration.shareRecords = !ownRecords
        return configuration
    }

    func run() async throws {
        var configuration = makeConfiguration()
        if !json {
            configuration.progress = { fraction in
                FileHandleWriter.writeStandardError(String(format: "\rsimulating: %3.0f%%", fraction * 100))
            }
        }
        var simulator = Simulator(configuration)
        // Diagnosis: QUOTAMESH_SIM_SAMPLE=MS prints pacing inputs every MS virtual ms to standard error.
        simulator.sampleEvery = Int64(ProcessInfo.processInfo.environment["QUOTAMESH_SIM_SAMPLE"] ?? "") ?? 0
        simulator.onSample = { FileHandleWriter.writeStandardError($0 + "\n") }
        // With QUOTAMESH_SIM_SAMPLE_REMAINING=1 the samples show every node's remaining estimate, and leave
        // the run as it is without sampling.
        simulator.sampleRemaining = ProcessInfo.processInfo.environment["QUOTAMESH_SIM_SAMPLE_REMAINING"] != nil
        // With QUOTAMESH_SIM_SAMPLE_RIGHTS=1 they show the rights held across the mesh and the tasks waiting.
        simulator.sampleRights = ProcessInfo.processInfo.environment["QUOTAMESH_SIM_SAMPLE_RIGHTS"] != nil
        // Diagnosis: QUOTAMESH_SIM_PROBES=1 prints, every round, how many nodes each spreading probe misses.
        if ProcessInfo.processInfo.environment["QUOTAMESH_SIM_PROBES"] != nil {
            simulator.onProbeCheck = { FileHandleWriter.writeStandardError($0 + "\n") }
        }
        // Diagnosis: QUOTAMESH_SIM_GRANTS=1 prints every grant with the node's pacing inputs.
        if ProcessInfo.processInfo.environment["QUOTAMESH_SIM_GRANTS"] != nil {
            simulator.onGrant = { FileHandleWriter.writeStandardError($0 + "\n") }
        }
        // Diagnosis: QUOTAMESH_SIM_URGENT=1 prints every refusal of an urgent task, and at the end every urgent
        // task counted where rights existed that waited more than 30 ms for its grant.
        if ProcessInfo.processInfo.environment["QUOTAMESH_SIM_URGENT"] != nil {
            simulator.onUrgentDenial = { FileHandleWriter.writeStandardError($0 + "\n") }
        }
        let report = simulator.run()
        if ProcessInfo.processInfo.environment["QUOTAMESH_SIM_TRACE"] != nil {
            FileHandleWriter.writeStandardError("bytes by kind: \(simulator.bytesByKind), packets: \(simulator.packetsByKind), signatures: \(simulator.simulated?.signatures ?? 0), accepted: \(simulator.recordsAccepted), stale: \(simulator.recordsStale)\n")
            for (window, details) in simulator.denialDetails.sorted(by: { $0.key < $1.key }) {
                FileHandleWriter.writeStandardError("window \(window): \(details.sorted { $0.key < $1.key })\n")
            }
            for (window, details) in simulator.grantDetails.sorted(by: { $0.key < $1.key }) {
                FileHandleWriter.writeStandardError("grants \(window): \(details.sorted { $0.key < $1.key })\n")
            }
            let seconds = simulator.callsPerSecond.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value.sent)/\($0.value.rejected)" }
            FileHandleWriter.writeStandardError("calls/429s per second: \(seconds.joined(separator: " "))\n")
        }
        if json {
            print(try renderJSON(SimulationOutput.json(report)))
        } else {
            FileHandleWriter.writeStandardError("\rsimulating: 100%\n")
            print(SimulationOutput.table(report))
        }
    }
}

/// Renders a `SimulationReport`.
enum SimulationOutput {
    static func number(_ value: Double, digits: Int = 4) -> Any {
        value.isFinite ? (value * pow(10, Double(digits))).rounded() / pow(10, Double(digits)) : NSNull()
    }

    static func json(_ report: SimulationReport) -> [String: Any] {
        var tasks: [String: Any] = [:]
        for priority in Priority.allCases {
            let entry = report.tasks[priority] ?? (0, 0)
            tasks[priority.rawValue] = ["created": entry.created, "succeeded": entry.succeeded]
        }
        var object = unweightedJSON(report, tasks: tasks)
        if let shares = report.nodeShares, let weighted = report.weightedShares {
            object["node_shares"] = shares.map { number($0) }
            object["weighted_shares"] = weighted.map { number($0) }
        }
        return object
    }

    static func unweightedJSON(_ report: SimulationReport, tasks: [String: Any]) -> [String: Any] {
        [
            "nodes": report.nodes, "seconds": report.seconds, "seed": NSNumber(value: report.seed),
            "convergence_rounds_p50": number(report.convergenceRoundsP50),
            "convergence_rounds_p99": number(report.convergenceRoundsP99),
            "convergence_rounds_theory": number(report.theoreticalRounds),
            "probes_converged": report.probesConverged, "probes": report.probes,
            "max_admitted_ratio": number(report.maxAdmittedRatio),
            "partition_max_admitted_ratio": report.partitionMaxAdmittedRatio.map { number($0) } ?? NSNull(),
            "utilization": number(report.utilization), "jain_index": number(report.jainIndex),
            "maxmin_index": number(report.maxMinIndex), "maxmin_worst_ratio": number(report.maxMinWorstRatio),
            "urgent_success_ratio": number(report.urgentSuccessRatio),
            "urgent_wait_p99_ms": number(report.urgentWaitP99Millis, digits: 1),
            "urgent_wait_p99_while_rights_left_ms": number(report.urgentWaitP99WhileRightsLeftMillis, digits: 1),
            "urgent_wait_p99_where_rights_exist_ms": report.urgentWaitP99WhereRightsExistMillis.map { number($0, digits: 1) } ?? NSNull(),
            "urgent_acquire_wait_p99_where_rights_exist_ms": report.urgentAcquireWaitP99WhereRightsExistMillis.map { number($0, digits: 1) } ?? NSNull(),
            "tasks": tasks, "upstream_calls": report.upstreamCalls, "upstream_429s": report.upstream429s,
            "bucket_depth_ratio": (report.bucketDepthRatio * 1000).rounded() / 1000,
            "graylistings": ["liar": report.liarGraylistings, "honest": report.honestGraylistings],
            "denials": report.denials, "bytes_per_node_per_s": number(report.bytesPerNodePerSecond, digits: 1),
            "verifications_per_node_per_s": number(report.verificationsPerNodePerSecond, digits: 1),
            "datagrams_delivered": report.datagramsDelivered, "datagrams_lost": report.datagramsLost,
            "wall_s": number(report.wallSeconds, digits: 3),
            "windows": report.windows.map { ["sent": $0.sent, "accepted": $0.accepted, "offered": $0.offered] },
        ]
    }

    static func table(_ report: SimulationReport) -> String {
        func f(_ value: Double, _ digits: Int = 3) -> String { value.isFinite ? String(format: "%.\(digits)f", value) : "-" }
        var rows: [(String, String)] = [
            ("nodes / seconds / seed", "\(report.nodes) / \(f(report.seconds, 0)) / \(report.seed)"),
            ("convergence rounds p50 / p99", "\(f(report.convergenceRoundsP50, 1)) / \(f(report.convergenceRoundsP99, 1))  (theory \(f(report.theoreticalRounds, 1)); \(report.probesConverged)/\(report.probes) probes)"),
            ("max admitted per window / limit", f(report.maxAdmittedRatio)),
        ]
        if let partition = report.partitionMaxAdmittedRatio {
            rows.append(("  during partition", f(partition)))
        }
        rows += [
            ("utilization", f(report.utilization)),
            ("jain index", f(report.jainIndex)),
            ("max-min index / worst node's share", "\(f(report.maxMinIndex)) / \(f(report.maxMinWorstRatio))"),
            ("urgent success ratio", f(report.urgentSuccessRatio)),
            ("urgent wait p99", "\(f(report.urgentWaitP99Millis, 0)) ms"),
            ("urgent wait p99, windows not spent", "\(f(report.urgentWaitP99WhileRightsLeftMillis, 0)) ms"),
            ("urgent wait p99 where rights exist", report.urgentWaitP99WhereRightsExistMillis.map { "\(f($0, 0)) ms" } ?? "-"),
            ("urgent acquire wait p99 where rights exist", report.urgentAcquireWaitP99WhereRightsExistMillis.map { "\(f($0, 0)) ms" } ?? "-"),
            ("upstream calls / 429s", "\(report.upstreamCalls) / \(report.upstream429s)"),
            ("denials (retry at T)", "\(report.denials)"),
            ("bytes per node per s", f(report.bytesPerNodePerSecond, 0)),
            ("verifications per node per s", f(report.verificationsPerNodePerSecond, 0)),
            ("datagrams delivered / lost", "\(report.datagramsDelivered) / \(report.datagramsLost)"),
            ("wall time", "\(f(report.wallSeconds, 2)) s"),
        ]
        for priority in Priority.allCases {
            let entry = report.tasks[priority] ?? (0, 0)
            rows.append(("tasks \(priority.rawValue) succeeded/created", "\(entry.succeeded)/\(entry.created)"))
        }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }
}

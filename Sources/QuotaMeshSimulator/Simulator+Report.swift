import QuotaMeshCore
import QuotaMeshCrypto

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The run's report: windows, utilization, fairness, urgent waits, convergence and cost.
extension Simulator {
    func report(wallSeconds: Double) -> SimulationReport {
        let interval = Double(configuration.gossipIntervalMillis)
        let rounds = probes.compactMap { probe -> Double? in
            guard let signed = probe.signedAt, let converged = probe.convergedAt else { return nil }
            return Double(converged - signed) / interval
        }.sorted()
        let n = Double(configuration.nodes)
        let fanout = Double(configuration.fanout)
        let theory = n > 1 ? log(n) / log(fanout) + log(n) / fanout : 0

        let firstWindow = upstreamWindow(start) + 1
        let lastWindow = upstreamWindow(endTime) - 1
        var worst = 0.0
        var worstPartition: Double?
        var offered = 0.0
        var accepted = 0.0
        var windowRows: [(sent: Int, accepted: Int, offered: Int)] = []
        if lastWindow >= firstWindow {
            for window in firstWindow...lastWindow {
                windowRows.append((
                    windowSent[window, default: 0], windowAccepted[window, default: 0],
                    min(backlogAtWindowStart[window, default: 0] + windowCreated[window, default: 0], Int(configuration.limit))
                ))
                let sent = Double(windowSent[window, default: 0]) / Double(configuration.limit)
                if overlapsPartition(window) {
                    worstPartition = max(worstPartition ?? 0, sent)
                } else {
                    worst = max(worst, sent)
                }
                let demandInWindow = Double(backlogAtWindowStart[window, default: 0] + windowCreated[window, default: 0])
                offered += min(demandInWindow, Double(configuration.limit))
                accepted += Double(windowAccepted[window, default: 0])
            }
        }
        var perPriority: [Priority: (created: Int, succeeded: Int)] = [:]
        var urgentWaits: [Double] = []
        var urgentWaitsWhileRightsLeft: [Double] = []
        var urgentWaitsWhereRightsExist: [Double] = []
        var urgentAcquireWaitsWhereRightsExist: [Double] = []
        let cutoff = endTime - 2 * configuration.windowMillis
        var urgentCounted = 0
        var urgentSucceeded = 0
        // Fairness counts tasks created before the last two windows, as urgent success does: a task made
        // at the run's end had no time to succeed, and at a node with little demand it would be most of it.
        var createdBeforeCutoff = [Int](repeating: 0, count: nodes.count)
        var succeededBeforeCutoff = [Int](repeating: 0, count: nodes.count)
        for task in tasks {
            if task.created < cutoff {
                createdBeforeCutoff[task.node] += 1
                if task.succeeded != nil { succeededBeforeCutoff[task.node] += 1 }
            }
            var entry = perPriority[task.priority] ?? (0, 0)
            entry.created += 1
            if task.succeeded != nil { entry.succeeded += 1 }
            perPriority[task.priority] = entry
            if task.priority == .urgent && task.created < cutoff {
                urgentCounted += 1
                if let done = task.succeeded {
                    urgentSucceeded += 1
                    urgentWaits.append(Double(done - task.created))
                    if windowSent[upstreamWindow(task.created), default: 0] < Int(configuration.limit) {
                        urgentWaitsWhileRightsLeft.append(Double(done - task.created))
                    }
                    if rightsExisted(whileWaiting: task.created, until: done) {
                        urgentWaitsWhereRightsExist.append(Double(done - task.created))
                        urgentAcquireWaitsWhereRightsExist.append(Double((task.granted ?? done) - task.created))
                        if let onUrgentDenial, (task.granted ?? done) - task.created > 30 {
                            let window = upstreamWindow(task.created)
                            let offset = task.created - window * configuration.windowMillis
                            let spent = windowSpentAt[window].map { "\($0 - window * configuration.windowMillis) ms" } ?? "never"
                            onUrgentDenial("urgent task at node \(task.node), \(offset) ms into window \(window): granted after \((task.granted ?? done) - task.created) ms; the window's last right spent at \(spent)")
                        }
                    }
                }
            }
        }
        urgentWaits.sort()
        urgentWaitsWhileRightsLeft.sort()
        urgentWaitsWhereRightsExist.sort()
        urgentAcquireWaitsWhereRightsExist.sort()
        let seconds = configuration.seconds
        // Weighted where weights are set: each node against its weighted max-min share (effective weights).
        let effective = configuration.weights == nil && configuration.vouchedWeights == nil ? nil
            : (0..<nodes.count).map { index -> Double in
                let weights = configuration.weights(of: index)
                return min(weights.claimed, weights.vouched).value
            }
        let fairness = Self.maxMinFairness(successes: succeededBeforeCutoff, demands: createdBeforeCutoff, weights: effective)
        var report = SimulationReport(
            nodes: configuration.nodes, seconds: seconds, seed: configuration.seed,
            convergenceRoundsP50: Self.percentile(rounds, 0.5), convergenceRoundsP99: Self.percentile(rounds, 0.99),
            probesConverged: rounds.count, probes: probes.count, theoreticalRounds: theory,
            maxAdmittedRatio: worst, partitionMaxAdmittedRatio: worstPartition,
            utilization: offered > 0 ? accepted / offered : 1,
            jainIndex: FairShare.jainIndex(nodes.map { Double($0.successes) }),
            maxMinIndex: fairness.index, maxMinWorstRatio: fairness.worst,
            urgentSuccessRatio: urgentCounted > 0 ? Double(urgentSucceeded) / Double(urgentCounted) : 1,
            urgentWaitP99Millis: Self.percentile(urgentWaits, 0.99), tasks: perPriority,
            upstreamCalls: upstreamCalls, upstream429s: upstream429s, denials: denials,
            bytesPerNodePerSecond: Double(bytesSent) / n / seconds,
            verificationsPerNodePerSecond: Double(simulated?.verifications ?? 0) / n / seconds,
            datagramsDelivered: delivered, datagramsLost: lost, wallSeconds: wallSeconds, windows: windowRows)
        report.urgentWaitP99WhileRightsLeftMillis = Self.percentile(urgentWaitsWhileRightsLeft, 0.99)
        report.urgentWaitP99WhereRightsExistMillis = urgentWaitsWhereRightsExist.isEmpty
            ? nil : Self.percentile(urgentWaitsWhereRightsExist, 0.99)
        report.urgentAcquireWaitP99WhereRightsExistMillis = urgentAcquireWaitsWhereRightsExist.isEmpty
            ? nil : Self.percentile(urgentAcquireWaitsWhereRightsExist, 0.99)
        if let effective {
            let total = max(1, succeededBeforeCutoff.reduce(0, +))
            report.nodeShares = succeededBeforeCutoff.map { Double($0) / Double(total) }
            report.weightedShares = WeightedFairShare.allocate(
                capacity: Double(total), needs: createdBeforeCutoff.map(Double.init), weights: effective
            ).map { $0 / Double(total) }
        }
        report.liarGraylistings = liarGraylistings
        report.honestGraylistings = honestGraylistings
        report.bucketDepthRatio = Self.bucketDepth(
            upstreamCallTimes, refillPerMillisecond: Double(configuration.limit) / Double(configuration.windowMillis))
            / Double(configuration.limit)
        return report
    }

    func overlapsPartition(_ window: Int64) -> Bool {
        guard let plan = configuration.partition else { return false }
        let windowStart = window * configuration.windowMillis
        let windowEnd = windowStart + configuration.windowMillis
        let from = start + Int64(plan.start * 1000)
        // A window just after the heal still pays for what each side spent.
        let to = start + Int64(plan.end * 1000) + configuration.windowMillis
        return windowStart < to && windowEnd > from
    }

    /// Each node's successful calls against its max-min fair share of them all (the calls water-filled
    /// over the nodes' demands, in tasks): Jain's index over the ratios, and the least ratio. Nodes with
    /// no share (no demand) are left out; with none at all both are 1.
    /// The smallest bucket refilled at `refillPerMillisecond` that admits calls at `times` (sorted): the
    /// most calls any stretch holds beyond what refilled during it, max over i ≥ j of
    /// (i − j + 1) − refill × (tᵢ − tⱼ).
    static func bucketDepth(_ times: [Int64], refillPerMillisecond refill: Double) -> Double {
        var deepest = 0.0
        var lowest = Double.infinity
        for (index, time) in times.enumerated() {
            lowest = min(lowest, Double(index) - refill * Double(time))
            deepest = max(deepest, Double(index + 1) - refill * Double(time) - lowest)
        }
        return deepest
    }

    static func maxMinFairness(successes: [Int], demands: [Int], weights: [Double]? = nil) -> (index: Double, worst: Double) {
        let capacity = Double(successes.reduce(0, +))
        let shares = weights.map { WeightedFairShare.allocate(capacity: capacity, needs: demands.map(Double.init), weights: $0) }
            ?? FairShare.maxMin(capacity: capacity, needs: demands.map(Double.init))
        let ratios = zip(successes, shares).compactMap { success, share in share > 0 ? Double(success) / share : nil }
        guard !ratios.isEmpty else { return (1, 1) }
        return (FairShare.jainIndex(ratios), ratios.min() ?? 1)
    }

    static func percentile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return .nan }
        let rank = min(sorted.count - 1, Int((q * Double(sorted.count)).rounded(.up)) - 1)
        return sorted[max(0, rank)]
    }

    /// IMF-fixdate for a Unix-ms time, as the upstream's `Date` header.
    static func httpDate(_ millis: Int64) -> String { HTTPDate.imfFixdate(millis) }
}

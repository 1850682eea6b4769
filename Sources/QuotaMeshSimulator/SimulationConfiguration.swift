import QuotaMeshCore

/// How the simulated upstream enforces its quota.
public enum UpstreamKind: String, Sendable, CaseIterable {
    /// `limit` calls per fixed window of `windowMillis`, resetting at window edges.
    case fixedWindow = "fixed"
    /// A token bucket of `limit` tokens refilled at `limit` per `windowMillis`.
    case tokenBucket = "bucket"
}

/// What a lying vouched peer (node 0, which then makes no calls of its own) signs, once a gossip round, with
/// valid signatures: the statements a liar may make, not malformed bytes.
public enum LiarKind: String, Sendable, CaseIterable {
    /// A limit and remaining of 10¹² with a reset a year ahead and a consumption of 10¹² in a window ending
    /// a year ahead, in one record.
    case claims
    /// A breaker open for a year, signed again every round.
    case breaker
    /// A rights ledger giving each of up to 12 peers a thousand rights it does not hold.
    case overgive
    /// A fork: each round a new ledger giving its whole part to a different peer and taking back what the
    /// last one gave, so that each receiver alone sees balanced books.
    case fork
    /// Observations that the current window is spent (remaining 0, the real limit and reset), signed again
    /// every round: believed, they would stop every node until the reset, window after window.
    case starve
}

/// A network partition: nodes `0..<(fraction × N)` on one side, the rest on the other, from `start` to
/// `end` (seconds of virtual time).
public struct PartitionPlan: Sendable, Hashable {
    /// When the partition begins (virtual seconds).
    public var start: Double
    /// When it heals (virtual seconds).
    public var end: Double
    /// The fraction of nodes on the first side.
    public var fraction: Double

    /// Creates a plan.
    public init(start: Double, end: Double, fraction: Double = 0.5) {
        self.start = start
        self.end = end
        self.fraction = fraction
    }
}

/// Everything that defines a simulation run; the same configuration and seed always give the same run.
public struct SimulationConfiguration: Sendable {
    /// Number of nodes.
    public var nodes = 10
    /// Virtual seconds to run.
    public var seconds = 60.0
    /// Seeds every random choice.
    public var seed: UInt64 = 1
    /// Probability that a datagram is lost.
    public var loss = 0.0
    /// Probability that a datagram is delivered twice.
    public var duplication = 0.0
    /// One-way latency, drawn uniformly (so packets also reorder), in ms.
    public var latencyMillis: ClosedRange<Int64> = 1...20
    /// Total demand as a multiple of the upstream limit.
    public var demand = 2.0
    /// Zipf-like demand across nodes (node i weighs 1/(i+1)) instead of equal demand.
    public var skewedDemand = false
    /// Each node's configured weight (claimed in its records), the list repeated across the nodes; `nil`
    /// for 1 everywhere.
    public var weights: [Double]?
    /// The weight every node vouches for each node, repeated likewise; `nil` to vouch what each claims.
    public var vouchedWeights: [Double]?

    /// Node `index`'s claimed and vouched weights.
    func weights(of index: Int) -> (claimed: Weight, vouched: Weight) {
        let claimed = weights.flatMap { $0.isEmpty ? nil : Weight($0[index % $0.count]) } ?? .one
        let vouched = vouchedWeights.flatMap { $0.isEmpty ? nil : Weight($0[index % $0.count]) } ?? claimed
        return (claimed, vouched)
    }
    /// When (fraction of the run) the demand weights rotate to other nodes; `nil` for never.
    public var demandShiftAt: Double?
    /// A node whose demand stops at a fraction of the run (it goes idle); `nil` for none.
    public var idle: (node: Int, at: Double)?
    /// Shares of tasks by priority (urgent, normal, low).
    public var priorityMix: (urgent: Double, normal: Double, low: Double) = (0.1, 0.6, 0.3)
    /// The upstream's limit per window.
    public var limit: Int64 = 100
    /// The upstream's window.
    public var windowMillis: Int64 = 10_000
    /// How the upstream enforces.
    public var upstream = UpstreamKind.fixedWindow
    /// How the nodes are configured to expect the limit back (`refill`): `nil` follows the upstream (a
    /// token bucket refills continuously, a fixed window at its reset).
    public var refill: ServicePolicy.Refill?
    /// Upstream round-trip time, in ms.
    public var upstreamLatencyMillis: Int64 = 20
    /// An optional partition.
    public var partition: PartitionPlan?
    /// Crash-restart events: a random node loses its memory (keeping its state folder) and restarts.
    public var crashes = 0
    /// How long a crashed node stays down, in ms.
    public var downtimeMillis: Int64 = 2_000
    /// Each node's clock is off by a uniform draw in ±`clockSkewMillis`.
    public var clockSkewMillis: Int64 = 0
    /// Convergence probes: observations made at one node whose spread is timed in rounds.
    public var probes = 10
    /// Use real Ed25519 (slow, exact) instead of the simulated MAC.
    public var realSignatures = false
    /// Whether the nodes hold one shared copy of each record (`SharedRecords`) instead of one each. It
    /// changes nothing but memory and time.
    public var shareRecords = true
    /// Gossip round interval.
    public var gossipIntervalMillis: Int64 = 200
    /// Gossip fanout.
    public var fanout = 3
    /// Pushes per record per node: this × ⌈log10(N + 1)⌉ (memberlist's retransmit multiplier).
    public var retransmitMultiplier = MeshConfiguration.defaultRetransmitMultiplier
    /// An anti-entropy digest every this many rounds.
    public var antiEntropyEveryRounds = MeshConfiguration.defaultAntiEntropyEveryRounds
    /// Priority reserves and burst for the simulated service.
    public var reserves = Reserves.standardReserves
    /// The burst fraction for the simulated service.
    public var burstFraction = 0.1
    /// A lying peer (node 0), if any.
    public var liar: LiarKind?
    /// Called now and then with the fraction done.
    public var progress: (@Sendable (Double) -> Void)?

    /// The defaults.
    public init() {}
}

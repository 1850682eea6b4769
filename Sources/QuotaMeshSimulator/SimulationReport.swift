import QuotaMeshCore
import QuotaMeshCrypto

/// What one simulation run measured.
public struct SimulationReport: Sendable {
    /// The configuration's node count, seconds and seed.
    public var nodes: Int
    public var seconds: Double
    public var seed: UInt64
    /// Gossip rounds until every live node held a probe observation, median and 99th percentile.
    public var convergenceRoundsP50: Double
    public var convergenceRoundsP99: Double
    /// Probes that reached every live node before the run ended, and all probes.
    public var probesConverged: Int
    public var probes: Int
    /// Epidemic theory's estimate for push gossip: log_fanout(N) + ln(N)/fanout rounds.
    public var theoreticalRounds: Double
    /// Calls sent upstream in the worst window ÷ the limit (outside any partition).
    public var maxAdmittedRatio: Double
    /// The smallest bucket that, refilled at `limit` per window, would have admitted every call sent
    /// upstream, ÷ the limit: at most 1 means a token bucket of the limit never refuses one (the worst
    /// stretch of any length sent at most the limit plus what refilled meanwhile).
    public var bucketDepthRatio: Double = 0
    /// Times a node graylisted the liar's observations and breaker claims, and an honest node's.
    public var liarGraylistings = 0
    public var honestGraylistings = 0
    /// The same, over windows that overlap the partition.
    public var partitionMaxAdmittedRatio: Double?
    /// Successful upstream calls ÷ min(offered, limit), over full windows.
    public var utilization: Double
    /// Jain's index over per-node successful calls.
    public var jainIndex: Double
    /// How close the per-node successful calls come to a max-min fair division of them (water-filled
    /// over each node's tasks, both counted for tasks created before the last two windows): Jain's index
    /// over each node's calls ÷ its max-min share, 1 when every node got exactly its share. Under equal
    /// demand it tells the same as `jainIndex`; under unequal demand it is the one to read (a node that
    /// asked for little is not short-changed by getting little).
    public var maxMinIndex: Double
    /// The least any node got of its max-min share (its calls ÷ its share), over nodes with a share.
    public var maxMinWorstRatio: Double
    /// Urgent tasks that succeeded ÷ urgent tasks (created before the last two windows).
    public var urgentSuccessRatio: Double
    /// Urgent time to success, 99th percentile (ms).
    public var urgentWaitP99Millis: Double
    /// The 99th percentile of the wait of urgent tasks created in windows the cluster did not spend in full
    /// (rights were left somewhere all along), in ms.
    public var urgentWaitP99WhileRightsLeftMillis: Double = 0
    /// The 99th percentile of the wait of urgent tasks while rights existed: created where a grant may be
    /// spent (not in a window's closing edge nor before its opening lead), and served before the window's
    /// last right was spent anywhere, or never served in a window the mesh left unspent. In ms; `nil`
    /// when no task qualifies. (Fixed windows: with a continuous refill, rights unlocked later also count.)
    public var urgentWaitP99WhereRightsExistMillis: Double? = nil
    /// The same tasks' wait for their grant (not for the upstream's answer, which takes its own latency on
    /// top), 99th percentile in ms: what the mesh itself adds to an urgent call while rights exist.
    public var urgentAcquireWaitP99WhereRightsExistMillis: Double? = nil
    /// Where weights are set: each node's part of the tasks that succeeded (before the last two windows),
    /// and its weighted max-min share of them by demand and effective weight.
    public var nodeShares: [Double]? = nil
    public var weightedShares: [Double]? = nil
    /// Tasks per priority and how many succeeded.
    public var tasks: [Priority: (created: Int, succeeded: Int)]
    /// Upstream calls and 429s.
    public var upstreamCalls: Int
    public var upstream429s: Int
    /// Denials the agents were given ("not now, retry at T").
    public var denials: Int
    /// Bytes sent per node per virtual second.
    public var bytesPerNodePerSecond: Double
    /// Signature verifications per node per virtual second.
    public var verificationsPerNodePerSecond: Double
    /// Datagrams delivered and lost.
    public var datagramsDelivered: Int
    public var datagramsLost: Int
    /// Wall-clock seconds the run took.
    public var wallSeconds: Double
    /// Per full window: calls sent upstream, calls it accepted, and calls offered (capped at the limit).
    public var windows: [(sent: Int, accepted: Int, offered: Int)] = []
}

import CoreMetrics
import Prometheus
import QuotaMeshCore

/// The node's metrics, recorded through swift-metrics into a Prometheus registry of this node's own (so
/// that several nodes in one process, as in tests, keep separate counts) and rendered at `/metrics`.
///
/// Counters and histograms move as events happen; gauges (remaining, consumption, queue depth, peers,
/// lag) are set from the node's state when the registry is rendered.
final class NodeMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        ]
        self.factory = factory
    }

    private func count(_ label: String, _ dimensions: [(String, String)] = [], by amount: Int = 1) {
        Counter(label: label, dimensions: dimensions, factory: factory).increment(by: amount)
    }

    private func gauge(_ label: String, _ dimensions: [(String, String)] = [], _ value: Double) {
        Gauge(label: label, dimensions: dimensions, factory: factory).record(value)
    }

    /// An acquire was answered: a grant or a denial (by reason), and how long the agent waited.
    func acquired(_ request: AcquireRequest, decision: AcquireDecision, waited: Duration) {
        // Unknown services get no series of their own: any name an agent makes up would otherwise add one.
        let service = ("service", decision.reason == .unknownService ? "_unknown" : request.service)
        let priority = ("priority", request.priority.rawValue)
        if decision.granted {
            count("quotamesh_acquire_grants_total", [service, priority])
        } else {
            count("quotamesh_acquire_denials_total", [service, priority, ("reason", decision.reason?.rawValue ?? "unknown")])
        }
        Timer(label: "quotamesh_acquire_wait_seconds", dimensions: [service, priority], factory: factory)
            .recordNanoseconds(max(0, waited.components.seconds * 1_000_000_000 + waited.components.attoseconds / 1_000_000_000))
    }

    /// A datagram came in.
    func packetIn(bytes: Int) {
        count("quotamesh_gossip_packets_in_total")
        count("quotamesh_gossip_bytes_in_total", by: bytes)
    }

    /// A datagram went out.
    func packetOut(bytes: Int) {
        count("quotamesh_gossip_packets_out_total")
        count("quotamesh_gossip_bytes_out_total", by: bytes)
    }

    /// A record was merged, or was already held.
    func record(accepted: Bool) {
        count(accepted ? "quotamesh_gossip_records_accepted_total" : "quotamesh_gossip_records_stale_total")
    }

    /// A packet or record was refused.
    func dropped(_ reason: DropReason) {
        count("quotamesh_gossip_dropped_total", [("reason", reason.rawValue)])
    }

    /// Sets the gauges from the node's state and renders every metric in the Prometheus text format.
    func render(quotas: [QuotaView], peers: [PeerView], waiting: Int, persistenceFailing: Bool, now: UnixMillis) -> String {
        for view in quotas {
            let account = [("service", view.key.service), ("account", view.key.account)]
            gauge("quotamesh_quota_breaker_open", account, view.breakerState == .closed ? 0 : 1)
            // Every dimension the account counts (requests, tokens, each upstream policy), each its own series.
            let dimensions = view.dimensions.isEmpty
                ? [DimensionView(
                    name: QuotaKey.requests, limit: view.limit, windowMillis: view.windowMillis, remaining: view.remaining,
                    resetAt: view.resetAt, consumedGlobal: view.consumedGlobal, consumedLocal: view.consumedLocal)]
                : view.dimensions
            for dimension in dimensions {
                let key = account + [("dimension", dimension.name)]
                if let remaining = dimension.remaining { gauge("quotamesh_quota_remaining", key, Double(remaining)) }
                if let limit = dimension.limit { gauge("quotamesh_quota_limit", key, Double(limit)) }
                gauge("quotamesh_quota_consumed", key + [("scope", "local")], Double(dimension.consumedLocal))
                gauge("quotamesh_quota_consumed", key + [("scope", "global")], Double(dimension.consumedGlobal))
                if let reset = dimension.resetAt {
                    gauge("quotamesh_quota_reset_seconds", key, Double(max(0, reset - now)) / 1000)
                }
            }
        }
        gauge("quotamesh_acquire_waiting", [], Double(waiting))
        gauge("quotamesh_peers_live", [], Double(peers.filter(\.live).count))
        gauge("quotamesh_peers_known", [], Double(peers.count))
        gauge("quotamesh_peers_quarantined", [], Double(peers.filter { $0.quarantined != nil }.count))
        gauge("quotamesh_peers_graylisted", [], Double(peers.filter(\.graylisted).count))
        gauge("quotamesh_peers_members_differ", [], Double(peers.filter { !$0.membersAgree }.count))
        for peer in peers {
            if let newest = peer.newestRecordAt {
                gauge("quotamesh_peer_record_age_seconds", [("peer", peer.name)], Double(max(0, now - newest)) / 1000)
            }
        }
        gauge("quotamesh_persistence_failing", [], persistenceFailing ? 1 : 0)
        return Self.withHelp(registry.emitToString())
    }

    /// What each metric is, for its `# HELP` line (swift-metrics carries no help text, so the lines are
    /// added to the registry's text before each `# TYPE`).
    static let help: [String: String] = [
        "quotamesh_acquire_grants_total": "Acquires granted, by service and priority.",
        "quotamesh_acquire_denials_total": "Acquires denied, by service, priority and reason.",
        "quotamesh_acquire_wait_seconds": "Time from an acquire to its answer, waits included.",
        "quotamesh_acquire_waiting": "Acquires waiting for their turn now.",
        "quotamesh_quota_remaining": "What is left in the current window across the mesh, by dimension.",
        "quotamesh_quota_limit": "The window's limit, by dimension.",
        "quotamesh_quota_consumed": "Consumption in the current window, by dimension: this node's (local) or the mesh's (global).",
        "quotamesh_quota_reset_seconds": "Seconds until the current window resets, by dimension.",
        "quotamesh_quota_breaker_open": "1 while the shared breaker is open or half-open.",
        "quotamesh_gossip_packets_in_total": "Gossip datagrams received.",
        "quotamesh_gossip_packets_out_total": "Gossip datagrams sent.",
        "quotamesh_gossip_bytes_in_total": "Gossip bytes received.",
        "quotamesh_gossip_bytes_out_total": "Gossip bytes sent.",
        "quotamesh_gossip_records_accepted_total": "Records merged (newer than what was held).",
        "quotamesh_gossip_records_stale_total": "Records already held.",
        "quotamesh_gossip_dropped_total": "Packets and records refused, by reason.",
        "quotamesh_peers_live": "Trusted peers heard from lately.",
        "quotamesh_peers_known": "Trusted peers in the trust store.",
        "quotamesh_peers_quarantined": "Peers whose records are set aside: they signed records that contradict each other.",
        "quotamesh_peers_graylisted": "Peers whose upstream observations do not count: they kept contradicting this node's own.",
        "quotamesh_peers_members_differ": "Peers that split rights among other members than this node (their trust stores differ).",
        "quotamesh_peer_record_age_seconds": "Age of the newest record held from each peer.",
        "quotamesh_persistence_failing": "1 while the node cannot save its state (it grants nothing meanwhile).",
    ]

    /// `text` with a `# HELP` line before each `# TYPE` line whose metric has one.
    static func withHelp(_ text: String) -> String {
        var lines: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("# TYPE "), let name = line.split(separator: " ").dropFirst(2).first,
                let help = help[String(name)]
            {
                lines.append("# HELP \(name) \(help)")
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}

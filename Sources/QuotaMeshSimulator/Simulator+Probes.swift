import QuotaMeshCore
import QuotaMeshCrypto

/// Convergence probes: how many rounds a record takes to reach every live node.
extension Simulator {
    mutating func startProbe(_ index: Int) {
        let liveNodes = nodes.indices.filter { nodes[$0].isUp }
        guard !liveNodes.isEmpty else { return }
        let origin = liveNodes[Int.random(in: 0..<liveNodes.count, using: &rng)]
        let key = QuotaKey(service: "probe\(index)", account: "default")
        drive(origin) { instance, nodeTime in
            var dimension = RateLimitDimension(name: "requests")
            dimension.limit = 1000
            dimension.remaining = 500
            dimension.resetAt = nodeTime + 3_600_000
            var report = RateLimitReport()
            report.dimensions = [dimension]
            return instance.observe(service: key.service, account: nil, status: 200, report: report, now: nodeTime).directives
        }
        probes.append(Probe(origin: origin, key: key))
    }

    mutating func checkProbes() {
        for index in probes.indices where probes[index].convergedAt == nil {
            let probe = probes[index]
            let originKey = nodes[probe.origin].key.publicKey
            let nodes = self.nodes
            let held = { (node: Int) -> RecordVersion? in
                nodes[node].box.inspect { $0.heldVersion(origin: originKey, slot: .quota(probe.key)) } ?? nil
            }
            guard let version = held(probe.origin) else { continue }
            if probe.signedAt == nil { probes[index].signedAt = now }
            let holds = { (other: Int) -> Bool in
                other == probe.origin || !nodes[other].isUp || (held(other).map { $0 >= version } ?? false)
            }
            if let onProbeCheck {
                let missing = nodes.indices.count { !holds($0) }
                onProbeCheck("t=\(Double(now - start) / 1000) probe \(index) version \(version) missing \(missing)")
                if missing == 0 { probes[index].convergedAt = now }
            } else if nodes.indices.allSatisfy(holds) {
                // Stops at the first node that misses it: this runs every round for every spreading probe.
                probes[index].convergedAt = now
            }
        }
    }
}

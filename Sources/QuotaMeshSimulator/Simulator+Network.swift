import QuotaMeshCore
import QuotaMeshCrypto

/// The simulated network: a node's directives carried out (datagrams with latency, loss, duplication
/// and cuts; replies to the agents; saves; events).
extension Simulator {
    /// Runs `body` on node `index`'s instance in its own time and carries out the directives.
    mutating func drive(_ index: Int, _ body: (inout MeshInstance, Int64) -> [MeshDirective]) {
        let box = nodes[index].box
        let nodeTime = now + nodes[index].skew
        guard let directives = box.instance?.inPlace({ body(&$0, nodeTime) }) else { return }
        apply(directives, from: index)
    }

    /// Node `index`'s pacing inputs for `key` on its own clock, as `name=value` fields in name order
    /// (for the sample and grant diagnostics); `nil` while the node is down.
    func pacingFields(of index: Int, key: QuotaKey) -> String? {
        guard let breakdown = nodes[index].box.instance?.pacingBreakdown(key, now: now + nodes[index].skew) else {
            return nil
        }
        return breakdown.sorted { $0.key < $1.key }.map { "\($0.key)=\(($0.value * 1000).rounded() / 1000)" }
            .joined(separator: " ")
    }

    /// Node `index`'s remaining estimate for `key` and its pieces on its own clock, as `name=value` fields
    /// in name order (reset times left out); `nil` while the node is down. Reads only.
    func remainingFields(of index: Int, key: QuotaKey) -> String? {
        let nodeTime = now + nodes[index].skew
        guard let pieces = nodes[index].box.inspect({ $0.remainingBreakdown(key, now: nodeTime) }) else { return nil }
        return pieces.filter { $0.key != "reset_at" && $0.key != "obs_reset" }.sorted { $0.key < $1.key }
            .map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    mutating func apply(_ directives: [MeshDirective], from index: Int) {
        for directive in directives {
            switch directive {
            case .send(let bytes, let target):
                let destination = target.port - 1
                guard destination >= 0, destination < nodes.count else { continue }
                bytesSent += bytes.count
                if bytes.count > 3 { bytesByKind[bytes[3], default: 0] += bytes.count; packetsByKind[bytes[3], default: 0] += 1 }
                if isCut(index, destination) || Double.random(in: 0..<1, using: &rng) < configuration.loss {
                    lost += 1
                    continue
                }
                let latency = Int64.random(in: configuration.latencyMillis, using: &rng)
                schedule(.deliver(from: index, to: destination, bytes: bytes), at: now + latency)
                if Double.random(in: 0..<1, using: &rng) < configuration.duplication {
                    let again = Int64.random(in: configuration.latencyMillis, using: &rng)
                    schedule(.deliver(from: index, to: destination, bytes: bytes), at: now + again)
                }
            case .reply(let ticket, let decision):
                guard let task = nodes[index].tickets.removeValue(forKey: ticket) else { continue }
                if decision.granted {
                    grantDetails[upstreamWindow(now), default: [:]][decision.detail?.description ?? "-", default: 0] += 1
                    if let onGrant, let fields = pacingFields(of: index, key: QuotaKey(service: service, account: "default")) {
                        onGrant("t=\(Double(now - start) / 1000) n\(index) \(tasks[task].priority) \(decision.detail?.description ?? "-") waited=\(now - tasks[task].created) " + fields)
                    }
                    tasks[task].inFlight = true
                    tasks[task].granted = now
                    schedule(.upstream(task: task), at: now + configuration.upstreamLatencyMillis / 2)
                } else {
                    denials += 1
                    denialDetails[upstreamWindow(now), default: [:]]["\(tasks[task].priority)/\(decision.reason?.rawValue ?? "-")/\(decision.detail?.description ?? "-")", default: 0] += 1
                    let retryAt = (decision.retryAt ?? (now + nodes[index].skew + 1000)) - nodes[index].skew
                    if let onUrgentDenial, tasks[task].priority == .urgent {
                        onUrgentDenial("t=\(Double(now - start) / 1000) n\(index) task\(task) waited=\(now - tasks[task].created) "
                            + "\(decision.reason?.rawValue ?? "-")/\(decision.detail?.description ?? "-") retry_in=\(retryAt - now)")
                    }
                    let jitter = Int64.random(in: 0...20, using: &rng)
                    schedule(.attempt(task: task), at: max(now + 1, retryAt + jitter))
                }
            case .persist:
                nodes[index].persisted = nodes[index].instance?.persistedState()
            case .event(let event):
                if case .recordAccepted = event { recordsAccepted += 1 }
                if case .recordStale = event { recordsStale += 1 }
                if case .peerGraylisted(let origin, _) = event {
                    if origin == nodes[0].key.publicKey && configuration.liar != nil { liarGraylistings += 1 } else { honestGraylistings += 1 }
                }
            case .trust:
                // The simulated trust stores are fixed: every node trusts every other from the start.
                break
            case .wake(let at):
                let global = at - nodes[index].skew
                if global < nodes[index].scheduledWake {
                    nodes[index].scheduledWake = global
                    schedule(.wake(node: index), at: global)
                }
            }
        }
    }

    func isCut(_ a: Int, _ b: Int) -> Bool {
        guard let plan = configuration.partition else { return false }
        let from = start + Int64(plan.start * 1000)
        let to = start + Int64(plan.end * 1000)
        guard now >= from && now < to else { return false }
        let boundary = Int(Double(nodes.count) * plan.fraction)
        return (a < boundary) != (b < boundary)
    }
}

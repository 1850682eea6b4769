import QuotaMeshCore
import QuotaMeshCrypto

/// The run's events: datagrams delivered, tasks arriving and retrying, crashes and restarts, the
/// partition, the liar's rounds and the samples.
extension Simulator {
    mutating func handle(_ event: Event) {
        switch event {
        case .deliver(let from, let to, let bytes):
            guard nodes[to].isUp else {
                lost += 1
                return
            }
            delivered += 1
            let source = endpoint(from)
            drive(to) { instance, nodeTime in instance.receive(datagram: bytes, from: source, now: nodeTime) }
        case .wake(let index):
            guard nodes[index].scheduledWake == now, nodes[index].isUp else { return }
            nodes[index].scheduledWake = .max
            drive(index) { instance, nodeTime in instance.tick(now: nodeTime) }
        case .arrival(let index):
            let priority = drawPriority()
            tasks.append(Task(node: index, priority: priority, created: now))
            windowCreated[upstreamWindow(now), default: 0] += 1
            pending += 1
            attempt(tasks.count - 1)
            scheduleArrival(index)
        case .attempt(let task):
            attempt(task)
        case .upstream(let task):
            callUpstream(task)
        case .response(let task, let status, let headers):
            let index = tasks[task].node
            tasks[task].inFlight = false
            guard nodes[index].isUp else {
                schedule(.attempt(task: task), at: now + 500)
                return
            }
            let service = service
            drive(index) { instance, nodeTime in
                let report = RateLimitHeaderParser.parse(headers: headers, status: status, now: nodeTime)
                return instance.observe(service: service, account: nil, status: status, report: report, now: nodeTime).directives
            }
            if status == 200 {
                tasks[task].succeeded = now
                nodes[index].successes += 1
                pending -= 1
            } else {
                schedule(.attempt(task: task), at: now + 1)
            }
        case .crash(let index):
            guard nodes[index].isUp else { return }
            if sampleEvery > 0, let onSample { onSample("t=\(Double(now - start) / 1000) crash n\(index)") }
            nodes[index].instance = nil
            nodes[index].isUp = false
            nodes[index].tickets = [:]
            nodes[index].scheduledWake = .max
            schedule(.restart(node: index), at: now + configuration.downtimeMillis)
        case .restart(let index):
            if sampleEvery > 0, let onSample { onSample("t=\(Double(now - start) / 1000) restart n\(index)") }
            let nodeTime = now + nodes[index].skew
            var own = meshConfiguration()
            own.weight = configuration.weights(of: index).claimed
            var instance = MeshInstance(
                identity: nodes[index].key, configuration: own, directory: directory,
                restored: nodes[index].persisted, now: nodeTime, seed: rng.next())
            let directives = instance.start(now: nodeTime)
            nodes[index].instance = instance
            nodes[index].isUp = true
            apply(directives, from: index)
            // Tasks that were waiting on the crashed node try again.
            for task in tasks.indices where tasks[task].node == index && tasks[task].succeeded == nil && !tasks[task].inFlight {
                schedule(.attempt(task: task), at: now + 1)
            }
        case .probe(let index):
            startProbe(index)
        case .lie:
            lie()
            schedule(.lie, at: now + configuration.gossipIntervalMillis)
        case .checkProbes:
            checkProbes()
            if sampleEvery > 0, (now - start) % sampleEvery == 0, let onSample {
                let key = QuotaKey(service: service, account: "default")
                var line = "t=\(Double(now - start) / 1000) sent=\(windowSent[upstreamWindow(now), default: 0])"
                if sampleRights {
                    // Every node's own view of what it holds, and how many calls wait.
                    var held: Int64 = 0
                    var holders = 0
                    for index in nodes.indices {
                        let nodeTime = now + nodes[index].skew
                        let rights = nodes[index].box.inspect { $0.quotas(service: service, now: nodeTime).first?.rights } ?? nil
                        held += max(0, rights ?? 0)
                        if (rights ?? 0) > 0 { holders += 1 }
                    }
                    let waiting = tasks.reduce(0) { $0 + ($1.succeeded == nil && !$1.inFlight ? 1 : 0) }
                    line += " held=\(held) holders=\(holders) tasks_waiting=\(waiting)"
                } else {
                    let sampled = sampleRemaining ? Array(nodes.indices) : Array(0..<min(4, nodes.count))
                    for index in sampled {
                        let fields = sampleRemaining ? remainingFields(of: index, key: key) : pacingFields(of: index, key: key)
                        if let fields { line += " | n\(index) " + fields }
                    }
                }
                onSample(line)
            }
            schedule(.checkProbes, at: now + configuration.gossipIntervalMillis)
        }
    }

    /// Node 0, a vouched liar, signs this round's lie and sends it to `fanout` random peers.
    mutating func lie() {
        guard let kind = configuration.liar, nodes[0].isUp, let honest = nodes[0].instance?.incarnation else { return }
        let key = QuotaKey(service: service, account: "default")
        let year: Int64 = 365 * 86_400_000
        let windowEnd = (now / configuration.windowMillis + 1) * configuration.windowMillis
        var state = QuotaState()
        switch kind {
        case .claims:
            state.observation = UpstreamObservation(
                resetAt: now + year, remaining: 1_000_000_000_000, limit: 1_000_000_000_000, windowMillis: year,
                observedAt: now, consumedTotalAtObservation: 0)
            state.consumption = ConsumptionEntry(
                total: 1_000_000_000_000, windowEnd: now + year, windowCount: 1_000_000_000_000)
        case .breaker:
            state.breaker = BreakerRegister(openedAt: now, openUntil: now + year, closedAt: 0)
        case .overgive:
            var ledger = RightsLedger(windowEnd: windowEnd)
            for index in 1..<min(nodes.count, RightsLedger.maxReceivers + 1) {
                ledger.give(1_000, to: nodes[index].key.publicKey)
            }
            state.ledger = ledger
        case .starve:
            state.observation = UpstreamObservation(
                resetAt: windowEnd, remaining: 0, limit: configuration.limit, windowMillis: configuration.windowMillis,
                observedAt: now + nodes[0].skew, consumedTotalAtObservation: 0)
        case .fork:
            var ledger = RightsLedger(windowEnd: windowEnd)
            let part = max(1, UInt64(configuration.limit) / UInt64(nodes.count))
            ledger.give(part, to: nodes[1 + Int(liarSequence % UInt64(nodes.count - 1))].key.publicKey)
            state.ledger = ledger
        }
        liarSequence += 1
        let incarnation = honest + 1_000
        let record = SignedRecord(
            signing: .quota(key, state), version: RecordVersion(incarnation: incarnation, sequence: liarSequence),
            timestamp: now + nodes[0].skew, with: nodes[0].key, cluster: "quotamesh", scheme: scheme)
        for _ in 0..<configuration.fanout {
            let target = Int.random(in: 1..<nodes.count, using: &rng)
            let packet = WireFormat.encodePacket(
                header: PacketHeader(
                    sender: nodes[0].key.publicKey, incarnation: incarnation, sequence: liarSequence &* 16 &+ UInt64(target),
                    sentAt: now + nodes[0].skew),
                payload: .records([record]), signingKey: nodes[0].key, cluster: "quotamesh", scheme: scheme)
            apply([.send(packet, to: endpoint(target))], from: 0)
        }
    }

    mutating func drawPriority() -> Priority {
        let mix = configuration.priorityMix
        let draw = Double.random(in: 0..<(mix.urgent + mix.normal + mix.low), using: &rng)
        if draw < mix.urgent { return .urgent }
        if draw < mix.urgent + mix.normal { return .normal }
        return .low
    }

    mutating func attempt(_ task: Int) {
        let index = tasks[task].node
        guard tasks[task].succeeded == nil, !tasks[task].inFlight else { return }
        guard nodes[index].isUp else { return }  // retried on restart
        let ticket = nextTicket
        nextTicket += 1
        nodes[index].tickets[ticket] = task
        let request = AcquireRequest(service: service, priority: tasks[task].priority, cost: 1)
        drive(index) { instance, nodeTime in instance.acquire(request, ticket: ticket, now: nodeTime) }
    }
}

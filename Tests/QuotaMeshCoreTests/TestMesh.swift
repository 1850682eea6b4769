@testable import QuotaMeshCore
import QuotaMeshCrypto

/// A deterministic key for test node `index`.
func testKey(_ index: Int) -> SigningKey {
    // Seeds are fixed, so the try cannot fail.
    try! SigningKey(seed: [UInt8](repeating: UInt8(index + 1), count: 32))
}

func endpoint(_ index: Int) -> Endpoint { Endpoint(host: "10.0.0.\(index + 1)", port: 9720) }

/// Test node `owner`'s ledger alone (node 0's unless named), among `count` test nodes that are all live,
/// with `policy` for `svc`.
func ledgerAmongLivePeers(count: Int, policy: ServicePolicy, now: UnixMillis, owner: Int = 0) -> QuotaLedger {
    let members = (0..<count).map { testKey($0).publicKey }
    let infos = members.indices.map { PeerInfo(name: "n\($0)", key: members[$0], endpoint: endpoint($0)) }
    var ledger = QuotaLedger(
        owner: members[owner], configuration: MeshConfiguration(services: ["svc": policy]),
        directory: PeerDirectory(infos), restored: nil, now: now)
    ledger.mesh = MeshFacts(
        live: members.indices.filter { $0 != owner }.map { members[$0] }.sorted(), liveVersion: 1, unheard: 0,
        peerCount: count - 1, round: 1)
    return ledger
}

/// Several real `MeshInstance`s wired through an in-memory network with virtual time.
struct TestMesh {
    var nodes: [MeshInstance]
    var now: UnixMillis
    var replies: [Int: [UInt64: AcquireDecision]] = [:]
    var events: [Int: [MeshEvent]] = [:]
    var persisted: [Int: PersistedNodeState] = [:]
    /// Peers each node asked its shell to trust (joins and introductions).
    var trusted: [Int: [PeerInfo]] = [:]
    /// Every datagram sent, for replay tests: (from, to, bytes).
    var wire: [(from: Int, to: Int, bytes: [UInt8])] = []
    /// Links that drop everything: (from, to).
    var cut: Set<[Int]> = []
    var nextTicket: UInt64 = 1

    init(count: Int, services: [String: ServicePolicy] = [:], now: UnixMillis = 1_800_000_000_000, seed: UInt64 = 0) {
        self.now = now
        var configuration = MeshConfiguration(services: services)
        configuration.livenessTimeoutMillis = 5_000
        let infos = (0..<count).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) }
        nodes = (0..<count).map { index in
            MeshInstance(
                identity: testKey(index), configuration: configuration, peers: infos, restored: nil, now: now,
                seed: seed &+ UInt64(index))
        }
    }

    func index(of target: Endpoint) -> Int? { (0..<nodes.count).first { endpoint($0) == target } }

    /// Carries out directives from node `index`, delivering datagrams at once (depth-first).
    mutating func apply(_ directives: [MeshDirective], from index: Int) {
        var queue: [(Int, [MeshDirective])] = [(index, directives)]
        while !queue.isEmpty {
            let (source, list) = queue.removeFirst()
            for directive in list {
                switch directive {
                case .send(let bytes, let target):
                    guard let destination = self.index(of: target) else { continue }
                    wire.append((source, destination, bytes))
                    if cut.contains([source, destination]) { continue }
                    let produced = nodes[destination].receive(datagram: bytes, from: endpoint(source), now: now)
                    queue.append((destination, produced))
                case .reply(let ticket, let decision):
                    replies[source, default: [:]][ticket] = decision
                case .persist:
                    persisted[source] = nodes[source].persistedState()
                case .event(let event):
                    events[source, default: []].append(event)
                case .wake:
                    break
                case .trust(let peer, _):
                    trusted[source, default: []].append(peer)
                }
            }
        }
    }

    /// Advances virtual time by `millis` in gossip-interval steps, ticking every node.
    mutating func run(for millis: Int64, step: Int64 = 200) {
        let end = now + millis
        while now < end {
            now += step
            for index in nodes.indices {
                let directives = nodes[index].tick(now: now)
                apply(directives, from: index)
            }
        }
    }

    mutating func acquire(_ index: Int, _ request: AcquireRequest) -> AcquireDecision? {
        let ticket = nextTicket
        nextTicket += 1
        let directives = nodes[index].acquire(request, ticket: ticket, now: now)
        apply(directives, from: index)
        return replies[index]?[ticket]
    }

    /// Node `origin` (a vouched peer acting on its own) signs `state` for `service` at record `sequence`
    /// (incarnation 9×10⁹, above any honest start) and sends it straight to node `target`.
    mutating func deliverSigned(
        _ state: QuotaState, service: String, dimension: String = QuotaKey.requests, sequence: UInt64, from origin: Int = 0,
        to target: Int
    ) {
        let key = testKey(origin)
        let record = SignedRecord(
            signing: .quota(QuotaKey(service: service, dimension: dimension), state),
            version: RecordVersion(incarnation: 9_000_000_000, sequence: sequence), timestamp: now, with: key,
            cluster: "quotamesh")
        nextTicket += 1
        let packet = WireFormat.encodePacket(
            header: PacketHeader(sender: key.publicKey, incarnation: 9_000_000_000, sequence: nextTicket, sentAt: now),
            payload: .records([record]), signingKey: key, cluster: "quotamesh")
        apply(nodes[target].receive(datagram: packet, from: endpoint(origin), now: now), from: target)
    }

    /// Node `index` restarted from `restored` (its saved state), trusting every node of the mesh.
    func restarted(_ index: Int, from restored: PersistedNodeState?, seed: UInt64) -> MeshInstance {
        MeshInstance(
            identity: testKey(index), configuration: nodes[index].configuration,
            peers: nodes.indices.map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) },
            restored: restored, now: now, seed: seed)
    }

    mutating func observe(_ index: Int, service: String, status: Int, report: RateLimitReport) {
        let result = nodes[index].observe(service: service, account: nil, status: status, report: report, now: now)
        apply(result.directives, from: index)
    }

    func view(_ index: Int, _ service: String) -> QuotaView? {
        nodes[index].quotas(service: service, now: now).first
    }

    func drops(_ index: Int, _ reason: DropReason) -> Int {
        (events[index] ?? []).filter {
            if case .dropped(let r, _, _) = $0 { return r == reason }
            return false
        }.count
    }
}

/// A report as the header parser would give it, for a single "requests" dimension.
func report(limit: Int64?, remaining: Int64?, resetAt: UnixMillis?, retryAt: UnixMillis? = nil, limited: Bool = false)
    -> RateLimitReport
{
    var dimension = RateLimitDimension(name: "requests")
    dimension.limit = limit
    dimension.remaining = remaining
    dimension.resetAt = resetAt
    var report = RateLimitReport()
    if limit != nil || remaining != nil { report.dimensions = [dimension] }
    report.retryAt = retryAt
    report.isRateLimited = limited
    return report
}

/// Where the last byte of a quota record's window count sits in its body: kind, service, account, then
/// the lifetime total, the window end and the window count (8 bytes each).
func consumptionCountByte(of record: SignedRecord) -> Int {
    guard case .quota(let key, _) = record.body else { return 0 }
    return 1 + (1 + key.service.utf8.count) + (1 + key.account.utf8.count) + 8 + 8 + 7
}

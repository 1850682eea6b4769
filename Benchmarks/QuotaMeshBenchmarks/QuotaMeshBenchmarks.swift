import Benchmark
import QuotaMeshCore
import QuotaMeshCrypto

/// Micro-benchmarks of the hot paths (issue 5). Run with:
/// `swift package --package-path Benchmarks benchmark` (see BENCHMARKS.md).
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 10,
        maxDuration: .seconds(3),
        maxIterations: 2_000_000)

    let now: UnixMillis = 1_800_000_000_000
    let cluster = "bench"

    // Each sample runs a thousand acquires on one instance: steady state, not the first (cold) call.
    let warm = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal], scalingFactor: .kilo, maxDuration: .seconds(3))

    for peers in [10, 1000] {
        Benchmark("acquire decision, in-process (\(peers) peers)", configuration: warm) { benchmark in
            var instance = Fixtures.instance(peers: peers, now: now)
            var ticket: UInt64 = 1
            // The first call works out every member's balance (the cold call, measured below).
            blackHole(instance.acquire(AcquireRequest(service: "svc", priority: .urgent), ticket: ticket, now: now))
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                ticket += 1
                blackHole(instance.acquire(AcquireRequest(service: "svc", priority: .urgent), ticket: ticket, now: now))
            }
        }
    }

    for peers in [10, 1000] {
        Benchmark("acquire decision, in-process, first call (\(peers) peers)") { benchmark in
            for _ in benchmark.scaledIterations {
                var instance = Fixtures.instance(peers: peers, now: now)
                benchmark.startMeasurement()
                blackHole(instance.acquire(AcquireRequest(service: "svc", priority: .urgent), ticket: 1, now: now))
                benchmark.stopMeasurement()
            }
        }
    }

    let key = Fixtures.key(0)
    let state = Fixtures.state(now: now)
    let body = RecordBody.quota(QuotaKey(service: "openai", account: "team-a"), state)
    let record = SignedRecord(
        signing: body, version: RecordVersion(incarnation: 1, sequence: 1), timestamp: now, with: key, cluster: cluster)
    let bodyBytes = WireFormat.encode(body: body)

    Benchmark("record body encode") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(WireFormat.encode(body: body)) }
    }

    Benchmark("record body decode") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try? WireFormat.decode(body: bodyBytes)) }
    }

    Benchmark("record sign (QuotaMesh layout, Ed25519)") { benchmark in
        for index in benchmark.scaledIterations {
            blackHole(
                SignedRecord(
                    signing: body, version: RecordVersion(incarnation: 1, sequence: UInt64(index)), timestamp: now,
                    with: key, cluster: cluster))
        }
    }

    Benchmark("record verify (QuotaMesh layout, Ed25519)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(record.hasValidSignature(cluster: cluster)) }
    }

    let message = [UInt8](repeating: 7, count: record.bodyBytes.count + 90)
    let signature = key.signature(for: message)
    Benchmark("libsodium raw sign (same length)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(key.signature(for: message)) }
    }

    Benchmark("libsodium raw verify (same length)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(key.publicKey.isValidSignature(signature, for: message)) }
    }

    Benchmark("merge a full records packet (4 new records, signatures checked)") { benchmark in
        let packets = Fixtures.packets(count: benchmark.scaledIterations.count + 1, now: now, cluster: cluster)
        var instance = Fixtures.instance(peers: 10, now: now, cluster: cluster)
        let source = Endpoint(host: "127.0.0.1", port: 1)
        benchmark.startMeasurement()
        for index in benchmark.scaledIterations {
            blackHole(instance.receive(datagram: packets[index], from: source, now: now))
        }
    }

    Benchmark(
        "memory: instance holding 1000 peers' records",
        configuration: .init(metrics: [.peakMemoryResident, .mallocCountTotal], maxIterations: 3)
    ) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(Fixtures.instanceHoldingRecords(peers: 1000, keys: 1, now: now, cluster: cluster))
        }
    }

    Benchmark(
        "memory: instance holding 100 peers × 10 keys",
        configuration: .init(metrics: [.peakMemoryResident, .mallocCountTotal], maxIterations: 3)
    ) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(Fixtures.instanceHoldingRecords(peers: 100, keys: 10, now: now, cluster: cluster))
        }
    }
}

enum Fixtures {
    static func key(_ index: Int) -> SigningKey {
        var seed = [UInt8](repeating: 0, count: 32)
        seed[0] = UInt8(truncatingIfNeeded: index)
        seed[1] = UInt8(truncatingIfNeeded: index >> 8)
        seed[2] = 0xA5
        // 32 bytes by construction.
        return try! SigningKey(seed: seed)
    }

    static func state(now: UnixMillis) -> QuotaState {
        QuotaState(
            consumption: ConsumptionEntry(total: 420, windowEnd: now + 60_000, windowCount: 12),
            observation: UpstreamObservation(
                resetAt: now + 60_000, remaining: 4_321, limit: 5_000, windowMillis: 60_000, observedAt: now,
                consumedTotalAtObservation: 400),
            breaker: BreakerRegister(), demand: Demand(urgent: 0.2, normal: 3.5, low: 1),
            policy: AdvertisedPolicy(limit: 5_000, windowMillis: 60_000))
    }

    static func peers(_ count: Int) -> [PeerInfo] {
        (1...max(1, count)).map { PeerInfo(name: "p\($0)", key: key($0).publicKey, endpoint: Endpoint(host: "127.0.0.1", port: 10_000 + $0)) }
    }

    static func instance(peers count: Int, now: UnixMillis, cluster: String = "bench") -> MeshInstance {
        let policy = ServicePolicy(limit: 1_000_000_000_000, windowMillis: 3_600_000, burstFraction: 1)
        var instance = MeshInstance(
            identity: key(0), configuration: MeshConfiguration(cluster: cluster, services: ["svc": policy]),
            peers: peers(count), restored: nil, now: now - 60_000, seed: 1)
        _ = instance.tick(now: now - 60_000)
        return instance
    }

    /// Pre-signed packets from peer 1, each with four new records of four different origins.
    static func packets(count: Int, now: UnixMillis, cluster: String) -> [[UInt8]] {
        let relay = key(1)
        return (0..<count).map { index in
            let records = (0..<4).map { origin in
                SignedRecord(
                    signing: .quota(QuotaKey(service: "svc"), state(now: now)),
                    version: RecordVersion(incarnation: 5, sequence: UInt64(index + 1)), timestamp: now,
                    with: key(origin + 1), cluster: cluster)
            }
            return WireFormat.encodePacket(
                header: PacketHeader(sender: relay.publicKey, incarnation: 5, sequence: UInt64(index + 1), sentAt: now),
                payload: .records(records), signingKey: relay, cluster: cluster)
        }
    }

    /// An instance that has accepted one record per peer per key.
    static func instanceHoldingRecords(peers count: Int, keys: Int, now: UnixMillis, cluster: String) -> MeshInstance {
        var instance = instance(peers: count, now: now, cluster: cluster)
        let relay = key(1)
        var sequence: UInt64 = 0
        for origin in 1...count {
            var batch: [SignedRecord] = []
            for keyIndex in 0..<keys {
                batch.append(
                    SignedRecord(
                        signing: .quota(QuotaKey(service: "svc\(keyIndex)"), state(now: now)),
                        version: RecordVersion(incarnation: 5, sequence: UInt64(keyIndex + 1)), timestamp: now,
                        with: key(origin), cluster: cluster))
            }
            for chunk in stride(from: 0, to: batch.count, by: 4) {
                sequence += 1
                let packet = WireFormat.encodePacket(
                    header: PacketHeader(sender: relay.publicKey, incarnation: 5, sequence: sequence, sentAt: now),
                    payload: .records(Array(batch[chunk..<min(chunk + 4, batch.count)])), signingKey: relay,
                    cluster: cluster)
                _ = instance.receive(datagram: packet, from: Endpoint(host: "127.0.0.1", port: 1), now: now)
            }
        }
        return instance
    }
}

import Testing
@testable import QuotaMeshCore
import QuotaMeshCrypto

/// How a node holds records and peers: copies recognised from their bytes (and forgeries not), a trust
/// store reload, and instances sharing one peer directory.
@Suite struct RecordTableTests {
    let services = ["openai": ServicePolicy(limit: 100, windowMillis: 60_000)]

    /// Node 0's openai record, as node 1 holds it after one grant at node 0 has spread.
    func spreadRecordOfNode0(_ mesh: inout TestMesh) -> SignedRecord? {
        _ = mesh.acquire(0, AcquireRequest(service: "openai", priority: .urgent))
        mesh.run(for: 1_000)
        return mesh.nodes[1].heldRecords.first { record in
            guard record.origin == testKey(0).publicKey, case .quota = record.body else { return false }
            return true
        }
    }

    /// A fresh packet from vouched node 2 carrying `records`.
    func packetFromNode2(_ records: [SignedRecord], sequence: UInt64, now: UnixMillis) -> [UInt8] {
        let relay = testKey(2)
        return WireFormat.encodePacket(
            header: PacketHeader(sender: relay.publicKey, incarnation: 99_999_999_999, sequence: sequence, sentAt: now),
            payload: .records(records), signingKey: relay, cluster: "quotamesh")
    }

    @Test func anExactCopyOfAHeldRecordIsRecognisedAndAForgeryAtItsVersionIsNot() throws {
        var mesh = TestMesh(count: 3, services: services)
        guard let record = spreadRecordOfNode0(&mesh) else {
            Issue.record("node 1 never held node 0's record")
            return
        }
        let held = mesh.nodes[1].heldRecords.count
        // The same record again, from another vouched peer: a copy, not news.
        var directives = mesh.nodes[1].receive(
            datagram: packetFromNode2([record], sequence: 1, now: mesh.now), from: endpoint(2), now: mesh.now)
        let events = directives.compactMap { if case .event(let event) = $0 { event } else { nil } }
        #expect(events.contains(.recordStale(origin: record.origin)))
        #expect(!events.contains { if case .recordAccepted = $0 { true } else { false } })
        #expect(mesh.nodes[1].heldRecords.count == held)
        // The same origin and version with one body byte changed (the signature is the original's): not a
        // copy. It is read, checked and dropped as forged, and the held record stays.
        var body = record.bodyBytes
        body[body.count - 30] ^= 0x40
        let forged = SignedRecord(
            origin: record.origin, version: record.version, timestamp: record.timestamp,
            body: try WireFormat.decode(body: body), bodyBytes: body, signature: record.signature)
        directives = mesh.nodes[1].receive(
            datagram: packetFromNode2([forged], sequence: 2, now: mesh.now), from: endpoint(2), now: mesh.now)
        mesh.apply(directives, from: 1)
        #expect(mesh.drops(1, .badSignature) == 1)
        #expect(mesh.nodes[1].heldRecords.contains(record))
        #expect(!mesh.nodes[1].heldRecords.contains(forged))
    }

    @Test func aTrustStoreReloadForgetsRemovedPeersRecordsAndKeepsTheNodesOwn() {
        var mesh = TestMesh(count: 3, services: services)
        for index in 0..<3 { _ = mesh.acquire(index, AcquireRequest(service: "openai", priority: .urgent)) }
        mesh.run(for: 1_000)
        let origins = Set(mesh.nodes[0].heldRecords.map(\.origin))
        #expect(origins == Set((0..<3).map { testKey($0).publicKey }))
        // Node 0 stops trusting node 2.
        mesh.nodes[0].replacePeers(
            (0..<2).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) })
        let after = Set(mesh.nodes[0].heldRecords.map(\.origin))
        #expect(after == [testKey(0).publicKey, testKey(1).publicKey])
        #expect(mesh.view(0, "openai")?.consumedGlobal == 2)
        // Node 2's packets are now refused, and node 0's own record still spreads.
        mesh.run(for: 1_000)
        #expect(mesh.drops(0, .unknownSender) > 0)
        _ = mesh.acquire(0, AcquireRequest(service: "openai", priority: .urgent))
        mesh.run(for: 1_000)
        #expect(mesh.view(1, "openai")?.consumedGlobal == 4)
    }

    @Test func instancesSharingOnePeerDirectorySendExactlyWhatInstancesWithTheirOwnSend() {
        func run(shared: Bool) -> [[UInt8]] {
            var mesh = TestMesh(count: 4, services: services)
            if shared {
                let directory = PeerDirectory(
                    (0..<4).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) })
                var configuration = MeshConfiguration(services: services)
                configuration.livenessTimeoutMillis = 5_000
                mesh.nodes = (0..<4).map { index in
                    MeshInstance(
                        identity: testKey(index), configuration: configuration, directory: directory, restored: nil,
                        now: mesh.now, seed: UInt64(index))
                }
            }
            for index in 0..<4 { _ = mesh.acquire(index, AcquireRequest(service: "openai", priority: .normal)) }
            mesh.run(for: 3_000)
            return mesh.wire.map(\.bytes)
        }
        let own = run(shared: false)
        #expect(own.count > 20)
        #expect(run(shared: true) == own)
    }
}

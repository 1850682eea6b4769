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

/// The record table on its own: copies found by origin number, version and bytes; slots kept across a
/// removal with their pushes left; copies still found after the origins are renumbered.
@Suite struct RecordTableUnitTests {
    func record(_ origin: Int, _ sequence: UInt64, service: String? = nil, consumed: UInt64 = 1) -> SignedRecord {
        let body: RecordBody = service.map {
            .quota(
                QuotaKey(service: $0),
                QuotaState(consumption: ConsumptionEntry(total: consumed, windowEnd: 0, windowCount: 0)))
        } ?? .heartbeat
        return SignedRecord(
            signing: body, version: RecordVersion(incarnation: 1, sequence: sequence), timestamp: 1_800_000_000_000,
            with: testKey(origin), cluster: "quotamesh")
    }

    func put(_ record: SignedRecord, in table: inout RecordTable, number: Int?) -> Int {
        table.put(
            record, for: SlotID(origin: record.origin, slot: record.body.slot), transmits: 5, knownBy: nil,
            originNumber: number)
    }

    @Test func copiesAreFoundByOriginVersionAndBytesOnly() {
        var table = RecordTable()
        let heartbeat = record(0, 1)
        let quota = record(0, 2, service: "openai")
        let other = record(1, 2, service: "openai")
        let first = put(heartbeat, in: &table, number: 0)
        let second = put(quota, in: &table, number: 0)
        let third = put(other, in: &table, number: 1)
        #expect(table.index(ofCopy: quota.wire[...], originNumber: 0, version: quota.version) == second)
        #expect(table.index(ofCopy: heartbeat.wire[...], originNumber: 0, version: heartbeat.version) == first)
        #expect(table.index(ofCopy: other.wire[...], originNumber: 1, version: other.version) == third)
        // The same origin and version with other bytes is no copy; nor is a record under another number.
        let altered = record(0, 2, service: "openai", consumed: 2)
        #expect(table.index(ofCopy: altered.wire[...], originNumber: 0, version: altered.version) == nil)
        #expect(table.index(ofCopy: quota.wire[...], originNumber: 1, version: quota.version) == nil)
        #expect(table.index(ofCopy: quota.wire[...], originNumber: 7, version: quota.version) == nil)
        // A newer version replaces the slot in place: the old bytes are no longer a copy.
        let newer = record(0, 3, service: "openai", consumed: 3)
        #expect(put(newer, in: &table, number: 0) == second)
        #expect(table.index(ofCopy: quota.wire[...], originNumber: 0, version: quota.version) == nil)
        #expect(table.index(ofCopy: newer.wire[...], originNumber: 0, version: newer.version) == second)
        #expect(table.count == 3)
    }

    @Test func aRemovalKeepsTheRestWithTheirPushesAndRenumberingKeepsCopiesFound() {
        var table = RecordTable()
        let records = [record(0, 1), record(1, 1), record(2, 1), record(1, 2, service: "openai")]
        let number: (SignedRecord) -> Int = { item in (0..<3).first { testKey($0).publicKey == item.origin } ?? -1 }
        for item in records { _ = put(item, in: &table, number: number(item)) }
        #expect(table.spend(at: 3, pushes: 2) == 3)
        table.noteKnown(at: 3, by: testKey(2).publicKey)
        let remap = table.removeAll { $0.origin == testKey(0).publicKey }
        #expect(remap == [nil, 0, 1, 2])
        #expect(table.count == 3)
        #expect(table.transmitsLeft(at: 2) == 3)
        #expect(table.isKnown(at: 2, by: testKey(2).publicKey))
        #expect(table.index(of: SlotID(origin: testKey(0).publicKey, slot: .heartbeat)) == nil)
        // Origins renumbered (node 1 now 0, node 2 now 1): copies are found under the new numbers.
        table.renumberOrigins { key in key == testKey(1).publicKey ? 0 : key == testKey(2).publicKey ? 1 : nil }
        #expect(table.index(ofCopy: records[3].wire[...], originNumber: 0, version: records[3].version) == 2)
        #expect(table.index(ofCopy: records[2].wire[...], originNumber: 1, version: records[2].version) == 1)
        #expect(table.index(ofCopy: records[3].wire[...], originNumber: 1, version: records[3].version) == nil)
    }
}

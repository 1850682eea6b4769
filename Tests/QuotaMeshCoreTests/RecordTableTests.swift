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
        body[consumptionCountByte(of: record)] ^= 0x01
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
        // Node 1 stops trusting node 2 too (with trust stores that differ, nodes 0 and 1 would spend no
        // rights). Node 2's packets are now refused, and node 0's own record still spreads.
        mesh.nodes[1].replacePeers(
            (0..<2).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) })
        mesh.run(for: 1_000)
        #expect(mesh.drops(0, .unknownSender) > 0)
        #expect(mesh.acquire(0, AcquireRequest(service: "openai", priority: .urgent))?.granted == true)
        mesh.run(for: 1_000)
        // Node 0's two calls and node 1's own; node 2's call is forgotten with its records.
        #expect(mesh.view(1, "openai")?.consumedGlobal == 3)
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

    @Test func holdersAreRememberedUpToTheCapOldestFirstOutAndForgottenWithTheLastPush() {
        var table = RecordTable()
        let slot = put(record(0, 1), in: &table, number: 0)
        let other = put(record(1, 1), in: &table, number: 1)
        let cap = RecordTable.knownByCap
        for peer in 0..<(cap + 1) { table.noteKnown(at: slot, by: testKey(10 + peer).publicKey) }
        // The first holder made room for the last; the rest are all still known, and no other slot's.
        #expect(!table.isKnown(at: slot, by: testKey(10).publicKey))
        for peer in 1..<(cap + 1) { #expect(table.isKnown(at: slot, by: testKey(10 + peer).publicKey), "peer \(peer)") }
        #expect(!table.isKnown(at: other, by: testKey(11).publicKey))
        // A newer version starts a new list with its sender; the last push forgets it.
        _ = table.put(
            record(0, 2), for: SlotID(origin: testKey(0).publicKey, slot: .heartbeat), transmits: 5,
            knownBy: testKey(3).publicKey.prefix64, originNumber: 0)
        #expect(table.isKnown(at: slot, by: testKey(3).publicKey))
        #expect(!table.isKnown(at: slot, by: testKey(12).publicKey))
        #expect(table.spend(at: slot, pushes: 5) == 0)
        #expect(!table.isKnown(at: slot, by: testKey(3).publicKey))
        // A freed list is handed to the next slot clean.
        table.noteKnown(at: other, by: testKey(4).publicKey)
        #expect(table.isKnown(at: other, by: testKey(4).publicKey))
        #expect(!table.isKnown(at: other, by: testKey(3).publicKey))
    }

    @Test func slotsAreFoundByHashAndByOriginAcrossGrowth() {
        var table = RecordTable()
        // Enough slots to grow the hash index several times.
        var indices: [Int] = []
        for origin in 0..<40 {
            indices.append(put(record(origin, 1), in: &table, number: origin))
            indices.append(put(record(origin, 2, service: "openai"), in: &table, number: origin))
        }
        for origin in 0..<40 {
            let heartbeat = SlotID(origin: testKey(origin).publicKey, slot: .heartbeat)
            let quota = SlotID(origin: testKey(origin).publicKey, slot: .quota(QuotaKey(service: "openai")))
            #expect(table.index(ofHash: heartbeat.hash) == indices[2 * origin])
            #expect(table.index(of: quota) == indices[2 * origin + 1])
            #expect(table.index(ofSlot: .heartbeat, originNumber: origin) == indices[2 * origin])
            #expect(table.index(ofSlot: .quota(QuotaKey(service: "openai")), originNumber: origin) == indices[2 * origin + 1])
        }
        #expect(table.index(ofHash: SlotID(origin: testKey(99).publicKey, slot: .heartbeat).hash) == nil)
        #expect(table.index(ofSlot: .quota(QuotaKey(service: "github")), originNumber: 3) == nil)
        #expect(table.index(ofSlot: .heartbeat, originNumber: 99) == nil)
    }

    @Test func aDirectoryFindsEveryPeerInKeyOrderAndNoStranger() {
        let infos = (0..<200).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: nil) }
        // A key given twice keeps its last entry.
        let directory = PeerDirectory(infos + [PeerInfo(name: "again", key: testKey(7).publicKey, endpoint: nil)])
        #expect(directory.count == 200)
        #expect(directory.infos.map(\.key) == directory.infos.map(\.key).sorted())
        for index in 0..<200 {
            let key = testKey(index).publicKey
            let position = directory.index(of: key)
            #expect(position.map { directory.infos[$0].key } == key, "peer \(index)")
        }
        #expect(directory.index(of: testKey(7).publicKey).map { directory.infos[$0].name } == "again")
        for stranger in 200..<250 { #expect(directory.index(of: testKey(stranger).publicKey) == nil) }
    }
}

import Testing
@testable import QuotaMeshCore
import QuotaMeshCrypto

/// Contradiction is evidence: an origin that signs two records that cannot both be true is quarantined,
/// with the proof kept, and everything derived from it is forgotten.
@Suite struct QuarantineTests {
    static let services = ["openai": ServicePolicy(limit: 30, windowMillis: 60_000)]

    /// Node 0 signs `state` at `sequence` and sends it to node `target`.
    func sign(_ state: QuotaState, sequence: UInt64, to target: Int, in mesh: inout TestMesh) {
        mesh.deliverSigned(state, service: "openai", sequence: sequence, to: target)
    }

    func ledger(giving amount: UInt64, to receiver: Int, window: UnixMillis) -> QuotaState {
        var ledger = RightsLedger(windowEnd: window)
        ledger.give(amount, to: testKey(receiver).publicKey)
        return QuotaState(ledger: ledger)
    }

    func rights(_ mesh: TestMesh, _ node: Int) -> Int64 { mesh.view(node, "openai")?.rights ?? -1 }

    @Test func aForkThatShowsEachReceiverADifferentGiftIsCaughtWhereBothMeet() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 1_000)
        let window = (mesh.now / 60_000 + 1) * 60_000
        // Node 0 holds 10 and shows node 1 a gift of 10 to node 1, then a later record with a gift of 10 to
        // node 2 and none to node 1: each record alone balances.
        sign(ledger(giving: 10, to: 1, window: window), sequence: 1, to: 1, in: &mesh)
        #expect(rights(mesh, 1) == 20, "the first gift is credited")
        sign(ledger(giving: 10, to: 2, window: window), sequence: 2, to: 1, in: &mesh)
        let peer = mesh.nodes[1].peerViews(now: mesh.now).first { $0.key == testKey(0).publicKey }
        #expect(peer?.quarantined == .ledgerRegressed)
        #expect(mesh.nodes[1].quarantined[testKey(0).publicKey]?.later.version.sequence == 2, "the proof is kept")
        #expect(rights(mesh, 1) == 10, "nothing from a quarantined origin is credited any more")
        #expect((mesh.events[1] ?? []).contains(.peerQuarantined(testKey(0).publicKey, reason: .ledgerRegressed)))
        // From now on its packets are dropped before any signature work.
        sign(ledger(giving: 10, to: 1, window: window), sequence: 3, to: 1, in: &mesh)
        #expect(mesh.drops(1, .quarantined) >= 1)
        #expect(rights(mesh, 1) == 10)
        #expect(!mesh.nodes[1].peerViews(now: mesh.now).contains { $0.key == testKey(0).publicKey && $0.live })
    }

    @Test func aQuarantineIsSavedAndOutlivesARestartUntilThePeerIsRemoved() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 1_000)
        let window = (mesh.now / 60_000 + 1) * 60_000
        sign(ledger(giving: 5, to: 1, window: window), sequence: 7, to: 1, in: &mesh)
        sign(ledger(giving: 6, to: 1, window: window), sequence: 7, to: 1, in: &mesh)
        let saved = mesh.nodes[1].persistedState()
        #expect(saved.quarantined?.first?.reason == .equivocation)
        let peers = (0..<3).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) }
        var restarted = mesh.restarted(1, from: saved, seed: 3)
        #expect(restarted.quarantined[testKey(0).publicKey]?.later.version.sequence == 7, "the proof is back")
        // Removed from the trust store and added again: a fresh start.
        restarted.replacePeers(Array(peers.dropFirst()))
        restarted.replacePeers(peers)
        #expect(restarted.quarantined.isEmpty)
        #expect(restarted.persistedState().quarantined == nil)
    }

    @Test func twoDifferentRecordsAtOneVersionQuarantineTheirOrigin() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 1_000)
        let window = (mesh.now / 60_000 + 1) * 60_000
        sign(ledger(giving: 5, to: 1, window: window), sequence: 7, to: 1, in: &mesh)
        sign(ledger(giving: 6, to: 1, window: window), sequence: 7, to: 1, in: &mesh)
        #expect(mesh.nodes[1].quarantined[testKey(0).publicKey]?.reason == .equivocation)
        #expect(mesh.nodes[1].heldRecords.allSatisfy { $0.origin != testKey(0).publicKey }, "its records are forgotten")
    }

    /// Node 0 shows node 1 one record and node 2 another at the same version; each alone believes its own.
    /// Ordinary gossip between 1 and 2 brings the two together: the node where they meet quarantines node 0
    /// with both records as proof, forgets what it claimed, and drops its next packet before any signature
    /// check. (The other node is not told: a gap, below.)
    @Test func anOriginShowingTwoNodesDifferentRecordsAtOneVersionIsQuarantinedWhereGossipBringsThemTogether() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 1_000)
        _ = mesh.acquire(1, AcquireRequest(service: "openai", priority: .urgent))
        mesh.run(for: 1_000)
        let liar = testKey(0).publicKey
        // Node 0 is heard only through what it signs from here on.
        mesh.cut = [[0, 1], [0, 2], [1, 0], [2, 0]]
        let windowEnd = (mesh.now / 60_000 + 1) * 60_000
        func consumption(_ count: UInt64) -> QuotaState {
            QuotaState(consumption: ConsumptionEntry(total: 1_000 + count, windowEnd: windowEnd, windowCount: count))
        }
        mesh.deliverSigned(consumption(5), service: "openai", sequence: 42, to: 1)
        mesh.deliverSigned(consumption(7), service: "openai", sequence: 42, to: 2)
        #expect(mesh.view(1, "openai")?.consumedGlobal == 6, "node 1 alone believes the 5 it was shown")
        #expect(mesh.view(2, "openai")?.consumedGlobal == 8, "node 2 alone believes the 7 it was shown")
        #expect(mesh.nodes[1].quarantined.isEmpty && mesh.nodes[2].quarantined.isEmpty)

        mesh.run(for: 3_000)
        let quarantinedBy = [1, 2].filter { mesh.nodes[$0].quarantined[liar] != nil }
        #expect(!quarantinedBy.isEmpty, "gossip brought the two records together somewhere")
        for node in quarantinedBy {
            let evidence = mesh.nodes[node].quarantined[liar]
            #expect(evidence?.reason == .equivocation, "node \(node)")
            #expect(evidence?.earlier.version == evidence?.later.version, "node \(node): the proof is both records at one version")
            #expect(evidence?.earlier != evidence?.later, "node \(node)")
            #expect((mesh.events[node] ?? []).contains(.peerQuarantined(liar, reason: .equivocation)), "node \(node)")
            #expect(mesh.nodes[node].peerViews(now: mesh.now).first { $0.key == liar }?.quarantined == .equivocation)
            #expect(mesh.nodes[node].heldRecords.allSatisfy { $0.origin != liar }, "node \(node): its records are forgotten")
            #expect(mesh.view(node, "openai")?.consumedGlobal == 1, "node \(node): only the honest grant is left")
            // Its next packet, even one whose signature would not verify, is dropped as quarantined: no
            // signature work.
            var forged = WireFormat.encodePacket(
                header: PacketHeader(sender: liar, incarnation: 9_000_000_000, sequence: 1 << 40, sentAt: mesh.now),
                payload: .records([]), signingKey: testKey(0), cluster: "quotamesh")
            forged[forged.count - 1] ^= 0x01
            let (quarantinedBefore, badBefore) = (mesh.drops(node, .quarantined), mesh.drops(node, .badSignature))
            mesh.apply(mesh.nodes[node].receive(datagram: forged, from: endpoint(0), now: mesh.now), from: node)
            #expect(mesh.drops(node, .quarantined) == quarantinedBefore + 1)
            #expect(mesh.drops(node, .badSignature) == badBefore)
        }
        withKnownIssue(
            "the node that quarantines stops relaying the liar's records and does not pass the proof on, so a node shown only one of the two never sees the contradiction (docs/THREAT_MODEL.md, Gaps)"
        ) {
            #expect(quarantinedBy == [1, 2])
        }
    }

    @Test func copiesAfterARecordThatQuarantinesItsOriginInTheSamePacketAreSafe() {
        // A quarantine drops records and renumbers the rest; copies later in the same packet name slots by
        // their old numbers (this crashed a node with an index out of range).
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 1_000)
        _ = mesh.acquire(2, AcquireRequest(service: "openai", priority: .urgent))
        mesh.run(for: 1_000)
        let window = (mesh.now / 60_000 + 1) * 60_000
        sign(ledger(giving: 5, to: 1, window: window), sequence: 7, to: 1, in: &mesh)
        let held = mesh.nodes[1].heldRecords
        let fromOthers = held.filter { $0.origin == testKey(2).publicKey }.count
        #expect(fromOthers >= 1)
        let liar = testKey(0)
        // Copies of records held in slots after the liar's (whose slots come first), as a relay would send.
        let copies = Array(held.filter { $0.origin != liar.publicKey }.suffix(3))
        let fork = SignedRecord(
            signing: .quota(QuotaKey(service: "openai"), ledger(giving: 6, to: 1, window: window)),
            version: RecordVersion(incarnation: 9_000_000_000, sequence: 7), timestamp: mesh.now, with: liar,
            cluster: "quotamesh")
        let packet = WireFormat.encodePacket(
            header: PacketHeader(
                sender: liar.publicKey, incarnation: 9_000_000_000, sequence: 1 << 40, sentAt: mesh.now),
            payload: .records([fork] + copies), signingKey: liar, cluster: "quotamesh")
        mesh.apply(mesh.nodes[1].receive(datagram: packet, from: endpoint(0), now: mesh.now), from: 1)
        #expect(mesh.nodes[1].quarantined[liar.publicKey]?.reason == .equivocation, "\(mesh.events[1] ?? [])")
        #expect(mesh.nodes[1].heldRecords.filter { $0.origin == testKey(2).publicKey }.count == fromOthers)
        mesh.run(for: 1_000)
        #expect(mesh.acquire(1, AcquireRequest(service: "openai", priority: .urgent))?.granted == true)
    }

    @Test func anHonestNodeThatRestartsIsNotQuarantined() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 1_000)
        for _ in 0..<3 { _ = mesh.acquire(0, AcquireRequest(service: "openai", priority: .urgent)) }
        mesh.run(for: 1_000)
        // Node 0 restarts from what it saved, spends again, and its new records reach the others.
        mesh.nodes[0] = mesh.restarted(0, from: mesh.persisted[0], seed: 9)
        mesh.apply(mesh.nodes[0].start(now: mesh.now), from: 0)
        mesh.run(for: 3_000)
        _ = mesh.acquire(0, AcquireRequest(service: "openai", priority: .urgent))
        mesh.run(for: 1_000)
        for node in [1, 2] { #expect(mesh.nodes[node].quarantined.isEmpty, "node \(node)") }
        #expect(mesh.view(1, "openai")?.consumedGlobal == 4)
    }
}

/// Removal heals: taking a peer out of the trust store takes out everything derived from it, in memory and
/// in what is saved next.
@Suite struct RemovalHealsTests {
    @Test func removingALiarRestoresTheHonestViewAndTheSavedState() {
        var mesh = TestMesh(count: 3, services: ["openai": ServicePolicy(limit: 100, windowMillis: 60_000)])
        mesh.run(for: 1_000)
        _ = mesh.acquire(1, AcquireRequest(service: "openai", priority: .urgent))
        mesh.run(for: 1_000)
        // Node 0 lies within every bound: the window nearly spent, and a huge lifetime total.
        let windowEnd = (mesh.now / 60_000 + 1) * 60_000
        let lie = QuotaState(consumption: ConsumptionEntry(total: 1_000_000_000, windowEnd: windowEnd, windowCount: 95))
        mesh.deliverSigned(lie, service: "openai", sequence: 1, to: 1)
        #expect(mesh.view(1, "openai")?.consumedGlobal == 96)
        #expect((mesh.nodes[1].persistedState().quotas.first?.clusterConsumed ?? 0) >= 1_000_000_000)
        // Node 1 restarts from what it saved, the liar's total among it.
        mesh.nodes[1] = mesh.restarted(1, from: mesh.nodes[1].persistedState(), seed: 5)
        mesh.apply(mesh.nodes[1].start(now: mesh.now), from: 1)
        mesh.deliverSigned(lie, service: "openai", sequence: 1, to: 1)
        mesh.run(for: 2_000)
        // The operator removes node 0 from node 1's trust store.
        mesh.nodes[1].replacePeers((1..<3).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) })
        #expect(mesh.view(1, "openai")?.consumedGlobal == 1, "only the honest grant is left")
        #expect(mesh.view(1, "openai")?.remaining == 99)
        #expect((mesh.nodes[1].persistedState().quotas.first?.clusterConsumed ?? .max) < 1_000, "nothing of the liar is saved")
    }
}

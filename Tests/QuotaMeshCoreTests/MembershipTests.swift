import QuotaMeshCore
import QuotaMeshCrypto
import Testing

/// Rights are split among the members each node's trust store names: nodes whose trust stores differ
/// would split the limit different ways, and their parts need not add up to it.
@Suite struct MembershipTests {
    static let policy = ServicePolicy(limit: 30, windowMillis: 10_000)

    /// Three nodes, node 1 trusting only node 0 (a peer added to two trust stores of three).
    func misconfiguredMesh() -> TestMesh {
        var mesh = TestMesh(count: 3, services: ["svc": Self.policy])
        mesh.nodes[1].replacePeers([PeerInfo(name: "n0", key: testKey(0).publicKey, endpoint: endpoint(0))])
        return mesh
    }

    @Test func partsSplitAmongDifferentMembersCanAddUpToMoreThanTheLimit() {
        // Why the check exists: node 1 counts two members and holds half the window, nodes 0 and 2 count
        // three and hold a third each.
        let all = (0..<3).map { testKey($0).publicKey }
        let three = RightsAllotment(members: all, limit: 30, windowEnd: 1_800_000_010_000)
        let two = RightsAllotment(members: Array(all.prefix(2)), limit: 30, windowEnd: 1_800_000_010_000)
        let parts = three.initial(of: all[0]) + two.initial(of: all[1]) + three.initial(of: all[2])
        #expect(parts == 35)
        #expect(MembersDigest(members: all) != MembersDigest(members: Array(all.prefix(2))))
        #expect(MembersDigest(members: all.reversed()) == MembersDigest(members: all))
    }

    @Test func nodesThatHearAnotherMemberSetSpendNoRightsUntilTheTrustStoresAgree() {
        var mesh = misconfiguredMesh()
        mesh.now = (mesh.now / 10_000 + 1) * 10_000 + 100
        // Each node spends once, so its record (and the members it names) goes out; a few rounds carry them.
        for index in 0..<3 { _ = mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent)) }
        mesh.run(for: 1_000)
        for index in 0..<3 {
            let decision = mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent))
            #expect(decision?.granted == false, "node \(index)")
            #expect(decision?.detail?.kind == .trustStoresDiffer, "node \(index): \(String(describing: decision?.detail))")
        }
        // Node 0 and node 2 see node 1 sign two members; node 1 sees node 0 sign three.
        let differ0 = mesh.nodes[0].peerViews(now: mesh.now).filter { !$0.membersAgree }.map(\.name)
        #expect(differ0 == ["n1"])
        #expect(mesh.nodes[0].peerViews(now: mesh.now).first { $0.name == "n1" }?.members == 2)
        #expect(mesh.nodes[1].peerViews(now: mesh.now).filter { !$0.membersAgree }.map(\.name) == ["n0"])
        #expect(mesh.nodes[2].membersDiffer == [testKey(1).publicKey])
        let reported = (mesh.events[0] ?? []).contains {
            if case .membersDiffer(let peer, let count) = $0 { return peer == testKey(1).publicKey && count == 2 }
            return false
        }
        #expect(reported)

        // The operator adds node 2 to node 1's trust store: node 1 re-signs with three members, and every
        // node spends again within a few rounds.
        mesh.nodes[1].replacePeers((0..<3).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) })
        mesh.run(for: 1_000)
        for index in 0..<3 {
            #expect(mesh.nodes[index].membersDiffer.isEmpty, "node \(index)")
            #expect(mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent))?.granted == true, "node \(index)")
        }
        let healed = (mesh.events[0] ?? []).contains { if case .membersAgree = $0 { return true }; return false }
        #expect(healed)
    }

    @Test func aBurstOnNodesWithDifferentTrustStoresStaysWithinTheLimitOnceTheyHaveHeardEachOther() {
        // After one call each has carried the member sets, every node bursts urgent calls for the rest of
        // the window: together they grant no more than the limit (here: nothing beyond the first calls).
        var mesh = misconfiguredMesh()
        mesh.now = (mesh.now / 10_000 + 1) * 10_000 + 100
        var granted = 0
        for index in 0..<3 where mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent))?.granted == true {
            granted += 1
        }
        mesh.run(for: 600)
        for _ in 0..<40 {
            for index in 0..<3 where mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent))?.granted == true {
                granted += 1
            }
            mesh.run(for: 200)
        }
        #expect(granted <= 30)
        #expect(granted == 3, "only the calls made before the member sets were heard: \(granted)")
    }

    @Test func theMemberDigestSurvivesTheWireAndOldRecordsDecodeWithoutIt() throws {
        let digest = MembersDigest(members: (0..<4).map { testKey($0).publicKey })
        let state = QuotaState(members: digest)
        let body = RecordBody.quota(QuotaKey(service: "svc"), state)
        #expect(try WireFormat.decode(body: WireFormat.encode(body: body)) == body)
        let plain = RecordBody.quota(QuotaKey(service: "svc"), QuotaState())
        guard case .quota(_, let decoded) = try WireFormat.decode(body: WireFormat.encode(body: plain)) else {
            Issue.record("not a quota body")
            return
        }
        #expect(decoded.members == nil)
    }
}

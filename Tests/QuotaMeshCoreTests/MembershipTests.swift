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

    @Test func theNodeWhoseTrustStoreIsTheOddOneOutSpendsNoRightsUntilTheStoresAgree() {
        var mesh = misconfiguredMesh()
        mesh.now = (mesh.now / 10_000 + 1) * 10_000 + 100
        // Each node spends once, so its record (and the members it names) goes out; a few rounds carry them.
        for index in 0..<3 { _ = mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent)) }
        mesh.run(for: 1_000)
        // Node 1 counts two members; node 0, which names three, is all it hears: it stops.
        let refused = mesh.acquire(1, AcquireRequest(service: "svc", priority: .urgent))
        #expect(refused?.granted == false)
        #expect(refused?.detail?.kind == .trustStoresDiffer, "\(String(describing: refused?.detail))")
        #expect(mesh.nodes[1].rightsStopped)
        #expect(mesh.nodes[1].peerViews(now: mesh.now).filter { !$0.membersAgree }.map(\.name) == ["n0"])
        // Nodes 0 and 2 agree with each other and go on spending their parts, and say node 1 differs.
        for index in [0, 2] {
            #expect(!mesh.nodes[index].rightsStopped, "node \(index)")
            #expect(mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent))?.granted == true, "node \(index)")
            #expect(mesh.nodes[index].membersDiffer == [testKey(1).publicKey], "node \(index)")
        }
        #expect(mesh.nodes[0].peerViews(now: mesh.now).first { $0.name == "n1" }?.members == 2)
        let reported = (mesh.events[1] ?? []).contains {
            if case .membersDiffer(let peer, let count, let stopped) = $0 {
                return peer == testKey(0).publicKey && count == 3 && stopped
            }
            return false
        }
        #expect(reported)

        // The operator adds node 2 to node 1's trust store: node 1 re-signs with three members, and every
        // node agrees (and spends) within a few rounds.
        mesh.nodes[1].replacePeers((0..<3).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) })
        mesh.run(for: 1_000)
        for index in 0..<3 {
            #expect(mesh.nodes[index].membersDiffer.isEmpty, "node \(index)")
            #expect(!mesh.nodes[index].rightsStopped, "node \(index)")
        }
        #expect(mesh.acquire(1, AcquireRequest(service: "svc", priority: .urgent))?.granted == true)
        let healed = (mesh.events[0] ?? []).contains { if case .membersAgree = $0 { return true }; return false }
        #expect(healed)
    }

    @Test func aBurstOnNodesWithDifferentTrustStoresStaysWithinTheLimitOnceTheyHaveHeardEachOther() {
        // After one call each has carried the member sets, every node bursts urgent calls for the rest of
        // the window: node 1 (two members, a part of 15 in its view) stops, and together they grant no
        // more than the limit (with node 1 spending its part, 35 could go).
        var mesh = misconfiguredMesh()
        mesh.now = (mesh.now / 10_000 + 1) * 10_000 + 100
        var granted = [0, 0, 0]
        for index in 0..<3 where mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent))?.granted == true {
            granted[index] += 1
        }
        mesh.run(for: 600)
        for _ in 0..<40 {
            for index in 0..<3 where mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent))?.granted == true {
                granted[index] += 1
            }
            mesh.run(for: 200)
        }
        #expect(granted.reduce(0, +) <= 30, "\(granted)")
        #expect(granted[1] == 1, "node 1 stopped after its first call: \(granted)")
        #expect(granted[0] + granted[2] >= 20, "the others spent their parts: \(granted)")
    }

    @Test func oneVouchedPeerNamingABogusMemberSetStopsNobodyWhereTwoAgree() {
        // Node 0, vouched, signs a record naming a thousand members. Nodes 1 and 2 agree with each other:
        // they go on spending (and report node 0); node 0's own calls were never bounded by rights anyway.
        var mesh = TestMesh(count: 3, services: ["svc": Self.policy])
        mesh.now = (mesh.now / 10_000 + 1) * 10_000 + 100
        for index in 1..<3 { _ = mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent)) }
        mesh.run(for: 1_000)
        let bogus = MembersDigest(count: 1_000, hash: 42)
        for target in 1..<3 {
            mesh.deliverSigned(QuotaState(members: bogus), service: "svc", sequence: 1, to: target)
        }
        mesh.run(for: 1_000)
        for index in 1..<3 {
            #expect(mesh.nodes[index].membersDiffer == [testKey(0).publicKey], "node \(index)")
            #expect(!mesh.nodes[index].rightsStopped, "node \(index)")
            #expect(mesh.acquire(index, AcquireRequest(service: "svc", priority: .urgent))?.granted == true, "node \(index)")
        }
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

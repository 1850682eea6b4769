import QuotaMeshCore
import QuotaMeshCrypto
import Testing

/// A node's claimed weight reaches its peers before any call, and each believes at most what it vouches.
@Suite struct WeightClaimTests {
    @Test func aClaimArrivesBeforeAnyCallAndIsBelievedOnlyAsFarAsItIsVouched() {
        var mesh = TestMesh(count: 2, services: ["api": ServicePolicy(limit: 100, windowMillis: 60_000, accounts: ["a", "b"])])
        // Node 0 claims 4; node 1 vouches 2 for it.
        var heavy = mesh.nodes[0].configuration
        heavy.weight = Weight(4) ?? .one
        let infos = (0..<2).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) }
        mesh.nodes[0] = MeshInstance(identity: testKey(0), configuration: heavy, peers: infos, restored: nil, now: mesh.now, seed: 1)
        var vouching = infos
        vouching[0].weight = Weight(2) ?? .one
        mesh.nodes[1].replacePeers(vouching)
        mesh.apply(mesh.nodes[0].start(now: mesh.now), from: 0)
        mesh.apply(mesh.nodes[1].start(now: mesh.now), from: 1)
        mesh.run(for: 2_000)
        let view = mesh.nodes[1].peerViews(now: mesh.now).first { $0.key == testKey(0).publicKey }
        #expect(view?.claimedWeight == Weight(4))
        #expect(view?.vouchedWeight == Weight(2))
        #expect(view?.weight == Weight(2), "the smaller of claim and vouch")
        #expect(mesh.nodes[1].effectiveWeight(of: testKey(1).publicKey) == .one, "its own weight, as configured")
        // The record that carried the claim names a configured account only: no `default` was made up.
        let accounts = Set(mesh.nodes[1].quotas(service: "api", now: mesh.now).map(\.key.account))
        #expect(!accounts.contains("default"), "\(accounts)")
    }
}

/// An answer's view is worked out for its own key alone, and is the one the service's listing holds.
@Suite struct SingleKeyViewTests {
    @Test func theViewOfOneKeyIsTheListingsViewOfIt() {
        var mesh = TestMesh(count: 2, services: ["api": ServicePolicy(limit: 100, windowMillis: 60_000, accounts: ["a", "b"])])
        mesh.run(for: 1_000)
        for _ in 0..<5 { _ = mesh.acquire(0, AcquireRequest(service: "api", priority: .urgent)) }
        mesh.run(for: 1_000)
        for node in mesh.nodes {
            let listing = node.quotas(service: "api", now: mesh.now)
            #expect(listing.count == 2)
            for view in listing { #expect(node.quota(of: view.key, now: mesh.now) == view) }
            #expect(node.quota(of: QuotaKey(service: "api", account: "c"), now: mesh.now) == nil)
            #expect(node.quota(of: QuotaKey(service: "other"), now: mesh.now) == nil)
            #expect(node.quota(of: QuotaKey(service: "api", account: "a").counting("tokens"), now: mesh.now) == nil)
        }
    }
}

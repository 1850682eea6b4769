import QuotaMeshCore
import Testing

/// `max_held_rights`: what one node may hold of a window, so that a crash takes little with it.
@Suite struct HeldRightsCapTests {
    /// The most node 0 holds while it calls 3 times a round for 1 s and its peers idle (rights flow to it).
    func mostHeld(cap: Int64?) -> (held: Int64, granted: Int) {
        var policy = ServicePolicy(limit: 30, windowMillis: 10_000)
        policy.maxHeldRights = cap
        var mesh = TestMesh(count: 3, services: ["svc": policy])
        mesh.now = (mesh.now / 10_000 + 1) * 10_000 + 100
        var most: Int64 = 0
        var granted = 0
        // Busy for 1 s (its demand then asks for what two more seconds would need), then quiet.
        for round in 0..<20 {
            let calls = round < 5 ? 3 : 0
            for _ in 0..<calls where mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))?.granted == true {
                granted += 1
            }
            mesh.run(for: 200)
            most = max(most, mesh.view(0, "svc")?.rights ?? 0)
        }
        return (most, granted)
    }

    @Test func aNodeHoldsNoMoreThanTheCapAndStillSpendsWhatItNeeds() {
        let uncapped = mostHeld(cap: nil)
        #expect(uncapped.held > 8, "without a cap, rights pile up at the busy node: \(uncapped.held)")
        let capped = mostHeld(cap: 8)
        #expect(capped.held <= 8, "\(capped.held)")
        #expect(capped.granted == 15 && uncapped.granted == 15, "every call granted either way: \(capped.granted), \(uncapped.granted)")
    }
}

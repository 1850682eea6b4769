import QuotaMeshCore
import Testing

/// The right each node keeps from its own normal and low work for urgent calls, until a window's closing
/// part, where a member's part of the window is large enough.
@Suite struct UrgentKeepTests {
    /// One node alone with `limit` calls per 10 s window, no reserves and no pacing (so that only rights
    /// decide), at 100 ms into a window.
    static func mesh(limit: Int64, refill: ServicePolicy.Refill = .window) -> TestMesh {
        var policy = ServicePolicy(
            limit: limit, windowMillis: 10_000, reserves: Reserves(urgent: 0, normal: 0, low: 0), burstFraction: 1)
        policy.refill = refill
        var mesh = TestMesh(count: 1, services: ["svc": policy])
        mesh.now = (mesh.now / 10_000 + 1) * 10_000 + 100
        return mesh
    }

    /// How many calls of `priority` the node grants in a row before the first refusal, and that refusal.
    static func grantsInARow(_ mesh: inout TestMesh, _ priority: Priority) -> (count: Int, refusal: AcquireDecision?) {
        for count in 0..<1_000 {
            guard let decision = mesh.acquire(0, AcquireRequest(service: "svc", priority: priority)), decision.granted else {
                return (count, mesh.acquire(0, AcquireRequest(service: "svc", priority: priority)))
            }
        }
        return (1_000, nil)
    }

    @Test func normalWorkLeavesOneRightForUrgentWorkUntilTheWindowCloses() {
        var mesh = Self.mesh(limit: 10)
        let normal = Self.grantsInARow(&mesh, .normal)
        #expect(normal.count == 9, "one of the node's 10 rights is kept")
        #expect(normal.refusal?.detail?.kind == .rights)
        // Refused for the kept right, normal work looks again no later than the window's closing part.
        let release = (mesh.now / 10_000 + 1) * 10_000 - 50 - 500
        #expect((normal.refusal?.retryAt ?? .max) <= release, "\(String(describing: normal.refusal))")
        #expect(Self.grantsInARow(&mesh, .urgent).count == 1, "the kept right goes to an urgent call")

        // In a new window, 1.2 s before its end: the refusal names the release, which comes before the next
        // look it would otherwise take (a second on), and from then the kept right is normal work's.
        mesh.now = (mesh.now / 10_000 + 2) * 10_000 - 1_200
        let late = Self.grantsInARow(&mesh, .normal)
        #expect(late.count == 9)
        #expect(late.refusal?.retryAt == (mesh.now / 10_000 + 1) * 10_000 - 50 - 500)
        mesh.now = (mesh.now / 10_000 + 1) * 10_000 - 50 - 500
        #expect(Self.grantsInARow(&mesh, .normal).count == 1, "released")
    }

    @Test func nothingIsKeptWhereAMembersPartIsSmall() {
        var small = Self.mesh(limit: 7)
        #expect(Self.grantsInARow(&small, .normal).count == 7, "a part of 7 rights: nothing kept")
    }

    /// Where rights accrue (a token bucket) one is kept too, from a part of 4 rights: normal work spends
    /// all that accrued but one.
    @Test(arguments: [10, 5] as [Int64]) func oneRightIsKeptWhereRightsAccrue(limit: Int64) {
        var bucket = Self.mesh(limit: limit, refill: .continuous)
        bucket.now += 9_000
        let normal = Self.grantsInARow(&bucket, .normal).count
        var urgent = Self.mesh(limit: limit, refill: .continuous)
        urgent.now += 9_000
        let accrued = Self.grantsInARow(&urgent, .urgent).count
        #expect(accrued >= Int(limit) * 9 / 10 - 1 && normal == accrued - 1, "normal \(normal), urgent \(accrued)")
        #expect(Self.grantsInARow(&bucket, .urgent).count == 1, "the kept right goes to an urgent call")
        // The same part where the whole window comes back at its end keeps nothing below 8.
        var fixed = Self.mesh(limit: limit)
        #expect(Self.grantsInARow(&fixed, .normal).count == (limit >= 8 ? Int(limit) - 1 : Int(limit)))
    }

    /// A token bucket's answer says how many tokens it held and when it will be full, not when a window
    /// ends: no token left holds calls back only until the bucket has refilled one, not until it is full.
    @Test func aBucketThatSaidNoTokenWasLeftIsTakenToRefill() {
        var mesh = Self.mesh(limit: 10, refill: .continuous)
        mesh.now += 3_000
        let report = RateLimitHeaderParser.parse(
            headers: [("ratelimit-policy", #""default";q=10;w=10"#), ("ratelimit", #""default";r=0;t=10"#)],
            status: 200, now: mesh.now)
        mesh.observe(0, service: "svc", status: 200, report: report)
        let refused = mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))
        #expect(refused?.granted == false, "the upstream just said no token is left")
        mesh.now += 1_500
        let granted = mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))
        #expect(granted?.granted == true, "a token refilled since: \(String(describing: granted))")
        // The count of what was consumed closes with the configured window, not ten seconds after the last
        // answer: in the next window, with a fresh answer that the bucket refilled, calls go again.
        mesh.now = (mesh.now / 10_000 + 1) * 10_000 + 3_000
        let fresh = RateLimitHeaderParser.parse(
            headers: [("ratelimit-policy", #""default";q=10;w=10"#), ("ratelimit", #""default";r=5;t=5"#)],
            status: 200, now: mesh.now)
        mesh.observe(0, service: "svc", status: 200, report: fresh)
        #expect(mesh.view(0, "svc")?.resetAt == (mesh.now / 10_000 + 1) * 10_000, "the configured window's end")
    }
}

/// Whom urgent work asks when no live peer is a holder in this node's view: the peers that every transfer it
/// has seen would make holders (``RightsBalances/believedHolding(of:)``), not peers at random.
@Suite struct BelievedHoldersTests {
    @Test func urgentWorkAsksThePeerThatAGiftNotCoveredYetMadeAHolder() throws {
        // Six members sharing 60 calls a minute: 10 rights each. Node 5 is never heard from (not live).
        // Started 100 ms into a window.
        var mesh = TestMesh(
            count: 6, services: ["svc": ServicePolicy(limit: 60, windowMillis: 60_000, burstFraction: 1)],
            now: (1_800_000_000_000 / 60_000 + 1) * 60_000 + 100)
        for peer in 0..<5 {
            mesh.cut.insert([5, peer])
            mesh.cut.insert([peer, 5])
        }
        mesh.run(for: 1_000)
        let windowEnd = (mesh.now / 60_000 + 1) * 60_000
        // Node 0 spends its own 10.
        var granted = 0
        for _ in 0..<10 where mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))?.granted == true { granted += 1 }
        #expect(granted == 10)
        // What node 0 hears: node 1 spent 5 and gave 15 to node 2 (it had 10 more from node 5, whose ledger
        // node 0 never saw, so node 1's books do not balance in its view); nodes 2, 3 and 4 spent their 10.
        let key2 = testKey(2).publicKey
        let given = RightsLedger(windowEnd: windowEnd, spent: 5, given: [RightsTransfer(receiver: key2, amount: 15)])
        mesh.deliverSigned(QuotaState(ledger: given), service: "svc", sequence: 1, from: 1, to: 0)
        for origin in 2...4 {
            mesh.deliverSigned(QuotaState(ledger: RightsLedger(windowEnd: windowEnd, spent: 10)), service: "svc", sequence: 1, from: origin, to: 0)
        }
        mesh.wire = []
        _ = mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))
        let asked = mesh.wire.filter { entry in
            guard entry.from == 0, let payload = try? WireFormat.decodePayload(entry.bytes) else { return false }
            if case .rightsRequest = payload { return true }
            return false
        }.map(\.to)
        // Node 2 holds 15 by every transfer node 0 has seen; node 5, never heard from in the second since
        // node 0 started, holds the 10 the split dealt it as far as node 0 knows, so it is asked too.
        #expect(asked == [5, 2], "asked: \(asked)")
    }
}

@testable import QuotaMeshCore
import Testing

/// Where the members outnumber a window's calls, the window's last slot lets every holder spend whatever
/// its pace: each node keeps one right for urgent calls through that slot, until the closing part.
@Suite struct LastSlotKeepTests {
    static func mesh(nodes: Int, limit: Int64, windowMillis: Int64 = 10_000) -> TestMesh {
        let policy = ServicePolicy(
            limit: limit, windowMillis: windowMillis, reserves: Reserves(urgent: 0, normal: 0, low: 0), burstFraction: 1)
        var mesh = TestMesh(count: nodes, services: ["svc": policy])
        mesh.now = (mesh.now / windowMillis + 1) * windowMillis + 100
        return mesh
    }

    @Test func oneRightIsKeptThroughTheLastSlotWhereNodesOutnumberTheCalls() throws {
        let mesh = Self.mesh(nodes: 30, limit: 10)
        let key = QuotaKey(service: "svc", account: "default")
        let ledger = mesh.nodes[0].ledger
        let window = try #require(ledger.rightsWindow(key, now: mesh.now))
        let opens = ledger.lastSlotOpensAt(window)
        let released = ledger.urgentKeepReleasedAt(window)
        #expect(opens > mesh.now && opens < released, "the slot opens within the window, before the release")
        #expect(ledger.urgentKeep(window, now: mesh.now) == 0, "not before the last slot")
        #expect(ledger.urgentKeep(window, now: opens - 1) == 0)
        #expect(ledger.urgentKeep(window, now: opens) == 1)
        #expect(ledger.urgentKeep(window, now: released - 1) == 1)
        #expect(ledger.urgentKeep(window, now: released) == 0, "the closing part is normal work's again")
    }

    /// The keep starts where the estimate's last slot opens: a turn slot and a spread before the closing edge
    /// that normal work keeps from an observed window's end (``QuotaLedger/windowEdge(_:length:priority:)``),
    /// which is a tenth of a short window, not the 500 ms of a long one.
    @Test(arguments: [2_000, 10_000] as [Int64])
    func theKeepStartsWhereTheEstimatesLastSlotOpens(windowMillis: Int64) throws {
        let mesh = Self.mesh(nodes: 12, limit: 5, windowMillis: windowMillis)
        let key = QuotaKey(service: "svc", account: "default")
        let ledger = mesh.nodes[0].ledger
        let window = try #require(ledger.rightsWindow(key, now: mesh.now))
        let observed = QuotaLedger.Window(resetAt: window.windowEnd, limit: 5, windowMillis: windowMillis, observed: true)
        let closingEdge = window.windowEnd
            - Int64(ledger.windowEdge(observed, length: Double(windowMillis), priority: .normal).rounded(.up))
        let opens = ledger.lastSlotOpensAt(window)
        #expect(closingEdge - opens == Int64((ledger.turnSlotMillis + ledger.spreadMillis).rounded(.up)))
        #expect(ledger.urgentKeep(window, now: opens - 1) == 0)
        #expect(ledger.urgentKeep(window, now: opens) == 1)
    }

    @Test func aMeshWithMoreCallsThanNodesKeepsNoneWhereItsPartIsSmall() throws {
        // 20 nodes sharing 100 calls: 5 a member, under the 8 that the keep takes; not outnumbered either.
        let mesh = Self.mesh(nodes: 20, limit: 100)
        let key = QuotaKey(service: "svc", account: "default")
        let ledger = mesh.nodes[0].ledger
        let window = try #require(ledger.rightsWindow(key, now: mesh.now))
        #expect(ledger.urgentKeep(window, now: ledger.lastSlotOpensAt(window)) == 0)
    }
}

/// Where the members outnumber a window's calls, the first holders in the window's dealing order keep their
/// right past the last slot's release, through the closing part, for urgent calls made there; those calls
/// ask them one at a time, in that order.
@Suite struct ClosingKeepTests {
    static let key = QuotaKey(service: "svc")
    static let count = 60
    static let members = (0..<count).map { testKey($0).publicKey }
    static let start: UnixMillis = 1_800_000_000_000

    static func policy(limit: Int64, refill: ServicePolicy.Refill = .window) -> ServicePolicy {
        var policy = ServicePolicy(limit: limit, windowMillis: 10_000, burstFraction: 1)
        policy.refill = refill
        return policy
    }

    /// The test nodes in the window's dealing order: with 50 calls among 60 members, the first 50 are
    /// dealt a right each.
    static func byPlace(limit: Int64, windowEnd: UnixMillis) -> [Int] {
        let allotment = RightsAllotment(members: members, limit: limit, windowEnd: windowEnd)
        return members.indices.sorted { allotment.place(of: members[$0])! < allotment.place(of: members[$1])! }
    }

    /// Node `owner`'s ledger at `now`, and the window (50 calls per 10 s among the 60).
    static func ledger(owner: Int, now: UnixMillis) throws -> (QuotaLedger, RightsWindow) {
        let ledger = ledgerAmongLivePeers(count: count, policy: policy(limit: 50), now: now, owner: owner)
        return (ledger, try #require(ledger.rightsWindow(key, now: now)))
    }

    static func spent(_ amount: UInt64, window: RightsWindow) -> QuotaState {
        QuotaState(ledger: RightsLedger(windowEnd: window.windowEnd, spent: amount))
    }

    @Test(arguments: [(50, .window, 2), (49, .window, 0), (20, .window, 0), (60, .window, 0), (50, .continuous, 0)]
        as [(Int64, ServicePolicy.Refill, Int)])
    func oneHolderKeepsThroughTheClosePerFiftyRightsAndOneMore(limit: Int64, refill: ServicePolicy.Refill, keepers: Int) throws {
        // Only where 60 members outnumber the calls, rights come back whole, and the window has 50 or more.
        let ledger = ledgerAmongLivePeers(count: Self.count, policy: Self.policy(limit: limit, refill: refill), now: Self.start + 1_000)
        let window = try #require(ledger.rightsWindow(Self.key, now: Self.start + 1_000))
        #expect(ledger.closingKeepers(window) == keepers)
    }

    @Test func theFirstHoldersInDealingOrderKeepTheirRightThroughTheClose() throws {
        let (probe, window) = try Self.ledger(owner: 0, now: Self.start + 1_000)
        let order = Self.byPlace(limit: 50, windowEnd: window.windowEnd)
        let released = probe.urgentKeepReleasedAt(window)
        let spendEdge = window.windowEnd - probe.rightsEdgeMillis(window)

        // The first in the dealing order keeps its right from normal work, its own and its peers', from the
        // release to the spend edge; urgent work, here or asked for by a peer, gets it.
        var (first, _) = try Self.ledger(owner: order[0], now: released)
        #expect(first.rightsDenial(Self.key, window: window, cost: 1, priority: .normal, now: released) != nil)
        #expect(first.rightsDenial(Self.key, window: window, cost: 1, priority: .normal, now: spendEdge - 1) != nil)
        #expect(first.spareRights(Self.key, window: window, priority: .normal, horizon: 2_000, now: released) == 0)
        #expect(first.spareRights(Self.key, window: window, priority: .urgent, horizon: 2_000, now: released) == 1)
        #expect(first.rightsDenial(Self.key, window: window, cost: 1, priority: .urgent, now: released) == nil)

        // The third, dealt one too, lets its own normal work spend it at the release, as every holder did.
        var (third, _) = try Self.ledger(owner: order[2], now: released)
        #expect(third.rightsDenial(Self.key, window: window, cost: 1, priority: .normal, now: released - 1) != nil,
            "kept through the last slot, like every holder")
        #expect(third.rightsDenial(Self.key, window: window, cost: 1, priority: .normal, now: released) == nil)

        // Once the first is seen to have spent its right, the next in order keeps one in its place.
        third.absorb(Self.spent(1, window: window), of: Self.members[order[0]], key: Self.key, stamp: released, records: [])
        #expect(third.rightsDenial(Self.key, window: window, cost: 1, priority: .normal, now: released) != nil)
    }

    @Test func anUrgentCallInTheClosingPartAsksTheKeepersOneAtATimeInOrder() throws {
        let (probe, window) = try Self.ledger(owner: 0, now: Self.start + 1_000)
        let order = Self.byPlace(limit: 50, windowEnd: window.windowEnd)
        let now = probe.urgentKeepReleasedAt(window) + 10
        // A node past the dealt fifty holds none.
        var (ledger, _) = try Self.ledger(owner: order[55], now: now)
        #expect(ledger.rightsDenial(Self.key, window: window, cost: 1, priority: .urgent, now: now)?.detail?.kind == .rights)
        var rng = SplitMix64(seed: 1)
        let asked = ledger.rightsAsks(now: now, rng: &rng).map(\.holder)
        #expect(asked.first == Self.members[order[0]], "the first keeper")
        #expect(asked.count == 2 && !asked.contains(Self.members[order[1]]), "one keeper at a time, with another holder")

        // Both answer without covering the call (the first keeper gave its right to an earlier urgent call):
        // the next ask goes to the second keeper.
        for holder in asked {
            ledger.absorb(Self.spent(1, window: window), of: holder, key: Self.key, stamp: now + 5, records: [])
            ledger.noteAnswered(Self.key, by: holder, directlyAt: now + 5)
        }
        let next = ledger.rightsAsks(now: now + 5, rng: &rng).map(\.holder)
        #expect(next.first == Self.members[order[1]])

        // The second keeper does not answer (down, or the ask was lost): the timer's next ask passes it over
        // for the third, where a holder not heard from would be asked again.
        let later = ledger.rightsAsks(now: now + 5 + QuotaLedger.rightsUrgentAskMillis, rng: &rng).map(\.holder)
        #expect(later.first == Self.members[order[2]])
    }
}

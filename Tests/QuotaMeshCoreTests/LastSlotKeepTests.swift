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

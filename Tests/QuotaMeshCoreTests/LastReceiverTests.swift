@testable import QuotaMeshCore
import QuotaMeshCrypto
import Testing

/// A ledger names at most ``RightsLedger/maxReceivers`` receivers a window: the gift that takes the last
/// place carries what the giver can spare, so that its surplus is not stranded where nobody new can be
/// given any (N = 100: a node holding 38 rights refused every urgent ask for the rest of a window).
@Suite struct LastReceiverTests {
    @Test func theLastReceiverOfAWindowTakesTheGiversSurplus() throws {
        let policy = ServicePolicy(
            limit: 100, windowMillis: 10_000, reserves: Reserves(urgent: 0, normal: 0, low: 0), burstFraction: 1)
        var mesh = TestMesh(count: 1, services: ["svc": policy])
        mesh.now = (mesh.now / 10_000 + 1) * 10_000 + 100
        let key = QuotaKey(service: "svc", account: "default")
        var ledger = mesh.nodes[0].ledger
        let window = try #require(ledger.rightsWindow(key, now: mesh.now))
        let own = ledger.owner
        #expect(ledger.balances(key, window: window).holding(of: own) == 100)
        for _ in 1..<RightsLedger.maxReceivers {
            #expect(ledger.giveRights(1, of: key, window: window, to: SigningKey().publicKey, now: mesh.now) == 1)
        }
        let last = SigningKey().publicKey
        let surplus = ledger.spareRights(key, window: window, priority: .low, horizon: QuotaLedger.rightsKeepMillis, now: mesh.now)
        #expect(surplus > 1)
        #expect(ledger.giveRights(1, of: key, window: window, to: last, now: mesh.now) == UInt64(surplus))
        #expect(ledger.balances(key, window: window).holding(of: own) == 100 - Int64(RightsLedger.maxReceivers - 1) - surplus)
        // A new receiver gets nothing now; one already named can still be given more.
        #expect(ledger.giveRights(1, of: key, window: window, to: SigningKey().publicKey, now: mesh.now) == 0)
        #expect(ledger.giveRights(1, of: key, window: window, to: last, now: mesh.now) == 1)
    }
}

@testable import QuotaMeshCore
import Testing

/// What a save covered: a node's shell writes the state while the instance goes on deciding, so a save
/// confirms the ledger changes up to the mark taken with the state, not the ones made during the write.
@Suite struct PersistenceMarkTests {
    static func mesh() -> TestMesh {
        let policy = ServicePolicy(
            limit: 100, windowMillis: 10_000, reserves: Reserves(urgent: 0, normal: 0, low: 0), burstFraction: 1)
        var mesh = TestMesh(count: 1, services: ["svc": policy])
        mesh.now = (mesh.now / 10_000 + 1) * 10_000 + 100
        return mesh
    }

    @Test func aLedgerChangedDuringAWriteStaysWithheldWhenTheNextSaveFails() {
        var mesh = Self.mesh()
        let key = QuotaKey(service: "svc", account: "default")
        #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))?.granted == true)
        let mark = mesh.nodes[0].persistenceMark
        // Decided while the save taken at `mark` is being written.
        #expect(mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent))?.granted == true)
        mesh.nodes[0].persistenceDidSucceed(upTo: mark)
        mesh.nodes[0].persistenceDidFail()
        let own = SlotID(origin: mesh.nodes[0].publicKey, slot: .quota(key))
        #expect(mesh.nodes[0].ledger.withheldSlots()(own), "the second spend is not on disk yet")

        // A save that covered it releases it.
        mesh.nodes[0].persistenceDidSucceed(upTo: mesh.nodes[0].persistenceMark)
        mesh.nodes[0].persistenceDidFail()
        #expect(!mesh.nodes[0].ledger.withheldSlots()(own))
    }
}

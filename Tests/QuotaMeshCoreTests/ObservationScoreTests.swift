import Testing
@testable import QuotaMeshCore
import QuotaMeshCrypto

/// An origin whose upstream observations keep contradicting what this node sees upstream loses its say
/// over observations (a decaying score and a graylist, as gossipsub v1.1 scores peers).
@Suite struct ObservationScoreTests {
    static let services = ["openai": ServicePolicy(limit: 100, windowMillis: 60_000)]

    func windowEnd(_ mesh: TestMesh) -> UnixMillis { (mesh.now / 60_000 + 1) * 60_000 }

    /// Node `index` calls the upstream, which answers 200 with `remaining` left in the current window.
    func observe(_ mesh: inout TestMesh, _ index: Int, remaining: Int64) {
        let report = RateLimitReport(dimensions: [
            RateLimitDimension(name: "requests", limit: 100, remaining: remaining, resetAt: windowEnd(mesh), windowSeconds: 60)
        ])
        mesh.observe(index, service: "openai", status: 200, report: report)
    }

    /// Node 0, a vouched liar, signs an observation that `remaining` are left in the current window.
    func lie(_ mesh: inout TestMesh, remaining: Int64, sequence: UInt64, to target: Int) {
        let observation = UpstreamObservation(
            resetAt: windowEnd(mesh), remaining: remaining, limit: 100, windowMillis: 60_000, observedAt: mesh.now,
            consumedTotalAtObservation: 0)
        mesh.deliverSigned(QuotaState(observation: observation), service: "openai", sequence: sequence, to: target)
    }

    @Test func oneOriginAloneCannotSayLessIsLeftThanTheOthersSaw() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 3_000)
        // Node 0, a liar, says the window is spent: on its word alone, node 1 does not believe it.
        lie(&mesh, remaining: 0, sequence: 1, to: 1)
        #expect(mesh.view(1, "openai")?.remaining == 100)
        #expect(mesh.acquire(1, AcquireRequest(service: "openai", priority: .normal))?.granted == true)
        // Node 2 calls the upstream and finds 80 left: node 1 takes that, not the liar's 0.
        observe(&mesh, 2, remaining: 80)
        mesh.run(for: 1_000)
        lie(&mesh, remaining: 0, sequence: 2, to: 1)
        #expect((mesh.view(1, "openai")?.remaining ?? 0) >= 75)
        // A second origin that agrees (node 2 now finds nothing left) is believed.
        observe(&mesh, 2, remaining: 0)
        mesh.run(for: 1_000)
        #expect(mesh.view(1, "openai")?.remaining == 0)
        #expect(mesh.acquire(1, AcquireRequest(service: "openai", priority: .normal))?.granted == false)
    }

    @Test func observationsCloserThanTheClocksMayBeApartAreNotJudgedByTheirOrder() {
        // Node 2 finds nothing left; 100 ms later by node 1's clock, node 1 finds 80. The clocks may be a
        // round and the rights' lead apart, and a burst of unpaced calls can spend 80 in less: node 1's
        // call may have come first, so node 2 is not held to have said less than was left. (Before this,
        // an honest node was graylisted in one seeded fault run: 10× all-urgent demand, 40 ms of skew.)
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 3_000)
        let honest = testKey(2).publicKey
        observe(&mesh, 2, remaining: 0)
        mesh.run(for: 100, step: 100)
        #expect(mesh.nodes[1].heldVersion(origin: honest, slot: .quota(QuotaKey(service: "openai"))) != nil)
        observe(&mesh, 1, remaining: 80)
        #expect(mesh.nodes[1].ledger.observationScore(of: honest, now: mesh.now) == 0)
        // Further apart than that, the same two say different things about one window: node 2 is judged.
        observe(&mesh, 2, remaining: 0)
        mesh.run(for: 400, step: 100)
        observe(&mesh, 1, remaining: 80)
        #expect(mesh.nodes[1].ledger.observationScore(of: honest, now: mesh.now) > 0.9)
    }

    @Test func aPeerThatKeepsSayingNothingIsLeftWhileTheUpstreamSaysOtherwiseIsGraylisted() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 3_000)
        let liar = testKey(0).publicKey
        for round in 1...3 {
            lie(&mesh, remaining: 0, sequence: UInt64(round), to: 1)
            mesh.run(for: 400)
            // This node's own call, made after the liar's statement (further apart than the clocks may be,
            // so that which came first is known), finds 80 left.
            observe(&mesh, 1, remaining: 80)
            #expect(mesh.nodes[1].ledger.observationScore(of: liar, now: mesh.now) >= Double(round) - 0.01)
            mesh.run(for: 200)
        }
        #expect(mesh.nodes[1].graylisted == [liar])
        #expect((mesh.events[1] ?? []).contains { if case .peerGraylisted(liar, _) = $0 { true } else { false } })
        let peer = mesh.nodes[1].peerViews(now: mesh.now).first { $0.key == liar }
        #expect(peer?.graylisted == true)
        #expect((peer?.observationScore ?? 0) >= 2.9)
        // Graylisted, its statements do not count even where another origin agrees with them: node 2's
        // 1 and the liar's 0 would agree, but node 2's word alone does not lower node 1's own 80.
        observe(&mesh, 2, remaining: 1)
        mesh.run(for: 1_000)
        lie(&mesh, remaining: 0, sequence: 10, to: 1)
        #expect(mesh.nodes[1].heldVersion(origin: liar, slot: .quota(QuotaKey(service: "openai"))) != nil)
        #expect(mesh.view(1, "openai")?.remaining == 80)
        // The graylist lifts once the score has decayed to half the threshold.
        mesh.nodes[1].liftGraylists(now: mesh.now + 30 * 60_000)
        #expect(mesh.nodes[1].graylisted == [liar], "one half-life: 1.5, not below 1.25 yet")
        mesh.nodes[1].liftGraylists(now: mesh.now + 40 * 60_000)
        #expect(mesh.nodes[1].graylisted.isEmpty)
    }

    @Test func honestPeersWhoseObservationsAgreeWithinTheSlackAreNotScored() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 3_000)
        // Both nodes call the upstream in turn; node 1 sees one more left than node 0 saw just before
        // (an upstream whose replicas lag a little): within the slack.
        var left: Int64 = 90
        for _ in 0..<10 {
            observe(&mesh, 0, remaining: left)
            mesh.run(for: 300)
            left -= 1
            observe(&mesh, 1, remaining: left + 2)
            mesh.run(for: 300)
            left -= 1
        }
        for node in 0..<3 {
            #expect(mesh.nodes[node].graylisted.isEmpty)
            #expect(mesh.nodes[node].peerViews(now: mesh.now).allSatisfy { $0.observationScore == 0 })
        }
    }

    @Test func aScoreHalvesEveryHalfLife() {
        var score = ObservationScore()
        score.value = 4
        score.updatedAt = 0
        #expect(score.value(at: 0, halfLife: 1_000) == 4)
        #expect(score.value(at: 1_000, halfLife: 1_000) == 2)
        #expect(score.value(at: 3_000, halfLife: 1_000) == 0.5)
        #expect(score.value(at: 500, halfLife: 1_000) == 3)
        #expect(ObservationScore().value(at: 10, halfLife: 1_000) == 0)
    }
}

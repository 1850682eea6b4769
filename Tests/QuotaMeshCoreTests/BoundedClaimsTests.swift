import Testing
@testable import QuotaMeshCore
import QuotaMeshCrypto

/// One wrong statement cannot take the mesh over: a vouched peer's validly signed record, or an agent's
/// report, may lower what is enforced but never lift it, and never reaches further ahead than a window
/// (or fifteen minutes for a breaker). Each case is a statement the mesh believed before, measured against
/// what it may claim, not only whether its bytes decode.
@Suite struct BoundedClaimsTests {
    static let services = ["openai": ServicePolicy(limit: 100, windowMillis: 60_000)]
    static let year: Int64 = 399 * 86_400_000

    /// Node 0, a vouched peer, signs `state` for openai and sends it to nodes 1 and 2.
    func lie(_ state: QuotaState, in mesh: inout TestMesh) {
        let sequence = UInt64(mesh.nextTicket)
        for target in [1, 2] { mesh.deliverSigned(state, service: "openai", sequence: sequence, to: target) }
    }

    /// Urgent calls granted at nodes 1 and 2 in `count` tries each.
    func grants(_ mesh: inout TestMesh, tries count: Int) -> Int {
        var granted = 0
        for _ in 0..<count {
            for node in [1, 2] where mesh.acquire(node, AcquireRequest(service: "openai", priority: .urgent))?.granted == true {
                granted += 1
            }
        }
        return granted
    }

    @Test func anAgentsReportOfAHugeLimitFarAheadLiftsNothing() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 1_000)
        var dimension = RateLimitDimension(name: "requests")
        dimension.limit = 1_000_000
        dimension.remaining = 1_000_000
        dimension.resetAt = mesh.now + Self.year
        mesh.observe(0, service: "openai", status: 200, report: RateLimitReport(dimensions: [dimension]))
        mesh.run(for: 1_000)
        for node in 0..<3 {
            let view = mesh.view(node, "openai")
            #expect(view?.limit == 100, "node \(node): \(String(describing: view?.limit))")
            #expect((view?.resetAt ?? .max) <= mesh.now + 60_000, "node \(node): reset \(String(describing: view?.resetAt))")
        }
        #expect(grants(&mesh, tries: 300) <= 100)
    }

    @Test func aPeersSignedHugeLimitFarAheadLiftsNothing() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 1_000)
        lie(QuotaState(
            observation: UpstreamObservation(
                resetAt: mesh.now + Self.year, remaining: 1_000_000_000_000, limit: 1_000_000_000_000,
                windowMillis: Self.year, observedAt: mesh.now, consumedTotalAtObservation: 0)), in: &mesh)
        #expect(mesh.view(1, "openai")?.limit == 100)
        #expect((mesh.view(1, "openai")?.resetAt ?? .max) <= mesh.now + 60_000)
        #expect(grants(&mesh, tries: 300) <= 100)
    }

    @Test func aPeersSignedHugeConsumptionFarAheadBlocksNothing() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 1_000)
        lie(QuotaState(consumption: ConsumptionEntry(
            total: 1_000_000_000_000, windowEnd: mesh.now + Self.year, windowCount: 1_000_000_000_000)), in: &mesh)
        #expect(mesh.acquire(1, AcquireRequest(service: "openai", priority: .urgent))?.granted == true)
        // Within the window, a count larger than the limit counts as the limit: it can spend the window
        // (as a real 429 would), not the next ones.
        lie(QuotaState(consumption: ConsumptionEntry(
            total: 2_000_000_000_000, windowEnd: (mesh.now / 60_000 + 1) * 60_000, windowCount: 1_000_000_000_000)), in: &mesh)
        #expect((mesh.view(1, "openai")?.consumedGlobal ?? .max) <= 101)
        mesh.now = (mesh.now / 60_000 + 1) * 60_000 + 1_000
        #expect(mesh.acquire(1, AcquireRequest(service: "openai", priority: .urgent))?.granted == true, "the next window is free")
    }

    @Test func aPeerHoldingTheBreakerOpenIsIgnoredOnceAProbeSucceeds() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 1_000)
        lie(QuotaState(breaker: BreakerRegister(openedAt: mesh.now, openUntil: mesh.now + Self.year, closedAt: 0)), in: &mesh)
        #expect(mesh.acquire(1, AcquireRequest(service: "openai", priority: .urgent))?.reason == .breakerOpen)
        // A peer's opening holds the breaker for the service's open time (30 s), not the year it claims.
        #expect(mesh.view(1, "openai")?.breakerOpenUntil == mesh.now + 30_000)
        mesh.now += 30_001
        // The liar signs a new opening every round; meanwhile one node probes, and its call succeeds.
        lie(QuotaState(breaker: BreakerRegister(openedAt: mesh.now, openUntil: mesh.now + Self.year, closedAt: 0)), in: &mesh)
        mesh.now += 30_001
        var probed = false
        for _ in 0..<20 where !probed {
            for node in [1, 2] where !probed {
                if mesh.acquire(node, AcquireRequest(service: "openai", priority: .urgent))?.granted == true {
                    probed = true
                    mesh.observe(node, service: "openai", status: 200, report: RateLimitReport())
                }
            }
            if !probed { mesh.run(for: 200) }
        }
        #expect(probed)
        mesh.run(for: 1_000)
        // The success contradicts the liar's claim: its openings no longer count, at either node.
        for _ in 0..<3 {
            lie(QuotaState(breaker: BreakerRegister(openedAt: mesh.now, openUntil: mesh.now + Self.year, closedAt: 0)), in: &mesh)
            mesh.run(for: 200)
        }
        for node in [1, 2] {
            #expect(mesh.view(node, "openai")?.breakerState == .closed, "node \(node)")
            #expect(mesh.acquire(node, AcquireRequest(service: "openai", priority: .urgent))?.granted == true, "node \(node)")
        }
    }

    @Test func aBreakerOpenedInTheFutureIsNotBelieved() {
        // Opened 20 days after the record says it was signed: no success could ever fall inside that run.
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 1_000)
        let later = mesh.now + 20 * 86_400_000
        lie(QuotaState(breaker: BreakerRegister(openedAt: later, openUntil: later + Self.year, closedAt: 0)), in: &mesh)
        #expect(mesh.view(1, "openai")?.breakerState == .closed)
        #expect(mesh.acquire(1, AcquireRequest(service: "openai", priority: .urgent))?.granted == true)
    }

    @Test func anHonestPeersOpeningThatAProbeConfirmsStillCounts() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 1_000)
        // Node 0 saw a real 429 with a 20 s Retry-After; node 1's probe after it gets a 429 too.
        mesh.observe(0, service: "openai", status: 429, report: report(limit: nil, remaining: nil, resetAt: nil, retryAt: mesh.now + 20_000, limited: true))
        mesh.run(for: 1_000)
        #expect(mesh.view(1, "openai")?.breakerState == .open)
        mesh.now += 20_001
        mesh.observe(1, service: "openai", status: 200, report: RateLimitReport())
        mesh.run(for: 1_000)
        // The success came after the end node 0 claimed: no contradiction, and its next 429 still counts (a
        // new run of openings counts once the service's open time has passed since the last one ended).
        mesh.now += 30_000
        mesh.observe(0, service: "openai", status: 429, report: report(limit: nil, remaining: nil, resetAt: nil, retryAt: mesh.now + 20_000, limited: true))
        mesh.run(for: 1_000)
        #expect(mesh.view(2, "openai")?.breakerState == .open)
    }

    @Test func anAgentsRetryAfterOfAYearOpensTheBreakerForFifteenMinutesAndItsOwnSuccessClosesIt() {
        var mesh = TestMesh(count: 3, services: Self.services)
        mesh.run(for: 1_000)
        mesh.observe(0, service: "openai", status: 429, report: report(limit: nil, remaining: nil, resetAt: nil, retryAt: mesh.now + Self.year, limited: true))
        #expect(mesh.view(0, "openai")?.breakerOpenUntil == mesh.now + 900_000)
        // The agent called anyway and the call succeeded: the upstream serves, so the breaker closes.
        mesh.observe(0, service: "openai", status: 200, report: RateLimitReport())
        #expect(mesh.view(0, "openai")?.breakerState == .closed)
    }
}

/// Names are capped: a node tracks a bounded number of services, accounts and dimensions, so that made-up
/// names cannot grow its memory, its state file (rewritten at every grant) or its metrics without end.
@Suite struct NameCapTests {
    func limitReport() -> RateLimitReport { report(limit: 10, remaining: 9, resetAt: nil) }

    @Test func newServicesBeyondTheCapAreRefusedLocallyAndDroppedFromPeers() {
        var mesh = TestMesh(count: 2, services: ["openai": ServicePolicy(limit: 100, windowMillis: 60_000)])
        for index in mesh.nodes.indices { mesh.nodes[index].configuration.maxServices = 3 }
        var refused: [MeshInstance.ObserveOutcome] = []
        for number in 0..<5 {
            let result = mesh.nodes[0].observe(
                service: "made-up-\(number)", account: nil, status: 200, report: limitReport(), now: mesh.now)
            mesh.apply(result.directives, from: 0)
            if result.outcome.refused != nil { refused.append(result.outcome) }
        }
        #expect(refused.count == 3, "openai and two learned services fit under a cap of 3")
        #expect(refused.allSatisfy { $0.refused == .tooManyServices })
        #expect(mesh.nodes[0].persistedState().quotas.count <= 3, "the state file holds no refused name")
        // A peer's records naming more services than node 1 tracks are dropped, and counted.
        mesh.nodes[1].configuration.maxServices = 2
        mesh.run(for: 2_000)
        #expect(Set(mesh.nodes[1].quotas(now: mesh.now).map(\.key.service)).count <= 2)
        #expect(mesh.drops(1, .overCap) >= 1)
    }

    @Test func newAccountsBeyondTheCapAreRefused() {
        // A learned service takes the accounts its reports name, up to the cap.
        var mesh = TestMesh(count: 1)
        mesh.nodes[0].configuration.maxAccountsPerService = 2
        var outcomes: [NameRefusal?] = []
        for number in 0..<4 {
            let result = mesh.nodes[0].observe(
                service: "github", account: "acct-\(number)", status: 200, report: limitReport(), now: mesh.now)
            outcomes.append(result.outcome.refused)
        }
        #expect(outcomes == [nil, nil, .tooManyAccounts, .tooManyAccounts], "two accounts, the cap")
        // A configured service takes only the accounts its configuration lists (issue 21).
        var configured = TestMesh(count: 1, services: ["github": ServicePolicy(limit: 100, windowMillis: 60_000)])
        let unlisted = configured.nodes[0].observe(
            service: "github", account: "acct-0", status: 200, report: limitReport(), now: configured.now)
        #expect(unlisted.outcome.refused == .unconfiguredAccount)
        let listed = configured.nodes[0].observe(
            service: "github", account: "default", status: 200, report: limitReport(), now: configured.now)
        #expect(listed.outcome.refused == nil)
    }
}

@Suite struct LearnedLimitTests {
    @Test func aPeersObservationCannotRaiseALimitThisNodeLearnedItself() {
        // No configuration: node 1 learns 5,000 calls an hour from its own upstream response.
        var mesh = TestMesh(count: 3)
        mesh.run(for: 1_000)
        mesh.observe(1, service: "gh", status: 200, report: report(limit: 5_000, remaining: 4_990, resetAt: mesh.now + 3_600_000))
        // Node 0, vouched, signs an observation of a limit of 10^9 for a later reset (within the horizon).
        mesh.deliverSigned(
            QuotaState(observation: UpstreamObservation(
                resetAt: mesh.now + 7_200_000, remaining: 1_000_000_000, limit: 1_000_000_000, windowMillis: 3_600_000,
                observedAt: mesh.now, consumedTotalAtObservation: 0)),
            service: "gh", sequence: 1, to: 1)
        let view = mesh.view(1, "gh")
        #expect((view?.limit ?? .max) <= 5_000, "limit \(String(describing: view?.limit))")
        #expect((view?.remaining ?? .max) <= 5_000)
        #expect((view?.rights ?? .max) <= 5_000)
    }
}

import QuotaMeshCore
import Testing

/// Issue 23: every limit the upstream states is kept. Each IETF policy is a dimension of its own that
/// every call counts in; a limit stated without what is left still teaches the limit; limits learned from
/// a 429 hold when the 200s say nothing.
@Suite struct UpstreamWindowsTests {
    func parse(_ headers: [(String, String)], status: Int = 200, now: UnixMillis) -> RateLimitReport {
        RateLimitHeaderParser.parse(headers: headers.map { (name: $0.0, value: $0.1) }, status: status, now: now)
    }

    /// The issue's hourly-and-daily case: `"burst";q=100;w=60` and `"daily";q=1000;w=86400`.
    func policies(burstLeft: Int, dailyLeft: Int) -> [(String, String)] {
        [
            ("RateLimit-Policy", #""burst";q=100;w=60, "daily";q=1000;w=86400"#),
            ("RateLimit", #""burst";r=\#(burstLeft);t=20, "daily";r=\#(dailyLeft);t=3600"#),
        ]
    }

    func dimension(_ view: QuotaView?, _ name: String) -> DimensionView? {
        view?.dimensions.first { $0.name == name }
    }

    @Test func twoPoliciesAreTwoLimitsOnEveryNode() {
        var mesh = TestMesh(count: 3)
        mesh.run(for: 3_000)
        mesh.observe(0, service: "api", status: 200, report: parse(policies(burstLeft: 40, dailyLeft: 800), now: mesh.now))
        let view = mesh.view(0, "api")
        #expect(dimension(view, "burst")?.limit == 100)
        #expect(dimension(view, "burst")?.remaining == 40)
        #expect(dimension(view, "burst")?.windowMillis == 60_000)
        #expect(dimension(view, "daily")?.limit == 1000)
        #expect(dimension(view, "daily")?.remaining == 800)
        #expect(dimension(view, "daily")?.windowMillis == 86_400_000)
        // The top level is the tightest: 40 of 100 left against 800 of 1000.
        #expect(view?.tightest?.name == "burst")
        mesh.run(for: 3_000)
        for index in 1..<3 {
            #expect(dimension(mesh.view(index, "api"), "daily")?.limit == 1000, "node \(index)")
            #expect(dimension(mesh.view(index, "api"), "burst")?.limit == 100, "node \(index)")
        }
    }

    /// Most IETF upstreams state one policy: it is the requests quota itself, as before several were kept.
    @Test func aLonePolicyIsTheRequestsQuota() {
        var mesh = TestMesh(count: 1)
        mesh.run(for: 1_000)
        let headers = [("RateLimit-Policy", #""default";q=100;w=60"#), ("RateLimit", #""default";r=40;t=20"#)]
        mesh.observe(0, service: "api", status: 200, report: parse(headers, now: mesh.now))
        let view = mesh.view(0, "api")
        #expect(view?.dimensions.map(\.name) == ["requests"])
        #expect(view?.limit == 100)
        #expect(view?.remaining == 40)
        #expect(view?.windowMillis == 60_000)
    }

    /// A policy that has a key of its own keeps it when a response names it alone (a 429 stating only the
    /// exhausted policy, say): the requests quota is not confused with the day's.
    @Test func aPolicyWithAKeyOfItsOwnKeepsItWhenStatedAlone() {
        var mesh = TestMesh(count: 1)
        mesh.run(for: 1_000)
        mesh.observe(0, service: "api", status: 200, report: parse(policies(burstLeft: 40, dailyLeft: 800), now: mesh.now))
        let alone = [("RateLimit-Policy", #""daily";q=1000;w=86400"#), ("RateLimit", #""daily";r=0;t=3600"#)]
        mesh.observe(0, service: "api", status: 429, report: parse(alone, status: 429, now: mesh.now))
        let view = mesh.view(0, "api")
        #expect(dimension(view, "daily")?.remaining == 0)
        #expect(dimension(view, "burst")?.remaining == 40)
        #expect(dimension(view, "requests")?.limit == nil)
    }

    @Test(arguments: [(40, 0, "daily"), (0, 800, "burst")])
    func aCallPassesOnlyIfEveryPolicyPasses(_ left: (burst: Int, daily: Int, refusing: String)) {
        var mesh = TestMesh(count: 1)
        mesh.run(for: 1_000)
        mesh.observe(0, service: "api", status: 200, report: parse(policies(burstLeft: left.burst, dailyLeft: left.daily), now: mesh.now))
        let decision = mesh.acquire(0, AcquireRequest(service: "api", priority: .urgent))
        #expect(decision?.granted == false)
        #expect(decision?.detail?.description == "\(left.refusing)_window")
        #expect((decision?.retryAt ?? 0) > mesh.now)
        // What the view says agrees: no priority may go now.
        #expect((mesh.view(0, "api")?.nextAvailableMillis[.urgent] ?? 0) > 0)
    }

    /// A lone node told `burstLeft` and `dailyLeft`, then asked for `calls` urgent calls: how many it granted.
    func grants(_ calls: Int, burstLeft: Int, dailyLeft: Int) -> (granted: Int, mesh: TestMesh) {
        var mesh = TestMesh(count: 1)
        mesh.run(for: 1_000)
        mesh.observe(0, service: "api", status: 200, report: parse(policies(burstLeft: burstLeft, dailyLeft: dailyLeft), now: mesh.now))
        var granted = 0
        for _ in 0..<calls where mesh.acquire(0, AcquireRequest(service: "api", priority: .urgent))?.granted == true {
            granted += 1
        }
        return (granted, mesh)
    }

    @Test func everyGrantCountsInEveryPolicy() {
        let (granted, mesh) = grants(5, burstLeft: 40, dailyLeft: 800)
        #expect(granted == 5)
        let view = mesh.view(0, "api")
        #expect(dimension(view, "burst")?.consumedLocal == 5)
        #expect(dimension(view, "daily")?.consumedLocal == 5)
        #expect(dimension(view, "burst")?.remaining == 35)
        #expect(dimension(view, "daily")?.remaining == 795)
    }

    /// Grants stop at the tighter policy: 3 left in the burst window and 800 in the day, or the other way
    /// round. At most one call more than the upstream said: the estimate's slack for an observation that
    /// lags calls made elsewhere (docs/PROTOCOL.md, "The estimate where rights apply").
    @Test func grantsStopAtTheTighterPolicy() {
        #expect((3...4).contains(grants(10, burstLeft: 3, dailyLeft: 800).granted))
        #expect((2...3).contains(grants(10, burstLeft: 40, dailyLeft: 2).granted))
    }

    /// `x-ratelimit-limit: 100`, `x-ratelimit-remaining: abc`, a reset in 60 s: the limit and its window
    /// are learned; nothing is observed of what is left.
    @Test func aLimitWithoutARemainingTeachesTheLimit() {
        var mesh = TestMesh(count: 1)
        mesh.run(for: 1_000)
        let reset = (mesh.now + 60_000) / 1000
        let report = parse(
            [("x-ratelimit-limit", "100"), ("x-ratelimit-remaining", "abc"), ("x-ratelimit-reset", "\(reset)")],
            now: mesh.now)
        #expect(report.ignored.map(\.name) == ["x-ratelimit-remaining"])
        mesh.observe(0, service: "gh", status: 200, report: report)
        let view = mesh.view(0, "gh")
        #expect(view?.limit == 100)
        #expect(view?.windowMillis == 60_000)
        #expect(view?.observation == nil)
        // A remaining without a limit invents none.
        mesh.observe(0, service: "other", status: 200, report: parse([("x-ratelimit-remaining", "7")], now: mesh.now))
        #expect(mesh.view(0, "other")?.limit == nil)
    }

    /// A provider that states its limits only on 429s: what the 429 taught holds while the 200s say nothing.
    @Test func limitsStatedOnlyOnA429Hold() {
        var mesh = TestMesh(count: 1)
        mesh.run(for: 1_000)
        let reset = (mesh.now + 10_000) / 1000
        mesh.observe(
            0, service: "gh", status: 429,
            report: parse(
                [("x-ratelimit-limit", "10"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "\(reset)")],
                status: 429, now: mesh.now))
        #expect(mesh.view(0, "gh")?.breakerState == .open)
        // Past the reset, into the next window the node counts in; the upstream's 200s carry no headers.
        mesh.run(for: 20_000)
        let windowStart = (mesh.now / 10_000 + 1) * 10_000
        mesh.run(for: windowStart - mesh.now + 200)
        var granted = 0
        for _ in 0..<15 {
            guard mesh.acquire(0, AcquireRequest(service: "gh", priority: .urgent))?.granted == true else { continue }
            granted += 1
            mesh.observe(0, service: "gh", status: 200, report: RateLimitReport())
        }
        #expect(mesh.view(0, "gh")?.limit == 10)
        #expect(granted == 10)
    }

    /// A vouched peer that names a policy of its own, with a limit of 1 and nothing left, cannot make
    /// every call count in it: a node charges only the windows its own agents reported. (Charging every
    /// dimension a peer names let one liar throttle a configured service.)
    @Test func aPeerCannotAddAWindowEveryCallCountsIn() {
        let services = ["api": ServicePolicy(limit: 90, windowMillis: 60_000, burstFraction: 1)]
        var mesh = TestMesh(count: 3, services: services)
        mesh.now = (mesh.now / 60_000 + 1) * 60_000
        mesh.run(for: 3_000)
        var lie = QuotaState()
        lie.policy = AdvertisedPolicy(limit: 1, windowMillis: 86_400_000)
        lie.observation = UpstreamObservation(
            resetAt: mesh.now + 3_600_000, remaining: 0, limit: 1, windowMillis: 86_400_000, observedAt: mesh.now,
            consumedTotalAtObservation: 0)
        mesh.deliverSigned(lie, service: "api", dimension: "daily", sequence: 1, from: 0, to: 1)
        #expect(dimension(mesh.view(1, "api"), "daily")?.limit == 1, "the peer's policy is shown")
        var granted = 0
        for _ in 0..<10 where mesh.acquire(1, AcquireRequest(service: "api", priority: .urgent))?.granted == true {
            granted += 1
        }
        #expect(granted == 10)
        #expect(dimension(mesh.view(1, "api"), "daily")?.consumedLocal == 0)
    }

    /// The windows a node's agents reported are charged again after a restart from its saved state.
    @Test func reportedWindowsAreChargedAfterARestart() {
        var mesh = TestMesh(count: 1)
        mesh.run(for: 1_000)
        mesh.observe(0, service: "api", status: 200, report: parse(policies(burstLeft: 40, dailyLeft: 0), now: mesh.now))
        let saved = mesh.nodes[0].persistedState()
        mesh.nodes[0] = mesh.restarted(0, from: saved, seed: 2)
        mesh.run(for: 3_000)
        let decision = mesh.acquire(0, AcquireRequest(service: "api", priority: .urgent))
        #expect(decision?.granted == false)
        #expect(decision?.detail?.description == "daily_window")
    }

    @Test func aPolicyBeyondTheDimensionCapIsListedNotRecorded() {
        var configuration = MeshConfiguration()
        configuration.maxDimensionsPerService = 1
        var node = MeshInstance(identity: testKey(0), configuration: configuration, peers: [], restored: nil, now: 1_800_000_000_000, seed: 1)
        let now: UnixMillis = 1_800_000_000_000
        let result = node.observe(
            service: "api", account: nil, status: 200, report: parse(policies(burstLeft: 40, dailyLeft: 800), now: now), now: now)
        #expect(result.outcome.ignored.map(\.name) == ["daily"])
        #expect(result.outcome.ignored.first?.reason.contains("too_many_dimensions") == true)
        #expect(node.quotas(service: "api", now: now).first?.dimensions.map(\.name) == ["requests", "burst"])
    }
}

import QuotaMeshCore
import Testing

// Issue 23: every header family is read field by field. A malformed field must cost exactly that field:
// the report equals the one without the field, plus the field under `ignored`. Each family below is a
// complete, well-formed header set; the tests break each of its fields in turn.

private let now: UnixMillis = 1_700_000_000_000

/// A complete header set of one family, and the values that break each of its fields.
struct HeaderFamily: Sendable, CustomTestStringConvertible {
    var name: String
    var headers: [(String, String)]
    var status = 200
    /// What each field is replaced with to make it malformed (the default: a word).
    var malformed: [String: String] = [:]
    var testDescription: String { name }

    static let all: [HeaderFamily] = [
        HeaderFamily(
            name: "GitHub x-ratelimit-*",
            headers: [
                ("x-ratelimit-limit", "5000"), ("x-ratelimit-remaining", "4999"), ("x-ratelimit-used", "1"),
                ("x-ratelimit-reset", "1700003600"), ("x-ratelimit-resource", "core"),
            ],
            malformed: ["x-ratelimit-resource": ""]),
        HeaderFamily(
            name: "X x-rate-limit-*",
            headers: [("x-rate-limit-limit", "900"), ("x-rate-limit-remaining", "899"), ("x-rate-limit-reset", "1700000900")]),
        HeaderFamily(
            name: "OpenAI x-ratelimit-*-{requests,tokens}",
            headers: [
                ("x-ratelimit-limit-requests", "500"), ("x-ratelimit-remaining-requests", "499"),
                ("x-ratelimit-reset-requests", "120ms"), ("x-ratelimit-limit-tokens", "90000"),
                ("x-ratelimit-remaining-tokens", "89000"), ("x-ratelimit-reset-tokens", "6m0s"),
            ]),
        HeaderFamily(
            name: "Anthropic anthropic-ratelimit-*",
            headers: [
                ("anthropic-ratelimit-requests-limit", "50"), ("anthropic-ratelimit-requests-remaining", "49"),
                ("anthropic-ratelimit-requests-reset", "2023-11-14T22:14:20Z"),
                ("anthropic-ratelimit-input-tokens-limit", "40000"),
                ("anthropic-ratelimit-input-tokens-remaining", "39000"),
                ("anthropic-ratelimit-input-tokens-reset", "2023-11-14T22:13:50Z"),
            ]),
        HeaderFamily(
            name: "Discord X-RateLimit-* on a 429",
            headers: [
                ("x-ratelimit-limit", "5"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset-after", "1.5"),
                ("x-ratelimit-bucket", "abcd1234"), ("x-ratelimit-scope", "user"), ("x-ratelimit-global", "false"),
            ],
            status: 429,
            malformed: ["x-ratelimit-bucket": "", "x-ratelimit-scope": ""]),
        HeaderFamily(
            name: "IETF RateLimit-Policy and RateLimit, two policies",
            headers: [
                ("RateLimit-Policy", #""burst";q=100;w=60, "daily";q=1000;w=86400"#),
                ("RateLimit", #""burst";r=40;t=20, "daily";r=800;t=3600"#),
            ],
            malformed: ["ratelimit-policy": #""burst";q=100;w=60, "daily" q="#, "ratelimit": #""burst";r=40;t="#]),
        HeaderFamily(
            name: "IETF RateLimit-Limit, -Remaining, -Reset",
            headers: [("RateLimit-Limit", "100"), ("RateLimit-Remaining", "50"), ("RateLimit-Reset", "5")]),
        HeaderFamily(
            name: "Retry-After and retry-after-ms on a 429",
            headers: [("retry-after", "30"), ("retry-after-ms", "1500"), ("x-should-retry", "true")],
            status: 429),
    ]

    func parse(_ headers: [(String, String)]) -> RateLimitReport {
        RateLimitHeaderParser.parse(headers: headers.map { (name: $0.0, value: $0.1) }, status: status, now: now)
    }
}

@Suite("Header families, field by field")
struct RateLimitFieldByFieldTests {
    @Test(arguments: HeaderFamily.all)
    func everyFieldOfTheCompleteSetIsUnderstood(_ family: HeaderFamily) {
        let report = family.parse(family.headers)
        #expect(report.ignored.isEmpty, "\(report.ignored)")
        for (name, _) in family.headers { #expect(report.understood.contains(name.lowercased()), "\(name)") }
    }

    /// Each field malformed in turn costs that field only: the report is the one without it, and the
    /// field is listed under `ignored` with a reason.
    @Test(arguments: HeaderFamily.all)
    func aMalformedFieldCostsThatFieldOnly(_ family: HeaderFamily) {
        for (index, (name, _)) in family.headers.enumerated() {
            var broken = family.headers
            broken[index].1 = family.malformed[name.lowercased()] ?? "abc"
            var without = family.headers
            without.remove(at: index)
            let malformed = family.parse(broken)
            let absent = family.parse(without)
            #expect(malformed.dimensions == absent.dimensions, "\(name)")
            #expect(malformed.retryAt == absent.retryAt, "\(name)")
            #expect(malformed.scope == absent.scope, "\(name)")
            #expect(malformed.shouldRetry == absent.shouldRetry, "\(name)")
            #expect(malformed.isRateLimited == absent.isRateLimited, "\(name)")
            #expect(malformed.understood == absent.understood, "\(name)")
            #expect(malformed.ignored.map(\.name) == [name.lowercased()], "\(name): \(malformed.ignored)")
            #expect(malformed.ignored.allSatisfy { !$0.reason.isEmpty })
            // And the field was worth something: leaving it out changes what is understood.
            #expect(absent.understood != family.parse(family.headers).understood, "\(name)")
        }
    }

    @Test func twoIETFPoliciesAreTwoDimensions() {
        let report = HeaderFamily.all[5].parse(HeaderFamily.all[5].headers)
        #expect(report.dimensions == [
            RateLimitDimension(name: "burst", limit: 100, remaining: 40, resetAt: now + 20_000, windowSeconds: 60),
            RateLimitDimension(name: "daily", limit: 1000, remaining: 800, resetAt: now + 3_600_000, windowSeconds: 86_400),
        ])
        #expect(report.tightest?.name == "burst")
    }

    /// Some APIs send -1 where they do not know a value, and 0 as a limit they do not state.
    @Test(arguments: [
        ("x-ratelimit-limit", "-1"), ("x-ratelimit-remaining", "-1"), ("x-ratelimit-reset", "-1"),
        ("x-ratelimit-limit", "0"), ("x-rate-limit-limit", "0"), ("x-ratelimit-limit-tokens", "0"),
        ("anthropic-ratelimit-requests-limit", "0"),
    ])
    func unknownValuesAreReadAsAbsent(_ field: (String, String)) {
        let report = RateLimitHeaderParser.parse(headers: [(name: field.0, value: field.1)], status: 200, now: now)
        #expect(report.dimensions.isEmpty, "\(report.dimensions)")
        #expect(report.ignored.map(\.name) == [field.0])
        #expect(report.ignored.first.map { $0.reason.contains("unknown") || $0.reason.contains("does not know") } == true)
    }

    @Test func aRemainingOfZeroIsStillRead() {
        let report = RateLimitHeaderParser.parse(
            headers: [(name: "x-ratelimit-limit", value: "60"), (name: "x-ratelimit-remaining", value: "0")],
            status: 200, now: now)
        #expect(report.dimensions == [RateLimitDimension(name: "requests", limit: 60, remaining: 0)])
    }

    @Test func policiesInAnotherUnitOrWithoutALabelNameArePassedOver() {
        let report = RateLimitHeaderParser.parse(
            headers: [
                (name: "RateLimit-Policy", value: #""bytes";q=1000000;qu="content-bytes";w=60, "a b";q=5;w=1, "hourly";q=100;qu="requests";w=3600"#),
                (name: "RateLimit", value: #""bytes";r=10;t=5, "hourly";r=90;t=1800"#),
            ],
            status: 200, now: now)
        #expect(report.dimensions == [
            RateLimitDimension(name: "hourly", limit: 100, remaining: 90, resetAt: now + 1_800_000, windowSeconds: 3600)
        ])
        #expect(report.ignored.map(\.name) == ["ratelimit-policy", "ratelimit-policy"])
        #expect(report.ignored[0].reason.contains("content-bytes"))
        #expect(report.ignored[1].reason.contains("not a label"))
    }
}

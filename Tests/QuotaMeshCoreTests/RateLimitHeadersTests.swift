import QuotaMeshCore
import Testing

// The node's clock in every case: 2023-11-14T22:13:20Z (a Tuesday).
private let now: UnixMillis = 1_700_000_000_000
private let day: Int64 = 86_400_000

/// One response and everything the parser must report about it. Every field is compared exactly
/// (`understood` only when given), so a case fails if any feature it touches goes missing.
struct HeaderCase: Sendable, CustomTestStringConvertible {
    var label: String
    var headers: [(String, String)]
    var status = 200
    var dimensions: [RateLimitDimension] = []
    var retryAt: UnixMillis? = nil
    var isRateLimited = false
    var isOverloaded = false
    var scope: String? = nil
    var shouldRetry: Bool? = nil
    var understood: [String]? = nil
    /// Names of the ignored headers, in order.
    var ignored: [String] = []

    var testDescription: String { label }

    func verify() {
        let report = RateLimitHeaderParser.parse(
            headers: headers.map { (name: $0.0, value: $0.1) },
            status: status,
            now: now
        )
        #expect(report.dimensions == dimensions, "\(label)")
        #expect(report.retryAt == retryAt, "\(label)")
        #expect(report.isRateLimited == isRateLimited, "\(label)")
        #expect(report.isOverloaded == isOverloaded, "\(label)")
        #expect(report.scope == scope, "\(label)")
        #expect(report.shouldRetry == shouldRetry, "\(label)")
        if let understood { #expect(report.understood == understood, "\(label)") }
        #expect(report.ignored.map(\.name) == ignored, "\(label): \(report.ignored)")
        #expect(report.ignored.allSatisfy { !$0.reason.isEmpty }, "\(label)")
    }
}

private func requests(
    limit: Int64? = nil,
    remaining: Int64? = nil,
    resetAt: UnixMillis? = nil,
    window: Int64? = nil
) -> RateLimitDimension {
    RateLimitDimension(name: "requests", limit: limit, remaining: remaining, resetAt: resetAt, windowSeconds: window)
}

private func parse(_ headers: [(String, String)], status: Int = 200) -> RateLimitReport {
    RateLimitHeaderParser.parse(headers: headers.map { (name: $0.0, value: $0.1) }, status: status, now: now)
}

// MARK: - GitHub and generic x-ratelimit-*

@Suite("GitHub / generic x-ratelimit-*")
struct GitHubHeaderTests {
    static let cases: [HeaderCase] = [
        HeaderCase(
            label: "primary limit on a 200",
            headers: [
                ("x-ratelimit-limit", "5000"), ("x-ratelimit-remaining", "4999"), ("x-ratelimit-used", "1"),
                ("x-ratelimit-reset", "1700003600"), ("x-ratelimit-resource", "core"),
            ],
            dimensions: [requests(limit: 5000, remaining: 4999, resetAt: 1_700_003_600_000)],
            scope: "core",
            understood: [
                "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-ratelimit-resource",
                "x-ratelimit-used",
            ]
        ),
        HeaderCase(
            label: "header names in any case",
            headers: [
                ("X-RateLimit-Limit", "60"), ("X-RATELIMIT-REMAINING", "59"), ("x-RateLimit-Reset", "1700000060"),
                ("X-RateLimit-Resource", "search"),
            ],
            dimensions: [requests(limit: 60, remaining: 59, resetAt: now + 60_000)],
            scope: "search"
        ),
        HeaderCase(
            label: "remaining 0 on a 200 is not a refusal",
            headers: [("x-ratelimit-limit", "60"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000600")],
            dimensions: [requests(limit: 60, remaining: 0, resetAt: 1_700_000_600_000)]
        ),
        HeaderCase(
            label: "403 with remaining 0 waits for the reset",
            headers: [
                ("x-ratelimit-limit", "5000"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000600"),
                ("x-ratelimit-resource", "core"),
            ],
            status: 403,
            dimensions: [requests(limit: 5000, remaining: 0, resetAt: 1_700_000_600_000)],
            retryAt: 1_700_000_600_000,
            isRateLimited: true,
            scope: "core"
        ),
        HeaderCase(
            label: "429 with remaining 0 waits for the reset",
            headers: [("x-ratelimit-limit", "5000"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000600")],
            status: 429,
            dimensions: [requests(limit: 5000, remaining: 0, resetAt: 1_700_000_600_000)],
            retryAt: 1_700_000_600_000,
            isRateLimited: true
        ),
        HeaderCase(
            label: "403 with remaining 0 and retry-after: retry-after wins",
            headers: [
                ("x-ratelimit-limit", "5000"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1700000600"),
                ("retry-after", "30"),
            ],
            status: 403,
            dimensions: [requests(limit: 5000, remaining: 0, resetAt: 1_700_000_600_000)],
            retryAt: now + 30_000,
            isRateLimited: true
        ),
        HeaderCase(
            label: "403 secondary limit without retry-after: not a refusal, but wait 60 s",
            headers: [("x-ratelimit-limit", "5000"), ("x-ratelimit-remaining", "4000"), ("x-ratelimit-reset", "1700000600")],
            status: 403,
            dimensions: [requests(limit: 5000, remaining: 4000, resetAt: 1_700_000_600_000)],
            retryAt: now + 60_000
        ),
        HeaderCase(
            label: "429 secondary limit without retry-after: refusal, wait 60 s",
            headers: [("x-ratelimit-limit", "5000"), ("x-ratelimit-remaining", "4000"), ("x-ratelimit-reset", "1700000600")],
            status: 429,
            dimensions: [requests(limit: 5000, remaining: 4000, resetAt: 1_700_000_600_000)],
            retryAt: now + 60_000,
            isRateLimited: true
        ),
        HeaderCase(
            label: "403 secondary limit with retry-after",
            headers: [("x-ratelimit-limit", "5000"), ("x-ratelimit-remaining", "4000"), ("Retry-After", "120")],
            status: 403,
            dimensions: [requests(limit: 5000, remaining: 4000)],
            retryAt: now + 120_000,
            isRateLimited: true
        ),
        HeaderCase(
            label: "403 without any rate-limit header is a plain permission error",
            headers: [("content-type", "application/json")],
            status: 403
        ),
        HeaderCase(
            label: "used infers remaining when remaining is absent",
            headers: [("x-ratelimit-limit", "60"), ("x-ratelimit-used", "58")],
            dimensions: [requests(limit: 60, remaining: 2)]
        ),
        HeaderCase(
            label: "a small reset is delta seconds",
            headers: [("x-ratelimit-remaining", "10"), ("x-ratelimit-reset", "30")],
            dimensions: [requests(remaining: 10, resetAt: now + 30_000)]
        ),
    ]

    @Test(arguments: cases)
    func family(_ testCase: HeaderCase) { testCase.verify() }
}

// MARK: - X / Twitter

@Suite("X (Twitter) x-rate-limit-*")
struct TwitterHeaderTests {
    static let cases: [HeaderCase] = [
        HeaderCase(
            label: "v2 endpoint on a 200",
            headers: [("x-rate-limit-limit", "900"), ("x-rate-limit-remaining", "847"), ("x-rate-limit-reset", "1700000900")],
            dimensions: [requests(limit: 900, remaining: 847, resetAt: 1_700_000_900_000)],
            understood: ["x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"]
        ),
        HeaderCase(
            label: "429 exhausted waits for the epoch reset",
            headers: [("X-Rate-Limit-Limit", "15"), ("X-Rate-Limit-Remaining", "0"), ("X-Rate-Limit-Reset", "1700000300")],
            status: 429,
            dimensions: [requests(limit: 15, remaining: 0, resetAt: 1_700_000_300_000)],
            retryAt: 1_700_000_300_000,
            isRateLimited: true
        ),
    ]

    @Test(arguments: cases)
    func family(_ testCase: HeaderCase) { testCase.verify() }
}

// MARK: - OpenAI

@Suite("OpenAI x-ratelimit-*-{requests,tokens}")
struct OpenAIHeaderTests {
    static let cases: [HeaderCase] = [
        HeaderCase(
            label: "full set on a 200",
            headers: [
                ("x-ratelimit-limit-requests", "10000"), ("x-ratelimit-remaining-requests", "9999"),
                ("x-ratelimit-reset-requests", "6ms"), ("x-ratelimit-limit-tokens", "2000000"),
                ("x-ratelimit-remaining-tokens", "1999994"), ("x-ratelimit-reset-tokens", "0s"),
            ],
            dimensions: [
                requests(limit: 10000, remaining: 9999, resetAt: now + 6),
                RateLimitDimension(name: "tokens", limit: 2_000_000, remaining: 1_999_994, resetAt: now),
            ],
            understood: [
                "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-requests",
                "x-ratelimit-remaining-tokens", "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens",
            ]
        ),
        HeaderCase(
            label: "429 with requests exhausted retries at the requests reset",
            headers: [
                ("X-RateLimit-Limit-Requests", "500"), ("X-RateLimit-Remaining-Requests", "0"),
                ("X-RateLimit-Reset-Requests", "4m12.172s"), ("x-ratelimit-limit-tokens", "30000"),
                ("x-ratelimit-remaining-tokens", "29000"), ("x-ratelimit-reset-tokens", "2s"),
                ("x-should-retry", "true"),
            ],
            status: 429,
            dimensions: [
                requests(limit: 500, remaining: 0, resetAt: now + 252_172),
                RateLimitDimension(name: "tokens", limit: 30000, remaining: 29000, resetAt: now + 2000),
            ],
            retryAt: now + 252_172,
            isRateLimited: true,
            shouldRetry: true
        ),
        HeaderCase(
            label: "retry-after-ms wins over retry-after",
            headers: [("retry-after", "2"), ("retry-after-ms", "1500"), ("x-should-retry", "false")],
            status: 429,
            retryAt: now + 1500,
            isRateLimited: true,
            shouldRetry: false
        ),
    ]

    @Test(arguments: cases)
    func family(_ testCase: HeaderCase) { testCase.verify() }

    /// Go `time.Duration` strings; nil means the value must be ignored with a reason.
    static let durations: [(String, Int64?)] = [
        ("1s", 1000), ("12ms", 12), ("6m0s", 360_000), ("4m12.172s", 252_172), ("23h18m29.144s", 83_909_144),
        ("0s", 0), ("0", 0), ("1.5h", 5_400_000), ("2h45m", 9_900_000), (".5s", 500), ("1.001s", 1001),
        ("+3s", 3000), ("300us", 1), ("300\u{00B5}s", 1), ("300\u{03BC}s", 1), ("1500us", 2), ("10ns", 1),
        ("800h", 31 * day),  // clamped to 31 days
        ("", nil), ("5", nil), ("1x", nil), ("s", nil), (".s", nil), ("1..5s", nil), ("-1s", nil), ("1s2", nil),
        ("3000000h", nil), ("99999999999999999999s", nil), ("1 s", nil), ("1S", nil),
    ]

    @Test(arguments: durations)
    func goDurationResets(_ value: String, _ expectedMillis: Int64?) {
        let report = parse([("x-ratelimit-remaining-requests", "5"), ("x-ratelimit-reset-requests", value)])
        let dimension = report.dimension(named: "requests")
        if let expectedMillis {
            #expect(dimension?.resetAt == now + expectedMillis)
            #expect(report.ignored.isEmpty)
            #expect(report.understood.contains("x-ratelimit-reset-requests"))
        } else {
            #expect(dimension?.resetAt == nil)
            #expect(dimension?.remaining == 5, "the other field of the dimension survives")
            #expect(report.ignored.map(\.name) == ["x-ratelimit-reset-requests"])
            #expect(!report.understood.contains("x-ratelimit-reset-requests"))
        }
    }
}

// MARK: - Anthropic

@Suite("Anthropic anthropic-ratelimit-*")
struct AnthropicHeaderTests {
    static let cases: [HeaderCase] = [
        HeaderCase(
            label: "full set on a 200, dimensions sorted by name",
            headers: [
                ("anthropic-ratelimit-requests-limit", "50"), ("anthropic-ratelimit-requests-remaining", "49"),
                ("anthropic-ratelimit-requests-reset", "2023-11-14T22:13:21Z"),
                ("anthropic-ratelimit-tokens-limit", "80000"), ("anthropic-ratelimit-tokens-remaining", "79000"),
                ("anthropic-ratelimit-tokens-reset", "2023-11-14T22:13:26.5Z"),
                ("anthropic-ratelimit-input-tokens-limit", "40000"),
                ("anthropic-ratelimit-input-tokens-remaining", "39000"),
                ("anthropic-ratelimit-input-tokens-reset", "2023-11-14T22:14:20+00:00"),
                ("Anthropic-RateLimit-Output-Tokens-Limit", "8000"),
                ("Anthropic-RateLimit-Output-Tokens-Remaining", "7900"),
                ("Anthropic-RateLimit-Output-Tokens-Reset", "2023-11-14T23:14:20+01:00"),
            ],
            dimensions: [
                RateLimitDimension(name: "input_tokens", limit: 40000, remaining: 39000, resetAt: now + 60_000),
                RateLimitDimension(name: "output_tokens", limit: 8000, remaining: 7900, resetAt: now + 60_000),
                requests(limit: 50, remaining: 49, resetAt: now + 1000),
                RateLimitDimension(name: "tokens", limit: 80000, remaining: 79000, resetAt: now + 6500),
            ]
        ),
        HeaderCase(
            label: "429 with retry-after",
            headers: [
                ("anthropic-ratelimit-requests-limit", "50"), ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", "2023-11-14T22:14:20Z"), ("retry-after", "17"),
            ],
            status: 429,
            dimensions: [requests(limit: 50, remaining: 0, resetAt: now + 60_000)],
            retryAt: now + 17_000,
            isRateLimited: true
        ),
        HeaderCase(
            label: "529 overloaded is not a quota refusal",
            headers: [("retry-after", "5"), ("x-should-retry", "true")],
            status: 529,
            retryAt: now + 5000,
            isOverloaded: true,
            shouldRetry: true
        ),
        HeaderCase(label: "529 without headers", headers: [], status: 529, isOverloaded: true),
        HeaderCase(
            label: "503 with retry-after is overload",
            headers: [("Retry-After", "10")],
            status: 503,
            retryAt: now + 10_000,
            isOverloaded: true
        ),
        HeaderCase(label: "503 without retry-after is not", headers: [("content-length", "0")], status: 503),
    ]

    @Test(arguments: cases)
    func family(_ testCase: HeaderCase) { testCase.verify() }

    /// RFC 3339 reset timestamps; the expectation is milliseconds after `now`, nil when the value must be ignored.
    static let timestamps: [(String, Int64?)] = [
        ("2023-11-14T22:14:20Z", 60_000), ("2023-11-14T22:14:20.5Z", 60_500),
        ("2023-11-14T22:14:20.123456Z", 60_124), ("2023-11-14T23:14:20+01:00", 60_000),
        ("2023-11-14T21:44:20-00:30", 60_000), ("2023-11-14t22:14:20z", 60_000), ("2023-11-14 22:14:20Z", 60_000),
        ("2023-11-15T00:00:00Z", 6_400_000), ("2023-11-14T22:00:00Z", 0),  // past: clamped to now
        ("2024-02-29T00:00:00Z", 31 * day),  // valid leap day, clamped to 31 days
        ("2023-02-29T00:00:00Z", nil), ("2023-13-01T00:00:00Z", nil), ("2023-11-31T00:00:00Z", nil),
        ("2023-11-14T24:00:00Z", nil), ("2023-11-14T22:14:20", nil), ("2023-11-14T22:14:20+0100", nil),
        ("2023-11-14T22:14:20.Z", nil), ("1700000060", nil), ("tomorrow", nil),
    ]

    @Test(arguments: timestamps)
    func rfc3339Resets(_ value: String, _ expectedOffset: Int64?) {
        let report = parse([
            ("anthropic-ratelimit-tokens-remaining", "7"), ("anthropic-ratelimit-tokens-reset", value),
        ])
        let dimension = report.dimension(named: "tokens")
        #expect(dimension?.remaining == 7)
        if let expectedOffset {
            #expect(dimension?.resetAt == now + expectedOffset)
            #expect(report.ignored.isEmpty)
        } else {
            #expect(dimension?.resetAt == nil)
            #expect(report.ignored.map(\.name) == ["anthropic-ratelimit-tokens-reset"])
        }
    }
}

// MARK: - Discord

@Suite("Discord X-RateLimit-*")
struct DiscordHeaderTests {
    static let cases: [HeaderCase] = [
        HeaderCase(
            label: "reset-after is preferred over reset; bucket is the scope",
            headers: [
                ("X-RateLimit-Limit", "5"), ("X-RateLimit-Remaining", "1"), ("X-RateLimit-Reset", "1700000005.250"),
                ("X-RateLimit-Reset-After", "2.5"), ("X-RateLimit-Bucket", "abcd1234"),
            ],
            dimensions: [requests(limit: 5, remaining: 1, resetAt: now + 2500)],
            scope: "abcd1234",
            understood: [
                "x-ratelimit-bucket", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
                "x-ratelimit-reset-after",
            ]
        ),
        HeaderCase(
            label: "epoch reset with decimals",
            headers: [("X-RateLimit-Limit", "5"), ("X-RateLimit-Remaining", "4"), ("X-RateLimit-Reset", "1700000001.123")],
            dimensions: [requests(limit: 5, remaining: 4, resetAt: 1_700_000_001_123)]
        ),
        HeaderCase(
            label: "429 on a route: retry at reset-after; scope header beats bucket",
            headers: [
                ("X-RateLimit-Limit", "5"), ("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "1700000003"),
                ("X-RateLimit-Reset-After", "2.5"), ("X-RateLimit-Bucket", "abcd1234"), ("X-RateLimit-Scope", "user"),
            ],
            status: 429,
            dimensions: [requests(limit: 5, remaining: 0, resetAt: now + 2500)],
            retryAt: now + 2500,
            isRateLimited: true,
            scope: "user"
        ),
        HeaderCase(
            label: "429 global with Retry-After",
            headers: [("X-RateLimit-Global", "true"), ("X-RateLimit-Scope", "global"), ("Retry-After", "65")],
            status: 429,
            retryAt: now + 65_000,
            isRateLimited: true,
            scope: "global"
        ),
        HeaderCase(
            label: "global true marks the response rate limited whatever the status",
            headers: [("X-RateLimit-Global", "true")],
            isRateLimited: true,
            understood: ["x-ratelimit-global"]
        ),
        HeaderCase(
            label: "malformed global and reset-after are ignored individually",
            headers: [
                ("X-RateLimit-Global", "yes"), ("X-RateLimit-Remaining", "3"), ("X-RateLimit-Reset-After", "soon"),
            ],
            dimensions: [requests(remaining: 3)],
            ignored: ["x-ratelimit-reset-after", "x-ratelimit-global"]
        ),
    ]

    @Test(arguments: cases)
    func family(_ testCase: HeaderCase) { testCase.verify() }
}

// MARK: - Slack and Stripe

@Suite("Slack and Stripe")
struct SlackStripeHeaderTests {
    static let cases: [HeaderCase] = [
        HeaderCase(
            label: "Slack 429 with Retry-After",
            headers: [("Retry-After", "30")],
            status: 429,
            retryAt: now + 30_000,
            isRateLimited: true,
            understood: ["retry-after"]
        ),
        HeaderCase(
            label: "Stripe 429 notes its reason",
            headers: [("Stripe-Rate-Limited-Reason", "global-rate"), ("Request-Id", "req_123")],
            status: 429,
            isRateLimited: true,
            understood: ["stripe-rate-limited-reason"]
        ),
        HeaderCase(label: "a plain 200 says nothing", headers: [("content-type", "text/plain")], understood: []),
    ]

    @Test(arguments: cases)
    func family(_ testCase: HeaderCase) { testCase.verify() }
}

// MARK: - IETF RateLimit / RateLimit-Policy

@Suite("IETF RateLimit and RateLimit-Policy")
struct IETFHeaderTests {
    static let burst = RateLimitDimension(
        name: "burst", limit: 100, remaining: 50, resetAt: now + 30_000, windowSeconds: 60)
    static let daily = RateLimitDimension(
        name: "daily", limit: 1000, remaining: 900, resetAt: now + 3_600_000, windowSeconds: 86400)

    static let cases: [HeaderCase] = [
        HeaderCase(
            label: "structured policies joined by name",
            headers: [
                ("RateLimit-Policy", #""burst";q=100;w=60, "daily";q=1000;w=86400"#),
                ("RateLimit", #""burst";r=50;t=30, "daily";r=900;t=3600"#),
            ],
            dimensions: [burst, daily],
            understood: ["ratelimit", "ratelimit-policy"]
        ),
        HeaderCase(
            label: "fields split over several lines",
            headers: [
                ("RateLimit-Policy", #""burst";q=100;w=60"#), ("ratelimit", #""daily";r=900;t=3600"#),
                ("ratelimit-policy", #""daily";q=1000;w=86400"#), ("RATELIMIT", #""burst";r=50;t=30"#),
            ],
            dimensions: [burst, daily]
        ),
        HeaderCase(
            label: "token policy names are a list, not the older dictionary",
            headers: [("RateLimit-Policy", "burst;q=100;w=60"), ("RateLimit", "burst;r=50;t=30")],
            dimensions: [burst]
        ),
        HeaderCase(
            label: "qu and pk parameters are tolerated",
            headers: [
                ("RateLimit-Policy", #""default";q=100;qu="requests";w=60;pk=:cHJvamVjdDEyMw==:"#),
                ("RateLimit", #""default";r=10;t=5;pk=:cHJvamVjdDEyMw==:"#),
            ],
            dimensions: [
                RateLimitDimension(name: "default", limit: 100, remaining: 10, resetAt: now + 5000, windowSeconds: 60)
            ]
        ),
        HeaderCase(
            label: "a malformed policy field is ignored whole; RateLimit still counts",
            headers: [
                ("RateLimit-Policy", #""burst";q=100;w=60, "daily" q=1000"#),
                ("RateLimit", #""burst";r=50;t=30"#),
            ],
            dimensions: [RateLimitDimension(name: "burst", remaining: 50, resetAt: now + 30_000)],
            understood: ["ratelimit"],
            ignored: ["ratelimit-policy"]
        ),
        HeaderCase(
            label: "a bad parameter is ignored alone",
            headers: [("RateLimit-Policy", #""burst";q=-5;w=60, "daily";q=1000;w=0, 10;w=1"#)],
            dimensions: [
                RateLimitDimension(name: "burst", windowSeconds: 60),
                RateLimitDimension(name: "daily", limit: 1000),
            ],
            ignored: ["ratelimit-policy", "ratelimit-policy", "ratelimit-policy"]
        ),
        HeaderCase(
            label: "a malformed RateLimit list is ignored",
            headers: [("RateLimit-Policy", #""burst";q=100;w=60"#), ("RateLimit", #""burst";r="#)],
            dimensions: [RateLimitDimension(name: "burst", limit: 100, windowSeconds: 60)],
            ignored: ["ratelimit"]
        ),
        HeaderCase(
            label: "older single-field dictionary form",
            headers: [("RateLimit", "limit=100, remaining=50, reset=5")],
            dimensions: [requests(limit: 100, remaining: 50, resetAt: now + 5000)],
            understood: ["ratelimit"]
        ),
        HeaderCase(
            label: "oldest three-field form",
            headers: [("RateLimit-Limit", "100"), ("RateLimit-Remaining", "50"), ("RateLimit-Reset", "5")],
            dimensions: [requests(limit: 100, remaining: 50, resetAt: now + 5000)],
            understood: ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"]
        ),
        HeaderCase(
            label: "draft-era limit with a quota policy window",
            headers: [("RateLimit-Limit", "100, 100;w=60"), ("RateLimit-Remaining", "7")],
            dimensions: [requests(limit: 100, remaining: 7, window: 60)]
        ),
    ]

    @Test(arguments: cases)
    func family(_ testCase: HeaderCase) { testCase.verify() }
}

// MARK: - Retry hints

@Suite("Retry-After, retry-after-ms, x-should-retry")
struct RetryHeaderTests {
    static let cases: [HeaderCase] = [
        HeaderCase(label: "delta seconds", headers: [("Retry-After", "120")], status: 429,
                   retryAt: now + 120_000, isRateLimited: true),
        HeaderCase(label: "IMF-fixdate", headers: [("Retry-After", "Tue, 14 Nov 2023 22:15:20 GMT")], status: 429,
                   retryAt: now + 120_000, isRateLimited: true),
        HeaderCase(label: "RFC 850 date", headers: [("Retry-After", "Tuesday, 14-Nov-23 22:15:20 GMT")], status: 429,
                   retryAt: now + 120_000, isRateLimited: true),
        HeaderCase(label: "asctime date", headers: [("Retry-After", "Tue Nov 14 22:15:20 2023")], status: 429,
                   retryAt: now + 120_000, isRateLimited: true),
        HeaderCase(label: "a date in the past means now", headers: [("Retry-After", "Thu Nov  2 22:13:20 2023")],
                   status: 429, retryAt: now, isRateLimited: true),
        HeaderCase(label: "fractional milliseconds round up", headers: [("retry-after-ms", "1500.5")], status: 429,
                   retryAt: now + 1501, isRateLimited: true),
        HeaderCase(label: "retry-after-ms wins", headers: [("Retry-After", "120"), ("Retry-After-Ms", "250")],
                   status: 429, retryAt: now + 250, isRateLimited: true),
        HeaderCase(label: "clamped to 24 h", headers: [("Retry-After", "999999")], status: 429,
                   retryAt: now + day, isRateLimited: true),
        HeaderCase(label: "identical repeated lines count once",
                   headers: [("Retry-After", "Tue, 14 Nov 2023 22:15:20 GMT"), ("retry-after", "Tue, 14 Nov 2023 22:15:20 GMT")],
                   status: 429, retryAt: now + 120_000, isRateLimited: true),
        HeaderCase(label: "conflicting repeated lines are ignored",
                   headers: [("Retry-After", "5"), ("retry-after", "50")], status: 429,
                   isRateLimited: true, ignored: ["retry-after"]),
        HeaderCase(label: "words are ignored", headers: [("Retry-After", "soon")], status: 429,
                   isRateLimited: true, ignored: ["retry-after"]),
        HeaderCase(label: "negative seconds are ignored", headers: [("Retry-After", "-5")], status: 429,
                   isRateLimited: true, ignored: ["retry-after"]),
        HeaderCase(label: "Int64 overflow is ignored", headers: [("Retry-After", "99999999999999999999")], status: 429,
                   isRateLimited: true, ignored: ["retry-after"]),
        HeaderCase(label: "an impossible date is ignored", headers: [("Retry-After", "Tue, 31 Nov 2023 22:15:20 GMT")],
                   status: 429, isRateLimited: true, ignored: ["retry-after"]),
        HeaderCase(label: "a bad retry-after-ms falls back to retry-after",
                   headers: [("retry-after-ms", "abc"), ("retry-after", "3")], status: 429,
                   retryAt: now + 3000, isRateLimited: true, ignored: ["retry-after-ms"]),
        HeaderCase(label: "x-should-retry true", headers: [("x-should-retry", "true")], shouldRetry: true),
        HeaderCase(label: "x-should-retry FALSE", headers: [("X-Should-Retry", "FALSE")], shouldRetry: false),
        HeaderCase(label: "x-should-retry maybe", headers: [("x-should-retry", "maybe")], ignored: ["x-should-retry"]),
    ]

    @Test(arguments: cases)
    func hints(_ testCase: HeaderCase) { testCase.verify() }
}

// MARK: - Clock skew

@Suite("Clock skew correction via Date")
struct ClockSkewTests {
    /// The upstream's clock runs 10 minutes ahead of the node's.
    static let serverDate = ("Date", "Tue, 14 Nov 2023 22:23:20 GMT")

    static let cases: [HeaderCase] = [
        HeaderCase(
            label: "epoch reset is moved onto the node's clock",
            headers: [serverDate, ("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", "1700000660")],
            dimensions: [requests(remaining: 1, resetAt: now + 60_000)],
            understood: ["date", "x-ratelimit-remaining", "x-ratelimit-reset"]
        ),
        HeaderCase(
            label: "without Date the epoch reset is taken as is",
            headers: [("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", "1700000660")],
            dimensions: [requests(remaining: 1, resetAt: now + 660_000)]
        ),
        HeaderCase(
            label: "RFC 3339 reset is corrected",
            headers: [serverDate, ("anthropic-ratelimit-requests-reset", "2023-11-14T22:24:20Z")],
            dimensions: [requests(resetAt: now + 60_000)]
        ),
        HeaderCase(
            label: "HTTP-date Retry-After is corrected",
            headers: [serverDate, ("Retry-After", "Tue, 14 Nov 2023 22:25:20 GMT")],
            status: 429,
            retryAt: now + 120_000,
            isRateLimited: true,
            understood: ["date", "retry-after"]
        ),
        HeaderCase(
            label: "relative values ignore Date",
            headers: [serverDate, ("x-ratelimit-reset-requests", "1s"), ("Retry-After", "30")],
            status: 429,
            dimensions: [requests(resetAt: now + 1000)],
            retryAt: now + 30_000,
            isRateLimited: true,
            understood: ["retry-after", "x-ratelimit-reset-requests"]
        ),
        HeaderCase(
            label: "a Date within its one-second resolution of the node's clock corrects nothing",
            headers: [("Date", "Tue, 14 Nov 2023 22:13:20 GMT"), ("x-ratelimit-reset", "1700000660")],
            dimensions: [requests(resetAt: 1_700_000_660_000)],
            understood: ["x-ratelimit-reset"]
        ),
        HeaderCase(
            label: "a malformed Date is ignored and nothing is corrected",
            headers: [("Date", "yesterday"), ("x-ratelimit-reset", "1700000660")],
            dimensions: [requests(resetAt: now + 660_000)],
            ignored: ["date"]
        ),
    ]

    @Test(arguments: cases)
    func skew(_ testCase: HeaderCase) { testCase.verify() }
}

// MARK: - Malformed, absurd, repeated, merged

@Suite("Malformed and absurd values, repeats, merging")
struct RobustnessTests {
    static let cases: [HeaderCase] = [
        HeaderCase(
            label: "remaining above limit is clamped to limit",
            headers: [("x-ratelimit-limit", "100"), ("x-ratelimit-remaining", "150")],
            dimensions: [requests(limit: 100, remaining: 100)]
        ),
        HeaderCase(
            label: "negative limit is ignored, the rest kept",
            headers: [("x-ratelimit-limit", "-1"), ("x-ratelimit-remaining", "5")],
            dimensions: [requests(remaining: 5)],
            ignored: ["x-ratelimit-limit"]
        ),
        HeaderCase(
            label: "Int64 overflow is ignored",
            headers: [("x-ratelimit-limit", "10"), ("x-ratelimit-remaining", "99999999999999999999")],
            dimensions: [requests(limit: 10)],
            ignored: ["x-ratelimit-remaining"]
        ),
        HeaderCase(
            label: "non-numbers are ignored field by field",
            headers: [("x-ratelimit-limit", "abc"), ("x-ratelimit-remaining", "5"), ("x-ratelimit-reset", "30"),
                      ("x-ratelimit-used", "1.5")],
            dimensions: [requests(remaining: 5, resetAt: now + 30_000)],
            ignored: ["x-ratelimit-limit", "x-ratelimit-used"]
        ),
        HeaderCase(
            label: "a reset years away is clamped to 31 days",
            headers: [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1900000000")],
            dimensions: [requests(remaining: 0, resetAt: now + 31 * day)]
        ),
        HeaderCase(
            label: "a clamped reset also caps the retry at 24 h",
            headers: [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1900000000")],
            status: 429,
            dimensions: [requests(remaining: 0, resetAt: now + 31 * day)],
            retryAt: now + day,
            isRateLimited: true
        ),
        HeaderCase(
            label: "identical repeated lines count once",
            headers: [("x-ratelimit-remaining", "10"), ("X-RateLimit-Remaining", "10")],
            dimensions: [requests(remaining: 10)]
        ),
        HeaderCase(
            label: "a folded repeat on one line counts once",
            headers: [("x-ratelimit-remaining", "10, 10")],
            dimensions: [requests(remaining: 10)]
        ),
        HeaderCase(
            label: "conflicting repeated lines are ignored",
            headers: [("x-ratelimit-remaining", "10"), ("x-ratelimit-remaining", "9"), ("x-ratelimit-limit", "60")],
            dimensions: [requests(limit: 60)],
            ignored: ["x-ratelimit-remaining"]
        ),
        HeaderCase(
            label: "an empty value is ignored",
            headers: [("x-ratelimit-limit", ""), ("x-ratelimit-remaining", " 4 ")],
            dimensions: [requests(remaining: 4)],
            ignored: ["x-ratelimit-limit"]
        ),
        HeaderCase(
            label: "several families reporting requests merge conservatively into one dimension",
            headers: [
                ("x-ratelimit-limit", "100"), ("x-ratelimit-remaining", "40"), ("x-ratelimit-reset", "20"),
                ("RateLimit-Limit", "100"), ("RateLimit-Remaining", "30"), ("RateLimit-Reset", "10"),
            ],
            dimensions: [requests(limit: 100, remaining: 30, resetAt: now + 20_000)]
        ),
        HeaderCase(
            label: "a scope with inner whitespace is ignored",
            headers: [("x-ratelimit-resource", "co re")],
            ignored: ["x-ratelimit-resource"]
        ),
    ]

    @Test(arguments: cases)
    func robustness(_ testCase: HeaderCase) { testCase.verify() }

    @Test func ignoredReasonsNameTheProblem() {
        let report = parse([
            ("x-ratelimit-limit", "-5"), ("x-ratelimit-remaining", "99999999999999999999"),
            ("x-ratelimit-reset-requests", "5"), ("x-ratelimit-used", "abc"),
        ])
        let reasons = Dictionary(uniqueKeysWithValues: report.ignored.map { ($0.name, $0.reason) })
        #expect(reasons["x-ratelimit-limit"]?.contains("negative") == true)
        #expect(reasons["x-ratelimit-remaining"]?.contains("overflow") == true)
        #expect(reasons["x-ratelimit-reset-requests"]?.contains("missing unit") == true)
        #expect(reasons["x-ratelimit-used"]?.contains("not an integer") == true)
    }

    @Test func hugeValuesNeverCrash() {
        let huge = String(repeating: "9", count: 10_000)
        let report = parse(
            [
                ("x-ratelimit-reset", huge), ("retry-after-ms", huge), ("x-ratelimit-reset-tokens", huge + "h"),
                ("RateLimit", huge), ("Date", huge), ("anthropic-ratelimit-tokens-reset", huge),
            ],
            status: 429
        )
        #expect(report.dimensions.isEmpty)
        #expect(report.retryAt == nil)
        #expect(report.ignored.count == 6)
        #expect(report.ignored.allSatisfy { $0.reason.count < 200 })
    }
}

// MARK: - Tightest dimension

@Suite("tightest")
struct TightestTests {
    static let cases: [(String, [RateLimitDimension], String?)] = [
        (
            "lowest ratio wins",
            [requests(limit: 100, remaining: 50), RateLimitDimension(name: "tokens", limit: 100_000, remaining: 1000)],
            "tokens"
        ),
        (
            "equal ratio: lowest remaining wins",
            [RateLimitDimension(name: "a", limit: 100, remaining: 50), RateLimitDimension(name: "b", limit: 10, remaining: 5)],
            "b"
        ),
        (
            "an exhausted dimension without a limit is tightest",
            [requests(limit: 10, remaining: 1), RateLimitDimension(name: "tokens", remaining: 0)],
            "tokens"
        ),
        (
            "dimensions without remaining do not compete",
            [requests(limit: 10, resetAt: now), RateLimitDimension(name: "tokens", limit: 100, remaining: 90)],
            "tokens"
        ),
        ("nothing remaining is known", [requests(limit: 10, window: 60)], nil),
        ("no dimensions", [], nil),
    ]

    @Test(arguments: cases)
    func tightest(_ label: String, _ dimensions: [RateLimitDimension], _ expected: String?) {
        #expect(RateLimitReport(dimensions: dimensions).tightest?.name == expected, "\(label)")
    }

    @Test func tightestFromParsedHeaders() {
        let report = parse([
            ("anthropic-ratelimit-requests-limit", "50"), ("anthropic-ratelimit-requests-remaining", "45"),
            ("anthropic-ratelimit-output-tokens-limit", "8000"), ("anthropic-ratelimit-output-tokens-remaining", "400"),
        ])
        #expect(report.tightest?.name == "output_tokens")
    }
}

// What an upstream API said about its rate limits in one response, and the pure parser that reads it.
// No I/O and no clock: the caller passes the node's current time.

/// One limit the upstream reported (a "dimension": requests, tokens, input_tokens, output_tokens, or an IETF policy name).
public struct RateLimitDimension: Sendable, Equatable {
    /// `"requests"`, `"tokens"`, `"input_tokens"`, `"output_tokens"`, or an IETF `RateLimit-Policy` name.
    public var name: String
    /// How many units the window allows, if reported.
    public var limit: Int64?
    /// How many units are left in the current window, if reported (never above `limit`).
    public var remaining: Int64?
    /// When the window resets, absolute and already corrected for clock skew.
    public var resetAt: UnixMillis?
    /// The window length in seconds, if reported (IETF `w`).
    public var windowSeconds: Int64?

    /// Creates a dimension; every field but the name is optional.
    public init(
        name: String,
        limit: Int64? = nil,
        remaining: Int64? = nil,
        resetAt: UnixMillis? = nil,
        windowSeconds: Int64? = nil
    ) {
        self.name = name
        self.limit = limit
        self.remaining = remaining
        self.resetAt = resetAt
        self.windowSeconds = windowSeconds
    }
}

/// A header the parser looked at but could not use, and why.
public struct IgnoredHeader: Sendable, Hashable {
    /// The lowercased header name.
    public var name: String
    /// A human-readable reason, quoting (a prefix of) the offending value.
    public var reason: String

    /// Creates an entry.
    public init(name: String, reason: String) {
        self.name = name
        self.reason = reason
    }
}

/// Everything the node understood from one upstream response.
public struct RateLimitReport: Sendable, Equatable {
    /// The reported limits, sorted by name, one per name (fields from several headers of the same dimension are merged).
    public var dimensions: [RateLimitDimension]
    /// When the request may be retried: from `retry-after-ms`, `Retry-After` (seconds or HTTP-date),
    /// Discord's reset-after on 429, an exhausted dimension's reset on 403/429, or GitHub's 60 s secondary-limit rule.
    /// Never before `now` nor more than 24 h after it.
    public var retryAt: UnixMillis?
    /// The upstream's `x-should-retry` advice, if given.
    public var shouldRetry: Bool?
    /// The request was refused for rate or quota reasons (429; 403 with GitHub remaining 0 or with a retry-after;
    /// Discord `X-RateLimit-Global: true`).
    public var isRateLimited: Bool
    /// The upstream is overloaded (529, or 503 with a retry-after); not a quota refusal.
    public var isOverloaded: Bool
    /// The limit's scope: GitHub `x-ratelimit-resource`, else Discord `X-RateLimit-Scope`, else Discord `X-RateLimit-Bucket`.
    public var scope: String?
    /// Lowercased names of the headers that were used, sorted.
    public var understood: [String]
    /// Malformed or absurd values, field by field, in the order the parser met them.
    public var ignored: [IgnoredHeader]

    /// Creates a report; everything defaults to "nothing known".
    public init(
        dimensions: [RateLimitDimension] = [],
        retryAt: UnixMillis? = nil,
        shouldRetry: Bool? = nil,
        isRateLimited: Bool = false,
        isOverloaded: Bool = false,
        scope: String? = nil,
        understood: [String] = [],
        ignored: [IgnoredHeader] = []
    ) {
        self.dimensions = dimensions
        self.retryAt = retryAt
        self.shouldRetry = shouldRetry
        self.isRateLimited = isRateLimited
        self.isOverloaded = isOverloaded
        self.scope = scope
        self.understood = understood
        self.ignored = ignored
    }

    /// The tightest dimension (lowest remaining/limit ratio, then lowest remaining), or nil.
    ///
    /// Only dimensions with a known `remaining` compete. A dimension with nothing remaining has ratio 0;
    /// one without a positive `limit` counts as ratio 1. Remaining ties are broken by name.
    public var tightest: RateLimitDimension? {
        dimensions.filter { $0.remaining != nil }.min { lhs, rhs in
            let (l, r) = (Self.ratio(lhs), Self.ratio(rhs))
            if l != r { return l < r }
            let (lr, rr) = (lhs.remaining ?? 0, rhs.remaining ?? 0)
            if lr != rr { return lr < rr }
            return lhs.name < rhs.name
        }
    }

    /// The dimension named `name`, if reported.
    public func dimension(named name: String) -> RateLimitDimension? {
        dimensions.first { $0.name == name }
    }

    private static func ratio(_ dimension: RateLimitDimension) -> Double {
        guard let remaining = dimension.remaining else { return 1 }
        if remaining == 0 { return 0 }
        guard let limit = dimension.limit, limit > 0 else { return 1 }
        return Double(remaining) / Double(limit)
    }
}

/// Reads rate-limit headers of GitHub, X, OpenAI, Anthropic, Discord, Slack, Stripe and the IETF
/// `RateLimit`/`RateLimit-Policy` drafts into one ``RateLimitReport``.
public enum RateLimitHeaderParser {
    /// Parses one upstream response.
    ///
    /// Malformed values are ignored field by field (with a reason in ``RateLimitReport/ignored``), never the whole
    /// response; absurd values are clamped (resets to 31 days ahead, retries to 24 h ahead, `remaining` to `limit`)
    /// or ignored (negative or Int64-overflowing numbers). When a valid `Date` header is present, absolute times
    /// (epoch resets, RFC 3339 resets, HTTP-date `Retry-After`) are shifted by `now - Date`; relative values are
    /// taken from `now`.
    ///
    /// - Parameters:
    ///   - headers: name/value pairs as received (names in any case; a name may repeat — repeated fields are
    ///     joined with ", " as HTTP allows for list fields; a single-valued field repeated with identical values
    ///     counts once, with differing values it is ignored).
    ///   - status: the HTTP status code.
    ///   - now: the node's clock, in Unix milliseconds.
    /// - Returns: what the node understood.
    public static func parse(headers: [(name: String, value: String)], status: Int, now: UnixMillis) -> RateLimitReport {
        var parser = RateLimitParseRun(headers: headers, status: status, now: now)
        return parser.run()
    }
}

/// HTTP dates as servers write them.
public enum HTTPDate {
    /// IMF-fixdate for a Unix-ms time (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    public static func imfFixdate(_ millis: UnixMillis) -> String {
        let seconds = RateLimitValueFormats.floorDiv(millis, 1000)
        let days = RateLimitValueFormats.floorDiv(seconds, 86_400)
        let secondOfDay = seconds - days * 86_400
        let (year, month, day) = RateLimitValueFormats.civilFromDays(days)
        let weekdays = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let weekday = weekdays[Int(((days % 7) + 7) % 7)]
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(weekday), \(two(day)) \(months[Int(month - 1)]) \(year) "
            + "\(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60)) GMT"
    }
}

// The state of one `RateLimitHeaderParser.parse` call, with one method per header family.

/// Fields of one dimension as they accumulate from several headers.
struct RateLimitDimensionDraft {
    var limit: Int64?
    var remaining: Int64?
    var resetAt: UnixMillis?
    var windowSeconds: Int64?

    /// Merges conservatively: the lower limit and remaining, the later reset, the first window.
    mutating func merge(limit: Int64?, remaining: Int64?, resetAt: UnixMillis?, windowSeconds: Int64?) {
        if let limit { self.limit = min(self.limit ?? limit, limit) }
        if let remaining { self.remaining = min(self.remaining ?? remaining, remaining) }
        if let resetAt { self.resetAt = max(self.resetAt ?? resetAt, resetAt) }
        if self.windowSeconds == nil { self.windowSeconds = windowSeconds }
    }

    var isEmpty: Bool { limit == nil && remaining == nil && resetAt == nil && windowSeconds == nil }
}

/// One pass over one response's headers.
struct RateLimitParseRun {
    /// Resets further ahead than this are clamped.
    static let maximumResetAheadMillis: Int64 = 31 * RateLimitValueFormats.millisPerDay
    /// Retries further ahead than this are clamped.
    static let maximumRetryAheadMillis: Int64 = RateLimitValueFormats.millisPerDay
    /// GitHub: "wait at least one minute" when a secondary limit gives no other hint.
    static let secondaryLimitBackoffMillis: Int64 = 60_000
    /// `x-ratelimit-reset` values of at least 10^9 seconds are epoch times; smaller ones are deltas.
    static let epochThresholdMillis: Int64 = 1_000_000_000_000

    let status: Int
    let now: UnixMillis
    /// Lowercased name → trimmed values, in arrival order.
    private var fields: [String: [String]] = [:]
    private var understood: Set<String> = []
    private var ignored: [IgnoredHeader] = []
    private var drafts: [String: RateLimitDimensionDraft] = [:]
    /// Policies in another unit than requests, passed over.
    private var uncountedPolicies: Set<String> = []
    private var serverDate: UnixMillis?
    private var usedServerDate = false

    init(headers: [(name: String, value: String)], status: Int, now: UnixMillis) {
        self.status = status
        self.now = now
        for header in headers {
            let name = RateLimitValueFormats.trimmed(header.name).lowercased()
            guard !name.isEmpty else { continue }
            fields[name, default: []].append(RateLimitValueFormats.trimmed(header.value))
        }
    }

    mutating func run() -> RateLimitReport {
        readServerDate()
        let generic = readXRateLimitFamily()
        readTwitterFamily()
        readOpenAIFamily()
        readAnthropicFamily()
        readIETFFamily()
        let retryAfterMillis = readRetryAfterMillis()
        let retryAfter = readRetryAfter()
        let shouldRetry = readBool("x-should-retry")
        // Stripe explains its 429s (`global-rate`, `endpoint-concurrency`, …); informative only.
        _ = readToken("stripe-rate-limited-reason")

        let dimensions = drafts.compactMap { name, draft -> RateLimitDimension? in
            guard !draft.isEmpty else { return nil }
            var remaining = draft.remaining
            if let limit = draft.limit, let value = remaining, value > limit { remaining = limit }
            return RateLimitDimension(
                name: name,
                limit: draft.limit,
                remaining: remaining,
                resetAt: draft.resetAt,
                windowSeconds: draft.windowSeconds
            )
        }.sorted { $0.name < $1.name }

        // Status rules.
        let explicitRetry = retryAfterMillis ?? retryAfter
        let githubExhausted = generic.remaining == 0
        var isRateLimited = status == 429 || (status == 403 && (githubExhausted || explicitRetry != nil))
        if generic.global == true { isRateLimited = true }
        let isOverloaded = status == 529 || (status == 503 && explicitRetry != nil)

        // Retry time, most precise source first.
        var retryAt = explicitRetry
        if retryAt == nil, status == 429 || status == 403 {
            let exhaustedResets = dimensions.filter { $0.remaining == 0 }.compactMap(\.resetAt)
            if status == 429, let resetAfter = generic.resetAfter {
                retryAt = resetAfter
            } else if status == 429 || githubExhausted, let latest = exhaustedResets.max() {
                retryAt = latest
            } else if generic.isPresent {
                retryAt = now + Self.secondaryLimitBackoffMillis
            }
        }
        retryAt = retryAt.map { clamp($0, aheadAtMost: Self.maximumRetryAheadMillis) }

        if usedServerDate { understood.insert("date") }
        return RateLimitReport(
            dimensions: dimensions,
            retryAt: retryAt,
            shouldRetry: shouldRetry,
            isRateLimited: isRateLimited,
            isOverloaded: isOverloaded,
            scope: generic.resource ?? generic.scope ?? generic.bucket,
            understood: understood.sorted(),
            ignored: ignored
        )
    }

    // MARK: - Families

    /// What the shared `x-ratelimit-*` names (GitHub, Discord, many others) said.
    struct XRateLimitFamily {
        var isPresent = false
        var remaining: Int64?
        var resetAfter: UnixMillis?
        var global: Bool?
        var resource: String?
        var scope: String?
        var bucket: String?
    }

    /// GitHub / Discord / generic `x-ratelimit-{limit,remaining,used,reset,reset-after,resource,bucket,scope,global}`.
    private mutating func readXRateLimitFamily() -> XRateLimitFamily {
        var family = XRateLimitFamily()
        let limit = readLimit("x-ratelimit-limit")
        var remaining = readInteger("x-ratelimit-remaining")
        let used = readInteger("x-ratelimit-used")
        if remaining == nil, let limit, let used { remaining = max(0, limit - used) }
        let reset = readEpochOrDeltaReset("x-ratelimit-reset")
        // Discord: relative, so free of clock skew; preferred over the absolute reset.
        let resetAfter = readDeltaSecondsReset("x-ratelimit-reset-after")
        merge("requests", limit: limit, remaining: remaining, resetAt: resetAfter ?? reset)
        family.remaining = remaining
        family.resetAfter = resetAfter
        family.resource = readToken("x-ratelimit-resource")
        family.scope = readToken("x-ratelimit-scope")
        family.bucket = readToken("x-ratelimit-bucket")
        family.global = readBool("x-ratelimit-global")
        family.isPresent =
            limit != nil || remaining != nil || used != nil || reset != nil || resetAfter != nil
            || family.resource != nil
        return family
    }

    /// X (Twitter) `x-rate-limit-{limit,remaining,reset}`, reset in epoch seconds.
    private mutating func readTwitterFamily() {
        let limit = readLimit("x-rate-limit-limit")
        let remaining = readInteger("x-rate-limit-remaining")
        let reset = readEpochOrDeltaReset("x-rate-limit-reset")
        merge("requests", limit: limit, remaining: remaining, resetAt: reset)
    }

    /// OpenAI `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as Go durations.
    private mutating func readOpenAIFamily() {
        for kind in ["requests", "tokens"] {
            let limit = readLimit("x-ratelimit-limit-\(kind)")
            let remaining = readInteger("x-ratelimit-remaining-\(kind)")
            let reset = readDurationReset("x-ratelimit-reset-\(kind)")
            merge(kind, limit: limit, remaining: remaining, resetAt: reset)
        }
    }

    /// Anthropic `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}`.
    private mutating func readAnthropicFamily() {
        let kinds = [
            ("requests", "requests"), ("tokens", "tokens"),
            ("input-tokens", "input_tokens"), ("output-tokens", "output_tokens"),
        ]
        for (infix, dimension) in kinds {
            let limit = readLimit("anthropic-ratelimit-\(infix)-limit")
            let remaining = readInteger("anthropic-ratelimit-\(infix)-remaining")
            let reset = readRFC3339Reset("anthropic-ratelimit-\(infix)-reset")
            merge(dimension, limit: limit, remaining: remaining, resetAt: reset)
        }
    }

    /// IETF httpapi `RateLimit-Policy` + `RateLimit` (structured lists), the older `RateLimit` dictionary,
    /// and the oldest `RateLimit-Limit` / `-Remaining` / `-Reset` trio.
    private mutating func readIETFFamily() {
        // Oldest form: separate fields for "requests".
        var limit: Int64?
        var window: Int64?
        if let text = joined("ratelimit-limit") {
            (limit, window) = readLegacyLimit(text)
        }
        let remaining = readInteger("ratelimit-remaining")
        let reset = readEpochOrDeltaReset("ratelimit-reset")
        merge("requests", limit: limit, remaining: remaining, resetAt: reset, windowSeconds: window)

        if let text = joined("ratelimit-policy") {
            switch RateLimitStructuredFields.list(text) {
            case .failure(let error):
                ignore("ratelimit-policy", error.reason)
            case .success(let list):
                understood.insert("ratelimit-policy")
                for member in list.items { readPolicy(member) }
            }
        }

        if let text = joined("ratelimit") {
            if let dictionary = RateLimitStructuredFields.dictionary(text), Self.isLegacyDictionary(dictionary) {
                readLegacyRateLimitDictionary(dictionary)
            } else {
                switch RateLimitStructuredFields.list(text) {
                case .failure(let error):
                    ignore("ratelimit", error.reason)
                case .success(let list):
                    understood.insert("ratelimit")
                    for member in list.items { readPolicyState(member) }
                }
            }
        }
    }

    /// `RateLimit-Limit: 100` or the draft-era `RateLimit-Limit: 100, 100;w=60`.
    private mutating func readLegacyLimit(_ text: String) -> (Int64?, Int64?) {
        let name = "ratelimit-limit"
        switch RateLimitStructuredFields.list(text) {
        case .failure(let error):
            ignore(name, error.reason)
            return (nil, nil)
        case .success(let list):
            guard let first = list.items.first, case .integer(let limit) = first.item else {
                ignore(name, "first member is not an integer: \(RateLimitValueFormats.quoted(text))")
                return (nil, nil)
            }
            guard limit >= 0 else {
                ignore(name, "negative value: \(RateLimitValueFormats.quoted(text))")
                return (nil, nil)
            }
            understood.insert(name)
            var window: Int64?
            for member in list.items where member.item == .integer(limit) {
                if case .integer(let w)? = member.parameters["w"], w > 0 {
                    window = w
                    break
                }
            }
            return (limit, window)
        }
    }

    /// The older single `RateLimit` Dictionary form has integer `limit`, `remaining` or `reset` members
    /// (a token-named list member such as `limit;r=5` parses as a dictionary entry with value `true`).
    private static func isLegacyDictionary(_ dictionary: RateLimitSFDictionary) -> Bool {
        ["limit", "remaining", "reset"].contains { key in
            if case .integer? = dictionary[key]?.item { return true }
            return false
        }
    }

    private mutating func readLegacyRateLimitDictionary(_ dictionary: RateLimitSFDictionary) {
        let name = "ratelimit"
        understood.insert(name)
        func value(_ key: String) -> Int64? {
            guard let member = dictionary[key] else { return nil }
            guard case .integer(let value) = member.item, value >= 0 else {
                ignore(name, "\(key) is not a non-negative integer")
                return nil
            }
            return value
        }
        let limit = value("limit")
        let remaining = value("remaining")
        let reset = value("reset").map { resetIn(millis: $0 * 1000) }
        merge("requests", limit: limit, remaining: remaining, resetAt: reset)
    }

    /// One `RateLimit-Policy` member: `"name";q=…;w=…[;qu=…][;pk=…]`. A policy counted in another unit
    /// than requests (`qu`) is passed over, with its state in `RateLimit`: no call's cost is known in it.
    private mutating func readPolicy(_ member: RateLimitSFMember) {
        let field = "ratelimit-policy"
        guard let policy = policyName(member, field: field) else { return }
        if let unit = member.parameters["qu"] {
            guard let text = unit.text, text == "requests" else {
                let shown = unit.text.map { "\"\($0)\"" } ?? "not a string"
                ignore(field, "policy \"\(policy)\": quota unit \(shown) is not counted (only requests are)")
                uncountedPolicies.insert(policy)
                return
            }
        }
        let quota = policyParameter(member, "q", field: field, policy: policy, positive: false)
        if member.parameters["q"] == nil { ignore(field, "policy \"\(policy)\" has no q") }
        let window = policyParameter(member, "w", field: field, policy: policy, positive: true)
        merge(policy, limit: quota, windowSeconds: window)
    }

    /// One current-form `RateLimit` member: `"name";r=…;t=…[;pk=…]`.
    private mutating func readPolicyState(_ member: RateLimitSFMember) {
        let field = "ratelimit"
        guard let policy = policyName(member, field: field), !uncountedPolicies.contains(policy) else { return }
        let remaining = policyParameter(member, "r", field: field, policy: policy, positive: false)
        let seconds = policyParameter(member, "t", field: field, policy: policy, positive: false)
        merge(policy, remaining: remaining, resetAt: seconds.map { resetIn(millis: $0 * 1000) })
    }

    /// A member's policy name, which names a dimension: a label (1-64 letters, digits, `-`, `_`, `.`, `:`).
    private mutating func policyName(_ member: RateLimitSFMember, field: String) -> String? {
        guard let policy = member.item.text, !policy.isEmpty else {
            ignore(field, "member is not a policy name (string or token)")
            return nil
        }
        guard QuotaKey.isValidLabel(policy) else {
            ignore(field, "policy name \(RateLimitValueFormats.quoted(policy)) is not a label (1-64 letters, digits, -, _, ., :)")
            return nil
        }
        return policy
    }

    private mutating func policyParameter(
        _ member: RateLimitSFMember,
        _ key: String,
        field: String,
        policy: String,
        positive: Bool
    ) -> Int64? {
        guard let value = member.parameters[key] else { return nil }
        guard case .integer(let number) = value, number >= 0, !positive || number > 0 else {
            let expectation = positive ? "a positive integer" : "a non-negative integer"
            ignore(field, "policy \"\(policy)\": \(key) is not \(expectation)")
            return nil
        }
        return number
    }

    // MARK: - Retry hints

    /// `retry-after-ms`: milliseconds, possibly with a fraction (rounded up).
    private mutating func readRetryAfterMillis() -> UnixMillis? {
        readParsed("retry-after-ms") { RateLimitValueFormats.decimalScaled($0, fractionDigits: 0) }
            .map { RateLimitValueFormats.adding(now, $0) }
    }

    /// `Retry-After`: delta-seconds (a fraction is tolerated) or an HTTP-date (skew-corrected).
    private mutating func readRetryAfter() -> UnixMillis? {
        let name = "retry-after"
        guard let text = single(name) else { return nil }
        if let first = text.utf8.first, RateLimitValueFormats.isDigit(first) || first == UInt8(ascii: "-")
            || first == UInt8(ascii: "+") || first == UInt8(ascii: ".")
        {
            switch RateLimitValueFormats.decimalScaled(text, fractionDigits: 3) {
            case .failure(let error):
                ignore(name, error.reason)
                return nil
            case .success(let millis):
                understood.insert(name)
                return RateLimitValueFormats.adding(now, millis)
            }
        }
        switch RateLimitValueFormats.httpDateMillis(text, now: now) {
        case .failure:
            ignore(name, "neither delta-seconds nor an HTTP-date: \(RateLimitValueFormats.quoted(text))")
            return nil
        case .success(let millis):
            understood.insert(name)
            return absolute(millis)
        }
    }

    private mutating func readServerDate() {
        let name = "date"
        guard let text = single(name) else { return }
        switch RateLimitValueFormats.httpDateMillis(text, now: now) {
        case .failure(let error): ignore(name, error.reason)
        case .success(let millis):
            // `Date` has one-second resolution: an offset below two seconds is rounding, not skew, and
            // "correcting" it would move every reset by up to a second from one response to the next.
            let offset = RateLimitValueFormats.subtracting(millis, now)
            if offset <= -2000 || offset >= 2000 { serverDate = millis }
        }
    }

    // MARK: - Typed readers

    /// Reads a single-valued field and parses it: a failure is listed under `ignored` with its reason, a
    /// success under `understood`.
    private mutating func readParsed<Value>(
        _ name: String, _ parse: (String) -> Result<Value, RateLimitFieldError>
    ) -> Value? {
        guard let text = singleNumber(name) else { return nil }
        if text == "-1" {
            // Some APIs send -1 where they do not know the value.
            ignore(name, "-1: the upstream does not know (read as absent)")
            return nil
        }
        switch parse(text) {
        case .failure(let error):
            ignore(name, error.reason)
            return nil
        case .success(let value):
            understood.insert(name)
            return value
        }
    }

    private mutating func readInteger(_ name: String) -> Int64? {
        readParsed(name, RateLimitValueFormats.nonNegativeInteger)
    }

    /// A limit: as ``readInteger(_:)``, but 0 is read as "not stated" (some APIs send it for unknown;
    /// no upstream that answers means it allows no call at all).
    private mutating func readLimit(_ name: String) -> Int64? {
        guard let limit = readInteger(name) else { return nil }
        guard limit > 0 else {
            understood.remove(name)
            ignore(name, "0: no limit stated (read as unknown)")
            return nil
        }
        return limit
    }

    /// Seconds, decimals allowed: epoch seconds (skew-corrected) from 10^9 on, else seconds from now.
    private mutating func readEpochOrDeltaReset(_ name: String) -> UnixMillis? {
        guard let millis = readParsed(name, { RateLimitValueFormats.decimalScaled($0, fractionDigits: 3) }) else {
            return nil
        }
        if millis >= Self.epochThresholdMillis {
            return clamp(absolute(millis), aheadAtMost: Self.maximumResetAheadMillis)
        }
        return resetIn(millis: millis)
    }

    /// Seconds from now, decimals allowed.
    private mutating func readDeltaSecondsReset(_ name: String) -> UnixMillis? {
        readParsed(name) { RateLimitValueFormats.decimalScaled($0, fractionDigits: 3) }.map { resetIn(millis: $0) }
    }

    private mutating func readDurationReset(_ name: String) -> UnixMillis? {
        readParsed(name, RateLimitValueFormats.goDurationNanoseconds)
            .map { resetIn(millis: RateLimitValueFormats.millisRoundingUp(nanoseconds: $0)) }
    }

    private mutating func readRFC3339Reset(_ name: String) -> UnixMillis? {
        guard let millis = readParsed(name, RateLimitValueFormats.rfc3339Millis) else { return nil }
        return clamp(absolute(millis), aheadAtMost: Self.maximumResetAheadMillis)
    }

    private mutating func readBool(_ name: String) -> Bool? {
        guard let text = singleNumber(name) else { return nil }
        switch text.lowercased() {
        case "true", "1":
            understood.insert(name)
            return true
        case "false", "0":
            understood.insert(name)
            return false
        default:
            ignore(name, "not a boolean: \(RateLimitValueFormats.quoted(text))")
            return nil
        }
    }

    /// A short identifier (bucket hash, resource name, scope): visible ASCII, at most 256 bytes.
    private mutating func readToken(_ name: String) -> String? {
        guard let text = single(name) else { return nil }
        guard !text.isEmpty else {
            ignore(name, "empty value")
            return nil
        }
        guard text.utf8.count <= 256, text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            ignore(name, "not a short visible-ASCII identifier: \(RateLimitValueFormats.quoted(text))")
            return nil
        }
        understood.insert(name)
        return text
    }

    // MARK: - Field access

    /// All lines of a field joined with ", ".
    private func joined(_ name: String) -> String? {
        fields[name].map { $0.joined(separator: ", ") }
    }

    /// A field that must occur once (it may contain commas, like an HTTP-date): identical repeats collapse,
    /// differing repeats make it unusable.
    private mutating func single(_ name: String) -> String? {
        guard let values = fields[name] else { return nil }
        var distinct: [String] = []
        for value in values where !distinct.contains(value) { distinct.append(value) }
        if distinct.count == 1 { return distinct[0] }
        ignore(name, "repeated with conflicting values: \(RateLimitValueFormats.quoted(values.joined(separator: ", ")))")
        return nil
    }

    /// A comma-free single value: also collapses `10, 10` on one line, as proxies that fold repeats produce.
    private mutating func singleNumber(_ name: String) -> String? {
        guard let values = fields[name] else { return nil }
        let all = values.joined(separator: ", ")
        var distinct: [String] = []
        for part in all.split(separator: ",", omittingEmptySubsequences: false) {
            let value = RateLimitValueFormats.trimmed(part)
            if !value.isEmpty, !distinct.contains(value) { distinct.append(value) }
        }
        if distinct.count <= 1 { return distinct.first ?? "" }
        ignore(name, "repeated with conflicting values: \(RateLimitValueFormats.quoted(all))")
        return nil
    }

    // MARK: - Time helpers

    /// An absolute upstream time moved onto the node's clock when the response carried a `Date`.
    private mutating func absolute(_ millis: UnixMillis) -> UnixMillis {
        guard let serverDate else { return millis }
        usedServerDate = true
        return RateLimitValueFormats.adding(RateLimitValueFormats.subtracting(millis, serverDate), now)
    }

    private func resetIn(millis: Int64) -> UnixMillis {
        clamp(RateLimitValueFormats.adding(now, millis), aheadAtMost: Self.maximumResetAheadMillis)
    }

    /// Keeps a time within `[now, now + ahead]`.
    private func clamp(_ time: UnixMillis, aheadAtMost ahead: Int64) -> UnixMillis {
        min(max(time, now), RateLimitValueFormats.adding(now, ahead))
    }

    // MARK: - Bookkeeping

    private mutating func merge(
        _ name: String,
        limit: Int64? = nil,
        remaining: Int64? = nil,
        resetAt: UnixMillis? = nil,
        windowSeconds: Int64? = nil
    ) {
        var draft = drafts[name] ?? RateLimitDimensionDraft()
        draft.merge(limit: limit, remaining: remaining, resetAt: resetAt, windowSeconds: windowSeconds)
        if !draft.isEmpty { drafts[name] = draft }
    }

    private mutating func ignore(_ name: String, _ reason: String) {
        ignored.append(IgnoredHeader(name: name, reason: reason))
    }
}

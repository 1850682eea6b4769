/// `POST /v1/acquire` answered 200: make the call, then report it with `observe`.
public struct GrantAnswer: Codable, Sendable, Hashable {
    /// Always `true`.
    public var granted: Bool
    public var service: String
    public var account: String
    /// What was charged, by dimension (`requests` always): pass it back as `cost` with the call's `usage`.
    public var cost: [String: Int64]
    /// Finer than the grant itself (`half_open_probe`, `no_limit_known`), when there is more to say.
    public var detail: String?
    /// Where rights apply, the end of the window the grant was charged to (Unix ms).
    public var windowEndMillis: Int64?
    /// The account's view after the grant; `nil` when no key is known.
    public var quota: QuotaAnswer?

    public init(
        service: String, account: String, cost: [String: Int64], detail: String?, windowEndMillis: Int64?,
        quota: QuotaAnswer?
    ) {
        granted = true
        self.service = service
        self.account = account
        self.cost = cost
        self.detail = detail
        self.windowEndMillis = windowEndMillis
        self.quota = quota
    }

    enum CodingKeys: String, CodingKey {
        case granted, service, account, cost, detail, quota
        case windowEndMillis = "window_end_ms"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(granted, forKey: .granted)
        try container.encode(service, forKey: .service)
        try container.encode(account, forKey: .account)
        try container.encode(cost, forKey: .cost)
        try container.encodeIfPresent(detail, forKey: .detail)
        try container.encodeIfPresent(windowEndMillis, forKey: .windowEndMillis)
        try container.encodeOrNull(quota, forKey: .quota)
    }
}

/// `POST /v1/acquire` answered 429: not now; ask again at `retry_at_ms`.
public struct DenialAnswer: Codable, Sendable, Hashable {
    /// Always `false`.
    public var granted: Bool
    /// Why not now (README.md, "Why a call was denied").
    public var reason: DenialReason
    /// Which case it is, finer than `reason` (a fixed vocabulary, prefixed with a dimension or `scope_`).
    public var detail: String?
    public var retryAfterMillis: Int64
    /// Unix ms.
    public var retryAtMillis: Int64
    public var account: String?
    public var quota: QuotaAnswer?

    public init(
        reason: DenialReason, detail: String?, retryAfterMillis: Int64, retryAtMillis: Int64, account: String?,
        quota: QuotaAnswer?
    ) {
        granted = false
        self.reason = reason
        self.detail = detail
        self.retryAfterMillis = retryAfterMillis
        self.retryAtMillis = retryAtMillis
        self.account = account
        self.quota = quota
    }

    enum CodingKeys: String, CodingKey {
        case granted, reason, detail, account, quota
        case retryAfterMillis = "retry_after_ms", retryAtMillis = "retry_at_ms"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(granted, forKey: .granted)
        try container.encode(reason, forKey: .reason)
        try container.encodeIfPresent(detail, forKey: .detail)
        try container.encode(retryAfterMillis, forKey: .retryAfterMillis)
        try container.encode(retryAtMillis, forKey: .retryAtMillis)
        try container.encodeIfPresent(account, forKey: .account)
        try container.encodeOrNull(quota, forKey: .quota)
    }

    /// Why a call was denied.
    public enum DenialReason: String, Codable, Sendable, CaseIterable {
        case quotaExhausted = "quota_exhausted"
        case reservedForHigherPriority = "reserved_for_higher_priority"
        case breakerOpen = "breaker_open"
        case unknownService = "unknown_service"
    }
}

/// `POST /v1/observe` answered 200: what the node understood of the upstream's response.
public struct ObserveAnswer: Codable, Sendable, Hashable {
    /// The rate-limit headers used, lowercased and sorted.
    public var understood: [String]
    /// What could not be used, field by field, with why.
    public var ignored: [Ignored]
    public var breakerOpened: Bool
    public var breakerClosed: Bool
    /// The account's view; `nil` when the service is unknown and the headers taught no limit.
    public var quota: QuotaAnswer?
    /// Why there is no view, when there is none.
    public var message: String?

    public init(
        understood: [String], ignored: [Ignored], breakerOpened: Bool, breakerClosed: Bool, quota: QuotaAnswer?,
        message: String?
    ) {
        self.understood = understood
        self.ignored = ignored
        self.breakerOpened = breakerOpened
        self.breakerClosed = breakerClosed
        self.quota = quota
        self.message = message
    }

    enum CodingKeys: String, CodingKey {
        case understood, ignored, quota, message
        case breakerOpened = "breaker_opened", breakerClosed = "breaker_closed"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(understood, forKey: .understood)
        try container.encode(ignored, forKey: .ignored)
        try container.encode(breakerOpened, forKey: .breakerOpened)
        try container.encode(breakerClosed, forKey: .breakerClosed)
        try container.encodeOrNull(quota, forKey: .quota)
        try container.encodeIfPresent(message, forKey: .message)
    }

    /// A header (or dimension) the node could not use, and why.
    public struct Ignored: Codable, Sendable, Hashable {
        public var header: String
        public var reason: String

        public init(header: String, reason: String) {
            self.header = header
            self.reason = reason
        }
    }
}

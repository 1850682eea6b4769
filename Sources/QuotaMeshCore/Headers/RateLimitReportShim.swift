// Temporary until the header parser lands.
public struct RateLimitDimension: Sendable, Equatable {
    public var name: String
    public var limit: Int64?
    public var remaining: Int64?
    public var resetAt: UnixMillis?
    public var windowSeconds: Int64?
}
public struct RateLimitReport: Sendable, Equatable {
    public var dimensions: [RateLimitDimension] = []
    public var retryAt: UnixMillis?
    public var isRateLimited = false
    public var isOverloaded = false
    public var tightest: RateLimitDimension? { dimensions.first }
}

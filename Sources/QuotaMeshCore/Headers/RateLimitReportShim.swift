// Temporary until the header parser lands.
public struct RateLimitDimension: Sendable, Equatable {
    public init(name: String) { self.name = name }
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
public struct IgnoredHeader: Sendable, Equatable { public var name: String; public var reason: String }
extension RateLimitReport {
    public var understood: [String] { [] }
    public var ignored: [IgnoredHeader] { [] }
}
public enum RateLimitHeaderParser {
    public static func parse(headers: [(name: String, value: String)], status: Int, now: UnixMillis) -> RateLimitReport {
        var report = RateLimitReport()
        var dim = RateLimitDimension(name: "requests")
        for (name, value) in headers {
            switch name.lowercased() {
            case "x-ratelimit-limit": dim.limit = Int64(value)
            case "x-ratelimit-remaining": dim.remaining = Int64(value)
            case "x-ratelimit-reset": dim.resetAt = Int64(value).map { $0 * 1000 }
            case "retry-after": report.retryAt = Int64(value).map { now + $0 * 1000 }
            default: break
            }
        }
        if dim.limit != nil || dim.remaining != nil { report.dimensions = [dim] }
        report.isRateLimited = status == 429
        return report
    }
}

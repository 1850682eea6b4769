/// The body of `POST /v1/acquire` as it travels: the JSON object itself, so that the node can name a
/// field it does not take and check every value against its rules in one place (the node's
/// `RequestBodies`); a client builds it from typed values.
public struct AcquireBody: Codable, Sendable, Hashable {
    /// The object's fields.
    public var fields: [String: JSONValue]

    /// A body as received.
    public init(fields: [String: JSONValue]) { self.fields = fields }

    /// A body for one call: `costs` by dimension beside the requests, `waitMillis` the longest the node may
    /// hold it for a grant.
    public init(service: String, priority: String? = nil, cost: Int64 = 1, costs: [String: Int64] = [:], waitMillis: Int64 = 0) {
        fields = ["service": .string(service), "wait_ms": .integer(waitMillis)]
        if let priority { fields["priority"] = .string(priority) }
        if costs.isEmpty {
            fields["cost"] = .integer(cost)
        } else {
            fields["cost"] = .object(costs.merging(["requests": cost]) { own, _ in own }.mapValues { .integer($0) })
        }
    }

    public init(from decoder: any Decoder) throws {
        guard case .object(let fields) = try JSONValue(from: decoder) else { throw RequestBodyShape.notAnObject }
        self.fields = fields
    }

    public func encode(to encoder: any Encoder) throws { try JSONValue.object(fields).encode(to: encoder) }
}

/// The body of `POST /v1/observe` as it travels (see ``AcquireBody``).
public struct ObserveBody: Codable, Sendable, Hashable {
    /// The object's fields.
    public var fields: [String: JSONValue]

    /// A body as received.
    public init(fields: [String: JSONValue]) { self.fields = fields }

    /// A report of one upstream response: its status and headers, and what the call used (`usage`)
    /// against what its acquire reserved (`costs`), by dimension.
    public init(
        service: String, account: String? = nil, status: Int, headers: [String: [String]],
        usage: [String: Int64] = [:], costs: [String: Int64] = [:]
    ) {
        fields = [
            "service": .string(service), "status": .integer(Int64(status)),
            "headers": .object(headers.mapValues { $0.count == 1 ? .string($0[0]) : .array($0.map { .string($0) }) }),
        ]
        if let account { fields["account"] = .string(account) }
        if !usage.isEmpty {
            fields["usage"] = .object(usage.mapValues { .integer($0) })
            if !costs.isEmpty { fields["cost"] = .object(costs.mapValues { .integer($0) }) }
        }
    }

    public init(from decoder: any Decoder) throws {
        guard case .object(let fields) = try JSONValue(from: decoder) else { throw RequestBodyShape.notAnObject }
        self.fields = fields
    }

    public func encode(to encoder: any Encoder) throws { try JSONValue.object(fields).encode(to: encoder) }
}

/// A request body that is JSON but not an object.
public enum RequestBodyShape: Error, Sendable {
    case notAnObject
}

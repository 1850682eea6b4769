import Foundation
import QuotaMeshAPI
import QuotaMeshCore

/// Why a request body was refused: the HTTP status to answer with and a message for the agent.
public struct BodyError: Error, Sendable, Equatable {
    /// The HTTP status code: 400 for a malformed body, 413 for one that is too large.
    public var status: Int
    /// What was wrong, for a human reading the agent's logs.
    public var message: String

    /// Creates an error.
    public init(status: Int, message: String) {
        self.status = status
        self.message = message
    }

    static func badRequest(_ message: String) -> BodyError { BodyError(status: 400, message: message) }
}

/// An upstream response as an agent reports it to `POST /v1/observe`.
public struct ObservedResponse: Sendable {
    /// The upstream service.
    public var service: String
    /// The account label used, if the agent names one (a label, never a credential).
    public var account: String?
    /// The upstream's HTTP status.
    public var status: Int
    /// The upstream's response headers, in a stable order.
    public var headers: [(name: String, value: String)]
    /// What the call really used, by dimension (`usage`), minus what its acquire reserved (`cost`): the
    /// correction to apply, negative for a refund. Empty when the agent reports no usage.
    public var corrections: [String: Int64] = [:]
}

/// Decoding and validation of the local API's JSON request bodies, kept apart from the HTTP server so
/// that the rules are tested and fuzzed on their own. Every refusal names the field and the rule.
public enum RequestBodies {
    /// The largest body accepted.
    public static let maxBytes = 64 * 1024
    /// The longest an acquire may wait (ms).
    public static let maxWaitMillis = AcquireRequest.maxWaitMillis
    /// The largest cost of one acquire, in requests.
    public static let maxCost = AcquireRequest.maxCost
    /// The largest cost of one acquire in another dimension (tokens, …).
    public static let maxDimensionCost = AcquireRequest.maxDimensionCost

    /// The fields `POST /v1/acquire` takes.
    static let acquireFields: Set<String> = ["service", "priority", "cost", "wait_ms"]
    /// The fields `POST /v1/observe` takes.
    static let observeFields: Set<String> = ["service", "account", "status", "headers", "usage", "cost"]

    /// A refusal naming the first field of `body` (in name order) that `fields` does not hold: a misspelt
    /// field (`priorty`) would otherwise be ignored silently.
    static func unknownField(in body: [String: JSONValue], fields: Set<String>, of path: String) -> BodyError? {
        guard let unknown = body.keys.filter({ !fields.contains($0) }).sorted().first else { return nil }
        return .badRequest("unknown field `\(unknown)`: \(path) takes \(fields.sorted().joined(separator: ", "))")
    }

    /// Parses a body that must be one JSON object.
    public static func object(from bytes: some Collection<UInt8>) -> Result<[String: JSONValue], BodyError> {
        guard bytes.count <= maxBytes else {
            return .failure(BodyError(status: 413, message: "request body is larger than \(maxBytes) bytes"))
        }
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)) else {
            let place = JSONSyntax.firstError(in: bytes).map { " at line \($0.line), column \($0.column): expected \($0.expected)" }
            return .failure(.badRequest("body is not valid JSON" + (place ?? "")))
        }
        guard case .object(let dictionary) = value else {
            return .failure(.badRequest("body must be a JSON object"))
        }
        return .success(dictionary)
    }

    /// Validates the body of `POST /v1/acquire`.
    public static func acquire(_ body: [String: JSONValue]) -> Result<AcquireRequest, BodyError> {
        if let unknown = unknownField(in: body, fields: acquireFields, of: "POST /v1/acquire") { return .failure(unknown) }
        guard let service = body["service"]?.string else {
            return .failure(.badRequest("`service` is required and must be a string"))
        }
        guard QuotaKey.isValidLabel(service) else {
            return .failure(.badRequest("`service` must be 1-64 letters, digits, '-', '_', '.', ':'"))
        }
        var request = AcquireRequest(service: service)
        if let value = body["priority"], value != .null {
            guard let text = value.string, let priority = Priority(rawValue: text) else {
                return .failure(.badRequest("`priority` must be one of urgent, normal, low"))
            }
            request.priority = priority
        }
        if let object = body["cost"]?.object {
            // By dimension: `{"requests": 1, "tokens": 1800}`; requests default to 1.
            switch dimensions(object, name: "cost", zeroAllowed: false) {
            case .success(let costs):
                request.cost = costs[QuotaKey.requests] ?? 1
                request.costs = costs.filter { $0.key != QuotaKey.requests }
            case .failure(let failure): return .failure(failure)
            }
        } else {
            switch integer(body["cost"], name: "cost", range: 1...maxCost) {
            case .success(let cost?): request.cost = cost
            case .success(nil): break
            case .failure(let failure): return .failure(failure)
            }
        }
        switch integer(body["wait_ms"], name: "wait_ms", range: 0...maxWaitMillis) {
        case .success(let wait?): request.waitMillis = wait
        case .success(nil): break
        case .failure(let failure): return .failure(failure)
        }
        return .success(request)
    }

    /// Validates the body of `POST /v1/observe`.
    public static func observe(_ body: [String: JSONValue]) -> Result<ObservedResponse, BodyError> {
        if let unknown = unknownField(in: body, fields: observeFields, of: "POST /v1/observe") { return .failure(unknown) }
        guard let service = body["service"]?.string, QuotaKey.isValidLabel(service) else {
            return .failure(.badRequest("`service` is required: 1-64 letters, digits, '-', '_', '.', ':'"))
        }
        var account: String?
        if let value = body["account"], value != .null {
            guard let text = value.string, QuotaKey.isValidLabel(text) else {
                return .failure(.badRequest("`account` must be a label (never a credential)"))
            }
            account = text
        }
        let status: Int
        switch integer(body["status"], name: "status", range: 100...599) {
        case .success(let value?): status = Int(value)
        case .success(nil): return .failure(.badRequest("`status` is required: the upstream's HTTP status"))
        case .failure(let failure): return .failure(failure)
        }
        var headers: [(name: String, value: String)] = []
        if let value = body["headers"], value != .null {
            guard let object = value.object else {
                return .failure(.badRequest("`headers` must be an object of name: value"))
            }
            for (name, raw) in object.sorted(by: { $0.key < $1.key }) {
                switch raw {
                case .string(let text):
                    headers.append((name, text))
                case .array(let list) where list.allSatisfy({ $0.string != nil }):
                    for item in list { if let text = item.string { headers.append((name, text)) } }
                default:
                    return .failure(.badRequest("header `\(name)` must be a string or a list of strings"))
                }
            }
        }
        var response = ObservedResponse(service: service, account: account, status: status, headers: headers)
        // `usage` (what the call used) against `cost` (what its acquire reserved), by dimension.
        if let value = body["usage"], value != .null {
            guard let object = value.object else {
                return .failure(.badRequest("`usage` must be an object of dimension: amount, e.g. {\"tokens\": 1234}"))
            }
            let usage: [String: Int64]
            switch dimensions(object, name: "usage", zeroAllowed: true) {
            case .success(let values): usage = values
            case .failure(let failure): return .failure(failure)
            }
            var reserved: [String: Int64] = [:]
            if let value = body["cost"], value != .null {
                guard let object = value.object else {
                    return .failure(.badRequest("`cost` must be the object the acquire was made with"))
                }
                switch dimensions(object, name: "cost", zeroAllowed: true) {
                case .success(let values): reserved = values
                case .failure(let failure): return .failure(failure)
                }
            }
            for (dimension, used) in usage where dimension != QuotaKey.requests {
                response.corrections[dimension] = used - (reserved[dimension] ?? 0)
            }
        }
        return .success(response)
    }

    /// An object of dimension label: whole number, as `cost` and `usage` take it.
    static func dimensions(_ object: [String: JSONValue], name: String, zeroAllowed: Bool) -> Result<[String: Int64], BodyError> {
        guard !object.isEmpty, object.count <= 16 else {
            return .failure(.badRequest("`\(name)` must name 1 to 16 dimensions, e.g. {\"requests\": 1, \"tokens\": 1800}"))
        }
        var values: [String: Int64] = [:]
        for (dimension, raw) in object.sorted(by: { $0.key < $1.key }) {
            guard QuotaKey.isValidLabel(dimension) else {
                return .failure(.badRequest("`\(name)` dimension names must be labels such as requests or tokens"))
            }
            let upper = dimension == QuotaKey.requests ? maxCost : maxDimensionCost
            switch integer(raw, name: "\(name).\(dimension)", range: (zeroAllowed ? 0 : 1)...upper) {
            case .success(let value?): values[dimension] = value
            case .success(nil): return .failure(.badRequest("`\(name).\(dimension)` must be a whole number"))
            case .failure(let failure): return .failure(failure)
            }
        }
        return .success(values)
    }

    /// A whole number within `range`, or `nil` when absent. Strings, booleans, fractions and values out of
    /// range are refused (JSON `true` must not pass as the number 1).
    static func integer(_ value: JSONValue?, name: String, range: ClosedRange<Int64>) -> Result<Int64?, BodyError> {
        let outOfRange = BodyError.badRequest("`\(name)` must be between \(range.lowerBound) and \(range.upperBound)")
        switch value {
        case nil, .null?:
            return .success(nil)
        case .integer(let number)?:
            return range.contains(number) ? .success(number) : .failure(outOfRange)
        case .number(let double)? where double.isFinite && double.rounded() == double:
            // A whole number written as a fraction (`1.0`), or one beyond Int64 (`1e30`).
            guard double >= Double(range.lowerBound), double <= Double(range.upperBound) else { return .failure(outOfRange) }
            return .success(Int64(double))
        default:
            return .failure(.badRequest("`\(name)` must be a whole number"))
        }
    }
}

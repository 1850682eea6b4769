import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A client for a QuotaMesh node's local API, for Swift agents: acquire before an upstream call, report
/// the response after it, read the merged quota. Every call is one HTTP request to the node.
///
/// ```swift
/// let quota = QuotaMeshClient()
/// let response = try await quota.call(service: "github", priority: .normal) {
///     let (data, response) = try await URLSession.shared.data(from: url)
///     return (data, response as! HTTPURLResponse)
/// }
/// ```
public struct QuotaMeshClient: Sendable {
    /// A call's priority: urgent work may use what is reserved from the others.
    public enum Priority: String, Sendable, Codable {
        /// May use the whole limit.
        case urgent
        /// Stops when 10% of the limit is left (by default).
        case normal
        /// Stops when 50% of the limit is left (by default).
        case low
    }

    /// The node's answer to an acquire.
    public struct Decision: Sendable, Decodable, Equatable {
        /// Whether the call may go ahead now.
        public var granted: Bool
        /// Why not (`quota_exhausted`, `reserved_for_higher_priority`, `breaker_open`, `unknown_service`).
        public var reason: String?
        /// Which case of the reason (`window`, `share`, `paced`, `learning`, `cost_exceeds_limit`, …).
        public var detail: String?
        /// The account to use (a label, never a credential).
        public var account: String?
        /// How long to wait before asking again, when denied (ms).
        public var retryAfterMillis: Int64?
        /// The merged quota of the account, if known.
        public var quota: Quota?

        enum CodingKeys: String, CodingKey {
            case granted, reason, detail, account, quota
            case retryAfterMillis = "retry_after_ms"
        }
    }

    /// The merged view of one quota key.
    public struct Quota: Sendable, Decodable, Equatable {
        /// The service.
        public var service: String
        /// The account.
        public var account: String
        /// Calls allowed per window, if known.
        public var limit: Int64?
        /// Calls left in the window, if known.
        public var remaining: Int64?
        /// When the window resets (Unix ms), if known.
        public var resetAtMillis: Int64?
        /// Consumption in the current window, cluster-wide and by this node.
        public var consumed: Consumed
        /// The shared breaker.
        public var breaker: Breaker
        /// Peers of the answering node: live now, and known (in its trust store).
        public var peers: Peers?

        /// Consumption in the current window.
        public struct Consumed: Sendable, Decodable, Equatable {
            /// By every node.
            public var global: Int64
            /// By this node.
            public var local: Int64
        }

        /// The shared circuit breaker.
        public struct Breaker: Sendable, Decodable, Equatable {
            /// `closed`, `open` or `half_open`.
            public var state: String
        }

        /// The answering node's peers.
        public struct Peers: Sendable, Decodable, Equatable {
            /// Heard from within the liveness timeout.
            public var live: Int
            /// In the trust store.
            public var known: Int
        }

        enum CodingKeys: String, CodingKey {
            case service, account, limit, remaining, consumed, breaker, peers
            case resetAtMillis = "reset_at_ms"
        }
    }

    /// Why a request failed.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        /// The HTTP status (0 when the node could not be reached).
        public var status: Int
        /// The node's message, or the transport error.
        public var message: String

        public var description: String { status == 0 ? message : "HTTP \(status): \(message)" }
    }

    /// The node's API, e.g. `http://127.0.0.1:9721`.
    public let endpoint: URL
    /// The API token, when the node requires one.
    public let token: String?
    /// The session requests go through.
    public let session: URLSession

    /// Creates a client.
    /// - Parameters:
    ///   - endpoint: the node's API; defaults to `$QUOTAMESH_API` or `127.0.0.1:9721`.
    ///   - token: the bearer token, when the node has an `api_token_file`.
    ///   - session: the session to send through; give one with a higher `httpMaximumConnectionsPerHost`
    ///     when many acquires wait at once.
    public init(endpoint: URL? = nil, token: String? = nil, session: URLSession = .shared) {
        self.session = session
        let fallback = ProcessInfo.processInfo.environment["QUOTAMESH_API"] ?? "127.0.0.1:9721"
        self.endpoint = endpoint ?? URL(string: "http://\(fallback)") ?? URL(fileURLWithPath: "/")
        self.token = token
    }

    /// Asks for a grant.
    /// - Parameters:
    ///   - service: the upstream service.
    ///   - priority: the call's priority.
    ///   - cost: the call's cost in requests.
    ///   - wait: how long the node may hold the request for a turn (at most 600 s).
    ///   - costs: what the call costs in other dimensions, e.g. `["tokens": 1800]`; every dimension with a
    ///     known limit must grant, or nothing is charged.
    public func acquire(
        service: String, priority: Priority = .normal, cost: Int = 1, costs: [String: Int] = [:], wait: Duration = .zero
    ) async throws -> Decision {
        var body: [String: Any] = [
            "service": service, "priority": priority.rawValue, "cost": cost,
            "wait_ms": Int(wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000),
        ]
        if !costs.isEmpty { body["cost"] = costs.merging(["requests": cost]) { own, _ in own } }
        let (status, data) = try await send("POST", "/v1/acquire", body: body)
        guard status == 200 || status == 429 else { throw failure(status, data) }
        return try JSONDecoder().decode(Decision.self, from: data)
    }

    /// Reports an upstream response, so that its rate-limit headers and any 429 reach every node.
    /// - Parameters:
    ///   - service: the upstream service.
    ///   - account: the account the grant named.
    ///   - status: the upstream's HTTP status.
    ///   - headers: the upstream's response headers.
    ///   - usage: what the call really used by dimension (e.g. `["tokens": 1234]` from the response body),
    ///     with `costs` the acquire reserved: the difference is refunded (or charged).
    public func observe(
        service: String, account: String? = nil, status: Int, headers: [String: String], usage: [String: Int] = [:],
        costs: [String: Int] = [:]
    ) async throws {
        var body: [String: Any] = ["service": service, "status": status, "headers": headers]
        if let account { body["account"] = account }
        if !usage.isEmpty {
            body["usage"] = usage
            if !costs.isEmpty { body["cost"] = costs }
        }
        let (code, data) = try await send("POST", "/v1/observe", body: body)
        guard code == 200 else { throw failure(code, data) }
    }

    /// The merged quota of a service's account with the most remaining.
    public func quota(service: String) async throws -> Quota {
        let (status, data) = try await send("GET", "/v1/quota/\(service)", body: nil)
        guard status == 200 else { throw failure(status, data) }
        return try JSONDecoder().decode(Quota.self, from: data)
    }

    /// Runs `call` when the node grants it, waiting as the node says between denials, then reports the
    /// response. A service the node does not know yet goes ahead, and the report teaches it.
    /// - Returns: what `call` returned.
    public func call<Body: Sendable>(
        service: String, priority: Priority = .normal, cost: Int = 1,
        _ call: () async throws -> (body: Body, response: HTTPURLResponse)
    ) async throws -> (body: Body, response: HTTPURLResponse) {
        var decision = try await acquire(service: service, priority: priority, cost: cost, wait: .seconds(5))
        while !decision.granted && decision.reason != "unknown_service" {
            try await Task.sleep(for: .milliseconds(max(1, decision.retryAfterMillis ?? 1000)))
            decision = try await acquire(service: service, priority: priority, cost: cost, wait: .seconds(5))
        }
        let result = try await call()
        try await observe(
            service: service, account: decision.account, status: result.response.statusCode,
            headers: Self.headers(of: result.response))
        return result
    }

    /// A response's headers as `observe` takes them: lowercased names, string values.
    public static func headers(of response: HTTPURLResponse) -> [String: String] {
        var headers: [String: String] = [:]
        for (name, value) in response.allHeaderFields {
            if let name = name as? String, let value = value as? String { headers[name.lowercased()] = value }
        }
        return headers
    }

    private func failure(_ status: Int, _ data: Data) -> Failure {
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        return Failure(status: status, message: object?["error"] as? String ?? String(decoding: data, as: UTF8.self))
    }

    private func send(_ method: String, _ path: String, body: [String: Any]?) async throws -> (Int, Data) {
        var request = URLRequest(url: endpoint.appendingPathComponent(path), timeoutInterval: 660)
        request.httpMethod = method
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        do {
            let (data, response) = try await session.data(for: request)
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
        } catch {
            throw Failure(status: 0, message: "cannot reach the QuotaMesh node at \(endpoint): \(error.localizedDescription)")
        }
    }
}

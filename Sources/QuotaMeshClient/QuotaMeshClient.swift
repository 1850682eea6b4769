import Foundation
import HTTPTypes
import OpenAPIRuntime
import OpenAPIURLSession
import QuotaMeshAPI
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A client for a QuotaMesh node's local API, for Swift agents: acquire before an upstream call, report
/// the response after it, read the merged quota. Every call is one HTTP request to the node, through the
/// client swift-openapi-generator makes of `openapi.yaml` (``QuotaMeshAPI/Client``).
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

        /// The view as the API's answer gives it.
        public init(_ answer: QuotaAnswer) {
            service = answer.service
            account = answer.account
            limit = answer.limit
            remaining = answer.remaining
            resetAtMillis = answer.resetAtMillis
            consumed = Consumed(global: Int64(clamping: answer.consumed.global), local: Int64(clamping: answer.consumed.local))
            breaker = Breaker(state: answer.breaker.state.rawValue)
            peers = Peers(live: answer.peers.live, known: answer.peers.known)
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
    /// The generated client of the API.
    let api: QuotaMeshAPI.Client

    /// Creates a client.
    /// - Parameters:
    ///   - endpoint: the node's API; defaults to `$QUOTAMESH_API` or `127.0.0.1:9721`.
    ///   - token: the bearer token, when the node has an `api_token_file`.
    ///   - session: the session to send through; give one with a higher `httpMaximumConnectionsPerHost`
    ///     when many acquires wait at once.
    public init(endpoint: URL? = nil, token: String? = nil, session: URLSession = .shared) {
        self.session = session
        let fallback = ProcessInfo.processInfo.environment["QUOTAMESH_API"] ?? "127.0.0.1:9721"
        let endpoint = endpoint ?? URL(string: "http://\(fallback)") ?? URL(fileURLWithPath: "/")
        self.endpoint = endpoint
        self.token = token
        api = QuotaMeshAPI.Client(
            serverURL: endpoint, transport: URLSessionTransport(configuration: .init(session: session)),
            middlewares: [BearerToken(token), Reachability(endpoint: endpoint)])
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
        let waitMillis = Int(wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000)
        let body = AcquireBody(
            service: service, priority: priority.rawValue, cost: Int64(cost), costs: costs.mapValues { Int64($0) },
            waitMillis: Int64(waitMillis))
        switch try await api.acquire(body: .json(body)) {
        case .ok(let ok):
            let grant = try ok.body.json
            return Decision(
                granted: true, reason: nil, detail: grant.detail, account: grant.account, retryAfterMillis: nil,
                quota: grant.quota.map(Quota.init))
        case .tooManyRequests(let refused):
            let denial = try refused.body.json
            return Decision(
                granted: false, reason: denial.reason.rawValue, detail: denial.detail, account: denial.account,
                retryAfterMillis: denial.retryAfterMillis, quota: denial.quota.map(Quota.init))
        case .badRequest(let error): throw Failure(status: 400, message: try error.body.json.error)
        case .unauthorized(let error): throw Failure(status: 401, message: try error.body.json.error)
        case .contentTooLarge(let error): throw Failure(status: 413, message: try error.body.json.error)
        case .undocumented(let status, _): throw Failure(status: status, message: "an answer the API does not document")
        }
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
        let body = ObserveBody(
            service: service, account: account, status: status, headers: headers.mapValues { [$0] },
            usage: usage.mapValues { Int64($0) }, costs: costs.mapValues { Int64($0) })
        switch try await api.observe(body: .json(body)) {
        case .ok: return
        case .unprocessableContent(let refused): throw Failure(status: 422, message: try refused.body.json.error)
        case .badRequest(let error): throw Failure(status: 400, message: try error.body.json.error)
        case .unauthorized(let error): throw Failure(status: 401, message: try error.body.json.error)
        case .contentTooLarge(let error): throw Failure(status: 413, message: try error.body.json.error)
        case .undocumented(let status, _): throw Failure(status: status, message: "an answer the API does not document")
        }
    }

    /// The merged quota of a service's account with the most remaining.
    public func quota(service: String) async throws -> Quota {
        Quota(try await serviceQuota(service: service).quota)
    }

    /// A service's view as the API gives it: the account with the most remaining, every account, and the
    /// scopes.
    public func serviceQuota(service: String) async throws -> ServiceQuotaAnswer {
        switch try await api.quota(path: .init(service: service)) {
        case .ok(let ok): return try ok.body.json
        case .notFound(let missing): throw Failure(status: 404, message: try missing.body.json.error)
        case .unauthorized(let error): throw Failure(status: 401, message: try error.body.json.error)
        case .undocumented(let status, _): throw Failure(status: status, message: "an answer the API does not document")
        }
    }

    /// Every quota key the node knows.
    public func quotas() async throws -> [QuotaAnswer] {
        switch try await api.quotas() {
        case .ok(let ok): return try ok.body.json.quotas
        case .unauthorized(let error): throw Failure(status: 401, message: try error.body.json.error)
        case .undocumented(let status, _): throw Failure(status: status, message: "an answer the API does not document")
        }
    }

    /// This node and its trusted peers.
    public func peers() async throws -> PeersAnswer {
        switch try await api.peers() {
        case .ok(let ok): return try ok.body.json
        case .unauthorized(let error): throw Failure(status: 401, message: try error.body.json.error)
        case .undocumented(let status, _): throw Failure(status: status, message: "an answer the API does not document")
        }
    }

    /// Whether the node is healthy.
    public func health() async throws -> HealthAnswer {
        switch try await api.health() {
        case .ok(let ok): return try ok.body.json
        case .unauthorized(let error): throw Failure(status: 401, message: try error.body.json.error)
        case .undocumented(let status, _): throw Failure(status: status, message: "an answer the API does not document")
        }
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
}

/// Says which node could not be reached when the transport fails.
struct Reachability: ClientMiddleware {
    let endpoint: URL

    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        do {
            return try await next(request, body, baseURL)
        } catch {
            throw QuotaMeshClient.Failure(
                status: 0, message: "cannot reach the QuotaMesh node at \(endpoint): \(error.localizedDescription)")
        }
    }
}

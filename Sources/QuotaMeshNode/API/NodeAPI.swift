import Foundation
import Hummingbird
import NIOCore
import QuotaMeshCore
import QuotaMeshRequests

/// The local HTTP/JSON API an agent calls: acquire before an upstream call, observe its response, query
/// the merged quota. Bodies are limited to `maxBodyBytes`; every error is JSON with a message.
public enum NodeAPI {
    /// The largest request body accepted.
    public static let maxBodyBytes = RequestBodies.maxBytes
    /// The longest an acquire may wait.
    public static let maxWaitMillis = RequestBodies.maxWaitMillis

    /// Builds the router over `node`; with a token, every request must present it.
    public static func buildRouter(node: MeshNode, token: APIToken? = nil) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        if let token { router.add(middleware: BearerTokenMiddleware(token: token)) }
        router.get("/healthz") { _, _ in
            let stats = await node.statistics()
            let persistence = await node.persistenceError
            let peers = await node.peers()
            let differ = peers.filter { !$0.membersAgree }.map(\.name)
            var body: [String: Any] = [
                "status": persistence == nil && differ.isEmpty ? "ok" : "degraded",
                "identity": node.publicKey.base64,
                "incarnation": NSNumber(value: await node.incarnation),
                "peers": ["live": peers.filter(\.live).count, "known": peers.count],
                "counters": stats,
            ]
            body["persistence_error"] = persistence ?? NSNull()
            // Peers that split rights among other members: their trust stores list other peers than this one's.
            body["trust_stores_differ"] = differ
            body["rights_stopped"] = await node.rightsStopped
            return json(.ok, body)
        }
        router.get("/metrics") { _, _ in
            let text = await node.metricsText()
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("/v1/peers") { _, _ in
            let now = node.now()
            let peers = await node.peers()
            return json(
                .ok,
                [
                    "self": ["key": node.publicKey.base64, "incarnation": NSNumber(value: await node.incarnation)],
                    "peers": peers.map { QuotaJSON.object($0, now: now) },
                    "counters": await node.statistics(),
                ] as [String: Any])
        }
        router.get("/v1/quota") { _, _ in
            let now = node.now()
            let views = await node.quotas()
            return json(.ok, ["quotas": views.map { QuotaJSON.object($0, now: now) }])
        }
        router.get("/v1/quota/:service") { _, context in
            let service = context.parameters.get("service") ?? ""
            let now = node.now()
            let views = await node.quotas(service: service)
            guard let first = views.first else {
                return problem(.notFound, "unknown service `\(service)`: configure it or report an observation with limit headers")
            }
            var object = QuotaJSON.object(first, now: now)
            object["accounts"] = views.map { QuotaJSON.object($0, now: now) }
            let scopes = await node.scopeQuotas(service: service)
            if !scopes.isEmpty {
                object["scopes"] = scopes.map { view in
                    var entry = QuotaJSON.object(view, now: now)
                    entry["scope"] = String(view.key.account.dropFirst(ServicePolicy.scopePrefix.count))
                    return entry
                }
            }
            return json(.ok, object)
        }
        router.post("/v1/acquire") { request, context in
            let parsed: AcquireRequest
            switch await readBody(request, context: context, parse: parseAcquire) {
            case .success(let value): parsed = value
            case .failure(let failure): return failure.response
            }
            let decision = await node.acquire(parsed)
            return await acquireResponse(decision, request: parsed, node: node)
        }
        router.post("/v1/observe") { request, context in
            let parsed: ObservedResponse
            switch await readBody(request, context: context, parse: parseObserve) {
            case .success(let value): parsed = value
            case .failure(let failure): return failure.response
            }
            let (outcome, report) = await node.observe(
                service: parsed.service, account: parsed.account, status: parsed.status, headers: parsed.headers,
                corrections: parsed.corrections)
            if let refusal = outcome.refused {
                // The node tracks a bounded number of names; a new one beyond the cap is refused, not kept.
                let (noun, key) = switch refusal {
                case .tooManyServices: ("services", "max_services")
                case .tooManyAccounts: ("accounts of `\(parsed.service)`", "max_accounts")
                case .tooManyDimensions: ("dimensions of `\(parsed.service)`", "max_dimensions")
                }
                return json(.unprocessableContent, [
                    "error": "this node already tracks as many \(noun) as it may (`\(key)` in the configuration); "
                        + "nothing was recorded",
                    "reason": refusal.rawValue,
                ])
            }
            let now = node.now()
            var object: [String: Any] = [
                "understood": report.understood,
                "ignored": (report.ignored + outcome.ignored).map { ["header": $0.name, "reason": $0.reason] },
                "breaker_opened": outcome.openedBreaker,
                "breaker_closed": outcome.closedBreaker,
            ]
            if let key = outcome.key, let view = await node.quotas(service: key.service).first(where: { $0.key == key }) {
                object["quota"] = QuotaJSON.object(view, now: now)
            } else {
                object["quota"] = NSNull()
                object["message"] = "unknown service `\(parsed.service)` and no limit headers to learn it from"
            }
            return json(.ok, object)
        }
        return router
    }

    static func acquireResponse(_ decision: AcquireDecision, request: AcquireRequest, node: MeshNode) async -> Response {
        let now = node.now()
        var quota: Any = NSNull()
        if let key = decision.key, let view = await node.quotas(service: key.service).first(where: { $0.key == key }) {
            quota = QuotaJSON.object(view, now: now)
        }
        if decision.granted {
            // What was charged, by dimension: pass it back as `cost` with the call's `usage` to `observe`.
            var cost: [String: Any] = [QuotaKey.requests: NSNumber(value: request.cost)]
            for (dimension, amount) in request.costs { cost[dimension] = NSNumber(value: amount) }
            var object: [String: Any] = [
                "granted": true, "service": decision.key?.service ?? "", "account": decision.key?.account ?? "",
                "cost": cost, "quota": quota,
            ]
            if let detail = decision.detail { object["detail"] = detail.description }
            if let windowEnd = decision.windowEnd { object["window_end_ms"] = NSNumber(value: windowEnd) }
            return json(.ok, object)
        }
        let retryMillis = max(0, (decision.retryAt ?? now) - now)
        var object: [String: Any] = [
            "granted": false,
            "reason": decision.reason?.rawValue ?? DenialReason.quotaExhausted.rawValue,
            "retry_after_ms": NSNumber(value: retryMillis),
            "retry_at_ms": NSNumber(value: decision.retryAt ?? now),
            "quota": quota,
        ]
        if let key = decision.key { object["account"] = key.account }
        if let detail = decision.detail { object["detail"] = detail.description }
        var headers = HTTPFields()
        headers[.retryAfter] = "\(max(1, (retryMillis + 999) / 1000))"
        return json(.tooManyRequests, object, headers: headers)
    }

    // MARK: Parsing

    struct Failure: Error {
        var response: Response

        init(response: Response) { self.response = response }

        init(_ error: BodyError) {
            response = problem(HTTPResponse.Status(code: error.status), error.message)
        }
    }

    /// Reads a JSON object body and parses it; either failure is a ready response.
    static func readBody<Value>(
        _ request: Request, context: BasicRequestContext, parse: ([String: Any]) -> Result<Value, Failure>
    ) async -> Result<Value, Failure> {
        switch await readObject(request, context: context) {
        case .success(let object): parse(object)
        case .failure(let failure): .failure(failure)
        }
    }

    static func readObject(_ request: Request, context: BasicRequestContext) async -> Result<[String: Any], Failure> {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxBodyBytes)
        } catch {
            return .failure(Failure(response: problem(.contentTooLarge, "request body is larger than \(maxBodyBytes) bytes")))
        }
        return RequestBodies.object(from: buffer.readableBytesView).mapError(Failure.init)
    }

    static func parseAcquire(_ body: [String: Any]) -> Result<AcquireRequest, Failure> {
        RequestBodies.acquire(body).mapError(Failure.init)
    }

    static func parseObserve(_ body: [String: Any]) -> Result<ObservedResponse, Failure> {
        RequestBodies.observe(body).mapError(Failure.init)
    }

    // MARK: Responses

    static func json(_ status: HTTPResponse.Status, _ object: Any, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        let data = QuotaJSON.data(object)
        return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func problem(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(status, ["error": message, "status": status.code])
    }
}

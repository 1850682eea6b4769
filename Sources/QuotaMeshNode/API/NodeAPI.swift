import Foundation
import Hummingbird
import NIOCore
import QuotaMeshAPI
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
            let persistence = await node.persistenceError
            let peers = await node.peers()
            // Peers that split rights among other members: their trust stores list other peers than this one's.
            let differ = peers.filter { !$0.membersAgree }.map(\.name)
            return json(.ok, HealthAnswer(
                status: persistence == nil && differ.isEmpty ? .ok : .degraded, identity: node.publicKey.base64,
                incarnation: await node.incarnation, peers: .init(live: peers.filter(\.live).count, known: peers.count),
                counters: await node.statistics(), persistenceError: persistence, trustStoresDiffer: differ,
                rightsStopped: await node.rightsStopped))
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
            return json(.ok, PeersAnswer(
                node: .init(key: node.publicKey.base64, incarnation: await node.incarnation),
                peers: peers.map { QuotaJSON.peer($0, now: now) }, counters: await node.statistics()))
        }
        router.get("/v1/quota") { _, _ in
            let now = node.now()
            let views = await node.quotas()
            return json(.ok, QuotasAnswer(quotas: views.map { QuotaJSON.quota($0, now: now) }))
        }
        router.get("/v1/quota/:service") { _, context in
            let service = context.parameters.get("service") ?? ""
            let now = node.now()
            let views = await node.quotas(service: service)
            guard let first = views.first else {
                return problem(.notFound, "unknown service `\(service)`: configure it or report an observation with limit headers")
            }
            let scopes = await node.scopeQuotas(service: service).map { view in
                ServiceQuotaAnswer.ScopeQuota(
                    quota: QuotaJSON.quota(view, now: now),
                    scope: String(view.key.account.dropFirst(ServicePolicy.scopePrefix.count)))
            }
            return json(.ok, ServiceQuotaAnswer(
                quota: QuotaJSON.quota(first, now: now), accounts: views.map { QuotaJSON.quota($0, now: now) },
                scopes: scopes.isEmpty ? nil : scopes))
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
                let (noun, key, reason): (String, String, CapRefusalAnswer.Reason) = switch refusal {
                case .tooManyServices: ("services", "max_services", .tooManyServices)
                case .tooManyAccounts: ("accounts of `\(parsed.service)`", "max_accounts", .tooManyAccounts)
                case .tooManyDimensions: ("dimensions of `\(parsed.service)`", "max_dimensions", .tooManyDimensions)
                }
                return json(.unprocessableContent, CapRefusalAnswer(
                    error: "this node already tracks as many \(noun) as it may (`\(key)` in the configuration); "
                        + "nothing was recorded",
                    reason: reason))
            }
            let now = node.now()
            var quota: QuotaAnswer?
            if let key = outcome.key, let view = await node.quotas(service: key.service).first(where: { $0.key == key }) {
                quota = QuotaJSON.quota(view, now: now)
            }
            return json(.ok, ObserveAnswer(
                understood: report.understood,
                ignored: (report.ignored + outcome.ignored).map { .init(header: $0.name, reason: $0.reason) },
                breakerOpened: outcome.openedBreaker, breakerClosed: outcome.closedBreaker, quota: quota,
                message: quota == nil ? "unknown service `\(parsed.service)` and no limit headers to learn it from" : nil))
        }
        return router
    }

    static func acquireResponse(_ decision: AcquireDecision, request: AcquireRequest, node: MeshNode) async -> Response {
        let now = node.now()
        var quota: QuotaAnswer?
        if let key = decision.key, let view = await node.quotas(service: key.service).first(where: { $0.key == key }) {
            quota = QuotaJSON.quota(view, now: now)
        }
        if decision.granted {
            // What was charged, by dimension: pass it back as `cost` with the call's `usage` to `observe`.
            var cost = request.costs
            cost[QuotaKey.requests] = request.cost
            return json(.ok, GrantAnswer(
                service: decision.key?.service ?? "", account: decision.key?.account ?? "", cost: cost,
                detail: decision.detail?.description, windowEndMillis: decision.windowEnd, quota: quota))
        }
        let retryMillis = max(0, (decision.retryAt ?? now) - now)
        var headers = HTTPFields()
        headers[.retryAfter] = "\(max(1, (retryMillis + 999) / 1000))"
        return json(.tooManyRequests, DenialAnswer(
            reason: DenialAnswer.DenialReason(rawValue: (decision.reason ?? .quotaExhausted).rawValue) ?? .quotaExhausted,
            detail: decision.detail?.description, retryAfterMillis: retryMillis, retryAtMillis: decision.retryAt ?? now,
            account: decision.key?.account, quota: quota), headers: headers)
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
        _ request: Request, context: BasicRequestContext, parse: ([String: JSONValue]) -> Result<Value, Failure>
    ) async -> Result<Value, Failure> {
        switch await readObject(request, context: context) {
        case .success(let object): parse(object)
        case .failure(let failure): .failure(failure)
        }
    }

    static func readObject(_ request: Request, context: BasicRequestContext) async -> Result<[String: JSONValue], Failure> {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxBodyBytes)
        } catch {
            return .failure(Failure(response: problem(.contentTooLarge, "request body is larger than \(maxBodyBytes) bytes")))
        }
        return RequestBodies.object(from: buffer.readableBytesView).mapError(Failure.init)
    }

    static func parseAcquire(_ body: [String: JSONValue]) -> Result<AcquireRequest, Failure> {
        RequestBodies.acquire(body).mapError(Failure.init)
    }

    static func parseObserve(_ body: [String: JSONValue]) -> Result<ObservedResponse, Failure> {
        RequestBodies.observe(body).mapError(Failure.init)
    }

    // MARK: Responses

    static func json(_ status: HTTPResponse.Status, _ answer: some Encodable, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        let data = QuotaJSON.data(answer)
        return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func problem(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(status, ErrorAnswer(error: message, status: status.code))
    }
}

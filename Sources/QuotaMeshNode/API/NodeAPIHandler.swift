import Foundation
import HTTPTypes
import OpenAPIRuntime
import QuotaMeshAPI
import QuotaMeshCore
import QuotaMeshRequests

/// The node's side of the API that openapi.yaml describes: swift-openapi-generator's `APIProtocol`,
/// answered by a running ``MeshNode``. Routing, statuses, headers and encoding are the generated server's;
/// every rule on a request body is ``RequestBodies``'s, so its refusals name the field and the rule.
struct NodeAPIHandler: APIProtocol {
    let node: MeshNode

    func acquire(_ input: Operations.Acquire.Input) async throws -> Operations.Acquire.Output {
        let request: AcquireRequest
        let body = switch input.body { case .json(let body): body }
        switch RequestBodies.acquire(body.fields) {
        case .success(let value): request = value
        case .failure(let error): return .badRequest(.init(body: .json(problem(error.status, error.message))))
        }
        let (decision, view) = await node.acquireWithQuota(request)
        let now = node.now()
        let quota = view.map { Answers.quota($0, now: now) }
        if decision.granted {
            // What was charged, by dimension: pass it back as `cost` with the call's `usage` to `observe`.
            var cost = request.costs
            cost[QuotaKey.requests] = request.cost
            return .ok(.init(body: .json(GrantAnswer(
                service: decision.key?.service ?? "", account: decision.key?.account ?? "", cost: cost,
                detail: decision.detail?.description, windowEndMillis: decision.windowEnd, quota: quota))))
        }
        let retryMillis = max(0, (decision.retryAt ?? now) - now)
        let denial = DenialAnswer(
            reason: DenialAnswer.DenialReason(rawValue: (decision.reason ?? .quotaExhausted).rawValue) ?? .quotaExhausted,
            detail: decision.detail?.description, retryAfterMillis: retryMillis, retryAtMillis: decision.retryAt ?? now,
            account: decision.key?.account, quota: quota)
        return .tooManyRequests(.init(
            headers: .init(retryAfter: Int(max(1, (retryMillis + 999) / 1000))), body: .json(denial)))
    }

    func observe(_ input: Operations.Observe.Input) async throws -> Operations.Observe.Output {
        let parsed: ObservedResponse
        let body = switch input.body { case .json(let body): body }
        switch RequestBodies.observe(body.fields) {
        case .success(let value): parsed = value
        case .failure(let error): return .badRequest(.init(body: .json(problem(error.status, error.message))))
        }
        let (outcome, report) = await node.observe(
            service: parsed.service, account: parsed.account, status: parsed.status, headers: parsed.headers,
            corrections: parsed.corrections)
        if outcome.refused == .unconfiguredAccount {
            let accounts = await node.configuredAccounts(of: parsed.service)
            return .badRequest(.init(body: .json(ErrorAnswer(
                error: "`account`: `\(parsed.account ?? "")` is not one of the accounts configured for `\(parsed.service)` "
                    + "(\(accounts.joined(separator: ", "))); nothing was recorded",
                status: 400, reason: NameRefusal.unconfiguredAccount.rawValue))))
        }
        if let refusal = outcome.refused {
            // The node tracks a bounded number of names; a new one beyond the cap is refused, not kept.
            let (noun, key, reason): (String, String, CapRefusalAnswer.Reason) = switch refusal {
            case .tooManyServices: ("services", "max_services", .tooManyServices)
            case .tooManyAccounts, .unconfiguredAccount: ("accounts of `\(parsed.service)`", "max_accounts", .tooManyAccounts)
            case .tooManyDimensions: ("dimensions of `\(parsed.service)`", "max_dimensions", .tooManyDimensions)
            }
            return .unprocessableContent(.init(body: .json(CapRefusalAnswer(
                error: "this node already tracks as many \(noun) as it may (`\(key)` in the configuration); "
                    + "nothing was recorded",
                reason: reason))))
        }
        let quota = await quotaAnswer(outcome.key, now: node.now())
        return .ok(.init(body: .json(ObserveAnswer(
            understood: report.understood,
            ignored: (report.ignored + outcome.ignored).map { .init(header: $0.name, reason: $0.reason) },
            breakerOpened: outcome.openedBreaker, breakerClosed: outcome.closedBreaker, quota: quota,
            message: quota == nil ? "unknown service `\(parsed.service)` and no limit headers to learn it from" : nil))))
    }

    func quotas(_ input: Operations.Quotas.Input) async throws -> Operations.Quotas.Output {
        let now = node.now()
        return .ok(.init(body: .json(QuotasAnswer(quotas: await node.quotas().map { Answers.quota($0, now: now) }))))
    }

    func quota(_ input: Operations.Quota.Input) async throws -> Operations.Quota.Output {
        let service = input.path.service
        let now = node.now()
        let views = await node.quotas(service: service)
        guard let first = views.first else {
            return .notFound(.init(body: .json(problem(
                404, "unknown service `\(service)`: configure it or report an observation with limit headers"))))
        }
        let scopes = await node.scopeQuotas(service: service).map { view in
            ServiceQuotaAnswer.ScopeQuota(
                quota: Answers.quota(view, now: now),
                scope: String(view.key.account.dropFirst(ServicePolicy.scopePrefix.count)))
        }
        return .ok(.init(body: .json(ServiceQuotaAnswer(
            quota: Answers.quota(first, now: now), accounts: views.map { Answers.quota($0, now: now) },
            scopes: scopes.isEmpty ? nil : scopes))))
    }

    func peers(_ input: Operations.Peers.Input) async throws -> Operations.Peers.Output {
        let now = node.now()
        let peers = await node.peers()
        return .ok(.init(body: .json(PeersAnswer(
            node: .init(key: node.publicKey.base64, incarnation: await node.incarnation),
            peers: peers.map { Answers.peer($0, now: now) }, counters: await node.statistics()))))
    }

    func health(_ input: Operations.Health.Input) async throws -> Operations.Health.Output {
        let persistence = await node.persistenceError
        let peers = await node.peers()
        // Peers that split rights among other members: their trust stores list other peers than this one's.
        let differ = peers.filter { !$0.membersAgree }.map(\.name)
        return .ok(.init(body: .json(HealthAnswer(
            status: persistence == nil && differ.isEmpty ? .ok : .degraded, identity: node.publicKey.base64,
            incarnation: await node.incarnation, peers: .init(live: peers.filter(\.live).count, known: peers.count),
            counters: await node.statistics(), persistenceError: persistence, trustStoresDiffer: differ,
            rightsStopped: await node.rightsStopped))))
    }

    func metrics(_ input: Operations.Metrics.Input) async throws -> Operations.Metrics.Output {
        .ok(.init(body: .plainText(HTTPBody(await node.metricsText()))))
    }

    /// Q of `key`, if the key is known.
    func quotaAnswer(_ key: QuotaKey?, now: UnixMillis) async -> QuotaAnswer? {
        // Only the answer's own key is worked out, not every account of the service.
        guard let key, let view = await node.quota(of: key) else { return nil }
        return Answers.quota(view, now: now)
    }

    func problem(_ status: Int, _ message: String) -> ErrorAnswer { ErrorAnswer(error: message, status: status) }
}

/// What the generated server leaves to the node: a body is at most ``RequestBodies/maxBytes`` (413), a
/// JSON body sent without its content type (curl's `-d`) is still read as JSON, and a body that is not a
/// JSON object is a 400 that says where it stops being JSON.
struct RequestBodyLimits: ServerMiddleware {
    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        guard let body, request.method == .post else { return try await next(request, body, metadata) }
        let bytes: [UInt8]
        do {
            bytes = try await [UInt8](collecting: body, upTo: RequestBodies.maxBytes)
        } catch {
            return Self.answer(413, "request body is larger than \(RequestBodies.maxBytes) bytes")
        }
        var request = request
        request.headerFields[.contentType] = "application/json"
        do {
            return try await next(request, HTTPBody(bytes), metadata)
        } catch {
            // The generated server could not decode the body: say what is wrong with it, and where.
            if case .failure(let refusal) = RequestBodies.object(from: bytes) { return Self.answer(refusal.status, refusal.message) }
            throw error
        }
    }

    static func answer(_ status: Int, _ message: String) -> (HTTPResponse, HTTPBody?) {
        var response = HTTPResponse(status: .init(code: status))
        response.headerFields[.contentType] = "application/json"
        return (response, HTTPBody(Answers.data(ErrorAnswer(error: message, status: status))))
    }
}

/// Prometheus's text format names its version in the content type (`text/plain; version=0.0.4`), which
/// the document's `text/plain` does not carry.
struct PrometheusContentType: ServerMiddleware {
    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        var (response, body) = try await next(request, body, metadata)
        if operationID == "metrics" && response.status == .ok {
            response.headerFields[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        }
        return (response, body)
    }
}


import Hummingbird
import QuotaMeshCrypto

/// Refuses every request that does not carry `Authorization: Bearer <token>` with 401 and a JSON
/// message, but for the paths in `open` (`/metrics` and `/healthz` with `metrics_auth: false`, for a
/// scraper and a probe that hold no token). The comparison takes the same time wherever the first
/// difference is.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: APIToken
    var open: Set<String> = []

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        if request.method == .get, open.contains(request.uri.path) { return try await next(request, context) }
        let presented = request.headers[.authorization].map { Array($0.utf8) } ?? []
        let expected = Array("Bearer ".utf8) + token.bytes
        guard presented.count == expected.count, constantTimeEqual(presented, expected) else {
            var response = NodeAPI.problem(
                .unauthorized, "this node's API requires `Authorization: Bearer <token>` (the token in its api_token_file)")
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        return try await next(request, context)
    }
}

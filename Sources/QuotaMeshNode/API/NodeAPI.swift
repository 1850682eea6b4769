import Foundation
import Hummingbird
import NIOCore
import OpenAPIHummingbird
import OpenAPIRuntime
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

    /// Builds the router over `node`; with a token, every request must present it (but `/metrics` and
    /// `/healthz` when `metricsAuth` is false). The routes are the server swift-openapi-generator makes of
    /// openapi.yaml, answered by ``NodeAPIHandler``.
    public static func buildRouter(node: MeshNode, token: APIToken? = nil, metricsAuth: Bool = true) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        if let token {
            router.add(middleware: BearerTokenMiddleware(token: token, open: metricsAuth ? [] : ["/metrics", "/healthz"]))
        }
        do {
            try NodeAPIHandler(node: node).registerHandlers(
                on: router, configuration: Configuration(jsonEncodingOptions: [.sortedKeys, .withoutEscapingSlashes]),
                middlewares: [RequestBodyLimits(), PrometheusContentType()])
        } catch {
            // Registering fixed routes on a new router cannot fail; if it ever did, no route would answer.
            preconditionFailure("the API's routes could not be registered: \(error)")
        }
        return router
    }

    // MARK: Responses

    static func json(_ status: HTTPResponse.Status, _ answer: some Encodable, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        let data = Answers.data(answer)
        return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func problem(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(status, ErrorAnswer(error: message, status: status.code))
    }
}

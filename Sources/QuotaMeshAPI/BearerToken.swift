import Foundation
import HTTPTypes
import OpenAPIRuntime

/// Presents a node's API token (`Authorization: Bearer …`) on every request of a generated client; with
/// no token, changes nothing.
public struct BearerToken: ClientMiddleware {
    public let token: String?

    public init(_ token: String?) { self.token = token }

    public func intercept(
        _ request: HTTPRequest, body: HTTPBody?, baseURL: URL, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, URL) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        var request = request
        if let token { request.headerFields[.authorization] = "Bearer \(token)" }
        return try await next(request, body, baseURL)
    }
}

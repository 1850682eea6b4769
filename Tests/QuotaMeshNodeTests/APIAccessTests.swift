import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing
import QuotaMeshCore
@testable import QuotaMeshNode
import QuotaMeshCrypto

/// Who may use the local API: loopback by default; elsewhere only with an explicit flag and a token.
@Suite struct APIAccessTests {
    static let token = "0123456789abcdef-token"

    func tokenFile(_ text: String = token, mode: mode_t = 0o600) -> String {
        let path = temporaryDirectory() + "/api-token"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        chmod(path, mode)
        return path
    }

    func configuration(api: String, allowRemote: Bool = false, tokenFile: String? = nil) -> NodeConfiguration {
        let folder = temporaryDirectory()
        var configuration = NodeConfiguration()
        configuration.api = Endpoint(parsing: api) ?? configuration.api
        configuration.identityPath = folder + "/identity"
        configuration.peersDirectory = folder + "/Peers"
        configuration.stateDirectory = folder + "/state"
        configuration.allowRemoteAPI = allowRemote
        configuration.apiTokenFile = tokenFile
        return configuration
    }

    func startupMessage(_ configuration: NodeConfiguration) -> String? {
        do {
            _ = try NodeApp.assemble(configuration, logger: Logger(label: "test"))
            return nil
        } catch let error as StartupError {
            return error.message
        } catch {
            return "\(error)"
        }
    }

    @Test func aNonLoopbackAddressNeedsTheFlagAndAToken() {
        #expect(startupMessage(configuration(api: "127.0.0.1:0")) == nil)
        #expect(startupMessage(configuration(api: "0.0.0.0:0"))?.contains("--allow-remote-api") == true)
        #expect(startupMessage(configuration(api: "0.0.0.0:0", allowRemote: true))?.contains("needs a token") == true)
        #expect(startupMessage(configuration(api: "0.0.0.0:0", allowRemote: true, tokenFile: tokenFile())) == nil)
    }

    @Test func aTokenFileReadableByOthersOrTooShortIsRefused() {
        let open = startupMessage(configuration(api: "127.0.0.1:0", tokenFile: tokenFile(mode: 0o644)))
        #expect(open?.contains("readable by others") == true)
        let short = startupMessage(configuration(api: "127.0.0.1:0", tokenFile: tokenFile("short")))
        #expect(short?.contains("at least 16") == true)
        let missing = startupMessage(configuration(api: "127.0.0.1:0", tokenFile: temporaryDirectory() + "/none"))
        #expect(missing != nil)
    }

    @Test func withATokenEveryRequestMustPresentIt() async throws {
        let node = try MeshNode(
            identity: SigningKey(),
            configuration: MeshConfiguration(services: ["api": ServicePolicy(limit: 10, windowMillis: 60_000)]),
            peers: [], stateStore: nil, logger: Logger(label: "test"))
        await node.startWithoutNetwork()
        let app = Application(router: NodeAPI.buildRouter(node: node, token: try APIToken(Self.token)))
        try await app.test(.router) { client in
            for (header, expected) in [(nil, 401), ("Bearer wrong-token-of-some-length", 401), ("Bearer " + Self.token, 200)] {
                var headers = HTTPFields()
                if let header { headers[.authorization] = header }
                let (status, challenge) = try await client.execute(uri: "/v1/quota", method: .get, headers: headers) {
                    (Int($0.status.code), $0.headers[.wwwAuthenticate])
                }
                #expect(status == expected, "Authorization: \(header ?? "(none)")")
                #expect((challenge == "Bearer") == (expected == 401))
            }
            let acquire = try await client.execute(
                uri: "/v1/acquire", method: .post, body: ByteBuffer(string: #"{"service":"api","priority":"urgent"}"#)
            ) { Int($0.status.code) }
            #expect(acquire == 401, "an acquire without the token is refused before it is decided")
        }
    }

    @Test func withMetricsAuthOffTheMetricsAndHealthAreOpenAndNothingElseIs() async throws {
        let node = try MeshNode(
            identity: SigningKey(),
            configuration: MeshConfiguration(services: ["api": ServicePolicy(limit: 10, windowMillis: 60_000)]),
            peers: [], stateStore: nil, logger: Logger(label: "test"))
        await node.startWithoutNetwork()
        for metricsAuth in [true, false] {
            let app = Application(router: NodeAPI.buildRouter(node: node, token: try APIToken(Self.token), metricsAuth: metricsAuth))
            try await app.test(.router) { client in
                for path in ["/metrics", "/healthz"] {
                    let status = try await client.execute(uri: path, method: .get) { Int($0.status.code) }
                    #expect(status == (metricsAuth ? 401 : 200), "\(path) with metrics_auth \(metricsAuth)")
                }
                for path in ["/v1/quota", "/v1/peers", "/metrics/../v1/quota"] {
                    let status = try await client.execute(uri: path, method: .get) { Int($0.status.code) }
                    #expect(status == 401, "\(path) still needs the token with metrics_auth \(metricsAuth)")
                }
                let post = try await client.execute(uri: "/healthz", method: .post) { Int($0.status.code) }
                #expect(post != 200)
            }
        }
    }
}

import Foundation
import Hummingbird
import Logging
import NIOCore
import QuotaMeshCore
import ServiceLifecycle

/// A QuotaMesh node running inside your own process: the same identity, trust store, state, gossip and
/// local API as `quotamesh run`, for a Swift program that wants no extra process.
///
/// Your program calls the node directly through ``node`` (`acquire`, `observe`, `quotas`), with no HTTP
/// in between; agents in other languages can still use the loopback API at ``apiAddress``. The node
/// does not trap signals: your program decides when to call ``stop()``.
///
/// ```swift
/// var configuration = NodeConfiguration()
/// configuration.gossip = Endpoint(host: "127.0.0.1", port: 9720)
/// configuration.api = Endpoint(host: "127.0.0.1", port: 0)   // any free port
/// let embedded = try await EmbeddedNode.start(configuration, logger: Logger(label: "quotamesh"))
/// let decision = await embedded.node.acquire(AcquireRequest(service: "openai", priority: .urgent))
/// // … call the upstream, then report its answer with `embedded.node.observe(…)`.
/// try await embedded.stop()
/// ```
public final class EmbeddedNode: Sendable {
    /// The node: acquire, observe and query it directly.
    public let node: MeshNode
    /// This node's identity (its Ed25519 public key, base64), the key its peers list in their trust store.
    public let publicKey: String
    /// Where the node gossips (host:port, as bound).
    public let gossipAddress: String
    /// Where the local HTTP API listens (host:port, as bound; a configured port 0 is resolved here).
    public let apiAddress: String

    private let group: ServiceGroup
    private let running: Task<Void, any Error>

    private init(
        node: MeshNode, publicKey: String, gossipAddress: String, apiAddress: String, group: ServiceGroup,
        running: Task<Void, any Error>
    ) {
        self.node = node
        self.publicKey = publicKey
        self.gossipAddress = gossipAddress
        self.apiAddress = apiAddress
        self.group = group
        self.running = running
    }

    /// Starts a node and returns once its gossip socket and API are listening.
    ///
    /// Throws ``StartupError`` (or the configuration's errors) when it cannot start: a secret key readable
    /// by others, an address in use, a non-loopback API without a token.
    public static func start(_ configuration: NodeConfiguration, logger: Logger) async throws -> EmbeddedNode {
        let parts = try NodeApp.assemble(configuration, logger: logger)
        if parts.createdIdentity {
            logger.notice("Created a new identity", metadata: ["identity.path": "\(configuration.identityPath)"])
        }
        for problem in parts.problems {
            logger.warning("Skipped peer file", metadata: ["peer.file": "\(problem.file)", "reason": "\(problem)"])
        }
        let gossip = GossipService(node: parts.node, endpoint: configuration.gossip, logger: logger)
        let channel: NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>
        do {
            channel = try await gossip.bind()
        } catch {
            throw StartupError(message: "cannot listen for gossip on \(configuration.gossip): \(error)")
        }
        let gossipAddress = channel.channel.localAddress.map(NodeApp.describe) ?? configuration.gossip.description
        let router = NodeAPI.buildRouter(node: parts.node, token: parts.token, metricsAuth: configuration.metricsAuth)
        let incarnation = await parts.node.incarnation
        let (listening, announce) = AsyncStream<String>.makeStream()
        let app = Application(
            router: router,
            // A client that goes silent, mid-request or between requests, is cut off: it cannot hold a
            // connection (and its memory) for ever. Bodies are capped by NodeAPI.maxBodyBytes.
            server: .http1(configuration: .init(idleTimeout: .milliseconds(configuration.apiIdleTimeoutMillis))),
            configuration: .init(
                address: .hostname(configuration.api.host, port: configuration.api.port), serverName: "quotamesh"),
            onServerRunning: { channel in
                let api = channel.localAddress.map(NodeApp.describe) ?? configuration.api.description
                logger.notice(
                    "QuotaMesh node running",
                    metadata: [
                        "identity": "\(parts.identity.publicKey.base64)",
                        "gossip": "\(gossipAddress)",
                        "api": "\(api)",
                        "api.token": "\(parts.token == nil ? "none" : "required")",
                        "peers.trusted": "\(parts.peers.count)",
                        "peers.path": "\(configuration.peersDirectory)",
                        "state.path": "\(configuration.stateDirectory)",
                        "incarnation": "\(incarnation)",
                    ])
                announce.yield(api)
                announce.finish()
            },
            logger: logger)
        let reload = TrustStoreReloadService(
            node: parts.node, store: TrustStore(directory: configuration.peersDirectory), initial: parts.peers,
            logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: GossipRunner(service: gossip, channel: channel)),
                    .init(service: reload),
                    .init(service: app),
                    // Last, so first to hear of a graceful shutdown (the group signals services in
                    // reverse order): waiters are answered before the server waits for its requests.
                    .init(service: WaiterRelease(node: parts.node)),
                ],
                logger: logger))
        let node = parts.node
        let running = Task {
            defer { announce.finish() }
            try await group.run()
            await node.stop()
            logger.notice("QuotaMesh node stopped; state saved", metadata: ["state.path": "\(configuration.stateDirectory)"])
        }
        var apiAddress: String?
        for await address in listening { apiAddress = address }
        guard let apiAddress else {
            // The group ended before the API listened (an address in use, say): name the address.
            do {
                try await running.value
            } catch {
                throw StartupError(message: "cannot listen for the API on \(configuration.api): \(error)")
            }
            throw StartupError(message: "the node stopped before its API at \(configuration.api) was listening")
        }
        return EmbeddedNode(
            node: node, publicKey: parts.identity.publicKey.base64, gossipAddress: gossipAddress,
            apiAddress: apiAddress, group: group, running: running)
    }

    /// Starts a graceful shutdown without waiting for it: waiting agents are answered, requests in flight
    /// finish, and the state is saved.
    public func beginShutdown() async {
        await group.triggerGracefulShutdown()
    }

    /// Waits until the node has stopped (after ``beginShutdown()`` or a failure), rethrowing its error.
    public func waitUntilStopped() async throws {
        try await running.value
    }

    /// Shuts the node down gracefully and waits until its state is saved.
    public func stop() async throws {
        await beginShutdown()
        try await waitUntilStopped()
    }
}

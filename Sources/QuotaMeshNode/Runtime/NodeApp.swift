import Foundation
import Hummingbird
import Logging
import NIOCore
import QuotaMeshCore
import QuotaMeshCrypto
import ServiceLifecycle
import UnixSignals

/// Why the node would not start; the message says what to do.
public struct StartupError: Error, CustomStringConvertible, Sendable {
    /// The reason.
    public var message: String

    public var description: String { message }
}

/// Assembles and runs a node: identity, trust store, state, gossip socket, local API, lifecycle.
public enum NodeApp {
    /// Everything a started node is made of.
    public struct Parts: Sendable {
        /// The node.
        public var node: MeshNode
        /// The identity in use.
        public var identity: SigningKey
        /// Whether the identity was created by this start.
        public var createdIdentity: Bool
        /// The trust store's peers at start.
        public var peers: [PeerInfo]
        /// Files the trust store skipped.
        public var problems: [TrustStoreProblem]
        /// The API's bearer token, if one is configured.
        public var token: APIToken?
    }

    /// Loads (or creates) the identity, the trust store and the saved state, and builds the node.
    public static func assemble(_ configuration: NodeConfiguration, logger: Logger) throws -> Parts {
        let token = try configuration.apiTokenFile.map { (path) throws(StartupError) in try APIToken.load(from: path) }
        if !isLoopback(configuration.api.host) {
            guard configuration.allowRemoteAPI else {
                throw StartupError(
                    message: "the API address \(configuration.api) is not loopback; the API listens on 127.0.0.1 "
                        + "unless --allow-remote-api (or `allow_remote_api`) is given, with an API token")
            }
            guard token != nil else {
                throw StartupError(
                    message: "the API address \(configuration.api) is not loopback, so it needs a token: "
                        + "--api-token-file FILE (mode 0600, at least \(APIToken.minimumLength) characters)")
            }
        }
        let created = !FileManager.default.fileExists(atPath: configuration.identityPath)
        let identity: SigningKey
        if created {
            identity = try IdentityStore.create(at: configuration.identityPath)
        } else {
            identity = try IdentityStore.load(from: configuration.identityPath)
        }
        let store = TrustStore(directory: configuration.peersDirectory)
        let contents = store.load()
        let stateStore = try StateStore(directory: configuration.stateDirectory, durability: configuration.durability)
        let node = try MeshNode(
            identity: identity, configuration: configuration.mesh, peers: contents.peers, stateStore: stateStore,
            trustStore: store, logger: logger)
        return Parts(
            node: node, identity: identity, createdIdentity: created, peers: contents.peers, problems: contents.problems,
            token: token)
    }

    /// Runs the node until SIGTERM or SIGINT; state is flushed on the way out.
    public static func run(_ configuration: NodeConfiguration, logger: Logger) async throws {
        // The second-signal listener is registered before the node starts, so it never misses the first.
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        let running = try await EmbeddedNode.start(configuration, logger: logger)
        // The first SIGTERM or SIGINT starts a graceful shutdown; a second one exits at once. Nothing is
        // lost: state is saved before every grant is answered.
        let listener = Task {
            var caught = 0
            for await signal in signals {
                caught += 1
                if caught == 1 {
                    logger.notice(
                        "Shutting down: saving state; send the signal again to exit at once",
                        metadata: ["signal": "\(signal)"])
                    await running.beginShutdown()
                } else {
                    logger.warning("Second signal: exiting at once", metadata: ["signal": "\(signal)"])
                    // `_exit`, not `exit`: no atexit handler or destructor may hold up a forced exit
                    // while other threads are still running.
                    fflush(nil)
                    _exit(130)
                }
            }
        }
        defer { listener.cancel() }
        try await running.waitUntilStopped()
    }

    static func describe(_ address: SocketAddress) -> String {
        "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
    }

    /// `true` for 127.0.0.0/8, ::1 and `localhost`.
    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

/// At the start of a graceful shutdown, answers every waiting acquire ("shutting_down") so that the HTTP
/// server, which waits for requests in flight, is not held up by an agent waiting for its turn.
struct WaiterRelease: Service {
    let node: MeshNode

    func run() async throws {
        try? await gracefulShutdown()
        await node.releaseWaiters()
    }
}

/// Runs the gossip service on a socket bound before the group started (so bind errors stop the start).
struct GossipRunner: Service {
    let service: GossipService
    let channel: NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>

    func run() async throws { try await service.run(on: channel) }
}

/// Re-reads the trust store every two seconds; a changed set of peers replaces the node's. Files are read
/// whole and parsed before use, and a malformed file is skipped with a warning, never half-trusted. A
/// peer whose file turns malformed (a torn write, an editor's half-saved file) keeps its last good
/// version until the file is fixed or removed.
struct TrustStoreReloadService: Service {
    let node: MeshNode
    let store: TrustStore
    let initial: [PeerInfo]
    let logger: Logger

    /// The peers to trust after a reload: those loaded, plus the current version of every peer whose file
    /// is now malformed (named in `kept`).
    static func merge(loaded: [PeerInfo], problems: [TrustStoreProblem], current: Set<PeerInfo>)
        -> (peers: Set<PeerInfo>, kept: [String])
    {
        var peers = Set(loaded)
        var kept: [String] = []
        let names = Set(loaded.map(\.name))
        for problem in problems {
            let stem = URL(fileURLWithPath: problem.file).deletingPathExtension().lastPathComponent
            guard !names.contains(stem), let previous = current.first(where: { $0.name == stem }) else { continue }
            peers.insert(previous)
            kept.append(stem)
        }
        return (peers, kept.sorted())
    }

    func run() async throws {
        var current = Set(initial)
        var reported: [TrustStoreProblem] = []
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            // A shutdown ends the pause at once rather than waiting out the two seconds.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(2)) }
            if Task.isCancelled || Task.isShuttingDownGracefully { break }
            let contents = store.load()
            let next = Self.merge(loaded: contents.peers, problems: contents.problems, current: current)
            if contents.problems != reported {
                for problem in contents.problems where !reported.contains(problem) {
                    logger.warning("Skipped peer file", metadata: ["peer.file": "\(problem.file)", "reason": "\(problem)"])
                }
                for name in next.kept {
                    logger.warning("Kept the last good version of a peer whose file is now malformed", metadata: ["peer.name": "\(name)"])
                }
                reported = contents.problems
            }
            if next.peers != current {
                await node.replacePeers(next.peers.sorted { $0.name < $1.name })
                logger.notice("Trust store reloaded", metadata: ["peers.trusted": "\(next.peers.count)"])
                current = next.peers
            }
        }
    }
}

import Logging
import NIOCore
import NIOPosix
import QuotaMeshCore
import ServiceLifecycle

/// Binds the gossip UDP socket and feeds every datagram to the node, until graceful shutdown.
public struct GossipService: Service {
    /// The node fed.
    public let node: MeshNode
    /// Where to listen.
    public let endpoint: Endpoint
    /// Where to log.
    public let logger: Logger
    /// Called with the bound address once listening.
    public let onBound: @Sendable (SocketAddress) async -> Void

    /// Creates the service.
    public init(
        node: MeshNode, endpoint: Endpoint, logger: Logger, onBound: @escaping @Sendable (SocketAddress) async -> Void = { _ in }
    ) {
        self.node = node
        self.endpoint = endpoint
        self.logger = logger
        self.onBound = onBound
    }

    /// Binds the socket, exclusively: it throws if the address is taken. (With `SO_REUSEADDR` a second
    /// node on the same port started without error and took the first one's traffic.)
    public func bind() async throws -> NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>> {
        try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 2048))
            .bind(host: endpoint.host, port: endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(
                        wrappingChannelSynchronously: channel)
                }
            }
    }

    /// Runs until graceful shutdown or cancellation.
    public func run() async throws {
        let channel = try await bind()
        try await run(on: channel)
    }

    /// Runs on a socket bound by `bind()`.
    public func run(
        on channel: NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>
    ) async throws {
        if let address = channel.channel.localAddress { await onBound(address) }
        await node.attach(channel: channel.channel)
        try await channel.executeThenClose { inbound, _ in
            try await withGracefulShutdownHandler {
                for try await envelope in inbound {
                    let bytes = Array(envelope.data.readableBytesView)
                    await node.receive(bytes, from: envelope.remoteAddress)
                }
            } onGracefulShutdown: {
                channel.channel.close(promise: nil)
            }
        }
        await node.stop()
    }
}

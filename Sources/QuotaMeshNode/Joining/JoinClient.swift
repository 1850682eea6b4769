import Foundation
import NIOCore
import NIOPosix
import QuotaMeshCore
import QuotaMeshCrypto

/// `quotamesh join`'s exchange with the inviter: a join request sent over UDP from a port of its own (the
/// joiner's node may be running on the gossip port), again every half second, until the inviter's signed
/// welcome comes back or the time runs out.
public enum JoinClient {
    /// Why a join did not complete.
    public enum Failure: Error, CustomStringConvertible {
        /// No welcome came within the time allowed.
        case noAnswer(Endpoint, seconds: Double)
        /// The inviter's address could not be resolved or sent to.
        case unreachable(Endpoint, String)

        public var description: String {
            switch self {
            case .noAnswer(let endpoint, let seconds):
                "the inviter at \(endpoint) did not answer within \(Int(seconds)) s (is its node running, and does UDP reach "
                    + "port \(endpoint.port) there?)"
            case .unreachable(let endpoint, let reason): "cannot send to the inviter at \(endpoint): \(reason)"
            }
        }
    }

    /// Asks the inviter of `invitation` to trust `identity`, which gossips at `endpoint`; returns once the
    /// inviter's welcome (signed by the invitation's key, naming this identity) arrives.
    public static func join(
        _ invitation: Invitation, identity: SigningKey, endpoint: Endpoint, timeout: Duration = .seconds(10),
        clock: @escaping @Sendable () -> UnixMillis = wallClockMillis
    ) async throws {
        let request = JoinRequest(
            endpoint: endpoint, nonce: invitation.nonce, expires: invitation.expires,
            proof: InvitationSecrets.proof(secret: invitation.secret, joiner: identity.publicKey, endpoint: endpoint.description))
        let target: SocketAddress
        do {
            target = try SocketAddress.makeAddressResolvingHost(invitation.endpoint.host, port: invitation.endpoint.port)
        } catch {
            throw Failure.unreachable(invitation.endpoint, "\(error)")
        }
        let incarnation = UInt64(max(0, clock()))
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: target.protocol == .inet6 ? "::" : "0.0.0.0", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(
                        wrappingChannelSynchronously: channel)
                }
            }
        let attempts = max(1, Int(timeout / .milliseconds(500)))
        let welcomed = try await channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    for attempt in 0..<attempts {
                        let packet = WireFormat.encodePacket(
                            header: PacketHeader(
                                sender: identity.publicKey, incarnation: incarnation, sequence: UInt64(attempt + 1),
                                sentAt: clock()),
                            payload: .join(request), signingKey: identity, cluster: invitation.cluster)
                        try await outbound.write(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: packet)))
                        try await Task.sleep(for: .milliseconds(500))
                    }
                    return false
                }
                group.addTask {
                    for try await envelope in inbound {
                        if isWelcome(Array(envelope.data.readableBytesView), for: identity.publicKey, from: invitation) {
                            return true
                        }
                    }
                    return false
                }
                let first = try await group.next() ?? false
                group.cancelAll()
                return first
            }
        }
        guard welcomed else { throw Failure.noAnswer(invitation.endpoint, seconds: Double(attempts) / 2) }
    }

    /// Whether `bytes` is the inviter's welcome of `joiner`: signed by the invitation's key for its mesh.
    static func isWelcome(_ bytes: [UInt8], for joiner: VerifyingKey, from invitation: Invitation) -> Bool {
        guard let header = try? WireFormat.decodeHeader(bytes), header.sender == invitation.inviter,
            WireFormat.hasValidPacketSignature(bytes, sender: invitation.inviter, cluster: invitation.cluster),
            case .welcome(let welcomed)? = try? WireFormat.decodePayload(bytes)
        else { return false }
        return welcomed == joiner
    }
}

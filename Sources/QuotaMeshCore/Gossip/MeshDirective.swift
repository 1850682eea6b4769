import QuotaMeshCrypto

/// An effect the shell must carry out, in order.
public enum MeshDirective: Hashable, Sendable {
    /// Send a datagram.
    case send([UInt8], to: Endpoint)
    /// Answer the acquire with this ticket.
    case reply(ticket: UInt64, AcquireDecision)
    /// Save `MeshInstance.persistedState()` durably before carrying out the replies that follow. The
    /// directive carries no state, so deciding stays cheap; a shell may save once for several of them
    /// (group commit), as long as no reply that follows one goes out before a save that comes after it.
    case persist
    /// Log or count something.
    case event(MeshEvent)
    /// Call `tick` again no later than this.
    case wake(at: UnixMillis)
    /// Add this peer to the trust store: it joined with this node's invitation (`introducedBy` nil), or a
    /// peer whose introductions this node's `vouching` trusts introduced it. The instance trusts it once
    /// the trust store is loaded again (``MeshInstance/replacePeers(_:)``).
    case trust(PeerInfo, introducedBy: VerifyingKey?)
}

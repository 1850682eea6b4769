import QuotaMeshCrypto

/// A vouched peer as the core sees it: its identity and where to reach it first.
public struct PeerInfo: Hashable, Sendable {
    /// The peer's display name (the trust store's file name).
    public var name: String
    /// The peer's Ed25519 public key: its identity.
    public var key: VerifyingKey
    /// Where to send to it until it is heard from elsewhere.
    public var endpoint: Endpoint?
    /// The weight this node vouches for the peer: the most of its own claim this node believes.
    public var weight: Weight

    /// Creates a peer entry.
    public init(name: String, key: VerifyingKey, endpoint: Endpoint?, weight: Weight = .one) {
        self.name = name
        self.key = key
        self.endpoint = endpoint
        self.weight = weight
    }
}

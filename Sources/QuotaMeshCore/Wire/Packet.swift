import QuotaMeshCrypto

/// One entry of an anti-entropy digest: which record slot (a 64-bit hash of origin and slot) and the
/// newest version the sender holds for it (`.zero`: it holds none and asks for it).
public struct DigestEntry: Hashable, Sendable {
    /// `RecordSlotID.hash` of the slot.
    public var slotHash: UInt64
    /// The sender's version of that slot.
    public var version: RecordVersion

    /// Creates an entry.
    public init(slotHash: UInt64, version: RecordVersion) {
        self.slotHash = slotHash
        self.version = version
    }
}

/// What a packet carries after its header.
public enum PacketPayload: Hashable, Sendable {
    /// Signed records, sent in answer to a digest or a request.
    case records([SignedRecord])
    /// A gossip push: signed records, and the slots of other records the sender updated lately that it
    /// had no room to send (Plumtree's lazy push). The receiver asks for those it lacks with a reply
    /// digest, so a record the pushes missed reaches it within a round or two of the announcement.
    case push(records: [SignedRecord], announced: [DigestEntry], holds: HeldFilter?)
    /// An anti-entropy digest. A first digest (`isReply == false`) is answered with the records the
    /// sender lacks and a reply digest naming what the receiver lacks; a reply is answered with records
    /// only, so an exchange ends after three packets.
    case digest(isReply: Bool, entries: [DigestEntry])
    /// A request for rights, sent straight to peers that hold some: answered at once with the giver's new
    /// signed record when it can spare them, ignored otherwise.
    case rightsRequest(RightsRequest)
    /// A newcomer's request to join, proving it holds an invitation's secret: the one kind of packet a
    /// node reads from a sender it does not trust (`quotamesh join`).
    case join(JoinRequest)
    /// The inviter's answer to a join it accepted, naming the joiner.
    case welcome(joiner: VerifyingKey)
    /// A request for the sender's trusted peers, from a node whose `vouching` trusts its introductions.
    case introductionsRequest
    /// Some of the sender's trusted peers, in answer to ``introductionsRequest``.
    case introductions([PeerIntroduction])
}

/// A newcomer's request to join (``PacketPayload/join(_:)``); the packet's sender is the newcomer.
public struct JoinRequest: Hashable, Sendable {
    /// Where the newcomer gossips: where the inviter will reach it.
    public var endpoint: Endpoint
    /// The invitation's nonce and expiry (Unix seconds), from which the inviter derives its secret.
    public var nonce: [UInt8]
    public var expires: Int64
    /// ``InvitationSecrets/proof(secret:joiner:endpoint:)`` for the newcomer's key and `endpoint`.
    public var proof: [UInt8]

    /// Creates a request.
    public init(endpoint: Endpoint, nonce: [UInt8], expires: Int64, proof: [UInt8]) {
        self.endpoint = endpoint
        self.nonce = nonce
        self.expires = expires
        self.proof = proof
    }
}

/// A peer as its introducer trusts it: its key and gossip address.
public struct PeerIntroduction: Hashable, Sendable {
    public var key: VerifyingKey
    public var endpoint: Endpoint

    /// Creates an introduction.
    public init(key: VerifyingKey, endpoint: Endpoint) {
        self.key = key
        self.endpoint = endpoint
    }

    /// Its size in a packet.
    var wireBytes: Int { VerifyingKey.byteCount + 1 + min(255, endpoint.description.utf8.count) }
}

/// A node's request for rights to spend in one window of one key.
public struct RightsRequest: Hashable, Sendable {
    /// The key.
    public var key: QuotaKey
    /// The window the rights are for (its end, Unix ms).
    public var windowEnd: UnixMillis
    /// How many rights are wanted.
    public var amount: UInt64
    /// The highest priority of the calls waiting for them.
    public var priority: Priority

    /// Creates a request.
    public init(key: QuotaKey, windowEnd: UnixMillis, amount: UInt64, priority: Priority) {
        self.key = key
        self.windowEnd = windowEnd
        self.amount = amount
        self.priority = priority
    }
}

/// The authenticated header of every packet: who sent it and its place in the sender's packet sequence.
public struct PacketHeader: Hashable, Sendable {
    /// The sending peer (which need not be the origin of the records inside).
    public var sender: VerifyingKey
    /// The sender's incarnation.
    public var incarnation: UInt64
    /// The sender's packet counter in this incarnation, for replay detection.
    public var sequence: UInt64
    /// When the sender sent it (its clock).
    public var sentAt: UnixMillis

    /// Creates a header.
    public init(sender: VerifyingKey, incarnation: UInt64, sequence: UInt64, sentAt: UnixMillis) {
        self.sender = sender
        self.incarnation = incarnation
        self.sequence = sequence
        self.sentAt = sentAt
    }
}

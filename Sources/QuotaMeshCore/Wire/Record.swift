import QuotaMeshCrypto

/// A record's version: the origin's incarnation (bumped and saved at every start) and a sequence number
/// that grows with every record the origin signs in that incarnation. Newer versions win.
public struct RecordVersion: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// Which life of the origin made the record.
    public var incarnation: UInt64
    /// The origin's counter within that life.
    public var sequence: UInt64

    /// Creates a version.
    public init(incarnation: UInt64, sequence: UInt64) {
        self.incarnation = incarnation
        self.sequence = sequence
    }

    /// The version before any record.
    public static let zero = RecordVersion(incarnation: 0, sequence: 0)

    public static func < (lhs: RecordVersion, rhs: RecordVersion) -> Bool {
        (lhs.incarnation, lhs.sequence) < (rhs.incarnation, rhs.sequence)
    }

    public var description: String { "\(incarnation).\(sequence)" }
}

/// The limit and window an origin enforces for a key (from its configuration or learned upstream), so
/// that peers without a configuration for the service learn it.
public struct AdvertisedPolicy: Hashable, Sendable, Codable {
    /// Calls allowed per window.
    public var limit: Int64
    /// The window's length in ms.
    public var windowMillis: Int64

    /// Creates a policy advertisement.
    public init(limit: Int64, windowMillis: Int64) {
        self.limit = limit
        self.windowMillis = windowMillis
    }
}

/// Which members an origin splits each window's rights among (itself and every peer in its trust store):
/// how many, and a digest of their sorted keys. Nodes whose trust stores differ would each split the limit
/// their own way, and those parts need not add up to the limit; a node that sees a member sign another set
/// stops spending rights until they agree.
public struct MembersDigest: Hashable, Sendable, Codable {
    /// How many members.
    public var count: UInt32
    /// BLAKE2b (64 bits) of the members' sorted public keys.
    public var hash: UInt64

    /// Creates a digest from its fields.
    public init(count: UInt32, hash: UInt64) {
        self.count = count
        self.hash = hash
    }

    /// The digest of `members` (sorted and deduplicated first).
    public init(members: [VerifyingKey]) {
        let sorted = Array(Set(members)).sorted()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(sorted.count * VerifyingKey.byteCount)
        for key in sorted { key.append(to: &bytes) }
        self.init(count: UInt32(clamping: sorted.count), hash: shortHash(bytes))
    }
}

/// Everything one origin says about one quota key.
public struct QuotaState: Hashable, Sendable, Codable {
    /// The origin's own consumption.
    public var consumption: ConsumptionEntry
    /// The origin's latest upstream observation, if any.
    public var observation: UpstreamObservation?
    /// The breaker as the origin sees it.
    public var breaker: BreakerRegister
    /// The origin's recent demand.
    public var demand: Demand
    /// The limit the origin enforces, if it knows one.
    public var policy: AdvertisedPolicy?
    /// The origin's rights ledger for the current window: what it spent and gave (absent before it spent
    /// or gave anything, and in state saved before rights existed).
    public var ledger: RightsLedger?
    /// The members the origin splits rights among (absent in records signed before it was added).
    public var members: MembersDigest?
    /// The weight the origin claims for itself (absent: 1). Receivers believe at most what they vouch.
    public var weight: Weight?

    /// Creates a state.
    public init(
        consumption: ConsumptionEntry = .init(), observation: UpstreamObservation? = nil,
        breaker: BreakerRegister = .init(), demand: Demand = .zero, policy: AdvertisedPolicy? = nil,
        ledger: RightsLedger? = nil, members: MembersDigest? = nil, weight: Weight? = nil
    ) {
        self.weight = weight
        self.consumption = consumption
        self.observation = observation
        self.breaker = breaker
        self.demand = demand
        self.policy = policy
        self.ledger = ledger
        self.members = members
    }
}

/// What a record is about.
public enum RecordBody: Hashable, Sendable {
    /// The origin is alive (its signed timestamp is the evidence).
    case heartbeat
    /// The origin's state for one quota key.
    case quota(QuotaKey, QuotaState)

    /// The slot the body occupies: receivers keep the newest record per origin and slot.
    public var slot: RecordSlot {
        switch self {
        case .heartbeat: .heartbeat
        case .quota(let key, _): .quota(key)
        }
    }
}

/// Where a record lives within its origin's state.
public enum RecordSlot: Hashable, Sendable, Comparable {
    /// The origin's liveness record.
    case heartbeat
    /// The origin's record for a quota key.
    case quota(QuotaKey)
}

/// A record signed by its origin. Relaying nodes forward the exact bytes; nobody but the origin can make
/// one that verifies.
///
/// A record is immutable and is copied into every queue, packet and table that holds it, so its fields
/// live in one shared storage object: a copy costs one reference count, not one per field. It keeps its
/// wire form, the bytes relayed as they arrived: a relay copies them into a packet in one piece, a copy
/// that arrives again is known by comparing them, and reading a record costs one array, not three.
public struct SignedRecord: Hashable, Sendable {
    private final class Storage: Sendable {
        let origin: VerifyingKey
        let version: RecordVersion
        let timestamp: UnixMillis
        let body: RecordBody
        let wire: [UInt8]

        init(origin: VerifyingKey, version: RecordVersion, timestamp: UnixMillis, body: RecordBody, wire: [UInt8]) {
            self.origin = origin
            self.version = version
            self.timestamp = timestamp
            self.body = body
            self.wire = wire
        }
    }

    private var storage: Storage

    /// Where the body starts in the wire form: after origin, version, time stamp and body length.
    static let bodyOffset = VerifyingKey.byteCount + 8 + 8 + 8 + 2

    /// The node that wrote and signed the record.
    public var origin: VerifyingKey { storage.origin }
    /// The record's version.
    public var version: RecordVersion { storage.version }
    /// When the origin signed it (its clock, Unix ms).
    public var timestamp: UnixMillis { storage.timestamp }
    /// The decoded body.
    public var body: RecordBody { storage.body }
    /// The body exactly as signed.
    public var bodyBytes: [UInt8] { Array(bodySlice) }
    /// The origin's Ed25519 signature over the domain-separated record layout.
    public var signature: Signature {
        guard let signature = try? Signature(rawRepresentation: Array(storage.wire.suffix(Signature.byteCount))) else {
            preconditionFailure("a record's wire form ends in its signature")
        }
        return signature
    }
    /// The record exactly as on the wire: `origin | incarnation | sequence | timestamp | bodyLength | body |
    /// signature`.
    var wire: [UInt8] { storage.wire }
    var bodySlice: ArraySlice<UInt8> { storage.wire[Self.bodyOffset..<(storage.wire.count - Signature.byteCount)] }

    /// The record's size on the wire.
    public var encodedCount: Int { storage.wire.count }

    /// Creates and signs a record.
    public init(
        signing body: RecordBody, version: RecordVersion, timestamp: UnixMillis, with key: SigningKey,
        cluster: String, scheme: any SignatureScheme = Ed25519Signatures()
    ) {
        let origin = key.publicKey
        let bodyBytes = WireFormat.encode(body: body)
        let signature = scheme.sign(
            WireFormat.recordSigningBytes(
                cluster: cluster, origin: origin, version: version, timestamp: timestamp, body: bodyBytes),
            with: key)
        self.init(
            origin: origin, version: version, timestamp: timestamp, body: body, bodyBytes: bodyBytes,
            signature: signature)
    }

    /// Assembles a record from its fields; its signature is not checked here.
    init(
        origin: VerifyingKey, version: RecordVersion, timestamp: UnixMillis, body: RecordBody,
        bodyBytes: [UInt8], signature: Signature
    ) {
        var writer = ByteWriter(capacity: Self.bodyOffset + bodyBytes.count + Signature.byteCount)
        writer.write(key: origin)
        writer.write(version.incarnation)
        writer.write(version.sequence)
        writer.write(timestamp)
        writer.write(UInt16(truncatingIfNeeded: bodyBytes.count))
        writer.write(bytes: bodyBytes)
        writer.write(bytes: signature.rawRepresentation)
        self.init(origin: origin, version: version, timestamp: timestamp, body: body, wire: writer.bytes)
    }

    /// Assembles a record read from the wire (`wire` holds exactly its bytes, `body` is read from them);
    /// its signature is not checked here.
    init(origin: VerifyingKey, version: RecordVersion, timestamp: UnixMillis, body: RecordBody, wire: [UInt8]) {
        storage = Storage(origin: origin, version: version, timestamp: timestamp, body: body, wire: wire)
    }

    /// Whether this is the only value holding the record's storage (for a `RecordSharing` that drops
    /// records no instance holds any more).
    public mutating func isUniquelyReferenced() -> Bool { isKnownUniquelyReferenced(&storage) }

    /// Two records are equal when their wire forms are: every signed field and the signature (the body is
    /// read from its bytes, so equal bytes are an equal body). Shared storage answers at once.
    public static func == (lhs: SignedRecord, rhs: SignedRecord) -> Bool {
        lhs.storage === rhs.storage || lhs.storage.wire == rhs.storage.wire
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(origin)
        hasher.combine(version)
        for byte in storage.wire.suffix(Signature.byteCount) { hasher.combine(byte) }
    }

    /// `true` if the origin's signature covers exactly these fields in `cluster`.
    public func hasValidSignature(cluster: String, scheme: any SignatureScheme = Ed25519Signatures()) -> Bool {
        scheme.isValid(
            signature,
            for: WireFormat.recordSigningBytes(
                cluster: cluster, origin: origin, version: version, timestamp: timestamp, body: bodySlice),
            by: origin)
    }
}

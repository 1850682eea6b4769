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

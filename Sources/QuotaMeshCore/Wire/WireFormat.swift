import QuotaMeshCrypto

/// The byte layout of QuotaMesh packets and records (version 1). Everything is big-endian; every packet
/// fits in `maxPacketBytes`, so no IP fragmentation occurs on any path (IPv6's minimum MTU is 1280).
///
/// Packet: `"QM" | version u8 | kind u8 | sender [32] | incarnation u64 | sequence u64 | sentAt i64 |
/// payload | signature [64]`; the signature is the sender's Ed25519 signature over
/// `"quotamesh/packet/v1\0" | cluster | "\0" | everything before it`.
/// Record: `origin [32] | incarnation u64 | sequence u64 | timestamp i64 | bodyLength u16 | body |
/// signature [64]`, signed by the origin over `"quotamesh/record/v1\0" | cluster | "\0" | origin |
/// incarnation | sequence | timestamp | body` (a fixed, domain-separated layout: bytes are signed, not
/// structures).
public enum WireFormat {
    /// The largest packet sent or accepted.
    public static let maxPacketBytes = 1200
    /// The wire version spoken.
    public static let version: UInt8 = 1
    /// Header bytes before the payload.
    public static let headerBytes = 2 + 1 + 1 + 32 + 8 + 8 + 8
    /// Payload room in one packet.
    public static let maxPayloadBytes = maxPacketBytes - headerBytes - Signature.byteCount
    /// Bytes per digest entry.
    public static let digestEntryBytes = 8 + 8 + 8
    /// Bytes per slot announced in a push: the slot's hash, and its version's incarnation and sequence
    /// in 32 bits each (a version that does not fit is not announced; digests still name it).
    public static let announcementBytes = 8 + 4 + 4

    static let magic: [UInt8] = [0x51, 0x4D]  // "QM"
    static let packetDomain = Array("quotamesh/packet/v1".utf8) + [0]
    static let recordDomain = Array("quotamesh/record/v1".utf8) + [0]

    enum Kind: UInt8 {
        case records = 1
        case digest = 2
        case rightsRequest = 3
        case join = 4
        case welcome = 5
        case introductions = 6
        case introductionsRequest = 7
        case push = 8
    }

    // MARK: Packets

    /// Encodes and signs a packet.
    public static func encodePacket(
        header: PacketHeader, payload: PacketPayload, signingKey: SigningKey, cluster: String,
        scheme: any SignatureScheme = Ed25519Signatures()
    ) -> [UInt8] {
        var writer = ByteWriter(capacity: maxPacketBytes)
        writer.write(bytes: magic)
        writer.write(version)
        switch payload {
        case .records: writer.write(Kind.records.rawValue)
        case .push: writer.write(Kind.push.rawValue)
        case .digest: writer.write(Kind.digest.rawValue)
        case .rightsRequest: writer.write(Kind.rightsRequest.rawValue)
        case .join: writer.write(Kind.join.rawValue)
        case .welcome: writer.write(Kind.welcome.rawValue)
        case .introductions: writer.write(Kind.introductions.rawValue)
        case .introductionsRequest: writer.write(Kind.introductionsRequest.rawValue)
        }
        writer.write(key: header.sender)
        writer.write(header.incarnation)
        writer.write(header.sequence)
        writer.write(header.sentAt)
        switch payload {
        case .records(let records):
            writer.write(UInt8(records.count))
            for record in records { encode(record: record, into: &writer) }
        case .push(let records, let announced, let holds):
            writer.write(UInt8(records.count))
            for record in records { encode(record: record, into: &writer) }
            let fitting = announced.filter(isAnnounceable).prefix(255)
            writer.write(UInt8(fitting.count))
            for entry in fitting {
                writer.write(entry.slotHash)
                writer.write(UInt32(entry.version.incarnation))
                writer.write(UInt32(entry.version.sequence))
            }
            writer.write(UInt8(holds == nil ? 0 : 1))
            for word in holds?.words ?? [] { writer.write(word) }
        case .digest(let isReply, let entries):
            writer.write(UInt8(isReply ? 1 : 0))
            writer.write(UInt16(entries.count))
            for entry in entries {
                writer.write(entry.slotHash)
                writer.write(entry.version.incarnation)
                writer.write(entry.version.sequence)
            }
        case .rightsRequest(let request):
            writer.write(shortString: request.key.service)
            writer.write(shortString: request.key.account)
            writer.write(shortString: request.key.dimension)
            writer.write(request.windowEnd)
            writer.write(request.amount)
            writer.write(UInt8(request.priority.rank))
        case .join(let request):
            writer.write(shortString: request.endpoint.description)
            writer.write(bytes: request.nonce.prefix(InvitationSecrets.nonceBytes))
            writer.write(request.expires)
            writer.write(bytes: request.proof.prefix(InvitationSecrets.proofBytes))
        case .welcome(let joiner):
            writer.write(key: joiner)
        case .introductions(let introductions):
            writer.write(UInt8(min(introductions.count, 255)))
            for introduction in introductions.prefix(255) {
                writer.write(key: introduction.key)
                writer.write(shortString: introduction.endpoint.description)
            }
        case .introductionsRequest:
            break
        }
        let signature = scheme.sign(prefix: packetSigningPrefix(cluster: cluster), writer.bytes[...], with: signingKey)
        writer.write(bytes: signature.rawRepresentation)
        return writer.bytes
    }

    /// Reads only the header, so that unknown senders and replays are dropped before any signature work.
    public static func decodeHeader(_ bytes: [UInt8]) throws(DecodeError) -> PacketHeader {
        guard bytes.count <= maxPacketBytes else { throw .oversized }
        guard bytes.count >= headerBytes + Signature.byteCount else { throw .truncated }
        var reader = ByteReader(bytes)
        guard try reader.readBytes(2) == magic else { throw .badMagic }
        let wireVersion = try reader.readUInt8()
        guard wireVersion == version else { throw .unknownVersion(wireVersion) }
        let kind = try reader.readUInt8()
        guard Kind(rawValue: kind) != nil else { throw .unknownType(kind) }
        let sender = try reader.readKey()
        return PacketHeader(
            sender: sender, incarnation: try reader.readUInt64(), sequence: try reader.readUInt64(),
            sentAt: try reader.readInt64())
    }

    /// `true` if the packet's trailing signature is the sender's over everything before it.
    public static func hasValidPacketSignature(
        _ bytes: [UInt8], sender: VerifyingKey, cluster: String, scheme: any SignatureScheme = Ed25519Signatures()
    ) -> Bool {
        guard bytes.count >= headerBytes + Signature.byteCount else { return false }
        let split = bytes.count - Signature.byteCount
        guard let signature = try? Signature(rawRepresentation: Array(bytes[split...])) else { return false }
        return scheme.isValid(signature, prefix: packetSigningPrefix(cluster: cluster), bytes[..<split], by: sender)
    }

    /// Decodes the payload of a packet whose header was read by `decodeHeader`. Record signatures are not
    /// checked here.
    public static func decodePayload(_ bytes: [UInt8]) throws(DecodeError) -> PacketPayload {
        switch try decodeArriving(bytes, heldCopy: { _, _, _ in nil }) {
        case .records(let arriving):
            return .records(arriving.compactMap { if case .record(let record) = $0 { record } else { nil } })
        case .push(let arriving, let announced, let holds):
            return .push(
                records: arriving.compactMap { if case .record(let record) = $0 { record } else { nil } },
                announced: announced, holds: holds)
        case .digest(let isReply, let entries):
            return .digest(isReply: isReply, entries: entries)
        case .rightsRequest(let request):
            return .rightsRequest(request)
        case .join(let request):
            return .join(request)
        case .welcome(let joiner):
            return .welcome(joiner: joiner)
        case .introductions(let introductions):
            return .introductions(introductions)
        case .introductionsRequest:
            return .introductionsRequest
        }
    }

    /// Whether the packet is a join request, the one kind read from senders not trusted (its header is
    /// read by `decodeHeader` first).
    static func isJoinRequest(_ bytes: [UInt8]) -> Bool {
        bytes.count > 3 && bytes[3] == Kind.join.rawValue
    }

    /// A record in an arriving packet.
    enum ArrivingRecord {
        /// An exact copy of the record the receiver holds at `index`, whose version is `version`.
        case copy(index: Int, version: RecordVersion)
        /// A record read from the packet.
        case record(SignedRecord)
    }

    /// What an arriving packet carries.
    enum ArrivingPayload {
        case records([ArrivingRecord])
        case push([ArrivingRecord], announced: [DigestEntry], holds: HeldFilter?)
        case digest(isReply: Bool, entries: [DigestEntry])
        case rightsRequest(RightsRequest)
        case join(JoinRequest)
        case welcome(joiner: VerifyingKey)
        case introductions([PeerIntroduction])
        case introductionsRequest
    }

    /// Decodes a payload as `decodePayload` does, except that each record's bytes are first shown to
    /// `heldCopy` (origin, version, the whole record): a record it names the held index of is an exact
    /// copy of one the receiver holds, and is passed over unread. In a large cluster most arrivals are
    /// such copies. Every other record is read and checked in full, and any fault in any record drops
    /// the whole packet, as before.
    static func decodeArriving(
        _ bytes: [UInt8], heldCopy: (VerifyingKey, RecordVersion, ArraySlice<UInt8>) -> Int?
    ) throws(DecodeError) -> ArrivingPayload {
        guard bytes.count <= maxPacketBytes else { throw .oversized }
        guard bytes.count >= headerBytes + Signature.byteCount else { throw .truncated }
        let payloadEnd = bytes.count - Signature.byteCount
        var reader = ByteReader(bytes, offset: 3, end: payloadEnd)
        let kind = try reader.readUInt8()
        _ = try reader.readBytes(headerBytes - 4)
        let payload: ArrivingPayload
        switch Kind(rawValue: kind) {
        case .records:
            payload = .records(try readRecords(from: &reader, heldCopy: heldCopy))
        case .push:
            let records = try readRecords(from: &reader, heldCopy: heldCopy)
            let count = Int(try reader.readUInt8())
            guard count * announcementBytes <= reader.remainingCount else { throw .truncated }
            var announced: [DigestEntry] = []
            announced.reserveCapacity(count)
            for _ in 0..<count {
                let hash = try reader.readUInt64()
                let incarnation = UInt64(try reader.readUInt32())
                let version = RecordVersion(incarnation: incarnation, sequence: UInt64(try reader.readUInt32()))
                announced.append(DigestEntry(slotHash: hash, version: version))
            }
            var holds: HeldFilter?
            switch try reader.readUInt8() {
            case 0: holds = nil
            case 1:
                var words: [UInt64] = []
                for _ in 0..<(HeldFilter.byteCount / 8) { words.append(try reader.readUInt64()) }
                holds = HeldFilter(words: words)
            default: throw .malformed("push filter flag")
            }
            payload = .push(records, announced: announced, holds: holds)
        case .digest:
            let flags = try reader.readUInt8()
            guard flags <= 1 else { throw .malformed("digest flags") }
            let count = Int(try reader.readUInt16())
            guard count * digestEntryBytes <= reader.remainingCount else { throw .truncated }
            var entries: [DigestEntry] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                let hash = try reader.readUInt64()
                let version = RecordVersion(incarnation: try reader.readUInt64(), sequence: try reader.readUInt64())
                entries.append(DigestEntry(slotHash: hash, version: version))
            }
            payload = .digest(isReply: flags == 1, entries: entries)
        case .rightsRequest:
            let service = try reader.readShortString(field: "service")
            let account = try reader.readShortString(field: "account")
            let dimension = try reader.readShortString(field: "dimension")
            guard QuotaKey.isValidLabel(service), QuotaKey.isValidLabel(account), QuotaKey.isValidLabel(dimension)
            else { throw .malformed("rights request key") }
            let windowEnd = try reader.readInt64()
            let amount = try reader.readUInt64()
            let rank = try reader.readUInt8()
            guard let priority = Priority.allCases.first(where: { $0.rank == Int(rank) }) else {
                throw .malformed("rights request priority")
            }
            payload = .rightsRequest(
                RightsRequest(
                    key: QuotaKey(service: service, account: account, dimension: dimension), windowEnd: windowEnd,
                    amount: amount, priority: priority))
        case .join:
            let endpoint = try readEndpoint(from: &reader, field: "join endpoint")
            let nonce = try reader.readBytes(InvitationSecrets.nonceBytes)
            let expires = try reader.readInt64()
            let proof = try reader.readBytes(InvitationSecrets.proofBytes)
            payload = .join(JoinRequest(endpoint: endpoint, nonce: nonce, expires: expires, proof: proof))
        case .welcome:
            payload = .welcome(joiner: try reader.readKey())
        case .introductions:
            let count = Int(try reader.readUInt8())
            var introductions: [PeerIntroduction] = []
            for _ in 0..<count {
                let key = try reader.readKey()
                introductions.append(
                    PeerIntroduction(key: key, endpoint: try readEndpoint(from: &reader, field: "introduced endpoint")))
            }
            payload = .introductions(introductions)
        case .introductionsRequest:
            payload = .introductionsRequest
        case nil:
            throw .unknownType(kind)
        }
        guard reader.isAtEnd else { throw .trailingBytes }
        return payload
    }

    /// A count byte and that many records; a record `heldCopy` names is passed over unread.
    private static func readRecords(
        from reader: inout ByteReader, heldCopy: (VerifyingKey, RecordVersion, ArraySlice<UInt8>) -> Int?
    ) throws(DecodeError) -> [ArrivingRecord] {
        let count = Int(try reader.readUInt8())
        var records: [ArrivingRecord] = []
        records.reserveCapacity(count)
        for _ in 0..<count {
            if let copy = readHeldCopy(from: &reader, matching: heldCopy) {
                records.append(copy)
            } else {
                records.append(.record(try decodeRecord(from: &reader)))
            }
        }
        return records
    }

    /// Whether a push can announce `entry`: its version's parts fit the announcement's 32 bits each.
    static func isAnnounceable(_ entry: DigestEntry) -> Bool {
        entry.version.incarnation <= UInt64(UInt32.max) && entry.version.sequence <= UInt64(UInt32.max)
    }

    /// A `HOST:PORT` with a port from 1 to 65535.
    private static func readEndpoint(from reader: inout ByteReader, field: String) throws(DecodeError) -> Endpoint {
        guard let endpoint = Endpoint(parsing: try reader.readShortString(field: field)), endpoint.port > 0 else {
            throw .malformed(field)
        }
        return endpoint
    }

    /// What a packet signature covers before the packet's own bytes: the packet domain and the cluster
    /// name, NUL-terminated.
    static func packetSigningPrefix(cluster: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(packetDomain.count + cluster.utf8.count + 1)
        bytes += packetDomain
        bytes += cluster.utf8
        bytes.append(0)
        return bytes
    }

    // MARK: Records

    static func recordSigningBytes(
        cluster: String, origin: VerifyingKey, version: RecordVersion, timestamp: UnixMillis,
        body: some Collection<UInt8>
    ) -> [UInt8] {
        var writer = ByteWriter(capacity: recordDomain.count + cluster.utf8.count + 60 + body.count)
        writer.write(bytes: recordDomain)
        writer.write(utf8: cluster)
        writer.write(UInt8(0))
        writer.write(key: origin)
        writer.write(version.incarnation)
        writer.write(version.sequence)
        writer.write(timestamp)
        writer.write(bytes: body)
        return writer.bytes
    }

    static func encode(record: SignedRecord, into writer: inout ByteWriter) {
        writer.write(bytes: record.wire)
    }

    /// If the record at the reader is complete and `heldCopy` names it as an exact copy of a held one,
    /// moves past it and returns the copy; otherwise leaves the reader where it was.
    private static func readHeldCopy(
        from reader: inout ByteReader, matching heldCopy: (VerifyingKey, RecordVersion, ArraySlice<UInt8>) -> Int?
    ) -> ArrivingRecord? {
        let start = reader.offset
        var peek = reader
        guard let origin = try? peek.readKey(), let incarnation = try? peek.readUInt64(),
            let sequence = try? peek.readUInt64(), (try? peek.readInt64()) != nil,
            let length = try? peek.readUInt16(), (try? peek.skip(Int(length) + Signature.byteCount)) != nil
        else { return nil }
        let version = RecordVersion(incarnation: incarnation, sequence: sequence)
        guard let index = heldCopy(origin, version, reader.bytes[start..<peek.offset]) else { return nil }
        reader = peek
        return .copy(index: index, version: version)
    }

    static func decodeRecord(from reader: inout ByteReader) throws(DecodeError) -> SignedRecord {
        let start = reader.offset
        let origin = try reader.readKey()
        let version = RecordVersion(incarnation: try reader.readUInt64(), sequence: try reader.readUInt64())
        let timestamp = try reader.readInt64()
        let length = Int(try reader.readUInt16())
        let bodyStart = reader.offset
        try reader.skip(length)
        let body = try decode(body: reader.bytes, from: bodyStart, to: reader.offset)
        try reader.skip(Signature.byteCount)
        return SignedRecord(
            origin: origin, version: version, timestamp: timestamp, body: body,
            wire: Array(reader.bytes[start..<reader.offset]))
    }

    enum BodyKind: UInt8 {
        case heartbeat = 0
        /// A quota record counting requests.
        case quota = 1
        /// A quota record counting another dimension (tokens, …): the dimension's label follows the
        /// account. A node that predates dimensions drops it as an unknown type and keeps the rest.
        case dimensionQuota = 2
    }

    /// Encodes a record body (the bytes the origin signs).
    public static func encode(body: RecordBody) -> [UInt8] {
        var writer = ByteWriter(capacity: 160)
        switch body {
        case .heartbeat:
            writer.write(BodyKind.heartbeat.rawValue)
        case .quota(let key, let state):
            let counted = key.dimension != QuotaKey.requests
            writer.write((counted ? BodyKind.dimensionQuota : BodyKind.quota).rawValue)
            writer.write(shortString: key.service)
            writer.write(shortString: key.account)
            if counted { writer.write(shortString: key.dimension) }
            writer.write(state.consumption.total)
            writer.write(state.consumption.windowEnd)
            writer.write(state.consumption.windowCount)
            if counted { writer.write(state.consumption.windowRefund) }
            var flags: UInt8 = 0
            if state.observation != nil { flags |= 1 }
            if state.policy != nil { flags |= 2 }
            if state.ledger != nil { flags |= 4 }
            if state.members != nil { flags |= 8 }
            if state.weight != nil { flags |= 16 }
            writer.write(flags)
            if let observation = state.observation {
                writer.write(observation.resetAt)
                writer.write(observation.remaining)
                writer.write(observation.limit)
                writer.write(observation.windowMillis)
                writer.write(observation.observedAt)
                writer.write(observation.consumedTotalAtObservation)
            }
            writer.write(state.breaker.openedAt)
            writer.write(state.breaker.openUntil)
            writer.write(state.breaker.closedAt)
            for priority in Priority.allCases {
                let milli = (state.demand[priority] * 1000).rounded()
                writer.write(milli.isFinite ? UInt32(min(max(milli, 0), Double(UInt32.max))) : 0)
            }
            if let policy = state.policy {
                writer.write(policy.limit)
                writer.write(policy.windowMillis)
            }
            if let ledger = state.ledger {
                writer.write(ledger.windowEnd)
                writer.write(ledger.spent)
                writer.write(ledger.refunded)
                writer.write(UInt8(truncatingIfNeeded: ledger.given.count))
                for transfer in ledger.given {
                    writer.write(key: transfer.receiver)
                    writer.write(transfer.amount)
                }
            }
            if let members = state.members {
                writer.write(members.count)
                writer.write(members.hash)
            }
            if let weight = state.weight { writer.write(weight.thousandths) }
        }
        return writer.bytes
    }

    /// Decodes a record body, rejecting labels that are not valid quota-key labels.
    public static func decode(body bytes: [UInt8]) throws(DecodeError) -> RecordBody {
        try decode(body: bytes, from: 0, to: bytes.count)
    }

    /// Decodes the record body in `bytes[start..<end]`, in place.
    static func decode(body bytes: [UInt8], from start: Int, to end: Int) throws(DecodeError) -> RecordBody {
        var reader = ByteReader(bytes, offset: start, end: end)
        let kind = try reader.readUInt8()
        let body: RecordBody
        switch BodyKind(rawValue: kind) {
        case .heartbeat:
            body = .heartbeat
        case .quota, .dimensionQuota:
            let service = try reader.readShortString(field: "service")
            let account = try reader.readShortString(field: "account")
            guard QuotaKey.isValidLabel(service) else { throw .malformed("service") }
            guard QuotaKey.isValidLabel(account) else { throw .malformed("account") }
            var dimension = QuotaKey.requests
            if kind == BodyKind.dimensionQuota.rawValue {
                dimension = try reader.readShortString(field: "dimension")
                // `requests` has its own kind: one state, one encoding.
                guard QuotaKey.isValidLabel(dimension), dimension != QuotaKey.requests else { throw .malformed("dimension") }
            }
            var state = QuotaState()
            state.consumption = ConsumptionEntry(
                total: try reader.readUInt64(), windowEnd: try reader.readInt64(),
                windowCount: try reader.readUInt64())
            if dimension != QuotaKey.requests {
                state.consumption.windowRefund = try reader.readUInt64()
                guard state.consumption.windowRefund <= state.consumption.windowCount else { throw .malformed("refund") }
            }
            let flags = try reader.readUInt8()
            guard flags & ~31 == 0 else { throw .malformed("flags") }
            if flags & 1 != 0 {
                state.observation = UpstreamObservation(
                    resetAt: try reader.readInt64(), remaining: try reader.readInt64(), limit: try reader.readInt64(),
                    windowMillis: try reader.readInt64(), observedAt: try reader.readInt64(),
                    consumedTotalAtObservation: try reader.readUInt64())
            }
            state.breaker = BreakerRegister(
                openedAt: try reader.readInt64(), openUntil: try reader.readInt64(), closedAt: try reader.readInt64())
            for priority in Priority.allCases {
                state.demand[priority] = Double(try reader.readUInt32()) / 1000
            }
            if flags & 2 != 0 {
                state.policy = AdvertisedPolicy(limit: try reader.readInt64(), windowMillis: try reader.readInt64())
            }
            if flags & 4 != 0 {
                let windowEnd = try reader.readInt64()
                let spent = try reader.readUInt64()
                let refunded = try reader.readUInt64()
                guard refunded <= spent else { throw .malformed("ledger") }
                let count = Int(try reader.readUInt8())
                guard count <= RightsLedger.maxReceivers else { throw .malformed("ledger") }
                var given: [RightsTransfer] = []
                for _ in 0..<count {
                    let receiver = try reader.readKey()
                    // Sorted and distinct, so that one ledger has one encoding.
                    guard given.last.map({ $0.receiver < receiver }) ?? true else { throw .malformed("ledger") }
                    given.append(RightsTransfer(receiver: receiver, amount: try reader.readUInt64()))
                }
                state.ledger = RightsLedger(windowEnd: windowEnd, spent: spent, refunded: refunded, given: given)
            }
            if flags & 8 != 0 {
                state.members = MembersDigest(count: try reader.readUInt32(), hash: try reader.readUInt64())
            }
            if flags & 16 != 0 {
                let thousandths = try reader.readUInt32()
                guard Weight.allowedThousandths.contains(thousandths) else { throw .malformed("weight") }
                state.weight = Weight(thousandths: thousandths)
            }
            body = .quota(QuotaKey(service: service, account: account, dimension: dimension), state)
        case nil:
            throw .unknownType(kind)
        }
        guard reader.isAtEnd else { throw .trailingBytes }
        return body
    }
}

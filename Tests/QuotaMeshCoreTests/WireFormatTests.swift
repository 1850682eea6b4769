import Testing
@testable import QuotaMeshCore
import QuotaMeshCrypto

@Suite struct WireFormatTests {
    let cluster = "test"

    func sampleState() -> QuotaState {
        QuotaState(
            consumption: ConsumptionEntry(total: 42, windowEnd: 1_800_000_060_000, windowCount: 7),
            observation: UpstreamObservation(
                resetAt: 1_800_000_060_000, remaining: 93, limit: 100, windowMillis: 60_000,
                observedAt: 1_800_000_001_000, consumedTotalAtObservation: 40),
            breaker: BreakerRegister(openedAt: 5, openUntil: 9, closedAt: 3),
            demand: Demand(urgent: 0.5, normal: 2.25, low: 10),
            policy: AdvertisedPolicy(limit: 100, windowMillis: 60_000))
    }

    /// A quota record of `sampleState()` signed by `origin`.
    func sampleRecord(signedBy origin: SigningKey) -> SignedRecord {
        SignedRecord(
            signing: .quota(QuotaKey(service: "openai"), sampleState()), version: RecordVersion(incarnation: 3, sequence: 9),
            timestamp: 1_800_000_000_000, with: origin, cluster: cluster)
    }

    @Test func recordBodiesRoundTrip() throws {
        let bodies: [RecordBody] = [
            .heartbeat,
            .quota(QuotaKey(service: "openai", account: "team-a"), sampleState()),
            .quota(QuotaKey(service: "github"), QuotaState()),
            .quota(QuotaKey(service: "openai", account: "team-a", dimension: "tokens"), refunded(sampleState(), by: 3)),
        ]
        for body in bodies {
            #expect(try WireFormat.decode(body: WireFormat.encode(body: body)) == body)
        }
    }

    @Test func aClaimedWeightTravelsSignedAndWeightOneAddsNoByte() throws {
        var weighted = sampleState()
        weighted.weight = Weight(2.5)
        let body = RecordBody.quota(QuotaKey(service: "openai"), weighted)
        #expect(try WireFormat.decode(body: WireFormat.encode(body: body)) == body)
        let plain = WireFormat.encode(body: .quota(QuotaKey(service: "openai"), sampleState()))
        #expect(WireFormat.encode(body: body).count == plain.count + 4)
        // A weight out of range is refused, as any malformed field.
        var bytes = WireFormat.encode(body: body)
        bytes.replaceSubrange((bytes.count - 4)..., with: [0, 0, 0, 0])
        #expect(throws: DecodeError.malformed("weight")) { try WireFormat.decode(body: bytes) }
    }

    func refunded(_ state: QuotaState, by refund: UInt64) -> QuotaState {
        var state = state
        state.consumption.windowRefund = refund
        return state
    }

    @Test func dimensionRecordsHaveTheirOwnKindAndSlot() throws {
        let requests = QuotaKey(service: "openai")
        let tokens = requests.counting("tokens")
        let plain = WireFormat.encode(body: .quota(requests, sampleState()))
        let counted = WireFormat.encode(body: .quota(tokens, sampleState()))
        // Requests keep the original encoding (older nodes read it); other dimensions have a kind of their own.
        #expect(plain.first == 1)
        #expect(counted.first == 2)
        #expect(RecordBody.quota(tokens, sampleState()).slot != RecordBody.quota(requests, sampleState()).slot)
        // A refund larger than what was counted, and `requests` spelled as a dimension, are malformed.
        #expect(throws: DecodeError.self) {
            try WireFormat.decode(body: WireFormat.encode(body: .quota(tokens, refunded(sampleState(), by: 8))))
        }
        let dimensionStart = 1 + 7 + 8  // kind, "openai", "default"
        #expect(Array(counted[dimensionStart..<(dimensionStart + 7)]) == [6] + Array("tokens".utf8))
        var requestsAsDimension = Array(counted[..<dimensionStart]) + [8] + Array("requests".utf8)
        requestsAsDimension += counted[(dimensionStart + 7)...]
        #expect(throws: DecodeError.self) { try WireFormat.decode(body: requestsAsDimension) }
    }

    @Test func recordsPacketRoundTripsWithValidSignatures() throws {
        let origin = testKey(0)
        let relay = testKey(1)
        let record = sampleRecord(signedBy: origin)
        let header = PacketHeader(sender: relay.publicKey, incarnation: 1, sequence: 2, sentAt: 1_800_000_000_000)
        let bytes = WireFormat.encodePacket(header: header, payload: .records([record]), signingKey: relay, cluster: cluster)
        #expect(bytes.count <= WireFormat.maxPacketBytes)
        #expect(try WireFormat.decodeHeader(bytes) == header)
        #expect(WireFormat.hasValidPacketSignature(bytes, sender: relay.publicKey, cluster: cluster))
        #expect(!WireFormat.hasValidPacketSignature(bytes, sender: relay.publicKey, cluster: "other-cluster"))
        guard case .records(let decoded) = try WireFormat.decodePayload(bytes) else {
            Issue.record("expected records")
            return
        }
        #expect(decoded == [record])
        #expect(decoded[0].hasValidSignature(cluster: cluster))
        #expect(!decoded[0].hasValidSignature(cluster: "other-cluster"))
    }

    @Test func digestPacketRoundTrips() throws {
        let key = testKey(0)
        let entries = (0..<40).map { DigestEntry(slotHash: UInt64($0) &* 0x9E37, version: RecordVersion(incarnation: 2, sequence: UInt64($0))) }
        let header = PacketHeader(sender: key.publicKey, incarnation: 2, sequence: 5, sentAt: 1)
        let bytes = WireFormat.encodePacket(header: header, payload: .digest(isReply: true, entries: entries), signingKey: key, cluster: cluster)
        #expect(bytes.count <= WireFormat.maxPacketBytes)
        #expect(try WireFormat.decodePayload(bytes) == .digest(isReply: true, entries: entries))
    }

    @Test func pushPacketRoundTripsWithAnnouncementsAndAFilter() throws {
        let origin = testKey(0)
        let relay = testKey(1)
        let record = sampleRecord(signedBy: origin)
        let announced = (0..<16).map {
            DigestEntry(slotHash: UInt64($0) &* 0x9E37_79B9, version: RecordVersion(incarnation: 1_800_000_000, sequence: UInt64($0)))
        }
        var filter = HeldFilter()
        filter.insert(slotHash: 7, version: RecordVersion(incarnation: 1, sequence: 2))
        let header = PacketHeader(sender: relay.publicKey, incarnation: 1, sequence: 2, sentAt: 1_800_000_000_000)
        for holds in [filter, nil] {
            let payload = PacketPayload.push(records: [record, record], announced: announced, holds: holds)
            let bytes = WireFormat.encodePacket(header: header, payload: payload, signingKey: relay, cluster: cluster)
            #expect(bytes.count <= WireFormat.maxPacketBytes)
            #expect(WireFormat.hasValidPacketSignature(bytes, sender: relay.publicKey, cluster: cluster))
            #expect(try WireFormat.decodePayload(bytes) == payload)
        }
        // A version whose parts do not fit in 32 bits each is left out of the announcement, not cut short.
        let wide = DigestEntry(slotHash: 1, version: RecordVersion(incarnation: UInt64(UInt32.max) + 1, sequence: 1))
        let bytes = WireFormat.encodePacket(
            header: header, payload: .push(records: [], announced: [wide] + announced.prefix(1), holds: nil),
            signingKey: relay, cluster: cluster)
        #expect(try WireFormat.decodePayload(bytes) == .push(records: [], announced: Array(announced.prefix(1)), holds: nil))
    }

    @Test func aPushWithABadFilterFlagOrCutShortIsRejected() throws {
        let key = testKey(0)
        let header = PacketHeader(sender: key.publicKey, incarnation: 1, sequence: 1, sentAt: 1)
        let entry = DigestEntry(slotHash: 9, version: RecordVersion(incarnation: 1, sequence: 1))
        let bytes = WireFormat.encodePacket(
            header: header, payload: .push(records: [], announced: [entry], holds: HeldFilter()), signingKey: key,
            cluster: cluster)
        // The flag sits after the record count, the announcement count and one announcement.
        var flagged = bytes
        flagged[WireFormat.headerBytes + 2 + WireFormat.announcementBytes] = 2
        #expect(throws: DecodeError.malformed("push filter flag")) { try WireFormat.decodePayload(flagged) }
        for length in (WireFormat.headerBytes + Signature.byteCount)..<bytes.count {
            #expect((try? WireFormat.decodePayload(Array(bytes.prefix(length)))) == nil)
        }
    }

    @Test func everyTruncationIsRejectedWithoutCrashing() throws {
        let key = testKey(0)
        let record = SignedRecord(
            signing: .quota(QuotaKey(service: "openai"), sampleState()), version: RecordVersion(incarnation: 1, sequence: 1),
            timestamp: 1, with: key, cluster: cluster)
        let bytes = WireFormat.encodePacket(
            header: PacketHeader(sender: key.publicKey, incarnation: 1, sequence: 1, sentAt: 1), payload: .records([record]),
            signingKey: key, cluster: cluster)
        for length in 0..<bytes.count {
            let prefix = Array(bytes.prefix(length))
            let header = try? WireFormat.decodeHeader(prefix)
            let payload = try? WireFormat.decodePayload(prefix)
            // A prefix may still parse as a header, but its signature never verifies and its payload never decodes.
            if header != nil { #expect(!WireFormat.hasValidPacketSignature(prefix, sender: key.publicKey, cluster: cluster)) }
            #expect(payload == nil || length == bytes.count)
        }
    }

    @Test func oversizedAndMalformedPacketsAreRejectedWithReasons() {
        #expect(throws: DecodeError.oversized) { try WireFormat.decodeHeader([UInt8](repeating: 0, count: 1201)) }
        #expect(throws: DecodeError.truncated) { try WireFormat.decodeHeader([0x51, 0x4D, 1]) }
        var bad = [UInt8](repeating: 0, count: 200)
        #expect(throws: DecodeError.badMagic) { try WireFormat.decodeHeader(bad) }
        bad[0] = 0x51
        bad[1] = 0x4D
        bad[2] = 9
        #expect(throws: DecodeError.unknownVersion(9)) { try WireFormat.decodeHeader(bad) }
        bad[2] = 1
        bad[3] = 77
        #expect(throws: DecodeError.unknownType(77)) { try WireFormat.decodeHeader(bad) }
    }

    @Test func trailingBytesInABodyAreRejected() {
        var bytes = WireFormat.encode(body: .heartbeat)
        bytes.append(0)
        #expect(throws: DecodeError.trailingBytes) { try WireFormat.decode(body: bytes) }
    }

    @Test func invalidLabelsInRecordsAreRejected() {
        let bytes = WireFormat.encode(body: .quota(QuotaKey(service: "bad service!"), QuotaState()))
        #expect(throws: DecodeError.malformed("service")) { try WireFormat.decode(body: bytes) }
    }

    /// Random damage to valid packets of every kind (bytes changed, cut short, bytes added at the end or
    /// inside) and random buffers: each input either decodes to exactly the bytes it came from or is rejected
    /// with a drop reason, every check of the decoder is reached, and a node drops each for one reason.
    @Test func randomBytesAreDecodedExactlyOrRejectedWithADropReason() {
        var rng = SplitMix64(seed: 2026)
        let key = testKey(0)
        let header = PacketHeader(sender: key.publicKey, incarnation: 1, sequence: 1, sentAt: 1_800_000_000_000)
        let record = SignedRecord(
            signing: .quota(QuotaKey(service: "openai", account: "team-a"), sampleState()),
            version: RecordVersion(incarnation: 1, sequence: 1), timestamp: 1_800_000_000_000, with: key, cluster: cluster)
        let valid = [
            PacketPayload.records([record, record]),
            .digest(isReply: false, entries: (0..<5).map { DigestEntry(slotHash: UInt64($0), version: .zero) }),
            .rightsRequest(RightsRequest(key: QuotaKey(service: "openai"), windowEnd: 1_800_000_060_000, amount: 3, priority: .urgent)),
        ].map { WireFormat.encodePacket(header: header, payload: $0, signingKey: key, cluster: cluster) }

        var inputs: [[UInt8]] = []
        for _ in 0..<3_000 {
            var bytes = valid[Int.random(in: 0..<valid.count, using: &rng)]
            switch Int.random(in: 0..<5, using: &rng) {
            case 0:  // a few bytes changed
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            case 1:  // cut short
                bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &rng)))
            case 2:  // bytes added at the end, up to past the size limit
                bytes += (0..<Int.random(in: 1...1_100, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 3:  // bytes added inside
                let at = Int.random(in: WireFormat.headerBytes...bytes.count, using: &rng)
                bytes.insert(contentsOf: (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
            default:  // random bytes, half of them behind a valid magic, version and kind
                bytes = (0..<Int.random(in: 0...1_300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                if bytes.count >= 4 && Bool.random(using: &rng) {
                    bytes.replaceSubrange(0..<4, with: [0x51, 0x4D, WireFormat.version, UInt8.random(in: 1...3, using: &rng)])
                }
            }
            inputs.append(bytes)
        }

        var rejected: [DropReason: Int] = [:]
        var decoded = 0
        var inexact: [[UInt8]] = []
        var forgedButValid = 0
        for bytes in inputs {
            let packetHeader: PacketHeader
            let payload: PacketPayload
            do throws(DecodeError) {
                packetHeader = try WireFormat.decodeHeader(bytes)
                payload = try WireFormat.decodePayload(bytes)
            } catch {
                rejected[DropReason(error), default: 0] += 1
                continue
            }
            decoded += 1
            // What decodes is exactly what was sent: encoding it again gives the same bytes up to the
            // signature, and only an undamaged packet's signature verifies.
            let again = WireFormat.encodePacket(header: packetHeader, payload: payload, signingKey: key, cluster: cluster)
            var exact = again.count == bytes.count && again.prefix(bytes.count - 64) == bytes.prefix(bytes.count - 64)
            if case .records(let records) = payload {
                exact = exact && records.allSatisfy { WireFormat.encode(body: $0.body) == $0.bodyBytes }
            }
            if !exact { inexact.append(bytes) }
            if !valid.contains(bytes) && WireFormat.hasValidPacketSignature(bytes, sender: key.publicKey, cluster: cluster) {
                forgedButValid += 1
            }
        }
        #expect(decoded + rejected.values.reduce(0, +) == inputs.count)
        #expect(decoded > 0, "some damage leaves a packet that still decodes (a changed field, signature bytes)")
        #expect(inexact.isEmpty, "\(inexact.count) of \(decoded) decoded inputs are not the bytes they encode to")
        #expect(forgedButValid == 0)
        // Every check the decoder makes is reached by some input.
        let decoderReasons: Set<DropReason> = [.truncated, .oversized, .badMagic, .unknownVersion, .unknownType, .malformed, .trailingBytes]
        #expect(Set(rejected.keys) == decoderReasons, "rejected: \(rejected), decoded: \(decoded)")

        // A node trusting the sender drops every damaged input, each with one reason, and accepts nothing.
        var node = MeshInstance(
            identity: testKey(1), configuration: MeshConfiguration(cluster: cluster),
            peers: [PeerInfo(name: "n0", key: key.publicKey, endpoint: endpoint(0))], restored: nil, now: header.sentAt, seed: 1)
        var dropsByReason: [DropReason: Int] = [:]
        var notOneReason: [Int: [DropReason]] = [:]
        for (number, bytes) in inputs.enumerated() where !valid.contains(bytes) {
            let source = Endpoint(host: "192.0.2.\(number % 250 + 1)", port: 1 + number)
            let drops = node.receive(datagram: bytes, from: source, now: header.sentAt + Int64(number) * 10).compactMap {
                directive -> DropReason? in
                if case .event(.dropped(let reason, _, _)) = directive { return reason } else { return nil }
            }
            if drops.count == 1 { dropsByReason[drops[0], default: 0] += 1 } else { notOneReason[number] = drops }
        }
        #expect(notOneReason.isEmpty, "inputs dropped for no reason or several: \(notOneReason.prefix(5))")
        #expect(node.heldRecords.allSatisfy { $0.origin != key.publicKey })
        #expect(dropsByReason[.badSignature, default: 0] > 0, "\(dropsByReason)")
    }
}

@Suite struct HTTPDateTests {
    @Test func formatsIMFFixdateAndParsesBack() {
        #expect(HTTPDate.imfFixdate(784_111_777_000) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.imfFixdate(951_782_400_000) == "Tue, 29 Feb 2000 00:00:00 GMT")
        let now: UnixMillis = 1_700_000_000_000
        let report = RateLimitHeaderParser.parse(
            headers: [("retry-after", HTTPDate.imfFixdate(now + 30_000))], status: 429, now: now)
        #expect(report.retryAt == now + 30_000)
    }
}

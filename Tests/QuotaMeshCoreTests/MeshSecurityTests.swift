import Testing
@testable import QuotaMeshCore
import QuotaMeshCrypto

/// Unknown senders, forged signatures, altered relayed records and replays: each is dropped, counted,
/// and changes nothing.
@Suite struct MeshSecurityTests {
    let services = ["openai": ServicePolicy(limit: 100, windowMillis: 60_000)]

    /// A packet from node 0 carrying node 0's openai record after one grant.
    func signedPushFromNode0(_ mesh: inout TestMesh) -> [UInt8] {
        _ = mesh.acquire(0, AcquireRequest(service: "openai", priority: .urgent))
        mesh.cut = [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
        mesh.run(for: 200)
        guard let packet = mesh.wire.last(where: { $0.from == 0 && $0.to == 1 && isRecords($0.bytes) }) else {
            Issue.record("node 0 sent no records to node 1")
            return []
        }
        return packet.bytes
    }

    func isRecords(_ bytes: [UInt8]) -> Bool { !quotaRecords(in: bytes).isEmpty }

    /// The quota records a packet of records, or a push, carries.
    func quotaRecords(in bytes: [UInt8]) -> [SignedRecord] {
        let records: [SignedRecord]
        switch try? WireFormat.decodePayload(bytes) {
        case .records(let carried)?: records = carried
        case .push(let carried, _, _)?: records = carried
        default: records = []
        }
        return records.filter { if case .quota = $0.body { true } else { false } }
    }

    @Test func packetFromUnknownSenderIsDroppedAndCounted() {
        var mesh = TestMesh(count: 2, services: services)
        let stranger = SigningKey()
        let record = SignedRecord(
            signing: .quota(QuotaKey(service: "openai"), QuotaState(consumption: ConsumptionEntry(total: 99, windowEnd: mesh.now + 60_000, windowCount: 99))),
            version: RecordVersion(incarnation: 1, sequence: 1), timestamp: mesh.now, with: stranger, cluster: "quotamesh")
        let bytes = WireFormat.encodePacket(
            header: PacketHeader(sender: stranger.publicKey, incarnation: 1, sequence: 1, sentAt: mesh.now),
            payload: .records([record]), signingKey: stranger, cluster: "quotamesh")
        let directives = mesh.nodes[1].receive(datagram: bytes, from: Endpoint(host: "10.9.9.9", port: 1), now: mesh.now)
        mesh.apply(directives, from: 1)
        #expect(mesh.drops(1, .unknownSender) == 1)
        #expect(mesh.view(1, "openai")?.consumedGlobal == 0)
        #expect(!directives.contains { if case .send = $0 { return true } else { return false } })
    }

    @Test func forgedPacketSignatureIsDropped() {
        var mesh = TestMesh(count: 3, services: services)
        var bytes = signedPushFromNode0(&mesh)
        guard !bytes.isEmpty else { return }
        bytes[bytes.count - 1] ^= 0x01
        let before = mesh.view(1, "openai")?.consumedGlobal
        mesh.apply(mesh.nodes[1].receive(datagram: bytes, from: endpoint(0), now: mesh.now), from: 1)
        #expect(mesh.drops(1, .badSignature) == 1)
        #expect(mesh.view(1, "openai")?.consumedGlobal == before)
    }

    @Test func relayedRecordWithOneBitChangedIsRejected() throws {
        var mesh = TestMesh(count: 3, services: services)
        let original = signedPushFromNode0(&mesh)
        guard let record = quotaRecords(in: original).first else {
            Issue.record("no quota record")
            return
        }
        // Node 2 (vouched) relays node 0's record with the consumption changed, under its own valid packet signature.
        var body = record.bodyBytes
        body[consumptionCountByte(of: record)] ^= 0x01
        let altered = SignedRecord(
            origin: record.origin, version: RecordVersion(incarnation: record.version.incarnation, sequence: record.version.sequence + 1),
            timestamp: record.timestamp, body: try WireFormat.decode(body: body), bodyBytes: body, signature: record.signature)
        let relay = testKey(2)
        let packet = WireFormat.encodePacket(
            header: PacketHeader(sender: relay.publicKey, incarnation: 99_999_999_999, sequence: 1, sentAt: mesh.now),
            payload: .records([altered]), signingKey: relay, cluster: "quotamesh")
        let before = mesh.nodes[1].heldRecords.count
        mesh.apply(mesh.nodes[1].receive(datagram: packet, from: endpoint(2), now: mesh.now), from: 1)
        #expect(mesh.drops(1, .badSignature) == 1)
        #expect(mesh.nodes[1].heldRecords.count == before)
        #expect(!mesh.nodes[1].heldRecords.contains(altered))
    }

    @Test func replayedPacketChangesNothing() {
        var mesh = TestMesh(count: 3, services: services)
        mesh.cut = []
        let packet = signedPushFromNode0(&mesh)
        guard !packet.isEmpty else { return }
        // Deliver once (it was cut), then again.
        mesh.apply(mesh.nodes[1].receive(datagram: packet, from: endpoint(0), now: mesh.now), from: 1)
        let held = Set(mesh.nodes[1].heldRecords)
        let view = mesh.view(1, "openai")
        #expect(view?.consumedGlobal == 1)
        mesh.apply(mesh.nodes[1].receive(datagram: packet, from: endpoint(0), now: mesh.now + 10), from: 1)
        #expect(mesh.drops(1, .replayed) == 1)
        #expect(Set(mesh.nodes[1].heldRecords) == held)
        // Hours later, after the sender moved on, it is still refused.
        mesh.cut = []
        mesh.run(for: 2_000)
        mesh.apply(mesh.nodes[1].receive(datagram: packet, from: endpoint(0), now: mesh.now + 3_600_000), from: 1)
        #expect(mesh.drops(1, .replayed) == 2)
    }

    @Test func olderRecordNeverReplacesNewer() {
        var mesh = TestMesh(count: 2, services: services)
        _ = mesh.acquire(0, AcquireRequest(service: "openai", priority: .urgent))
        mesh.run(for: 400)
        let old = mesh.nodes[1].heldRecords.filter { $0.origin == testKey(0).publicKey }
        _ = mesh.acquire(0, AcquireRequest(service: "openai", priority: .urgent))
        mesh.run(for: 400)
        #expect(mesh.view(1, "openai")?.consumedGlobal == 2)
        // Re-sent old records (as a fresh packet from a vouched relay) are stale.
        let relay = testKey(0)
        let packet = WireFormat.encodePacket(
            header: PacketHeader(sender: relay.publicKey, incarnation: 99_999_999_999, sequence: 1, sentAt: mesh.now),
            payload: .records(old), signingKey: relay, cluster: "quotamesh")
        mesh.apply(mesh.nodes[1].receive(datagram: packet, from: endpoint(0), now: mesh.now), from: 1)
        #expect(mesh.view(1, "openai")?.consumedGlobal == 2)
    }

    @Test func recordFromTheFarFutureIsRefused() {
        var mesh = TestMesh(count: 2, services: services)
        let origin = testKey(0)
        let record = SignedRecord(
            signing: .heartbeat, version: RecordVersion(incarnation: 5_000_000_000, sequence: 1),
            timestamp: mesh.now + 3_600_000, with: origin, cluster: "quotamesh")
        let packet = WireFormat.encodePacket(
            header: PacketHeader(sender: origin.publicKey, incarnation: 5_000_000_000, sequence: 1, sentAt: mesh.now),
            payload: .records([record]), signingKey: origin, cluster: "quotamesh")
        mesh.apply(mesh.nodes[1].receive(datagram: packet, from: endpoint(0), now: mesh.now), from: 1)
        #expect(mesh.drops(1, .fromFuture) == 1)
        #expect(!mesh.nodes[1].heldRecords.contains(record))
    }

    @Test func peerIsKnownByKeyNotAddress() {
        var mesh = TestMesh(count: 2, services: services)
        _ = mesh.acquire(0, AcquireRequest(service: "openai", priority: .urgent))
        mesh.run(for: 400)
        let packet = mesh.wire.last { $0.from == 0 && $0.to == 1 }
        // The same authenticated packet from a new address (NAT rebinding) is accepted once and the address learned.
        #expect(packet != nil)
        let moved = Endpoint(host: "192.0.2.7", port: 4444)
        var node = mesh.nodes[1]
        var received = 0
        for step in 1...20 where received == 0 {
            let at = mesh.now + 200 * Int64(step)
            for case .send(let bytes, let target) in mesh.nodes[0].tick(now: at) where target == endpoint(1) {
                _ = node.receive(datagram: bytes, from: moved, now: at)
                received += 1
            }
        }
        #expect(received > 0)
        #expect(node.peerViews(now: mesh.now + 4_000).first { $0.key == testKey(0).publicKey }?.endpoint == moved)
    }

    /// From a spoofed address, an exact replay, an older packet never delivered before, and a packet
    /// naming the peer that its key did not sign: none moves the peer, so the node goes on sending to the
    /// old address. Only the newest authenticated packet moves it (the last step shows the check can see it).
    @Test func aReplayedAnOlderOrAForgedPacketFromANewAddressDoesNotRedirectThePeer() throws {
        var mesh = TestMesh(count: 2, services: services)
        mesh.run(for: 400)
        // Three packets node 0 sends node 1, in order, held back for now.
        var sent: [[UInt8]] = []
        let deadline = mesh.now + 5_000
        while sent.count < 3 && mesh.now < deadline {
            mesh.now += 200
            for case .send(let bytes, let target) in mesh.nodes[0].tick(now: mesh.now) where target == endpoint(1) {
                sent.append(bytes)
            }
        }
        try #require(sent.count >= 3, "node 0 sent node 1 \(sent.count) packets in 5 s")
        let (older, delivered, newest) = (sent[0], sent[1], sent[2])
        let attacker = Endpoint(host: "203.0.113.66", port: 6666)
        var node = mesh.nodes[1]
        var drops: [DropReason] = []
        func deliver(_ bytes: [UInt8], from source: Endpoint) {
            for case .event(.dropped(let reason, _, _)) in node.receive(datagram: bytes, from: source, now: mesh.now) {
                drops.append(reason)
            }
        }
        func peerAddress() -> Endpoint? {
            node.peerViews(now: mesh.now).first { $0.key == testKey(0).publicKey }?.endpoint
        }
        /// Where node 1 sends over the next rounds (node 0 is its only peer).
        func targets() -> Set<Endpoint> {
            var copy = node
            var targets: Set<Endpoint> = []
            for round in 1...10 {
                for case .send(_, let target) in copy.tick(now: mesh.now + 200 * Int64(round)) { targets.insert(target) }
            }
            return targets
        }

        // The middle packet arrives from node 0's own address.
        deliver(delivered, from: endpoint(0))
        #expect(drops.isEmpty)
        #expect(peerAddress() == endpoint(0))

        // 1. The same packet again, from the attacker's address: a replay.
        deliver(delivered, from: attacker)
        #expect(drops == [.replayed])
        #expect(peerAddress() == endpoint(0), "a replay does not move the peer")

        // 2. The older packet, never delivered (so inside the replay window) and timely, from the attacker's
        // address: its records are welcome, but it is not the newest.
        drops = []
        deliver(older, from: attacker)
        #expect(drops.isEmpty, "an older, unseen, validly signed packet is accepted: \(drops)")
        #expect(peerAddress() == endpoint(0), "an older packet does not move the peer")

        // 3. A packet naming node 0, newer than any it sent, signed by another key, from the attacker's address.
        let header = try WireFormat.decodeHeader(newest)
        let forged = WireFormat.encodePacket(
            header: PacketHeader(sender: header.sender, incarnation: header.incarnation, sequence: header.sequence + 1_000, sentAt: mesh.now),
            payload: .records([]), signingKey: SigningKey(), cluster: "quotamesh")
        drops = []
        deliver(forged, from: attacker)
        #expect(drops == [.badSignature])
        #expect(peerAddress() == endpoint(0), "a forged packet does not move the peer")

        let after = targets()
        #expect(after == [endpoint(0)], "node 1 still sends to node 0's own address: \(after)")

        // The newest genuine packet from the new address does move it (NAT rebinding).
        drops = []
        deliver(newest, from: attacker)
        #expect(drops.isEmpty)
        #expect(peerAddress() == attacker)
        #expect(targets() == [attacker])
    }

    @Test func aPacketHeldBackAndDeliveredLateNeitherMovesItsSenderNorKeepsItLive() {
        var mesh = TestMesh(count: 2, services: services)
        mesh.run(for: 400)
        // Node 0 sends a packet, then falls silent; the packet is held back 30 s and delivered from elsewhere.
        let sentAt = mesh.now + 200
        let held = mesh.nodes[0].tick(now: sentAt).compactMap { directive -> [UInt8]? in
            if case .send(let bytes, let target) = directive, target == endpoint(1) { return bytes }
            return nil
        }
        #expect(!held.isEmpty)
        let later = sentAt + 30_000
        let elsewhere = Endpoint(host: "192.0.2.9", port: 5555)
        var node = mesh.nodes[1]
        for bytes in held { _ = node.receive(datagram: bytes, from: elsewhere, now: later) }
        let view = node.peerViews(now: later).first { $0.key == testKey(0).publicKey }
        #expect(view?.endpoint == endpoint(0), "a late packet does not move the peer: \(String(describing: view?.endpoint))")
        #expect(view?.live == false, "a late packet does not keep a silent peer live")
        // The same packet on time does both.
        var onTime = mesh.nodes[1]
        for bytes in held { _ = onTime.receive(datagram: bytes, from: elsewhere, now: sentAt + 5) }
        #expect(onTime.peerViews(now: sentAt + 5).first { $0.key == testKey(0).publicKey }?.endpoint == elsewhere)
    }
}

/// A vouched peer that signs absurd values is answered with a drop, never a crash or a switched-off limit.
@Suite struct AbsurdPeerTests {
    func deliver(_ state: QuotaState?, timestamp: UnixMillis? = nil, to mesh: inout TestMesh) {
        let origin = testKey(0)
        let body: RecordBody = state.map { .quota(QuotaKey(service: "openai"), $0) } ?? .heartbeat
        let record = SignedRecord(
            signing: body, version: RecordVersion(incarnation: 9_000_000_000, sequence: UInt64(mesh.nextTicket)),
            timestamp: timestamp ?? mesh.now, with: origin, cluster: "quotamesh")
        mesh.nextTicket += 1
        let packet = WireFormat.encodePacket(
            header: PacketHeader(sender: origin.publicKey, incarnation: 9_000_000_000, sequence: mesh.nextTicket, sentAt: mesh.now),
            payload: .records([record]), signingKey: origin, cluster: "quotamesh")
        mesh.apply(mesh.nodes[1].receive(datagram: packet, from: endpoint(0), now: mesh.now), from: 1)
    }

    @Test func absurdTimesAndCountsAreDroppedAndEnforcementHolds() {
        var mesh = TestMesh(count: 2, services: ["openai": ServicePolicy(limit: 100, windowMillis: 60_000)])
        let now = mesh.now
        let cases: [QuotaState] = [
            QuotaState(observation: UpstreamObservation(resetAt: .min, remaining: 5, limit: 100, windowMillis: 1000, observedAt: now, consumedTotalAtObservation: 0)),
            QuotaState(observation: UpstreamObservation(resetAt: now + 1, remaining: .min, limit: 100, windowMillis: .max, observedAt: now, consumedTotalAtObservation: 0)),
            QuotaState(breaker: BreakerRegister(openedAt: .max, openUntil: 0, closedAt: 0)),
            QuotaState(consumption: ConsumptionEntry(total: .max, windowEnd: now + 60_000, windowCount: .max)),
            QuotaState(policy: AdvertisedPolicy(limit: 5, windowMillis: .max)),
        ]
        for state in cases { deliver(state, to: &mesh) }
        deliver(nil, timestamp: .min, to: &mesh)
        #expect(mesh.drops(1, .absurd) == cases.count + 1)
        // Nothing was merged: node 1 still enforces the configured limit, and its views compute.
        #expect(mesh.view(1, "openai")?.remaining == 100)
        #expect(mesh.acquire(1, AcquireRequest(service: "openai", priority: .urgent))?.granted == true)
        mesh.run(for: 1_000)
        #expect(mesh.view(1, "openai")?.breakerState == .closed)
    }

    @Test func hugeCostsAndWaitsAreClampedNotCrashing() {
        var mesh = TestMesh(count: 1, services: ["svc": ServicePolicy(limit: 10, windowMillis: 60_000)])
        let decision = mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent, cost: .max, waitMillis: .max))
        #expect(decision?.granted == false)
        #expect(decision?.reason == .quotaExhausted)
        let zero = mesh.acquire(0, AcquireRequest(service: "svc", priority: .urgent, cost: 0))
        #expect(zero?.granted == true)
        #expect(mesh.view(0, "svc")?.consumedLocal == 1)
    }
}

/// Ed25519, counting the verifications asked of it.
final class CountingSignatures: SignatureScheme, @unchecked Sendable {
    // Used from one test's task only.
    private(set) var verifications = 0
    let inner = Ed25519Signatures()

    func sign(_ message: [UInt8], with key: SigningKey) -> Signature { inner.sign(message, with: key) }

    func isValid(_ signature: Signature, for message: [UInt8], by key: VerifyingKey) -> Bool {
        verifications += 1
        return inner.isValid(signature, for: message, by: key)
    }
}

@Suite struct FloodTests {
    @Test func aFloodFromAnUnknownKeyCostsNoSignatureWorkAndTheAgentIsStillServed() {
        let scheme = CountingSignatures()
        let now: UnixMillis = 1_800_000_000_000
        let friend = SigningKey()
        var node = MeshInstance(
            identity: SigningKey(),
            configuration: MeshConfiguration(
                services: ["openai": ServicePolicy(limit: 100, windowMillis: 60_000)], signatures: scheme),
            peers: [PeerInfo(name: "friend", key: friend.publicKey, endpoint: Endpoint(host: "127.0.0.1", port: 1))],
            restored: nil, now: now, seed: 1)
        _ = node.start(now: now)
        let stranger = SigningKey()
        let record = SignedRecord(
            signing: .quota(QuotaKey(service: "openai"), QuotaState(consumption: ConsumptionEntry(total: 99, windowEnd: now + 60_000, windowCount: 99))),
            version: RecordVersion(incarnation: 1, sequence: 1), timestamp: now, with: stranger, cluster: "quotamesh")
        var dropped = 0
        let flood = 5_000
        for sequence in 1...flood {
            // Validly signed by the stranger: only trust keeps it out.
            let bytes = WireFormat.encodePacket(
                header: PacketHeader(sender: stranger.publicKey, incarnation: 1, sequence: UInt64(sequence), sentAt: now),
                payload: .records([record]), signingKey: stranger, cluster: "quotamesh")
            for case .event(.dropped(.unknownSender, _, _)) in node.receive(datagram: bytes, from: Endpoint(host: "10.0.0.9", port: 9), now: now) {
                dropped += 1
            }
        }
        #expect(dropped == flood, "every packet is dropped and counted")
        #expect(scheme.verifications == 0, "an unknown sender is refused from its header, before any signature work")
        let directives = node.acquire(AcquireRequest(service: "openai", priority: .urgent), ticket: 1, now: now + 1)
        let granted = directives.contains { if case .reply(_, let decision) = $0 { return decision.granted } else { return false } }
        #expect(granted, "the agent is still served, and nothing the stranger claimed was counted")
        #expect(node.quotas(now: now + 1).first?.consumedGlobal == 1)
    }
}

@Suite struct VerificationBudgetTests {
    /// A started node trusting `peers`, counting its signature checks with `scheme`.
    static func node(peers: [PeerInfo], scheme: CountingSignatures, now: UnixMillis) -> MeshInstance {
        var node = MeshInstance(
            identity: SigningKey(),
            configuration: MeshConfiguration(
                services: ["openai": ServicePolicy(limit: 100, windowMillis: 60_000)], signatures: scheme),
            peers: peers, restored: nil, now: now, seed: 1)
        _ = node.start(now: now)
        return node
    }

    @Test func aForgedFloodNamingAVouchedKeyCostsFewSignatureChecksAndThePeerIsStillHeard() {
        let scheme = CountingSignatures()
        let now: UnixMillis = 1_800_000_000_000
        let friend = SigningKey()
        let friendAddress = Endpoint(host: "127.0.0.1", port: 1)
        var node = Self.node(
            peers: [PeerInfo(name: "friend", key: friend.publicKey, endpoint: friendAddress)], scheme: scheme, now: now)
        // The friend's own packet first: its source is proven.
        let record = SignedRecord(
            signing: .heartbeat, version: RecordVersion(incarnation: 1, sequence: 1), timestamp: now, with: friend,
            cluster: "quotamesh")
        let real = WireFormat.encodePacket(
            header: PacketHeader(sender: friend.publicKey, incarnation: 1, sequence: 1, sentAt: now),
            payload: .records([record]), signingKey: friend, cluster: "quotamesh")
        _ = node.receive(datagram: real, from: friendAddress, now: now)
        let before = scheme.verifications
        // 10,000 packets in one second naming the friend's key, signed by someone else, from one source.
        let forger = SigningKey()
        var overBudget = 0
        for sequence in 2...10_001 {
            let forged = WireFormat.encodePacket(
                header: PacketHeader(sender: friend.publicKey, incarnation: 1, sequence: UInt64(sequence), sentAt: now),
                payload: .records([]), signingKey: forger, cluster: "quotamesh")
            let at = now + Int64(sequence / 10)
            for case .event(.dropped(.overBudget, _, _)) in node.receive(datagram: forged, from: Endpoint(host: "10.0.0.9", port: 9), now: at) {
                overBudget += 1
            }
        }
        let spent = scheme.verifications - before
        #expect(spent <= 40, "a burst of 20 and 10 a second: \(spent) checks for 10,000 forged packets")
        #expect(overBudget >= 9_900)
        // The friend, from its own proven address, is still checked and heard.
        let again = WireFormat.encodePacket(
            header: PacketHeader(sender: friend.publicKey, incarnation: 1, sequence: 20_000, sentAt: now + 1_000),
            payload: .records([]), signingKey: friend, cluster: "quotamesh")
        let directives = node.receive(datagram: again, from: friendAddress, now: now + 1_000)
        #expect(!directives.contains { if case .event(.dropped) = $0 { return true } else { return false } })
    }

    @Test func aVouchedPeerFloodingValidPacketsCostsAtMostItsRateInSignatureChecks() {
        let scheme = CountingSignatures()
        let now: UnixMillis = 1_800_000_000_000
        let flooder = SigningKey()
        let friend = SigningKey()
        let address = Endpoint(host: "127.0.0.1", port: 1)
        var node = Self.node(
            peers: [
                PeerInfo(name: "flooder", key: flooder.publicKey, endpoint: address),
                PeerInfo(name: "friend", key: friend.publicKey, endpoint: Endpoint(host: "127.0.0.1", port: 2)),
            ],
            scheme: scheme, now: now)
        func packet(from key: SigningKey, sequence: UInt64, at time: UnixMillis) -> [UInt8] {
            WireFormat.encodePacket(
                header: PacketHeader(sender: key.publicKey, incarnation: 1, sequence: sequence, sentAt: time),
                payload: .records([]), signingKey: key, cluster: "quotamesh")
        }
        // 10,000 valid packets in one second from one vouched peer.
        let before = scheme.verifications
        var limited = 0
        for sequence in 1...10_000 {
            let at = now + Int64(sequence / 10)
            for case .event(.dropped(.rateLimited, _, _)) in node.receive(
                datagram: packet(from: flooder, sequence: UInt64(sequence), at: at), from: address, now: at)
            {
                limited += 1
            }
        }
        let spent = scheme.verifications - before
        #expect(spent <= 500 + 200 + 1, "a burst of 500 and 200 a second: \(spent) checks for 10,000 packets")
        #expect(limited >= 9_290)
        // The others are not held back, and the flooder is checked again once its rate allows.
        let fromFriend = node.receive(datagram: packet(from: friend, sequence: 1, at: now + 1_000), from: Endpoint(host: "127.0.0.1", port: 2), now: now + 1_000)
        #expect(!fromFriend.contains { if case .event(.dropped) = $0 { return true } else { return false } })
        let later = node.receive(datagram: packet(from: flooder, sequence: 20_000, at: now + 2_000), from: address, now: now + 2_000)
        #expect(!later.contains { if case .event(.dropped) = $0 { return true } else { return false } })
    }
}

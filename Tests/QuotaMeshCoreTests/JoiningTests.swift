import QuotaMeshCore
import QuotaMeshCrypto
import Testing

/// Invitations, joins and introductions (issue 21): a token is signed and expires; a join is accepted
/// only with the proof of an unexpired invitation of the inviter's own, from any sender, at bounded cost;
/// introductions are taken only from the introducers `vouching` names.
@Suite struct JoiningTests {
    let now: UnixMillis = 1_800_000_000_000
    let inviter = testKey(0)
    let joiner = testKey(5)

    func instance(_ key: SigningKey, peers: [PeerInfo] = [], vouching: VouchingPolicy = .direct) -> MeshInstance {
        var configuration = MeshConfiguration()
        configuration.vouching = vouching
        return MeshInstance(identity: key, configuration: configuration, peers: peers, restored: nil, now: now, seed: 1)
    }

    func joinPacket(_ invitation: Invitation, as key: SigningKey, endpoint: Endpoint, proofSecret: [UInt8]? = nil,
                    sentAt: UnixMillis? = nil) -> [UInt8] {
        let proof = InvitationSecrets.proof(
            secret: proofSecret ?? invitation.secret, joiner: key.publicKey, endpoint: endpoint.description)
        return WireFormat.encodePacket(
            header: PacketHeader(sender: key.publicKey, incarnation: 1, sequence: 1, sentAt: sentAt ?? now),
            payload: .join(JoinRequest(endpoint: endpoint, nonce: invitation.nonce, expires: invitation.expires, proof: proof)),
            signingKey: key, cluster: invitation.cluster)
    }

    @Test func aTokenRoundTripsAndAnyChangeToItIsRefused() throws {
        let invitation = Invitation(from: inviter, endpoint: Endpoint(host: "10.1.2.3", port: 9720), cluster: "team", expires: now / 1000 + 600)
        let token = invitation.token(signedBy: inviter)
        #expect(token.hasPrefix(Invitation.tokenPrefix))
        #expect(!token.contains("+") && !token.contains("/") && !token.contains("="), "URL-safe, no padding")
        #expect(try Invitation(token: token, now: now) == invitation)
        // Every character changed in turn: refused as damaged or as a bad signature, never accepted.
        var accepted = 0
        let body = Array(token.dropFirst(Invitation.tokenPrefix.count))
        for index in body.indices {
            var altered = body
            altered[index] = altered[index] == "A" ? "B" : "A"
            if (try? Invitation(token: Invitation.tokenPrefix + String(altered), now: now)) != nil { accepted += 1 }
        }
        #expect(accepted == 0)
        // Signed by another key than the one it names.
        var impostor = invitation
        impostor.inviter = joiner.publicKey
        #expect(throws: Invitation.TokenError.badSignature) { try Invitation(token: impostor.token(signedBy: inviter), now: now) }
        #expect(throws: Invitation.TokenError.expired(at: invitation.expires)) {
            try Invitation(token: token, now: (invitation.expires + 1) * 1000)
        }
        #expect(throws: Invitation.TokenError.notAToken) { try Invitation(token: "hello", now: now) }
    }

    @Test func aValidJoinMakesTheSenderAPeerAndIsWelcomed() throws {
        var node = instance(inviter)
        let invitation = Invitation(from: inviter, endpoint: endpoint(0), cluster: "quotamesh", expires: now / 1000 + 600)
        let address = Endpoint(host: "10.0.0.6", port: 9720)
        let out = node.receive(datagram: joinPacket(invitation, as: joiner, endpoint: address), from: Endpoint(host: "10.0.0.6", port: 40000), now: now)
        let trusted = out.compactMap { if case .trust(let peer, let by) = $0, by == nil { peer } else { nil } }
        #expect(trusted == [PeerInfo(name: PeerInfo.derivedName("joined", for: joiner.publicKey), key: joiner.publicKey, endpoint: address)])
        // The welcome goes back where the request came from (the join command's own port), signed by the inviter.
        let welcomes = out.compactMap { directive -> [UInt8]? in
            if case .send(let bytes, let target) = directive, target == Endpoint(host: "10.0.0.6", port: 40000) { bytes } else { nil }
        }
        let welcome = try #require(welcomes.first)
        #expect(try WireFormat.decodeHeader(welcome).sender == inviter.publicKey)
        #expect(WireFormat.hasValidPacketSignature(welcome, sender: inviter.publicKey, cluster: "quotamesh"))
        #expect(try WireFormat.decodePayload(welcome) == .welcome(joiner: joiner.publicKey))
        // The same request again is welcomed again, and asks for no second trust store entry.
        let again = node.receive(datagram: joinPacket(invitation, as: joiner, endpoint: address), from: Endpoint(host: "10.0.0.6", port: 40000), now: now + 10)
        #expect(!again.contains { if case .trust = $0 { true } else { false } })
        #expect(again.contains { if case .send = $0 { true } else { false } })
    }

    @Test func aJoinWithoutTheProofOfAnUnexpiredInvitationOfThisNodesIsRefused() throws {
        var node = instance(inviter)
        let source = Endpoint(host: "10.0.0.6", port: 40000)
        let address = Endpoint(host: "10.0.0.6", port: 9720)
        func outcome(_ packet: [UInt8], at time: UnixMillis) -> (trusted: Bool, refusal: JoinRefusal?, dropped: DropReason?) {
            let out = node.receive(datagram: packet, from: source, now: time)
            var refusal: JoinRefusal?
            var dropped: DropReason?
            var trusted = false
            for directive in out {
                switch directive {
                case .trust: trusted = true
                case .event(.joinRefused(_, let reason, _)): refusal = reason
                case .event(.dropped(let reason, _, _)): dropped = reason
                default: break
                }
            }
            return (trusted, refusal, dropped)
        }
        // Another node's invitation, claimed to be this one's: its secret is not this node's to derive.
        let foreign = Invitation(from: testKey(3), endpoint: endpoint(0), cluster: "quotamesh", expires: now / 1000 + 600)
        #expect(outcome(joinPacket(foreign, as: joiner, endpoint: address), at: now) == (false, .badProof, nil))
        // A real invitation, but the proof names another address than the request (a relay rewriting it).
        let invitation = Invitation(from: inviter, endpoint: endpoint(0), cluster: "quotamesh", expires: now / 1000 + 600)
        var rewritten = joinPacket(invitation, as: joiner, endpoint: address)
        let proofForOther = InvitationSecrets.proof(secret: invitation.secret, joiner: joiner.publicKey, endpoint: "10.9.9.9:9720")
        rewritten = WireFormat.encodePacket(
            header: PacketHeader(sender: joiner.publicKey, incarnation: 1, sequence: 2, sentAt: now),
            payload: .join(JoinRequest(endpoint: address, nonce: invitation.nonce, expires: invitation.expires, proof: proofForOther)),
            signingKey: joiner, cluster: "quotamesh")
        #expect(outcome(rewritten, at: now) == (false, .badProof, nil))
        // Expired.
        let expired = Invitation(from: inviter, endpoint: endpoint(0), cluster: "quotamesh", expires: now / 1000 - 1)
        #expect(outcome(joinPacket(expired, as: joiner, endpoint: address), at: now) == (false, .expired, nil))
        // Captured and sent again later than a packet may be old.
        #expect(outcome(joinPacket(invitation, as: joiner, endpoint: address, sentAt: now - 60_000), at: now) == (false, nil, .replayed))
        // Signed by a key other than the sender it names.
        var forged = joinPacket(invitation, as: joiner, endpoint: address)
        forged[forged.count - 1] ^= 1
        #expect(outcome(forged, at: now) == (false, nil, .badSignature))
        // Another mesh's name: the packet's signature does not verify here.
        let otherMesh = Invitation(from: inviter, endpoint: endpoint(0), cluster: "other", expires: now / 1000 + 600)
        #expect(outcome(joinPacket(otherMesh, as: joiner, endpoint: address), at: now) == (false, nil, .badSignature))
        // And then the good one still passes.
        #expect(outcome(joinPacket(invitation, as: joiner, endpoint: address), at: now).trusted)
    }

    @Test func aFloodOfBadJoinsIsRefusedBeforeSignatureWorkOnceTheSourceIsOverBudget() throws {
        var node = instance(inviter)
        let invitation = Invitation(from: inviter, endpoint: endpoint(0), cluster: "quotamesh", expires: now / 1000 + 600)
        var overBudget = 0
        for sequence in 1...2_000 {
            let stranger = SigningKey()
            var packet = joinPacket(invitation, as: stranger, endpoint: Endpoint(host: "10.0.0.7", port: 9720),
                                    proofSecret: [UInt8](repeating: UInt8(sequence % 256), count: 32))
            packet[packet.count - 1] ^= UInt8(sequence % 2)
            for case .event(.dropped(.overBudget, _, _)) in node.receive(datagram: packet, from: Endpoint(host: "10.0.0.7", port: 5), now: now) {
                overBudget += 1
            }
        }
        #expect(overBudget > 1_500, "past its budget a source's joins are not checked: \(overBudget) of 2000")
        // Another source is not held back by it.
        let out = node.receive(datagram: joinPacket(invitation, as: joiner, endpoint: endpoint(6)), from: Endpoint(host: "10.0.0.8", port: 5), now: now)
        #expect(out.contains { if case .trust = $0 { true } else { false } })
    }

    @Test func introductionsAreTakenOnlyFromTheIntroducersVouchingNames() throws {
        // 0 introduces 2 to 1. Node 1 trusts 0's introductions; node 3 (direct) does not.
        let infos = (0..<4).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) }
        var introducer = instance(testKey(0), peers: [infos[1], infos[2], infos[3]])
        var vouching = instance(testKey(1), peers: [infos[0]], vouching: .introducedBy(["n0"]))
        var direct = instance(testKey(3), peers: [infos[0]])
        _ = introducer.start(now: now)
        // The vouching node asks its introducer at start; a direct node asks nothing, ever.
        let asked = vouching.start(now: now).compactMap { if case .send(let bytes, let to) = $0, to == endpoint(0) { bytes } else { nil } }
        var requestsByDirect = 0
        for step in 0..<50 {
            for case .send(let bytes, _) in direct.tick(now: now + Int64(step) * 200)
            where (try? WireFormat.decodePayload(bytes)) == .introductionsRequest {
                requestsByDirect += 1
            }
        }
        #expect(requestsByDirect == 0, "a node whose vouching is direct never asks for introductions")
        let request = asked.first { (try? WireFormat.decodePayload($0)) == .introductionsRequest }
        #expect(request != nil, "node 1 asks node 0 for its peers")
        let answer = introducer.receive(datagram: request ?? [], from: endpoint(1), now: now + 1)
        let introductions = answer.compactMap { if case .send(let bytes, let to) = $0, to == endpoint(1) { bytes } else { nil } }
        let packet = try #require(introductions.first)
        guard case .introductions(let introduced) = try WireFormat.decodePayload(packet) else {
            Issue.record("the answer is introductions")
            return
        }
        #expect(Set(introduced.map(\.key)) == [testKey(2).publicKey, testKey(3).publicKey], "every peer but the asker")
        let taken = vouching.receive(datagram: packet, from: endpoint(0), now: now + 2)
        let trusted = taken.compactMap { if case .trust(let peer, let by) = $0 { by == testKey(0).publicKey ? peer.key : nil } else { nil } }
        #expect(Set(trusted) == [testKey(2).publicKey, testKey(3).publicKey])
        // The same introductions again ask for nothing more until the trust store is loaded again.
        let repeated = vouching.receive(datagram: introducer.receive(datagram: request ?? [], from: endpoint(1), now: now + 3)
            .compactMap { if case .send(let bytes, _) = $0 { bytes } else { nil } }.first ?? [], from: endpoint(0), now: now + 4)
        #expect(!repeated.contains { if case .trust = $0 { true } else { false } })

        // The direct node hears the same introductions (sent to it by hand here) and trusts nobody new.
        let toDirect = WireFormat.encodePacket(
            header: PacketHeader(sender: testKey(0).publicKey, incarnation: 9, sequence: 1, sentAt: now + 5),
            payload: .introductions(introduced), signingKey: testKey(0), cluster: "quotamesh")
        let ignored = direct.receive(datagram: toDirect, from: endpoint(0), now: now + 5)
        #expect(!ignored.contains { if case .trust = $0 { true } else { false } })
        #expect(ignored.contains { if case .event(.introductionIgnored(let key, _, _)) = $0 { key == testKey(2).publicKey } else { false } })
        // Introductions from a stranger are not read at all.
        let stranger = SigningKey()
        let fromStranger = WireFormat.encodePacket(
            header: PacketHeader(sender: stranger.publicKey, incarnation: 1, sequence: 1, sentAt: now + 6),
            payload: .introductions(introduced), signingKey: stranger, cluster: "quotamesh")
        let refused = vouching.receive(datagram: fromStranger, from: endpoint(7), now: now + 6)
        #expect(refused.contains { if case .event(.dropped(.unknownSender, _, _)) = $0 { true } else { false } })
    }

    @Test func vouchingParsesAsTheConfigurationWritesIt() {
        #expect(VouchingPolicy(parsing: "direct") == .direct)
        #expect(VouchingPolicy(parsing: "introduced-by: a, QUJD") == .introducedBy(["a", "QUJD"]))
        #expect(VouchingPolicy(parsing: "introduced-by:") == nil)
        #expect(VouchingPolicy(parsing: "anyone") == nil)
        let peer = PeerInfo(name: "hub", key: testKey(0).publicKey, endpoint: nil)
        #expect(VouchingPolicy.introducedBy([testKey(0).publicKey.base64]).trusts(peer))
        #expect(VouchingPolicy.introducedBy(["hub"]).trusts(peer))
        #expect(!VouchingPolicy.introducedBy(["other"]).trusts(peer))
        #expect(!VouchingPolicy.direct.trusts(peer))
    }
}

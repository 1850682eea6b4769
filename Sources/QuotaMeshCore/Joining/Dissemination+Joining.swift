import QuotaMeshCrypto

extension Dissemination {
    // MARK: - Joins

    /// Answers a join request (``PacketPayload/join(_:)``), the one packet read from a sender this node
    /// does not trust. Its cost is bounded like any forged packet's: a fresh stamp, the source's
    /// verification budget before the signature (a failed signature or proof spends it; a valid one does
    /// not prove the source), then a keyed hash. A request whose proof matches an unexpired invitation of
    /// this node's makes the sender a peer (``MeshDirective/trust(_:introducedBy:)``) and is answered with
    /// a welcome; a repeated request is answered again and changes nothing more.
    mutating func answerJoin(
        _ datagram: [UInt8], header: PacketHeader, from source: Endpoint, now: UnixMillis,
        into out: inout [MeshDirective]
    ) {
        guard header.sentAt <= now.saturatingAdd(configuration.maxClockSkewMillis) else {
            out.append(.event(.dropped(.fromFuture, from: source, sender: header.sender)))
            return
        }
        guard header.sentAt >= now.saturatingSubtract(configuration.maxPacketAgeMillis) else {
            out.append(.event(.dropped(.replayed, from: source, sender: header.sender)))
            return
        }
        guard isSignedBySender(datagram, header: header, from: source, now: now, into: &out) else { return }
        // Anyone can sign a join with a key of their own: unlike a vouched peer's packet, a valid signature
        // here proves nothing, so it does not mark the source as proven (that would let a flood of forged
        // packets from it be checked without limit).
        let request: JoinRequest
        do throws(DecodeError) {
            guard case .join(let decoded) = try WireFormat.decodePayload(datagram) else { return }
            request = decoded
        } catch {
            out.append(.event(.dropped(DropReason(error), from: source, sender: header.sender)))
            return
        }
        guard request.expires.saturatingMultiply(1000) > now else {
            out.append(.event(.joinRefused(header.sender, reason: .expired, from: source)))
            return
        }
        let secret = InvitationSecrets.secret(of: identity, nonce: request.nonce, expires: request.expires)
        guard
            InvitationSecrets.isValid(
                proof: request.proof, secret: secret, joiner: header.sender, endpoint: request.endpoint.description)
        else {
            verificationBudget.noteFailed(source, now: now)
            out.append(.event(.joinRefused(header.sender, reason: .badProof, from: source)))
            return
        }
        if !peers.contains(header.sender) && introductions.requested.insert(header.sender).inserted {
            out.append(.trust(
                PeerInfo(name: PeerInfo.derivedName("joined", for: header.sender), key: header.sender, endpoint: request.endpoint),
                introducedBy: nil))
        }
        out.append(.send(encode(.welcome(joiner: header.sender), now: now), to: source))
    }

    // MARK: - Introductions

    /// Where this node's `vouching` trusts some peers' introductions, asks each of them for the peers it
    /// trusts every ``introductionEveryRounds`` rounds (at once on start). Nodes that trust only their own
    /// trust store (`direct`, the default) ask nothing, and so send nothing for introductions.
    mutating func askForIntroductions(now: UnixMillis, into out: inout [MeshDirective]) {
        guard case .introducedBy = configuration.vouching, round % Self.introductionEveryRounds == 1 else { return }
        for index in peers.indices where configuration.vouching.trusts(peers.info(at: index)) {
            guard let address = peers.endpoint(at: index) else { continue }
            out.append(.send(encode(.introductionsRequest, now: now), to: address))
        }
    }

    /// How often a node asks its introducers for their peers (rounds: 2 s at the default 200 ms).
    static let introductionEveryRounds: UInt64 = 10

    /// Answers a trusted peer's request for introductions with the peers this node trusts (the asker
    /// aside), as many as one packet holds, in a random order, so that a larger trust store is told in
    /// parts over successive requests.
    mutating func answerIntroductionsRequest(
        from asker: VerifyingKey, now: UnixMillis, rng: inout SplitMix64, into out: inout [MeshDirective]
    ) {
        guard let address = endpoint(of: asker) else { return }
        var batch: [PeerIntroduction] = []
        var size = 1
        for index in peers.indices.shuffled(using: &rng) {
            let key = peers.key(at: index)
            guard key != asker, let endpoint = peers.endpoint(at: index) else { continue }
            let introduction = PeerIntroduction(key: key, endpoint: endpoint)
            guard size + introduction.wireBytes <= WireFormat.maxPayloadBytes, batch.count < 255 else { break }
            batch.append(introduction)
            size += introduction.wireBytes
        }
        out.append(.send(encode(.introductions(batch), now: now), to: address))
    }

    /// Takes a trusted peer's introductions: peers this node does not trust are added to its trust store
    /// when its `vouching` trusts the introducer, and reported once each otherwise.
    mutating func receiveIntroductions(
        _ introduced: [PeerIntroduction], from introducer: VerifyingKey, into out: inout [MeshDirective]
    ) {
        guard let index = peers.index(of: introducer) else { return }
        let trusted = configuration.vouching.trusts(peers.info(at: index))
        for introduction in introduced where introduction.key != publicKey && !peers.contains(introduction.key) {
            if trusted {
                guard introductions.requested.insert(introduction.key).inserted else { continue }
                out.append(.trust(
                    PeerInfo(name: PeerInfo.derivedName("introduced", for: introduction.key), key: introduction.key,
                        endpoint: introduction.endpoint),
                    introducedBy: introducer))
            } else if introductions.noteIgnored(introduction.key) {
                out.append(.event(.introductionIgnored(introduction.key, endpoint: introduction.endpoint, by: introducer)))
            }
        }
    }
}

import QuotaMeshCrypto

/// The dissemination half of the protocol, sans-IO: the trusted peers and their liveness, the records
/// held and how they spread (pushes, anti-entropy digests), quarantine, introductions and the wire. It
/// authenticates packets and vets, stores and spreads signed records; what a record says is the ledger's
/// business (``QuotaLedger``), which ``MeshInstance`` hands it to.
struct Dissemination: Sendable {
    /// This node's identity.
    let identity: SigningKey
    /// The protocol's parameters (the instance's, kept in step by it).
    var configuration: MeshConfiguration
    /// The incarnation this run signs with.
    let incarnation: UInt64
    var sequence: UInt64 = 0
    var packetSequence: UInt64 = 0
    /// The trusted peers and what this node knows of each.
    var peers: PeerTable
    /// The records held, their push queue and digest marks.
    var recordStore = RecordStore(maxDigestEntries: Dissemination.maxDigestEntries)
    /// Announced slots this node lacks, asked for again until they arrive.
    var pendingWants = PendingWants()
    var nextGossipAt: UnixMillis
    var lastHeartbeatAt: UnixMillis?
    /// When the first heartbeat is due: at start in a small cluster; in a large one, at a random point in
    /// the part of the heartbeat interval that was stretched for the cluster's size.
    var firstHeartbeatAt: UnixMillis
    /// When this node last signed any record (a signed record is liveness evidence too).
    var lastSignedAt: UnixMillis?
    /// Which peers are live.
    var liveness = Liveness()
    var round: UInt64 = 0
    /// Failed signature checks spent per source: floods naming a vouched key are refused before Ed25519.
    var verificationBudget = VerificationBudget()
    /// Peers that signed records contradicting each other, with the proof: nothing from them is accepted.
    var quarantined: [VerifyingKey: QuarantineEvidence] = [:]
    /// Peers this node asked the shell to trust, and introductions it set aside.
    var introductions = IntroductionBook()

    /// Starts dissemination for `identity` among `directory`'s peers, with the quarantines a previous run
    /// saved (of peers still trusted); the first heartbeat's slot is drawn from `rng`.
    init(
        identity: SigningKey, configuration: MeshConfiguration, directory: PeerDirectory, restored: PersistedNodeState?,
        now: UnixMillis, rng: inout SplitMix64
    ) {
        self.identity = identity
        self.configuration = configuration
        self.peers = PeerTable(directory: directory, own: identity.publicKey)
        // Strictly greater than any incarnation used before, even if the state folder was lost (the clock
        // in seconds is a floor), so peers accept the new records and packets.
        self.incarnation = max((restored?.incarnation ?? 0).saturatingAdd(1), UInt64(max(0, now / 1000)))
        self.nextGossipAt = now
        self.firstHeartbeatAt = now
        liveness.reset(self.peers)
        for saved in restored?.quarantined ?? [] {
            if let (key, evidence) = MeshInstance.restoredQuarantine(saved), self.peers.contains(key) {
                quarantined[key] = evidence
            }
        }
        let spread = heartbeatInterval - max(0, configuration.heartbeatIntervalMillis)
        firstHeartbeatAt = spread > 0 ? now + Int64.random(in: 0..<spread, using: &rng) : now
    }

    /// This node's key.
    var publicKey: VerifyingKey { identity.publicKey }
    /// The newest record per origin and slot, each at a dense index (digests rotate in index order).
    var records: RecordTable { recordStore.table }
    /// Live peers, sorted; refreshed when one can have timed out and extended when a peer comes up.
    var live: [VerifyingKey] { liveness.live }
    /// What the ledger needs to know of the peers.
    var facts: MeshFacts {
        MeshFacts(
            live: liveness.live, liveVersion: liveness.version, unheard: liveness.unheard, peerCount: peers.count,
            round: round)
    }
    /// The heartbeat interval in force (``MeshConfiguration/heartbeatInterval(peerCount:)``).
    var heartbeatInterval: Int64 { configuration.heartbeatInterval(peerCount: peers.count) }
    /// Rounds between anti-entropy digests: twice ``MeshConfiguration/digestPeriodRounds(peerCount:)``,
    /// since every push is also a pull and digests are left the slots pulls missed, which are few.
    var digestPeriodRounds: Int { configuration.digestPeriodRounds(peerCount: peers.count) * 2 }
    /// The liveness timeout in force (at least four heartbeat intervals).
    var livenessTimeout: Int64 { configuration.livenessTimeout(peerCount: peers.count) }

    // MARK: - Packets

    /// A packet that passed every check of its sender (trusted, not quarantined, fresh, within its rate,
    /// signed by it), with its payload decoded.
    struct Authenticated {
        var sender: VerifyingKey
        var payload: WireFormat.ArrivingPayload
    }

    /// Checks one datagram and notes its sender heard from: the authenticated payload, or `nil` when the
    /// packet was dropped (with an event) or was a join request (answered here).
    mutating func authenticate(
        _ datagram: [UInt8], from source: Endpoint, now: UnixMillis, into out: inout [MeshDirective]
    ) -> Authenticated? {
        let header: PacketHeader
        do {
            header = try WireFormat.decodeHeader(datagram)
        } catch {
            out.append(.event(.dropped(DropReason(error), from: source, sender: nil)))
            return nil
        }
        guard header.sender != publicKey else {
            out.append(.event(.dropped(.fromSelf, from: source, sender: header.sender)))
            return nil
        }
        if WireFormat.isJoinRequest(datagram) {
            answerJoin(datagram, header: header, from: source, now: now, into: &out)
            return nil
        }
        guard let peerIndex = peers.index(of: header.sender) else {
            out.append(.event(.dropped(.unknownSender, from: source, sender: header.sender)))
            return nil
        }
        guard quarantined[header.sender] == nil else {
            out.append(.event(.dropped(.quarantined, from: source, sender: header.sender)))
            return nil
        }
        var peer = peers[peerIndex]
        // Cheap checks before the signature.
        guard peer.replay.isFresh(incarnation: header.incarnation, sequence: header.sequence) else {
            out.append(.event(.dropped(.replayed, from: source, sender: header.sender)))
            return nil
        }
        guard header.sentAt <= now.saturatingAdd(configuration.maxClockSkewMillis) else {
            out.append(.event(.dropped(.fromFuture, from: source, sender: header.sender)))
            return nil
        }
        // A vouched peer flooding valid packets: past its rate, they are not checked.
        guard peer.mayBeChecked(now: now) else {
            out.append(.event(.dropped(.rateLimited, from: source, sender: header.sender)))
            return nil
        }
        guard isSignedBySender(datagram, header: header, from: source, now: now, into: &out) else {
            return nil
        }
        verificationBudget.noteVerified(source, now: now)
        peer.noteVerifiedPacket(now: now)
        // Only the newest packet moves the peer's address, so a re-sent older packet cannot redirect it.
        let newest = !peer.replay.hasStarted || header.incarnation > peer.replay.incarnation
            || header.sequence > peer.replay.highest
        peer.replay.accept(incarnation: header.incarnation, sequence: header.sequence)
        // A packet held back and delivered late (its records are still welcome: they are signed and
        // versioned) says nothing about where the sender is now, nor that it is alive.
        let timely = header.sentAt >= now.saturatingSubtract(configuration.maxPacketAgeMillis)
        if newest && timely { peers.observe(source, at: peerIndex) }
        if timely { markHeard(&peer, key: header.sender, at: min(now, header.sentAt), now: now, into: &out) }
        peers[peerIndex] = peer

        do throws(DecodeError) {
            let payload = try WireFormat.decodeArriving(datagram) { origin, version, wire in
                guard origin != self.publicKey, let number = self.peers.directory.index(of: origin) else { return nil }
                return self.records.index(ofCopy: wire, originNumber: number, version: version)
            }
            return Authenticated(sender: header.sender, payload: payload)
        } catch {
            out.append(.event(.dropped(DropReason(error), from: source, sender: header.sender)))
            return nil
        }
    }

    /// Vets and stores the records of a packet from `sender`, handing what they say to `ledger`.
    mutating func receive(
        _ incoming: [WireFormat.ArrivingRecord], from sender: VerifyingKey, source: Endpoint, now: UnixMillis,
        ledger: inout QuotaLedger, into out: inout [MeshDirective]
    ) {
        let renumbered = recordStore.renumbered
        for arriving in incoming {
            switch arriving {
            case .copy(let index, let version):
                // A record earlier in the packet can quarantine its origin, which drops records: the
                // copies' slot numbers are then stale, and a copy only confirms what is held anyway.
                guard recordStore.renumbered == renumbered else { continue }
                noteCopy(at: index, version: version, from: sender, into: &out)
            case .record(let record):
                accept(record, from: sender, source: source, now: now, ledger: &ledger, into: &out)
            }
        }
    }

    /// Whether the packet's signature is its sender's, checked only while `source` is within its
    /// verification budget; a refusal is noted in the budget and as a drop event.
    mutating func isSignedBySender(
        _ datagram: [UInt8], header: PacketHeader, from source: Endpoint, now: UnixMillis, into out: inout [MeshDirective]
    ) -> Bool {
        guard verificationBudget.mayVerify(source, now: now) else {
            out.append(.event(.dropped(.overBudget, from: source, sender: header.sender)))
            return false
        }
        guard
            WireFormat.hasValidPacketSignature(
                datagram, sender: header.sender, cluster: configuration.cluster, scheme: configuration.signatures)
        else {
            verificationBudget.noteFailed(source, now: now)
            out.append(.event(.dropped(.badSignature, from: source, sender: header.sender)))
            return false
        }
        return true
    }

    // MARK: - Rounds

    /// Signs and stores a heartbeat when nothing else this node signed lately says it is alive. The first
    /// heartbeat waits for its random start-up slot, and a record signed meanwhile stands in for it: a
    /// cluster that starts at once does not flood itself with N heartbeats.
    mutating func heartbeatIfDue(now: UnixMillis, ledger: inout QuotaLedger) {
        if lastHeartbeatAt == nil, lastSignedAt != nil {
            lastHeartbeatAt = lastSignedAt
        }
        let latest = max(lastHeartbeatAt ?? .min, lastSignedAt ?? .min)
        if lastHeartbeatAt == nil ? now >= firstHeartbeatAt : now.saturatingSubtract(latest) >= heartbeatInterval {
            lastHeartbeatAt = now
            store(ownRecord(.heartbeat, now: now), receivedFrom: nil, ledger: &ledger)
        }
    }
}

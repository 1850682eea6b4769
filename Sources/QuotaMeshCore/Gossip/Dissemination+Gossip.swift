import QuotaMeshCrypto

extension Dissemination {
    // MARK: - Records

    /// memberlist's retransmit limit: `retransmitMultiplier × ⌈log10(N + 1)⌉` pushes per record per node.
    func retransmitLimit() -> Int {
        var scale = 1
        var bound = 10
        while bound < peers.count + 2 {
            bound *= 10
            scale += 1
        }
        return configuration.retransmitMultiplier * scale
    }

    mutating func ownRecord(_ body: RecordBody, now: UnixMillis) -> SignedRecord {
        sequence += 1
        return SignedRecord(
            signing: body, version: RecordVersion(incarnation: incarnation, sequence: sequence), timestamp: now,
            with: identity, cluster: configuration.cluster, scheme: configuration.signatures)
    }

    /// Holds `record` (in slot `id`, computed from it when not given: a slot identity costs a hash) and
    /// queues it for pushes.
    mutating func store(
        _ record: SignedRecord, id: SlotID? = nil, receivedFrom: VerifyingKey?, ledger: inout QuotaLedger
    ) {
        let record = receivedFrom == nil ? record : (configuration.recordSharing?.share(record) ?? record)
        let id = id ?? SlotID(origin: record.origin, slot: record.body.slot)
        let limit = retransmitLimit()
        recordStore.hold(
            record, for: id, transmits: limit, knownBy: receivedFrom?.prefix64,
            originNumber: peers.directory.index(of: record.origin))
        if record.origin != publicKey, case .quota(let key, let state) = record.body {
            ledger.absorb(state, of: record.origin, key: key, stamp: record.timestamp, records: records.records)
        }
    }

    mutating func accept(
        _ record: SignedRecord, from sender: VerifyingKey, source: Endpoint, now: UnixMillis,
        ledger: inout QuotaLedger, into out: inout [MeshDirective]
    ) {
        let scheme = configuration.signatures
        // A held slot is found through its origin's few slots, and its identity reused; only a new slot
        // (or an origin outside the directory: this node's own key may be) computes one.
        let heldIndex: Int?
        let id: SlotID
        if let number = peers.directory.index(of: record.origin) {
            heldIndex = records.index(ofSlot: record.body.slot, originNumber: number)
            id = heldIndex.map { records.ids[$0] } ?? SlotID(origin: record.origin, slot: record.body.slot)
        } else {
            id = SlotID(origin: record.origin, slot: record.body.slot)
            heldIndex = records.index(of: id)
        }
        // An exact copy of a held record (most arrivals in a large cluster) passed every check below when
        // it was first accepted, and held records are all from trusted origins: straight to the duplicate
        // path, with no look-up of the origin and no plausibility check.
        if record.origin != publicKey, let index = heldIndex, records.version(at: index) == record.version,
            records.records[index] == record
        {
            noteCopy(at: index, version: record.version, from: sender, into: &out)
            return
        }
        guard record.origin == publicKey || peers.contains(record.origin) else {
            out.append(.event(.dropped(.unknownOrigin, from: source, sender: sender)))
            return
        }
        guard quarantined[record.origin] == nil else {
            out.append(.event(.dropped(.quarantined, from: source, sender: sender)))
            return
        }
        if case .quota(let key, _) = record.body, ledger.catalog.refusal(ofNew: key) != nil {
            out.append(.event(.dropped(.overCap, from: source, sender: sender)))
            return
        }
        guard record.timestamp <= now.saturatingAdd(configuration.maxClockSkewMillis) else {
            out.append(.event(.dropped(.fromFuture, from: source, sender: sender)))
            return
        }
        var plausible = record.timestamp >= now.saturatingSubtract(Plausible.maxAgeMillis)
        if case .quota(_, let state) = record.body {
            plausible = plausible && Plausible.isPlausible(state, stamped: record.timestamp)
                && state.ledger.map { $0.isWellFormed(origin: record.origin) } ?? true
        }
        guard plausible else {
            out.append(.event(.dropped(.absurd, from: source, sender: sender)))
            return
        }
        if record.origin == publicKey {
            // Our own record relayed back, e.g. from before a restart: adopt what it says we consumed.
            guard record.version.incarnation < incarnation,
                record.hasValidSignature(cluster: configuration.cluster, scheme: scheme),
                case .quota(let key, let state) = record.body
            else { return }
            ledger.adoptOwnRelayed(state, key: key)
            return
        }
        if let index = heldIndex {
            let heldVersion = records.version(at: index)
            if heldVersion > record.version {
                out.append(.event(.recordStale(origin: record.origin)))
                return
            }
            if heldVersion == record.version {
                // Same version, different bytes (an exact copy took the duplicate path above): forged
                // (fails here) or the origin equivocated. Every node keeps the same one of the two (the
                // larger signature), so views still converge.
                guard record.hasValidSignature(cluster: configuration.cluster, scheme: scheme) else {
                    out.append(.event(.dropped(.badSignature, from: source, sender: sender)))
                    return
                }
                out.append(.event(.dropped(.equivocation, from: source, sender: sender)))
                quarantine(
                    QuarantineEvidence(reason: .equivocation, earlier: records.records[index], later: record, at: now),
                    of: record.origin, ledger: &ledger, into: &out)
                return
            }
        }
        guard record.hasValidSignature(cluster: configuration.cluster, scheme: scheme) else {
            out.append(.event(.dropped(.badSignature, from: source, sender: sender)))
            return
        }
        // A newer record must include everything the origin signed before in the same window's ledger: one
        // that takes a gift or a spend back shows different receivers different books.
        if case .quota(let key, let state) = record.body, let earlier = ledger.remote[key]?.origins[record.origin]?.ledger,
            let signed = state.ledger, !signed.covers(earlier), let index = heldIndex
        {
            quarantine(
                QuarantineEvidence(reason: .ledgerRegressed, earlier: records.records[index], later: record, at: now),
                of: record.origin, ledger: &ledger, into: &out)
            return
        }
        let breakerBefore: BreakerRegister? = if case .quota(let key, _) = record.body {
            ledger.remote[key]?.origins[record.origin]?.breaker
        } else { nil }
        store(record, id: id, receivedFrom: sender, ledger: &ledger)
        if case .quota(let key, let state) = record.body, state.breaker != breakerBefore ?? BreakerRegister() {
            ledger.checkBreakerClaims(key, into: &out)
        }
        // Liveness only from what the origin itself signed, never later than now.
        markHeard(record.origin, at: min(now, record.timestamp), now: now, into: &out)
        if case .quota(let key, let state) = record.body, state.policy != nil || state.observation != nil,
            ledger.catalog.learn(key.service)
        {
            out.append(.event(.serviceLearned(key.service)))
        }
        out.append(.event(.recordAccepted(origin: record.origin, slot: record.body.slot)))
    }

    /// Sets a peer aside for good (until it is removed from the trust store and added again; the quarantine
    /// is saved, so it outlives a restart): its records and everything derived from them are forgotten, it
    /// counts for nobody's share, and nothing it sends is accepted. The proof is kept for the operator.
    mutating func quarantine(
        _ evidence: QuarantineEvidence, of origin: VerifyingKey, ledger: inout QuotaLedger, into out: inout [MeshDirective]
    ) {
        guard origin != publicKey, quarantined[origin] == nil else { return }
        quarantined[origin] = evidence
        forgetRecords(ledger: &ledger) { $0.origin == origin }
        ledger.forget(origin)
        liveness.remove(origin)
        out.append(.event(.peerQuarantined(origin, reason: evidence.reason)))
    }

    /// Drops the held records whose slots `isDropped` names, and everything merged from them.
    mutating func forgetRecords(ledger: inout QuotaLedger, where isDropped: (SlotID) -> Bool) {
        recordStore.forget(where: isDropped)
        ledger.rebuildAggregates(from: records.records)
    }

    /// Handles an exact copy of the record held at `index` (at `version`), sent by `sender`.
    ///
    /// A duplicate is evidence the record is widespread: it counts as a round of pushes (Demers et al.'s
    /// rumor mongering with feedback), so a record costs far fewer than N × limit pushes; the few nodes
    /// the pushes miss catch up from digests, which name recently updated slots first.
    mutating func noteCopy(
        at index: Int, version: RecordVersion, from sender: VerifyingKey, into out: inout [MeshDirective]
    ) {
        let origin = records.ids[index].origin
        // A record earlier in the same packet may have replaced the held one: the copy is then stale.
        recordStore.noteCopy(at: index, version: version, from: sender, pushes: configuration.fanout)
        out.append(.event(.recordStale(origin: origin)))
    }

    // MARK: - Liveness

    mutating func markHeard(_ key: VerifyingKey, at time: UnixMillis, now: UnixMillis, into out: inout [MeshDirective]) {
        guard let index = peers.index(of: key) else { return }
        var peer = peers[index]
        markHeard(&peer, key: key, at: time, now: now, into: &out)
        peers[index] = peer
    }

    /// Notes that `key` (whose state is `peer`, to be stored back by the caller) was heard from at `time`.
    mutating func markHeard(
        _ peer: inout PeerState, key: VerifyingKey, at time: UnixMillis, now: UnixMillis, into out: inout [MeshDirective]
    ) {
        let quarantined = !self.quarantined.isEmpty && self.quarantined[key] != nil
        if liveness.markHeard(&peer, key: key, at: time, now: now, timeout: livenessTimeout, quarantined: quarantined) {
            out.append(.event(.peerUp(key)))
        }
    }

    mutating func refreshLiveness(now: UnixMillis, into out: inout [MeshDirective]) {
        let quarantined = self.quarantined
        let timeout = livenessTimeout
        // Worked on a copy: the refresh marks peers in the table, and the ledger hears of the new list once.
        var next = liveness
        let down = next.refresh(&peers, now: now, timeout: timeout) { !quarantined.isEmpty && quarantined[$0] != nil }
        liveness = next
        for key in down { out.append(.event(.peerDown(key))) }
    }

    // MARK: - Gossip

    func endpoint(of key: VerifyingKey) -> Endpoint? {
        guard let index = peers.index(of: key) else { return nil }
        return peers.endpoint(at: index)
    }

    mutating func chooseTargets(now: UnixMillis, rng: inout SplitMix64) -> [VerifyingKey] {
        var targets: [VerifyingKey] = []
        if live.count <= configuration.fanout {
            targets = live.filter { endpoint(of: $0) != nil }
        } else {
            // Distinct random draws (rejection sampling): fanout peers without copying or shuffling the list.
            var attempts = 0
            while targets.count < configuration.fanout && attempts < 8 * configuration.fanout {
                attempts += 1
                let candidate = live[Int.random(in: 0..<live.count, using: &rng)]
                if !targets.contains(candidate) && endpoint(of: candidate) != nil { targets.append(candidate) }
            }
        }
        let downCount = peers.count - live.count
        guard downCount > 0 else { return targets }
        let wanted = targets.count < configuration.fanout ? configuration.fanout - targets.count : 1
        // Now and then (always while short of live peers), try peers that are down, so that they are found
        // again when they return. Sampled, not listed: a few draws find one when many are down, and when
        // few are, a full pass finds them.
        if targets.count < configuration.fanout || Int.random(in: 0..<4, using: &rng) == 0 {
            let timeout = livenessTimeout
            let table = peers
            let isDown: (Int) -> Bool = { index in
                !table[index].isLive(now: now, timeout: timeout) && table.endpoint(at: index) != nil
            }
            var found: [VerifyingKey] = []
            for _ in 0..<(4 * wanted) where found.count < wanted {
                let candidate = table.index(atPosition: Int.random(in: 0..<table.count, using: &rng))
                if !found.contains(table.key(at: candidate)) && isDown(candidate) {
                    found.append(table.key(at: candidate))
                }
            }
            if found.count < wanted {
                var down = table.indices.filter { !found.contains(table.key(at: $0)) && isDown($0) }
                    .map { table.key(at: $0) }
                while found.count < wanted, !down.isEmpty {
                    found.append(down.remove(at: Int.random(in: 0..<down.count, using: &rng)))
                }
            }
            targets += found
        }
        return targets
    }

    mutating func nextPacketHeader(now: UnixMillis) -> PacketHeader {
        packetSequence += 1
        return PacketHeader(sender: publicKey, incarnation: incarnation, sequence: packetSequence, sentAt: now)
    }

    mutating func sendRecords(
        _ chosen: [SignedRecord], to target: VerifyingKey, now: UnixMillis, into out: inout [MeshDirective]
    ) {
        guard let address = endpoint(of: target), !chosen.isEmpty else { return }
        var batch: [SignedRecord] = []
        var size = 1
        for record in chosen {
            if !batch.isEmpty && (size + record.encodedCount > WireFormat.maxPayloadBytes || batch.count == 255) {
                out.append(.send(encode(.records(batch), now: now), to: address))
                batch = []
                size = 1
            }
            batch.append(record)
            size += record.encodedCount
        }
        if !batch.isEmpty { out.append(.send(encode(.records(batch), now: now), to: address)) }
    }

    /// Sends one push to `target`: `chosen` records (one packet's worth), the `announced` slots and the
    /// filter of what this node received lately.
    mutating func sendPush(
        _ chosen: [SignedRecord], announced: [DigestEntry], holds: HeldFilter, to target: VerifyingKey,
        now: UnixMillis, into out: inout [MeshDirective]
    ) {
        guard let address = endpoint(of: target) else { return }
        out.append(.send(encode(.push(records: chosen, announced: announced, holds: holds), now: now), to: address))
    }

    mutating func encode(_ payload: PacketPayload, now: UnixMillis) -> [UInt8] {
        WireFormat.encodePacket(
            header: nextPacketHeader(now: now), payload: payload, signingKey: identity, cluster: configuration.cluster,
            scheme: configuration.signatures)
    }

    mutating func gossipRound(
        now: UnixMillis, withheld: (SlotID) -> Bool, rng: inout SplitMix64, into out: inout [MeshDirective]
    ) {
        let targets = chooseTargets(now: now, rng: &rng)
        guard !targets.isEmpty else { return }
        // Candidates in memberlist's order: fewest pushes first, newest first within a level, so that
        // every record gets its turn however many arrive. Within a round a record goes to every target
        // (classic push gossip: a new record reaches `fanout` peers in its first round), then moves down
        // by the number of pushes.
        // Each candidate is looked up once; the targets then pick from this list.
        var candidates = recordStore.pushCandidates(
            wanted: targets.count * 12, isWithheld: withheld)
        // Every push also carries a filter of what this node received lately and announces what it had no
        // room for (``PacketPayload/push(records:announced:holds:)``).
        let heldFilter = recordStore.heldFilter(latest: Self.heldFilterUpdates)
        let budget = WireFormat.maxPayloadBytes - Self.pullRoom
        for target in targets {
            var chosen: [SignedRecord] = []
            var chosenSlots: [Int] = []
            var size = 0
            for index in candidates.indices {
                let slot = candidates[index].index
                guard records.ids[slot].origin != target, candidates[index].pushes < records.transmitsLeft(at: slot),
                    !records.isKnown(at: slot, by: target)
                else { continue }
                let record = records.records[slot]
                let count = record.encodedCount
                // Relayed records take a quarter of a push; this node's own take what room is left.
                if record.origin != publicKey && size + count > Self.relayedPushBytes { continue }
                guard size + count <= budget else { break }
                chosen.append(record)
                chosenSlots.append(slot)
                size += count
                candidates[index].pushes += 1
            }
            let room = (WireFormat.maxPayloadBytes - Self.pushFilterBytes - size) / WireFormat.announcementBytes
            let announced = recordStore.announcements(
                count: min(room, Self.maxAnnouncedPerPush), to: target, leavingOut: chosenSlots, isWithheld: withheld)
            sendPush(chosen, announced: announced, holds: heldFilter, to: target, now: now, into: &out)
        }
        recordStore.notePushed(candidates)
        // Announced slots still missing: asked for again, of a peer other than the one that announced them.
        let table = records
        let due = pendingWants.due(round: round) { hash in table.index(ofHash: hash).map { table.version(at: $0) } }
        if !due.isEmpty {
            let target = targets[Int.random(in: 0..<targets.count, using: &rng)]
            if let address = endpoint(of: target) {
                out.append(.send(encode(.digest(isReply: true, entries: due), now: now), to: address))
            }
        }
        // Anti-entropy: a digest to one of the targets every few rounds.
        guard round % UInt64(digestPeriodRounds) == 0 else { return }
        let target = targets[Int.random(in: 0..<targets.count, using: &rng)]
        if endpoint(of: target) != nil {
            recordStore.beginDigestMarks()
            let entries = digestSample(count: Self.maxDigestEntries)
            if !entries.isEmpty, let address = endpoint(of: target) {
                out.append(.send(encode(.digest(isReply: false, entries: entries), now: now), to: address))
            }
        }
    }

    /// The room for relayed records in a push: a quarter of a packet, so about one small record. Most copies
    /// a push carries arrive where the record is held already; records spread mostly by pulls (answers to
    /// filters and announcements), which carry only what their receiver lacks.
    static let relayedPushBytes = WireFormat.maxPayloadBytes / 4
    /// What a push keeps from its records' room for the pull it carries: the filter and a full set of announcements.
    static let pullRoom = pushFilterBytes + maxAnnouncedPerPush * WireFormat.announcementBytes
    /// What a push's filter takes of the packet, with the push's counts and flag.
    static let pushFilterBytes = 3 + HeldFilter.byteCount

    /// How many of the latest updates a push's filter holds.
    static let heldFilterUpdates = 128
    /// How many of its latest updates a node checks against a push's filter.
    static let pullCandidates = 48

    /// Sends `sender` the records of this node's latest updates that `filter` (of the versions `sender`
    /// received lately) lacks, oldest first, as many as a packet holds: a push is answered with what its
    /// sender missed.
    mutating func answerHeldFilter(
        _ filter: HeldFilter, from sender: VerifyingKey, now: UnixMillis, withheld: (SlotID) -> Bool,
        into out: inout [MeshDirective]
    ) {
        var missing: [SignedRecord] = []
        var size = 1
        // Oldest first: the newest are still spreading and reach the sender anyway, while a record its pushes
        // missed would be crowded out of the packet by each round's new records and wait for a digest.
        for slot in recordStore.latestSlots(Self.pullCandidates).reversed() {
            let id = records.ids[slot]
            let version = records.version(at: slot)
            guard id.origin != sender, !records.isKnown(at: slot, by: sender), !withheld(id),
                !filter.mayContain(slotHash: id.hash, version: version)
            else { continue }
            let record = records.records[slot]
            guard size + record.encodedCount <= WireFormat.maxPayloadBytes else { break }
            size += record.encodedCount
            missing.append(record)
        }
        sendRecords(missing, to: sender, now: now, into: &out)
    }

    /// The most slots one push announces (``PacketPayload/push(records:announced:holds:)``).
    static let maxAnnouncedPerPush = 16

    /// How many digests' worth of nodes a cluster holds before digests favour recent updates (see
    /// ``digestSample(count:)``).
    static let largeClusterDigests = 4

    static var maxDigestEntries: Int { (WireFormat.maxPayloadBytes - 3) / WireFormat.digestEntryBytes }

    /// A digest's entries (``RecordStore/digestSample(count:recent:)``): half of them the slots updated
    /// most recently, half a rotating sample of every held slot; in a cluster of more than
    /// ``largeClusterDigests`` digests' worth of nodes, three quarters and a quarter, since there the
    /// rotating part would take dozens of digests to name every slot and repairs little in time.
    mutating func digestSample(count: Int) -> [DigestEntry] {
        let recent = peers.count + 1 > Self.largeClusterDigests * count ? count * 3 / 4 : count / 2
        return recordStore.digestSample(count: count, recent: recent)
    }

    /// Asks `sender` for the announced slots this node lacks or holds an older version of, with a reply
    /// digest naming the versions held (answered with records only); the rest are noted as held by it,
    /// so pushes pass it over.
    mutating func answerAnnouncements(
        _ announced: [DigestEntry], from sender: VerifyingKey, now: UnixMillis, into out: inout [MeshDirective]
    ) {
        var wants: [DigestEntry] = []
        for entry in announced {
            // Several peers announce a new record in the same round: it is asked of the first only.
            if pendingWants.isAwaiting(entry.slotHash, version: entry.version, round: round) { continue }
            guard let slot = records.index(ofHash: entry.slotHash) else {
                wants.append(DigestEntry(slotHash: entry.slotHash, version: .zero))
                pendingWants.note(entry.slotHash, announced: entry.version, round: round)
                continue
            }
            let held = records.meta[slot]
            guard WireFormat.isAnnounceable(DigestEntry(slotHash: entry.slotHash, version: held.version)) else { continue }
            if held.version < entry.version {
                wants.append(DigestEntry(slotHash: entry.slotHash, version: held.version))
                pendingWants.note(entry.slotHash, announced: entry.version, round: round)
            } else if held.version == entry.version && held.transmitsLeft > 0 {
                recordStore.noteKnown(at: slot, by: sender)
            }
        }
        if !wants.isEmpty, let address = endpoint(of: sender) {
            out.append(.send(encode(.digest(isReply: true, entries: wants), now: now), to: address))
        }
    }

    mutating func answerDigest(
        _ entries: [DigestEntry], isReply: Bool, from sender: VerifyingKey, now: UnixMillis,
        withheld: (SlotID) -> Bool, into out: inout [MeshDirective]
    ) {
        var toSend: [SignedRecord] = []
        var wants: [DigestEntry] = []
        // A first digest is answered with a digest too, which leaves out the slots this one named.
        if !isReply { recordStore.beginDigestMarks() }
        for entry in entries {
            if let slot = records.index(ofHash: entry.slotHash) {
                if !isReply { recordStore.markNamed(slot) }
                let held = records.meta[slot]
                let heldVersion = held.version
                // Who knows a record matters only while it is still pushed.
                if heldVersion <= entry.version && held.transmitsLeft > 0 {
                    recordStore.noteKnown(at: slot, by: sender)
                }
                if heldVersion > entry.version {
                    if records.ids[slot].origin != sender && !withheld(records.ids[slot]) { toSend.append(records.records[slot]) }
                } else if heldVersion < entry.version {
                    wants.append(DigestEntry(slotHash: entry.slotHash, version: heldVersion))
                }
            } else if entry.version > .zero {
                wants.append(DigestEntry(slotHash: entry.slotHash, version: .zero))
            }
        }
        let budget = configuration.maxAnswerPackets * 4
        sendRecords(Array(toSend.sorted { $0.version < $1.version }.prefix(budget)), to: sender, now: now, into: &out)
        var reply = Array(wants.prefix(Self.maxDigestEntries))
        if !isReply {
            reply += digestSample(count: Self.maxDigestEntries - reply.count)
        }
        if !reply.isEmpty, let address = endpoint(of: sender) {
            out.append(.send(encode(.digest(isReply: true, entries: reply), now: now), to: address))
        }
    }
}

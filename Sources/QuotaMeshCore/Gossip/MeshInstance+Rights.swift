import QuotaMeshCrypto

extension MeshInstance {
    // MARK: - Rights between peers

    /// Answers a peer's request for rights (``QuotaLedger/answer(_:from:now:)``): a gift is signed at once
    /// and the record sent straight back (after it is saved: the persist directive comes first); with
    /// nothing to spare, the ledger as it stands goes back, so that the asker stops counting on rights
    /// this node no longer holds and asks others, with (for urgent work) the records of the peers this
    /// node believes hold some.
    mutating func answerRightsRequest(
        _ request: RightsRequest, from sender: VerifyingKey, now: UnixMillis, into out: inout [MeshDirective]
    ) {
        switch ledger.answer(request, from: sender, now: now) {
        case .ignored:
            return
        case .gave(let window):
            guard let record = signOwnRecord(request.key, now: now) else { return }
            dissemination.sendRecords([record] + rightsSupport(request.key, window: window), to: sender, now: now, into: &out)
        case .relayed(let window, let relay):
            guard let record = signOwnRecord(request.key, now: now) else { return }
            let support = rightsSupport(request.key, window: window)
            dissemination.sendRecords([record] + support, to: relay, now: now, into: &out)
            let relayed = records.index(of: SlotID(origin: relay, slot: .quota(request.key))).map { [records.records[$0]] } ?? []
            dissemination.sendRecords([record] + support + relayed, to: sender, now: now, into: &out)
        case .nothingToSpare(let hints):
            guard let record = currentOwnRecord(request.key, now: now) else { return }
            let hinted = hints.compactMap { holder in
                records.index(of: SlotID(origin: holder, slot: .quota(request.key))).map { records.records[$0] }
            }
            dissemination.sendRecords([record] + hinted, to: sender, now: now, into: &out)
        }
    }

    /// The records that show where this node's rights for `key` in `window` came from: the ledgers of the
    /// givers it was credited by, and of theirs in turn (at most ``rightsSupportRecords``). A receiver
    /// credits a gift only once it can see that the giver's books balance, which needs those ledgers; sent
    /// with the gift, they spare it waiting for gossip to bring them (seconds where nodes are many).
    func rightsSupport(_ key: QuotaKey, window: RightsWindow) -> [SignedRecord] {
        guard let aggregate = ledger.remote[key] else { return [] }
        var givers: [(origin: VerifyingKey, ledger: RightsLedger)] = []
        for (origin, entry) in aggregate.origins {
            if let ledger = entry.ledger, ledger.windowEnd == window.windowEnd, !ledger.given.isEmpty {
                givers.append((origin, ledger))
            }
        }
        givers.sort { $0.origin < $1.origin }
        var support: [SignedRecord] = []
        var seen: Set<VerifyingKey> = [publicKey]
        var frontier = [publicKey]
        while !frontier.isEmpty && support.count < Self.rightsSupportRecords {
            var next: [VerifyingKey] = []
            for receiver in frontier {
                for (giver, ledger) in givers where ledger.given(to: receiver) > 0 && seen.insert(giver).inserted {
                    guard support.count < Self.rightsSupportRecords,
                        let index = records.index(of: SlotID(origin: giver, slot: .quota(key)))
                    else { continue }
                    support.append(records.records[index])
                    next.append(giver)
                }
            }
            frontier = next
        }
        return support
    }

    /// At most how many records of other origins go with a gift (``rightsSupport(_:window:)``).
    static let rightsSupportRecords = 8

    /// This node's latest record for `key`: the one held, or a new one if its state changed since.
    mutating func currentOwnRecord(_ key: QuotaKey, now: UnixMillis) -> SignedRecord? {
        guard let quota = ledger.local[key] else { return nil }
        if !quota.dirty, let index = records.index(of: SlotID(origin: publicKey, slot: .quota(key))) {
            return records.records[index]
        }
        return signOwnRecord(key, now: now)
    }

    /// Counts a packet that carries `sender`'s own record of a key this node wants rights of as its answer,
    /// whether or not the record is new here: a holder that refuses again answers with the record it sent
    /// before, and its refusal must free urgent work to ask others at once as much as a first one does.
    mutating func noteRightsAnswers(_ incoming: [WireFormat.ArrivingRecord], from sender: VerifyingKey, now: UnixMillis) {
        for arriving in incoming {
            let record: SignedRecord
            switch arriving {
            case .copy(let index, _):
                guard index < records.records.count else { continue }
                record = records.records[index]
            case .record(let arrived):
                record = arrived
            }
            if record.origin == sender, case .quota(let key) = record.body.slot {
                ledger.noteAnswered(key, by: sender, directlyAt: now)
            }
        }
    }

    /// Sends the ledger's requests for rights (``QuotaLedger/rightsAsks(now:rng:)``) to the holders it
    /// names.
    mutating func askForRights(now: UnixMillis, into out: inout [MeshDirective]) {
        guard !ledger.rightsWants.isEmpty else { return }
        let peers = dissemination.peers
        for ask in ledger.rightsAsks(now: now, rng: &rng, neverHeard: { peers.neverHeard($0) }) {
            guard let address = dissemination.endpoint(of: ask.holder) else { continue }
            out.append(.send(dissemination.encode(.rightsRequest(ask.request), now: now), to: address))
        }
    }

    // MARK: - Durability

    /// Tells the instance that the state it last asked to persist could not be saved: it grants nothing
    /// and gives no rights until a save succeeds, and it withholds the records of keys whose ledger changed
    /// since the last good save, so that nothing it could forget in a crash reaches its peers.
    public mutating func persistenceDidFail() {
        ledger.persistenceDidFail()
    }

    /// Where the ledger stands: taken with ``persistedState()`` when the state is saved while the instance
    /// goes on, and handed back to ``persistenceDidSucceed(upTo:)`` once that state is on disk.
    public var persistenceMark: UInt64 { ledger.ledgerVersion }

    /// Tells the instance that its state as it stood at `mark` (``persistenceMark``, taken with
    /// ``persistedState()``) was saved: changes made since are still to be saved.
    public mutating func persistenceDidSucceed(upTo mark: UInt64) {
        ledger.persistenceDidSucceed(upTo: mark)
    }

    /// Set by the shell while state cannot be saved: no grant and no transfer until a save succeeds.
    public var persistenceFailing: Bool { ledger.persistenceFailing }

    // MARK: - Finishing

    /// Completes an input's directives: the ledger's events and pending save first, the requests for
    /// rights ahead of everything (they carry nothing that must be saved first), and the next wake-up.
    mutating func finish(_ out: consuming [MeshDirective], now: UnixMillis) -> [MeshDirective] {
        syncFacts()
        if !ledger.pendingEvents.isEmpty {
            out += ledger.pendingEvents.map { .event($0) }
            ledger.pendingEvents = []
        }
        if ledger.pendingPersist {
            out.insert(.persist, at: 0)
            ledger.pendingPersist = false
        }
        var asks: [MeshDirective] = []
        askForRights(now: now, into: &asks)
        if !asks.isEmpty { out.insert(contentsOf: asks, at: 0) }
        let wake = min(dissemination.nextGossipAt, ledger.waitQueue.wake(after: now) ?? .max)
        out.append(.wake(at: max(wake, now + 1)))
        return out
    }
}

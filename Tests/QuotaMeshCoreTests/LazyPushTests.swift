import Testing
@testable import QuotaMeshCore
import QuotaMeshCrypto

/// The parts of a push that large clusters add: the filter of what its sender received lately, the
/// announcements of what it had no room for, and the wants that follow them.
@Suite struct LazyPushTests {
    func version(_ sequence: UInt64) -> RecordVersion { RecordVersion(incarnation: 1_800_000_000, sequence: sequence) }

    @Test func aFilterHoldsWhatWasAddedAndRarelyAnythingElse() {
        var filter = HeldFilter()
        for slot in 0..<UInt64(128) { filter.insert(slotHash: slot &* 0x9E37_79B9_7F4A_7C15, version: version(slot)) }
        for slot in 0..<UInt64(128) { #expect(filter.mayContain(slotHash: slot &* 0x9E37_79B9_7F4A_7C15, version: version(slot))) }
        // Another version of a held slot, or another slot: absent but for false positives (about 2% at 128
        // entries in 1,024 bits with 6 probes).
        var falsePositives = 0
        for slot in 0..<UInt64(5_000) where filter.mayContain(slotHash: slot &* 0x9E37_79B9_7F4A_7C15, version: version(slot + 1)) {
            falsePositives += 1
        }
        #expect(falsePositives < 5_000 * 4 / 100, "\(falsePositives) of 5000")
        #expect(HeldFilter(words: [1, 2, 3]) == nil)
    }

    @Test func aWantIsAskedAgainFromTheRoundAfterNextUntilItArrivesOrHasBeenAskedEnough() {
        var wants = PendingWants()
        var held: [UInt64: RecordVersion] = [:]
        wants.note(1, announced: version(5), round: 10)
        wants.note(2, announced: version(7), round: 10)
        // The announcement's own want went in round 10: its answer has the next round to arrive.
        #expect(wants.due(round: 11) { held[$0] }.isEmpty)
        #expect(wants.due(round: 12) { held[$0] }.map(\.slotHash) == [1, 2])
        held[1] = version(5)
        held[2] = version(6)
        // Slot 1 arrived; slot 2 only in an older version, asked for from the version held.
        #expect(wants.due(round: 14) { held[$0] } == [DigestEntry(slotHash: 2, version: version(6))])
        var asks = 3
        for round in stride(from: UInt64(16), to: 40, by: 2) where !wants.due(round: round, heldVersion: { held[$0] }).isEmpty {
            asks += 1
        }
        #expect(asks == PendingWants.maxAsks)
        #expect(wants.isEmpty)
    }

    @Test func wantsAreBoundedWhateverIsAnnounced() {
        var wants = PendingWants()
        for hash in 0..<UInt64(PendingWants.capacity * 4) { wants.note(hash, announced: version(1), round: 1) }
        #expect(wants.wants.count == PendingWants.capacity)
        // The oldest gave way.
        #expect(wants.wants[0] == nil && wants.wants[UInt64(PendingWants.capacity * 4 - 1)] != nil)
        #expect(wants.due(round: 5) { _ in nil }.count == PendingWants.maxPerAsk)
    }
}

/// One node of a cluster of `count`, fed packets by hand from its vouched peers.
struct LoneNode {
    var node: MeshInstance
    var now: UnixMillis = 1_800_000_000_000
    var packetSequence: UInt64 = 0

    init(count: Int) {
        let infos = (0..<count).map { PeerInfo(name: "n\($0)", key: testKey($0).publicKey, endpoint: endpoint($0)) }
        node = MeshInstance(
            identity: testKey(0), configuration: MeshConfiguration(), peers: infos, restored: nil, now: now, seed: 1)
    }

    /// A quota record signed by peer `origin` at `sequence`.
    func record(of origin: Int, service: String, sequence: UInt64) -> SignedRecord {
        SignedRecord(
            signing: .quota(QuotaKey(service: service), QuotaState()),
            version: RecordVersion(incarnation: 1_800_000_000, sequence: sequence), timestamp: now, with: testKey(origin),
            cluster: "quotamesh")
    }

    /// The slot hash and version digests and announcements name `record` by.
    func entry(of record: SignedRecord) -> DigestEntry {
        DigestEntry(slotHash: SlotID(origin: record.origin, slot: record.body.slot).hash, version: record.version)
    }

    /// Delivers `payload` from peer `sender`; returns what the node sent back, decoded, by receiver.
    mutating func deliver(_ payload: PacketPayload, from sender: Int) -> [(to: Endpoint, payload: PacketPayload)] {
        packetSequence += 1
        let packet = WireFormat.encodePacket(
            header: PacketHeader(sender: testKey(sender).publicKey, incarnation: 1, sequence: packetSequence, sentAt: now),
            payload: payload, signingKey: testKey(sender), cluster: "quotamesh")
        return sent(node.receive(datagram: packet, from: endpoint(sender), now: now))
    }

    /// Ticks the node `rounds` gossip rounds; returns what it sent.
    mutating func tick(rounds: Int) -> [(to: Endpoint, payload: PacketPayload)] {
        var out: [(to: Endpoint, payload: PacketPayload)] = []
        for _ in 0..<rounds {
            now += 200
            out += sent(node.tick(now: now))
        }
        return out
    }

    /// The records among `sent` that went to peer `peer`.
    static func records(sentTo peer: Int, in sent: [(to: Endpoint, payload: PacketPayload)]) -> [SignedRecord] {
        sent.filter { $0.to == endpoint(peer) }.flatMap { answer -> [SignedRecord] in
            if case .records(let records) = answer.payload { records } else { [] }
        }
    }

    func sent(_ directives: [MeshDirective]) -> [(to: Endpoint, payload: PacketPayload)] {
        directives.compactMap { directive in
            guard case .send(let bytes, let target) = directive, let payload = try? WireFormat.decodePayload(bytes) else {
                return nil
            }
            return (target, payload)
        }
    }
}

@Suite struct LazyPushBehaviourTests {
    @Test func aPushIsAnsweredWithTheLatestRecordsItsFilterLacks() {
        var cluster = LoneNode(count: 200)
        let news = cluster.record(of: 3, service: "openai", sequence: 1)
        _ = cluster.deliver(.records([news]), from: 2)
        // Peer 1's filter lacks it: the push is answered with it.
        let answers = cluster.deliver(.push(records: [], announced: [], holds: HeldFilter()), from: 1)
        #expect(LoneNode.records(sentTo: 1, in: answers) == [news])
        // Peer 4's filter holds it: nothing to answer.
        var holds = HeldFilter()
        let held = cluster.entry(of: news)
        holds.insert(slotHash: held.slotHash, version: held.version)
        let none = cluster.deliver(.push(records: [], announced: [], holds: holds), from: 4)
        #expect(!none.contains { if case .records = $0.payload { true } else { false } })
        // Nor is the record sent back to its origin, nor to the peer it came from.
        for peer in [2, 3] {
            let back = cluster.deliver(.push(records: [], announced: [], holds: HeldFilter()), from: peer)
            #expect(!back.contains { if case .records = $0.payload { true } else { false } }, "peer \(peer)")
        }
    }

    @Test func aPushIsAnsweredOldestFirstWhenWhatItsFilterLacksDoesNotFitOnePacket() {
        var cluster = LoneNode(count: 200)
        // Forty new records of forty origins, received one after another: more than one packet holds.
        let news = (3..<43).map { cluster.record(of: $0, service: "openai", sequence: 1) }
        for record in news { _ = cluster.deliver(.records([record]), from: 2) }
        let answers = cluster.deliver(.push(records: [], announced: [], holds: HeldFilter()), from: 1)
        let sentRecords = LoneNode.records(sentTo: 1, in: answers)
        // The answer is one packet, not all forty.
        #expect(!sentRecords.isEmpty && sentRecords.count < news.count)
        // Among the latest updates it checks, the oldest the asker lacks go first: the newest are still
        // spreading and reach it anyway, while one its pushes missed would otherwise be crowded out by
        // each round's new records and wait for a digest.
        let firstChecked = news.count - min(news.count, Dissemination.pullCandidates)
        let positions = sentRecords.compactMap { news.firstIndex(of: $0) }
        #expect(positions == Array(firstChecked..<(firstChecked + sentRecords.count)))
    }

    @Test func anAnnouncedSlotTheNodeLacksIsAskedForAtOnceAndAgainUntilItArrives() {
        var cluster = LoneNode(count: 200)
        let missed = cluster.record(of: 5, service: "github", sequence: 4)
        let announced = cluster.entry(of: missed)
        let wants = cluster.deliver(.push(records: [], announced: [announced], holds: nil), from: 1)
        let want = DigestEntry(slotHash: announced.slotHash, version: .zero)
        #expect(wants.contains { $0.to == endpoint(1) && $0.payload == .digest(isReply: true, entries: [want]) })
        // Heard from, peers 1 and 2 are live: the next rounds ask one of them again.
        _ = cluster.deliver(.records([cluster.record(of: 2, service: "slack", sequence: 1)]), from: 2)
        let again = cluster.tick(rounds: 3).filter { $0.payload == .digest(isReply: true, entries: [want]) }
        #expect(!again.isEmpty)
        // Once it arrives, nobody is asked for it any more.
        _ = cluster.deliver(.records([missed]), from: 2)
        let after = cluster.tick(rounds: 6).filter { sent in
            if case .digest(true, let entries) = sent.payload { entries.contains { $0.slotHash == announced.slotHash } } else { false }
        }
        #expect(after.isEmpty)
    }

    @Test(arguments: [3, 10, 200])
    func everyPushCarriesAFilterAndAnnouncementsWhateverTheClusterSize(count: Int) {
        var cluster = LoneNode(count: count)
        let news = (1...12).map { cluster.record(of: 1 + $0 % (count - 1), service: "service\($0)", sequence: UInt64($0)) }
        // Peer 1 sends every record, so it is known to hold them; the others signed some and lack the rest.
        for start in stride(from: 0, to: news.count, by: 4) { _ = cluster.deliver(.records(Array(news[start..<start + 4])), from: 1) }
        for record in news { #expect(cluster.node.heldVersion(origin: record.origin, slot: record.body.slot) == record.version) }
        let pushes = cluster.tick(rounds: 1).filter { $0.to != endpoint(1) }
        #expect(!pushes.isEmpty)
        for push in pushes {
            guard case .push(let records, let announced, let holds) = push.payload else {
                #expect(Bool(false), "a push of plain records to \(push.to)")
                continue
            }
            let target = (0..<count).first { endpoint($0) == push.to }!
            let lacked = news.filter { $0.origin != testKey(target).publicKey }
            // About one relayed record (the node's own take what room is left); the rest of what the target
            // lacks announced, none both pushed and announced.
            let relayed = records.filter { $0.origin != testKey(0).publicKey }
            #expect(relayed.count <= 1)
            #expect(announced.count + relayed.count >= min(lacked.count, Dissemination.maxAnnouncedPerPush))
            #expect(Set(announced.map(\.slotHash)).isDisjoint(with: records.map { cluster.entry(of: $0).slotHash }))
            for record in news {
                let entry = cluster.entry(of: record)
                #expect(holds?.mayContain(slotHash: entry.slotHash, version: entry.version) == true)
            }
        }
    }

    @Test func aSlotSeveralPeersAnnounceInOneRoundIsAskedOfOneAndOfAnotherTheRoundAfter() {
        var cluster = LoneNode(count: 10)
        let missed = cluster.record(of: 5, service: "github", sequence: 4)
        let announced = cluster.entry(of: missed)
        let want = DigestEntry(slotHash: announced.slotHash, version: .zero)
        func asked(_ sent: [(to: Endpoint, payload: PacketPayload)]) -> [Endpoint] {
            sent.filter { $0.payload == .digest(isReply: true, entries: [want]) }.map(\.to)
        }
        var askedOf: [Endpoint] = []
        for peer in 1...3 {
            askedOf += asked(cluster.deliver(.push(records: [], announced: [announced], holds: nil), from: peer))
        }
        #expect(askedOf == [endpoint(1)])
        // The answer was lost: a round later, the next peer to announce it is asked.
        _ = cluster.tick(rounds: 1)
        #expect(asked(cluster.deliver(.push(records: [], announced: [announced], holds: nil), from: 4)) == [endpoint(4)])
    }
}

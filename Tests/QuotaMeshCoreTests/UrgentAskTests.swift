import QuotaMeshCrypto
import Testing

@testable import QuotaMeshCore

/// How urgent work finds rights it does not hold: a peer with none to spare points it at the holders it
/// knows of, and it asks again as soon as every peer it asked has answered, not a timer later.
@Suite struct UrgentAskTests {
    static let key = QuotaKey(service: "svc")
    static let members = (0..<6).map { testKey($0).publicKey }
    static let start: UnixMillis = 1_800_000_000_000

    /// Node 0's ledger among six members sharing 60 calls a minute (10 rights each), 1 s into a window,
    /// with every peer live. Node 0 spent its 10; peers 1 and 2 are known to have spent theirs, peer 3 six
    /// of them and peer 4 eight; peer 5 signed nothing (it holds its 10, as far as node 0 knows).
    static func ledger(refill: ServicePolicy.Refill = .window, at now: UnixMillis = start + 1_000) -> (QuotaLedger, RightsWindow) {
        var policy = ServicePolicy(limit: 60, windowMillis: 60_000, burstFraction: 1)
        policy.refill = refill
        var ledger = ledgerAmongLivePeers(count: members.count, policy: policy, now: now)
        let window = ledger.rightsWindow(key, now: now)!
        ledger.setOwnLedger(RightsLedger(windowEnd: window.windowEnd, spent: 10), of: key)
        for (peer, spent) in [(1, 10), (2, 10), (3, 4), (4, 8)] {
            ledger.absorb(spent: UInt64(spent), by: peer, window: window, now: now)
        }
        return (ledger, window)
    }

    @Test func aPeerWithNoneToSparePointsUrgentWorkAtTheHoldersItKnows() {
        var (ledger, window) = Self.ledger()
        let now = Self.start + 1_000
        let urgent = RightsRequest(key: Self.key, windowEnd: window.windowEnd, amount: 1, priority: .urgent)
        // Holders by what node 0 believes: peer 5 holds 10, peer 3 six, peer 4 two; the asker is left out.
        #expect(ledger.answer(urgent, from: Self.members[3], now: now) == .nothingToSpare(hints: [Self.members[5], Self.members[4]]))
        #expect(ledger.answer(urgent, from: Self.members[1], now: now) == .nothingToSpare(hints: [Self.members[5], Self.members[3]]))
        var normal = urgent
        normal.priority = .normal
        #expect(ledger.answer(normal, from: Self.members[1], now: now) == .nothingToSpare(hints: []), "only urgent work is pointed")
    }

    @Test func urgentWorkAsksAgainOnceEveryPeerAskedHasAnswered() {
        var (ledger, window) = Self.ledger()
        var rng = SplitMix64(seed: 1)
        let now = Self.start + 1_000
        #expect(ledger.rightsDenial(Self.key, window: window, cost: 1, priority: .urgent, now: now)?.detail?.kind == .rights)
        let first = Set(ledger.rightsAsks(now: now, rng: &rng).map(\.holder))
        #expect(first == [Self.members[5], Self.members[3]], "the two believed to hold most")
        #expect(ledger.rightsAsks(now: now + 5, rng: &rng).isEmpty, "no answer yet: the next ask waits")
        // Peer 5 answers: it has spent its rights since. One of the two asked has answered: still waiting.
        ledger.absorb(spent: 10, by: 5, window: window, now: now + 6)
        #expect(ledger.rightsAsks(now: now + 6, rng: &rng).isEmpty)
        // Peer 3 answers likewise: every peer asked has answered without covering the call, so the next
        // holder (peer 4) is asked at once, well before the 50 ms an unanswered ask waits.
        ledger.absorb(spent: 10, by: 3, window: window, now: now + 8)
        #expect(ledger.rightsAsks(now: now + 8, rng: &rng).map(\.holder) == [Self.members[4]])
    }

    @Test func aPeerThatAnsweredIsNotAskedAgainAtOnceForAGiftItCannotCreditYet() {
        // Every right of the window is spent as far as node 0 can tell, but peer 3's ledger names gifts of 5
        // to peers 1 and 2 that its books do not cover in this view (it spent its 10 too): neither can
        // credit them yet, yet node 0 believes each holds 5. It asks them; each answers with its ledger,
        // nothing to spare. Asking them again at once went round that loop until the window's records
        // reached everyone (seconds in a mesh of 1,000 that had just started); now the next ask goes to
        // other peers, and they are asked again only a round later. (Checked to fail without it: the
        // answered ask went to peers 1 and 2 again.)
        var policy = ServicePolicy(limit: 60, windowMillis: 60_000, burstFraction: 1)
        policy.refill = .window
        let now = Self.start + 1_000
        var ledger = ledgerAmongLivePeers(count: Self.members.count, policy: policy, now: now)
        let window = ledger.rightsWindow(Self.key, now: now)!
        ledger.setOwnLedger(RightsLedger(windowEnd: window.windowEnd, spent: 10), of: Self.key)
        for peer in [1, 2, 4, 5] { ledger.absorb(spent: 10, by: peer, window: window, now: now) }
        let uncovered = RightsLedger(
            windowEnd: window.windowEnd, spent: 10,
            given: [RightsTransfer(receiver: Self.members[1], amount: 5), RightsTransfer(receiver: Self.members[2], amount: 5)])
        ledger.absorb(QuotaState(ledger: uncovered), of: Self.members[3], key: Self.key, stamp: now, records: [])
        let balances = ledger.balances(Self.key, window: window)
        #expect(balances.holding(of: Self.members[1]) == 0 && balances.believedHolding(of: Self.members[1]) == 5)

        var rng = SplitMix64(seed: 1)
        #expect(ledger.rightsDenial(Self.key, window: window, cost: 1, priority: .urgent, now: now)?.detail?.kind == .rights)
        let believed: Set = [Self.members[1], Self.members[2]]
        #expect(Set(ledger.rightsAsks(now: now, rng: &rng).map(\.holder)) == believed)
        for peer in believed { ledger.noteAnswered(Self.key, by: peer, directlyAt: now + 6) }
        let next = Set(ledger.rightsAsks(now: now + 6, rng: &rng).map(\.holder))
        #expect(!next.isEmpty, "every peer asked answered: it asks again at once")
        #expect(next.isDisjoint(with: believed), "others, not the two that just answered: \(next)")
        for peer in next { ledger.noteAnswered(Self.key, by: peer, directlyAt: now + 12) }
        // A round after they answered, the two are asked again (a gift may be covered by then).
        _ = ledger.rightsDenial(Self.key, window: window, cost: 1, priority: .urgent, now: now + 6 + QuotaLedger.rightsRefusalMillis)
        #expect(Set(ledger.rightsAsks(now: now + 6 + QuotaLedger.rightsRefusalMillis, rng: &rng).map(\.holder)) == believed)
    }

    @Test func aWantKeepsOnlyARoundOfAnswers() {
        // A want can last a long window while calls keep coming: it remembers the answers of the last round
        // only, not every answer since it began.
        var want = RightsWant(windowEnd: Self.start + 60_000, amount: 1, priority: .urgent, notedAt: Self.start)
        let round = QuotaLedger.rightsRefusalMillis
        for (index, offset) in [0, 100, round + 50].enumerated() {
            want.noteRefused(by: Self.members[index + 1], at: Self.start + offset, keepingFor: round)
        }
        #expect(Set(want.refused.keys) == [Self.members[2], Self.members[3]])
        #expect(want.refused(within: round, now: Self.start + round + 50) == [Self.members[2], Self.members[3]])
    }

    @Test func aNodeJustStartedAsksThePeersTheSplitDealtRightsTo() throws {
        // Three nodes sharing 30 calls a minute (10 each), just started: none has heard from another, so
        // none is live to node 0, but the window's split is known at once. Node 0 spends its 10; its next
        // urgent call asks the peers the split dealt rights to, and the gift lets it go. (Checked to fail
        // without it: no live peer, so no ask, and the calls waited for liveness, seconds where nodes are
        // many.)
        // Started 100 ms into a window.
        var mesh = TestMesh(
            count: 3, services: ["svc": ServicePolicy(limit: 30, windowMillis: 60_000, burstFraction: 1)],
            now: (1_800_000_000_000 / 60_000 + 1) * 60_000 + 100)
        let urgent = AcquireRequest(service: "svc", priority: .urgent)
        for _ in 0..<10 { #expect(mesh.acquire(0, urgent)?.granted == true) }
        let sent = mesh.wire.count
        #expect(mesh.acquire(0, urgent)?.granted == true, "a peer gave it rights")
        let asked = try Set(mesh.wire[sent...].compactMap { datagram -> Int? in
            guard datagram.from == 0, case .rightsRequest = try WireFormat.decodePayload(datagram.bytes) else { return nil }
            return datagram.to
        })
        #expect(asked == [1, 2])
    }

    @Test func anUrgentCallAtANodeThatHeardFromNobodyLooksAgainOnceItsAsksHadTimeToBeAnswered() throws {
        // Node 0 spent its rights and has heard from none of its five peers yet: it asks those the split
        // dealt rights to, so a refused urgent call is told to look again after an ask's round trip, not
        // five rounds later as where nobody can be asked. (Checked to fail without it: 1,000 ms.)
        var (ledger, window) = Self.ledger()
        let now = Self.start + 1_000
        ledger.mesh = MeshFacts(live: [], liveVersion: ledger.liveVersion + 1, unheard: 5, peerCount: 5)
        let decided = ledger.rightsDenial(Self.key, window: window, cost: 1, priority: .urgent, now: now)
        let denial = try #require(decided)
        #expect(denial.detail?.kind == .rights)
        #expect(try #require(denial.retryAt) <= now + QuotaLedger.rightsUrgentAskMillis)
    }

    /// ``ledger(refill:at:)`` once a call of `priority` found too few rights and its first ask went out.
    static func firstAsk(_ priority: Priority) -> (QuotaLedger, RightsWindow, SplitMix64, asked: [VerifyingKey]) {
        var (ledger, window) = Self.ledger()
        var rng = SplitMix64(seed: 1)
        _ = ledger.rightsDenial(Self.key, window: window, cost: 1, priority: priority, now: start + 1_000)
        let asked = ledger.rightsAsks(now: start + 1_000, rng: &rng).map(\.holder)
        return (ledger, window, rng, asked)
    }

    @Test func answeredAsksGoAtOnceOnlyAFewTimesInARow() {
        var (ledger, window, rng, asked) = Self.firstAsk(.urgent)
        let now = Self.start + 1_000
        // Every peer asked answers at once, each time with nothing to spare: the want asks again at once
        // `rightsAnsweredAsks` times, then waits for its timer (a refusal comes back within a loopback round
        // trip, so without the cap a waiting call would ask without end).
        for again in 0...QuotaLedger.rightsAnsweredAsks {
            #expect(!asked.isEmpty)
            for peer in asked { ledger.absorb(spent: 10, by: Self.members.firstIndex(of: peer)!, window: window, now: now) }
            asked = ledger.rightsAsks(now: now, rng: &rng).map(\.holder)
            #expect(asked.isEmpty == (again == QuotaLedger.rightsAnsweredAsks), "answered ask \(again + 1)")
        }
        #expect(!ledger.rightsAsks(now: now + QuotaLedger.rightsUrgentAskMillis, rng: &rng).isEmpty, "then on its timer")
    }

    @Test func aRefusalWithARecordTheAskerHoldsAlreadyIsAnAnswerToo() throws {
        // Three nodes sharing 30 calls a minute (10 each). Node 0 spends its 10; nodes 1 and 2 spend 9 in a
        // burst of urgent work, so each keeps its last right for its own urgent calls expected next; all
        // hear of each other's ledgers. Node 0's next urgent call asks both peers; each refuses, from the
        // second ask on with the record node 0 already holds. Those answers bring nothing new, but they are
        // answers: node 0 asks again at once (it waited 50 ms for its timer when only a new record counted).
        var mesh = TestMesh(count: 3, services: ["svc": ServicePolicy(limit: 30, windowMillis: 60_000, burstFraction: 1)])
        mesh.now = (mesh.now / 60_000 + 1) * 60_000 + 100
        mesh.run(for: 1_000)
        for (node, calls) in [(0, 10), (1, 9), (2, 9)] {
            for _ in 0..<calls { #expect(mesh.acquire(node, AcquireRequest(service: "svc", priority: .urgent))?.granted == true) }
        }
        mesh.run(for: 1_000)
        func rightsRequests(from node: Int, after sent: Int) throws -> Int {
            try mesh.wire[sent...].filter { datagram in
                guard datagram.from == node, case .rightsRequest = try WireFormat.decodePayload(datagram.bytes) else { return false }
                return true
            }.count
        }
        let sent = mesh.wire.count
        var request = AcquireRequest(service: "svc", priority: .urgent)
        request.waitMillis = 1_000
        #expect(mesh.acquire(0, request) == nil, "the call waits for rights")
        // The first ask and the answered ones, two peers each; none of the records the answers carried was new.
        #expect(try rightsRequests(from: 0, after: sent) == 2 * (1 + QuotaLedger.rightsAnsweredAsks))
    }

    @Test func normalWorkWaitsForItsTimerEvenWhenAnswered() {
        var (ledger, window, rng, asked) = Self.firstAsk(.normal)
        let now = Self.start + 1_000
        #expect(!asked.isEmpty)
        for peer in asked { ledger.absorb(spent: 10, by: Self.members.firstIndex(of: peer)!, window: window, now: now + 5) }
        _ = ledger.rightsDenial(Self.key, window: window, cost: 1, priority: .normal, now: now + 6)
        #expect(ledger.rightsAsks(now: now + 6, rng: &rng).isEmpty, "a round, not an answer, paces normal work")
    }

    @Test func whereRightsAccrueUrgentWorkIsNeitherPointedNorAskedAgainAtOnce() {
        // Half-way through a window whose rights accrue: a right dealt is spent within moments there, so no
        // view of holders is current, and asks that chased the answers cut a token bucket's utilization
        // (0.99 → 0.80 on one seed). Both stay with windows that come back whole.
        let now = Self.start + 30_000
        var (ledger, window) = Self.ledger(refill: .continuous, at: now)
        #expect(window.refill == .continuous)
        var rng = SplitMix64(seed: 1)
        let urgent = RightsRequest(key: Self.key, windowEnd: window.windowEnd, amount: 1, priority: .urgent)
        #expect(ledger.answer(urgent, from: Self.members[1], now: now) == .nothingToSpare(hints: []))
        _ = ledger.rightsDenial(Self.key, window: window, cost: 1, priority: .urgent, now: now)
        let asked = ledger.rightsAsks(now: now, rng: &rng).map(\.holder)
        #expect(!asked.isEmpty)
        for peer in asked { ledger.absorb(spent: 10, by: Self.members.firstIndex(of: peer)!, window: window, now: now + 5) }
        #expect(ledger.rightsAsks(now: now + 8, rng: &rng).isEmpty, "answered, but asked again only on its timer")
        #expect(!ledger.rightsAsks(now: now + 50, rng: &rng).isEmpty)
    }

    @Test func theAnswerCarriesTheRecordsOfTheHoldersItNames() throws {
        // Four nodes sharing 40 calls a minute (10 each). Nodes 2 and 3 spend one each, so node 1 holds
        // their records; node 1 spends all of its own.
        var mesh = TestMesh(count: 4, services: ["svc": ServicePolicy(limit: 40, windowMillis: 60_000, burstFraction: 1)])
        mesh.now = (mesh.now / 60_000 + 1) * 60_000 + 100
        mesh.run(for: 1_000)
        for node in [2, 3] { #expect(mesh.acquire(node, AcquireRequest(service: "svc", priority: .urgent))?.granted == true) }
        for _ in 0..<10 { #expect(mesh.acquire(1, AcquireRequest(service: "svc", priority: .urgent))?.granted == true) }
        mesh.run(for: 1_000)
        let windowEnd = (mesh.now / 60_000 + 1) * 60_000

        func answer(to priority: Priority, sequence: UInt64) throws -> [VerifyingKey] {
            let asker = testKey(0)
            let packet = WireFormat.encodePacket(
                header: PacketHeader(sender: asker.publicKey, incarnation: 9_000_000_000, sequence: sequence, sentAt: mesh.now),
                payload: .rightsRequest(RightsRequest(key: Self.key, windowEnd: windowEnd, amount: 1, priority: priority)),
                signingKey: asker, cluster: "quotamesh")
            let sent = mesh.nodes[1].receive(datagram: packet, from: endpoint(0), now: mesh.now).compactMap { directive in
                if case .send(let bytes, endpoint(0)) = directive { return bytes }
                return nil
            }
            return try sent.flatMap { bytes -> [VerifyingKey] in
                guard case .records(let records) = try WireFormat.decodePayload(bytes) else { return [] }
                return records.map(\.origin)
            }
        }
        let urgent = try answer(to: .urgent, sequence: 1)
        #expect(urgent.first == testKey(1).publicKey, "its own ledger first")
        #expect(Set(urgent.dropFirst()) == [testKey(2).publicKey, testKey(3).publicKey], "then the holders it knows: \(urgent)")
        #expect(try answer(to: .normal, sequence: 2) == [testKey(1).publicKey])
    }
}

extension QuotaLedger {
    /// Takes a record of peer `index` saying it spent `spent` of `window`'s rights.
    fileprivate mutating func absorb(spent: UInt64, by index: Int, window: RightsWindow, now: UnixMillis) {
        absorb(
            QuotaState(ledger: RightsLedger(windowEnd: window.windowEnd, spent: spent)), of: UrgentAskTests.members[index],
            key: UrgentAskTests.key, stamp: now, records: [])
    }
}

/// What the ledger knows of the peers is dissemination's, from the start on.
@Suite struct LedgerFactsTests {
    @Test func aNodeJustStartedCountsThePeersItHasNotHeardFromYet() {
        // Until a liveness timeout has passed, peers not heard from yet count for fair shares: a node that
        // has just started must not act as if alone. (Checked to fail when the start does not hand the
        // ledger its first facts: it then saw no peer at all until the first packet.)
        var mesh = TestMesh(count: 6, services: ["svc": ServicePolicy(limit: 60, windowMillis: 60_000)])
        let pieces = mesh.nodes[0].pacingBreakdown(QuotaKey(service: "svc"), now: mesh.now)
        #expect(pieces["unheard"] == 5)
        #expect(pieces["live"] == 0)
        #expect((pieces["share"] ?? 1) < 1, "a share of what is left, not all of it: \(pieces)")
    }
}

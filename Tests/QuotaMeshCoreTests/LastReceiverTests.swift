@testable import QuotaMeshCore
import QuotaMeshCrypto
import Testing

/// A ledger names at most ``RightsLedger/maxReceivers`` receivers a window: the gift that takes the last
/// place carries what the giver can spare, so that its surplus is not stranded where nobody new can be
/// given any (N = 100: a node holding 38 rights refused every urgent ask for the rest of a window).
@Suite struct LastReceiverTests {
    @Test func theLastReceiverOfAWindowTakesTheGiversSurplus() throws {
        let policy = ServicePolicy(
            limit: 100, windowMillis: 10_000, reserves: Reserves(urgent: 0, normal: 0, low: 0), burstFraction: 1)
        var mesh = TestMesh(count: 1, services: ["svc": policy])
        mesh.now = (mesh.now / 10_000 + 1) * 10_000 + 100
        let key = QuotaKey(service: "svc", account: "default")
        var ledger = mesh.nodes[0].ledger
        let window = try #require(ledger.rightsWindow(key, now: mesh.now))
        let own = ledger.owner
        #expect(ledger.balances(key, window: window).holding(of: own) == 100)
        for _ in 1..<RightsLedger.maxReceivers {
            #expect(ledger.giveRights(1, of: key, window: window, to: SigningKey().publicKey, now: mesh.now) == 1)
        }
        let last = SigningKey().publicKey
        let surplus = ledger.spareRights(key, window: window, priority: .low, horizon: QuotaLedger.rightsKeepMillis, now: mesh.now)
        #expect(surplus > 1)
        #expect(ledger.giveRights(1, of: key, window: window, to: last, now: mesh.now) == UInt64(surplus))
        #expect(ledger.balances(key, window: window).holding(of: own) == 100 - Int64(RightsLedger.maxReceivers - 1) - surplus)
        // A new receiver gets nothing now; one already named can still be given more.
        #expect(ledger.giveRights(1, of: key, window: window, to: SigningKey().publicKey, now: mesh.now) == 0)
        #expect(ledger.giveRights(1, of: key, window: window, to: last, now: mesh.now) == 1)
    }
}

/// A holder whose ledger names its last receiver can give nobody new anything: asked for urgent work by
/// a node it does not name, it gives through a receiver it names that can still give the asker some.
@Suite struct RelayedRightsTests {
    static let key = QuotaKey(service: "svc")
    static let members = (0..<15).map { testKey($0).publicKey }

    @Test func aFullLedgerPassesUrgentWorkItsRightsThroughAReceiverItNames() throws {
        let now: UnixMillis = 1_800_000_000_100
        let policy = ServicePolicy(
            limit: 300, windowMillis: 10_000, reserves: Reserves(urgent: 0, normal: 0, low: 0), burstFraction: 1)
        var ledger = ledgerAmongLivePeers(count: Self.members.count, policy: policy, now: now)
        let window = try #require(ledger.rightsWindow(Self.key, now: now))
        // Node 0 holds 20 and names receivers 1-12; the twelfth takes what it can spare, one right stays.
        for receiver in 1...RightsLedger.maxReceivers {
            #expect(ledger.giveRights(1, of: Self.key, window: window, to: Self.members[receiver], now: now) >= 1)
        }
        #expect(ledger.balances(Self.key, window: window).holding(of: Self.members[0]) == 1)
        let urgent = RightsRequest(key: Self.key, windowEnd: window.windowEnd, amount: 1, priority: .urgent)
        // Receiver 1's ledger in view names twelve others, not node 13: it could not give node 13 anything.
        var full = RightsLedger(windowEnd: window.windowEnd)
        for peer in [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14] { _ = full.give(1, to: Self.members[peer]) }
        #expect(full.given.count == RightsLedger.maxReceivers)
        ledger.absorb(QuotaState(ledger: full), of: Self.members[1], key: Self.key, stamp: now, records: [])
        // Asked by node 13, it gives its right to the receiver that holds least and can still give node 13
        // some: receivers 2-11 hold 22 each, receiver 1 is full, receiver 12 holds the surplus.
        // (among equal holdings, the least key).
        let relay = try #require(Self.members[2...11].min())
        #expect(ledger.answer(urgent, from: Self.members[13], now: now) == .relayed(window, through: relay))
        #expect(ledger.ownLedger(Self.key, window: window).given(to: relay) == 2)
        #expect(ledger.balances(Self.key, window: window).holding(of: Self.members[0]) == 0)
    }

    @Test func theRelayedRightGoesToTheRelayAndTheAskerIsShownWhere() throws {
        // Fifteen nodes sharing 3,000 calls a minute (200 each: none is short, so none is given any unasked).
        // Node 1 names nodes 2-13 this window.
        var mesh = TestMesh(count: 15, services: ["svc": ServicePolicy(
            limit: 3_000, windowMillis: 60_000, reserves: Reserves(urgent: 0, normal: 0, low: 0), burstFraction: 1)])
        mesh.now = (mesh.now / 60_000 + 1) * 60_000 + 100
        mesh.run(for: 1_000)
        for node in 2...13 { #expect(mesh.acquire(node, AcquireRequest(service: "svc", priority: .urgent))?.granted == true) }
        mesh.run(for: 2_000)
        let window = try #require(mesh.nodes[1].ledger.rightsWindow(Self.key, now: mesh.now))
        for receiver in 2...13 {
            #expect(mesh.nodes[1].ledger.giveRights(1, of: Self.key, window: window, to: testKey(receiver).publicKey, now: mesh.now) >= 1)
        }
        #expect(mesh.nodes[1].ledger.ownLedger(Self.key, window: window).given.count == RightsLedger.maxReceivers)
        #expect(mesh.nodes[1].ledger.balances(Self.key, window: window).holding(of: testKey(1).publicKey) == 1)
        // Node 0 asks it for urgent work.
        let asker = testKey(0)
        let packet = WireFormat.encodePacket(
            header: PacketHeader(sender: asker.publicKey, incarnation: 9_000_000_000, sequence: 1, sentAt: mesh.now),
            payload: .rightsRequest(RightsRequest(key: Self.key, windowEnd: window.windowEnd, amount: 1, priority: .urgent)),
            signingKey: asker, cluster: "quotamesh")
        var sent: [Endpoint: [VerifyingKey]] = [:]
        for directive in mesh.nodes[1].receive(datagram: packet, from: endpoint(0), now: mesh.now) {
            if case .send(let bytes, let destination) = directive, case .records(let records) = try WireFormat.decodePayload(bytes) {
                sent[destination, default: []] += records.map(\.origin)
            }
        }
        let given = mesh.nodes[1].ledger.ownLedger(Self.key, window: window).given
        let relay = try #require(given.first { $0.amount == 2 }?.receiver, "one receiver was given one more")
        let relayIndex = try #require((2...13).first { testKey($0).publicKey == relay })
        #expect(sent[endpoint(relayIndex)]?.first == testKey(1).publicKey, "the gift goes to the relay")
        #expect(sent[endpoint(0)]?.first == testKey(1).publicKey, "the asker gets the new ledger")
        #expect(sent[endpoint(0)]?.contains(relay) == true, "and the relay's record: \(sent[endpoint(0)] ?? [])")
    }
}

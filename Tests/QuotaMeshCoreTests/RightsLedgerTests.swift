import PropertyBased
import Testing
@testable import QuotaMeshCore
import QuotaMeshCrypto

/// The escrow's laws: ledgers merge as a lattice, the initial split adds up to the limit, and nodes that
/// spend and give only what their own (partial, stale) view says they hold never spend more than the
/// limit together, whatever order ledgers reach them in.
@Suite struct RightsLedgerTests {
    static let keys = (0..<6).map { testKey($0).publicKey }

    static let ledger = zip(Gen.int64(in: 0...3), Gen.uint64(in: 0...20), Gen.int(in: 0...5).array(of: 0...4)).map {
        window, spent, receivers in
        var ledger = RightsLedger(windowEnd: window * 1_000, spent: spent, refunded: spent / 3)
        for (index, receiver) in receivers.enumerated() { ledger.give(UInt64(index + 1), to: keys[receiver]) }
        return ledger
    }

    @Test func aLedgerIsALattice() async {
        await propertyCheck(count: 300, input: Self.ledger, Self.ledger, Self.ledger) { a, b, c in
            #expect(a.merging(b) == b.merging(a), "commutative")
            #expect(a.merging(b).merging(c) == a.merging(b.merging(c)), "associative")
            #expect(a.merging(a) == a, "idempotent")
        }
    }

    @Test func theInitialSplitAddsUpToTheLimitAndDiffersByAtMostOne() async {
        let input = zip(Gen.int(in: 1...40), Gen.int64(in: 0...500), Gen.int64(in: 1...1_000_000))
        await propertyCheck(count: 200, input: input) { count, limit, window in
            let members = (0..<count).map { testKey($0).publicKey }
            let allotment = RightsAllotment(members: members, limit: limit, windowEnd: window * 10_000)
            let initial = members.map { allotment.initial(of: $0) }
            #expect(initial.reduce(0, +) == limit)
            #expect((initial.max() ?? 0) - (initial.min() ?? 0) <= 1)
            #expect(allotment.initial(of: testKey(99).publicKey) == 0, "a stranger starts with nothing")
        }
    }

    @Test func rightsOfAContinuousRefillAreDealtAtTheRefillRateAndEndAsTheWindowsSplit() async {
        // A token bucket refills `limit` over the window: at any moment at most `limit × elapsed ÷ window`
        // of the window's rights exist, every member's part only grows, and at the end the split is the
        // window's.
        let input = zip(Gen.int(in: 1...40), Gen.int64(in: 1...500), Gen.int64(in: 1...100_000))
        await propertyCheck(count: 200, input: input) { count, limit, windowMillis in
            let members = (0..<count).map { testKey($0).publicKey }
            let end = (1_000_000 / windowMillis + 1) * windowMillis
            let whole = RightsAllotment(members: members, limit: limit, windowEnd: end)
            var previous = members.map { _ in Int64(0) }
            var elapsed: Int64 = 0
            while elapsed <= windowMillis {
                let window = RightsWindow(
                    limit: limit, windowMillis: windowMillis, windowEnd: end, refill: .continuous,
                    now: end - windowMillis + elapsed)
                #expect(window.unlocked == limit * elapsed / windowMillis)
                #expect(window.nextUnlockAt > end - windowMillis + elapsed || window.unlocked == limit)
                let dealt = whole.dealing(window.unlocked)
                let initial = members.map { dealt.initial(of: $0) }
                #expect(initial.reduce(0, +) == window.unlocked)
                #expect(zip(initial, previous).allSatisfy { $0 >= $1 }, "a member's part never shrinks")
                previous = initial
                elapsed += max(1, windowMillis / 13)
            }
            let full = RightsWindow(
                limit: limit, windowMillis: windowMillis, windowEnd: end, refill: .continuous, now: end)
            #expect(members.map { whole.dealing(full.unlocked).initial(of: $0) } == members.map { whole.initial(of: $0) })
        }
    }

    @Test func aGiverWhoseBooksDoNotBalanceIsNotCredited() {
        let members = Array(Self.keys.prefix(3))
        let allotment = RightsAllotment(members: members, limit: 30, windowEnd: 10_000)
        let liar = members[0]
        let honest = members[1]
        // The liar holds 10 and signs a transfer of 100: nothing of it is credited.
        var lie = RightsLedger(windowEnd: 10_000)
        lie.give(100, to: honest)
        let lied = RightsBalances(ledgers: [liar: lie], allotment: allotment)
        #expect(lied.uncovered == [liar])
        #expect(lied.holding(of: honest) == 10)
        // The same liar giving what it holds is credited: it can burn its own rights, no more.
        var fair = RightsLedger(windowEnd: 10_000)
        fair.give(10, to: honest)
        #expect(RightsBalances(ledgers: [liar: fair], allotment: allotment).holding(of: honest) == 20)
        // A giver covered only by a transfer from a giver who is not covered is not covered either.
        var chained = RightsLedger(windowEnd: 10_000)
        chained.give(60, to: members[2])
        let chain = RightsBalances(ledgers: [liar: lie, honest: chained], allotment: allotment)
        #expect(chain.uncovered == [liar, honest])
        #expect(chain.holding(of: members[2]) == 10)
    }

    /// Where a gift's giver is not covered in a view yet (a ledger that credits it has not arrived), its
    /// receiver holds nothing of it for spending, but is still believed to hold it when choosing whom to
    /// ask for rights.
    @Test func aGiftNotCoveredYetIsBelievedButNotCredited() {
        let members = Array(Self.keys.prefix(3))
        let allotment = RightsAllotment(members: members, limit: 30, windowEnd: 10_000)
        // Member 0 received 10 from member 2 (whose ledger this view lacks) and passed 15 on to member 1.
        var first = RightsLedger(windowEnd: 10_000)
        first.give(15, to: members[1])
        let view = RightsBalances(ledgers: [members[0]: first], allotment: allotment)
        #expect(view.uncovered == [members[0]])
        #expect(view.holding(of: members[1]) == 10, "not credited: member 0's books do not balance in this view")
        #expect(view.believedHolding(of: members[1]) == 25)
        #expect(view.believedHolding(of: members[0]) == -5, "what it gave counts against it either way")
        #expect(view.holding(of: members[0]) == view.believedHolding(of: members[0]))
    }

    /// A model of the protocol: each node keeps its own ledger and whatever copies of the others' it has
    /// received (possibly old ones: messages are delayed, lost, duplicated and reordered), spends or gives
    /// only what ``RightsBalances`` says it holds in that view (with the versions it credited before),
    /// and restarts from its saved ledger. In half the runs member 0 lies: it signs gifts and spends
    /// whatever its books say (its versions still only grow: a fork is quarantined where it is seen), and
    /// the honest members together still spend no more than the limit.
    @Test func nodesActingOnStaleViewsNeverSpendMoreThanTheLimitTogether() async {
        let input = zip(Gen.uint64(in: 0...UInt64.max), Gen.int(in: 2...6), Gen.int64(in: 1...40), Gen.bool)
        await propertyCheck(count: 300, input: input) { seed, count, limit, withLiar in
            var rng = SplitMix64(seed: seed)
            let members = Array(Self.keys.prefix(count))
            let allotment = RightsAllotment(members: members, limit: limit, windowEnd: 10_000)
            var own = members.map { _ in RightsLedger(windowEnd: 10_000) }
            // Every version of every ledger ever signed, so that deliveries can be old ones.
            var history = own.map { [$0] }
            var views: [[VerifyingKey: RightsLedger]] = members.map { _ in [:] }
            var credited: [[VerifyingKey: RightsLedger]] = members.map { _ in [:] }
            let honest = withLiar ? 1..<count : 0..<count
            for _ in 0..<300 {
                let node = Int.random(in: 0..<count, using: &rng)
                var view = views[node]
                view[members[node]] = own[node]
                let balances = RightsBalances(ledgers: view, allotment: allotment, credited: credited[node])
                credited[node] = balances.creditedLedgers
                let lying = withLiar && node == 0
                let held = lying ? Int64.max : balances.holding(of: members[node])
                switch Int.random(in: 0..<4, using: &rng) {
                case 0:
                    let cost = Int64.random(in: 1...3, using: &rng)
                    if held >= cost { own[node].spent += UInt64(cost) }
                case 1:
                    let receiver = Int.random(in: 0..<count, using: &rng)
                    let amount = Int64.random(in: 1...(lying ? 40 : 5), using: &rng)
                    if receiver != node, held >= amount { own[node].give(UInt64(amount), to: members[receiver]) }
                case 2:
                    // A copy of some version of another's ledger arrives (merged, as records are).
                    let origin = Int.random(in: 0..<count, using: &rng)
                    let version = history[origin][Int.random(in: 0..<history[origin].count, using: &rng)]
                    let receiver = Int.random(in: 0..<count, using: &rng)
                    if receiver != origin {
                        views[receiver][members[origin]] = views[receiver][members[origin]].merging(version)
                    }
                default:
                    // A crash: the node restarts from its saved ledger (saved before any spend or gift) and
                    // has lost its copies of the others' and what it credited.
                    views[node] = [:]
                    credited[node] = [:]
                }
                history[node].append(own[node])
                let spent = honest.reduce(UInt64(0)) { $0 + own[$1].netSpent }
                #expect(spent <= UInt64(limit), "seed \(seed): \(spent) spent of \(limit)")
                if spent > UInt64(limit) { return }
            }
        }
    }

    /// A giver's newer ledger that arrives before the ledgers crediting it does not take back what an
    /// earlier version of it gave (and what was spent of that downstream); its newer gifts wait until its
    /// books balance, and a version its ledger no longer covers (a fork) is not credited.
    @Test func aGiverAheadOfTheViewKeepsItsEarlierGiftsCredited() {
        let members = Array(Self.keys.prefix(4))
        let (a, b, c, d) = (members[0], members[1], members[2], members[3])
        let allotment = RightsAllotment(members: members, limit: 40, windowEnd: 10_000)
        var early = RightsLedger(windowEnd: 10_000)
        early.give(5, to: c)
        var spender = RightsLedger(windowEnd: 10_000, spent: 12)
        let first = RightsBalances(ledgers: [b: early, c: spender], allotment: allotment)
        #expect(first.holding(of: c) == 3)
        // B then received 5 from A and gave 10 to D; A's ledger has not arrived.
        var later = early
        later.give(10, to: d)
        let ahead: [VerifyingKey: RightsLedger] = [b: later, c: spender]
        let withoutCredits = RightsBalances(ledgers: ahead, allotment: allotment)
        #expect(withoutCredits.holding(of: c) == -2, "the rule alone takes C's credit back")
        let kept = RightsBalances(ledgers: ahead, allotment: allotment, credited: first.creditedLedgers)
        #expect(kept.holding(of: c) == 3)
        #expect(kept.holding(of: d) == 10, "B's newer gift waits")
        #expect(kept.uncovered == [b])
        #expect(kept.creditedLedgers[b] == early)
        // A's ledger arrives: B's books balance, and its newer gift is credited.
        var giver = RightsLedger(windowEnd: 10_000)
        giver.give(5, to: b)
        let whole = RightsBalances(
            ledgers: [a: giver, b: later, c: spender], allotment: allotment, credited: kept.creditedLedgers)
        #expect(whole.holding(of: d) == 20)
        #expect(whole.uncovered.isEmpty)
        #expect(whole.creditedLedgers[b] == later)
        // A version the giver's ledger does not cover is not credited: its gift to C went elsewhere.
        var fork = RightsLedger(windowEnd: 10_000)
        fork.give(10, to: d)
        spender.spent = 10
        let forked = RightsBalances(ledgers: [b: fork, c: spender], allotment: allotment, credited: first.creditedLedgers)
        #expect(forked.holding(of: c) == 0)
        // A giver that then spends more than it holds burns its own: what it gave C before still counts.
        var overspent = early
        overspent.spent = 30
        let burnt = RightsBalances(
            ledgers: [b: overspent, c: spender], allotment: allotment, credited: first.creditedLedgers)
        #expect(burnt.holding(of: c) == 5)
    }

    @Test func aSpendTakenIntoAccountInPlaceGivesTheBalancesWorkedOutAfresh() async {
        // Random ledgers of six members (some givers uncovered); one member spends: where `noteSpent`
        // accepts the spend, the balances are exactly those worked out again from the new ledger, and
        // where it refuses (the member uncovered, or holding less), it changed nothing.
        let input = zip(Self.ledger.array(of: 6), Gen.int(in: 0...5), Gen.uint64(in: 1...8), Gen.int64(in: 0...40))
        var accepted = 0
        await propertyCheck(count: 400, input: input) { ledgers, spender, amount, limit in
            let allotment = RightsAllotment(members: Self.keys, limit: limit, windowEnd: 0)
            var view: [VerifyingKey: RightsLedger] = [:]
            for (index, ledger) in ledgers.enumerated() where ledger.windowEnd == 0 { view[Self.keys[index]] = ledger }
            var balances = RightsBalances(ledgers: view, allotment: allotment)
            let before = balances
            var spent = view[Self.keys[spender]] ?? RightsLedger(windowEnd: 0)
            spent.spent += amount
            view[Self.keys[spender]] = spent
            let afresh = RightsBalances(ledgers: view, allotment: allotment)
            if balances.noteSpent(amount, by: Self.keys[spender]) {
                accepted += 1
                #expect(balances.holdings == afresh.holdings)
                #expect(balances.received == afresh.received)
                #expect(balances.uncovered == afresh.uncovered)
                #expect(Self.keys.allSatisfy { balances.believedHolding(of: $0) == afresh.believedHolding(of: $0) })
            } else {
                #expect(balances.holdings == before.holdings)
                #expect(before.holding(of: Self.keys[spender]) < Int64(amount)
                    || before.uncovered.contains(Self.keys[spender]))
            }
        }
        #expect(accepted >= 40, "the property was checked on spends taken in place (\(accepted) of 400)")
    }

    @Test func aLedgerRoundTripsOnTheWire() throws {
        var ledger = RightsLedger(windowEnd: 1_800_000_010_000, spent: 7, refunded: 2)
        ledger.give(3, to: Self.keys[2])
        ledger.give(1, to: Self.keys[1])
        let body = RecordBody.quota(QuotaKey(service: "svc"), QuotaState(ledger: ledger))
        let decoded = try WireFormat.decode(body: WireFormat.encode(body: body))
        #expect(decoded == body)
        // A refund larger than what was spent does not decode.
        var bytes = WireFormat.encode(body: body)
        let refundAt = bytes.count - 1 - 2 * (32 + 8) - 8
        bytes[refundAt] = 0xFF
        #expect(throws: DecodeError.self) { try WireFormat.decode(body: bytes) }
    }
}

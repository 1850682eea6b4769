import QuotaMeshCrypto

/// Rights moved from one origin to one receiver in a window: a grow-only count that only the giver writes.
public struct RightsTransfer: Hashable, Sendable, Codable {
    /// Who may spend the rights.
    public var receiver: VerifyingKey
    /// How many rights the giver has moved to the receiver in the window, in all.
    public var amount: UInt64

    /// Creates a transfer.
    public init(receiver: VerifyingKey, amount: UInt64) {
        self.receiver = receiver
        self.amount = amount
    }

    enum CodingKeys: String, CodingKey { case receiver, amount }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        receiver = try VerifyingKey(base64: try container.decode(String.self, forKey: .receiver))
        amount = try container.decode(UInt64.self, forKey: .amount)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(receiver.base64, forKey: .receiver)
        try container.encode(amount, forKey: .amount)
    }
}

/// One origin's escrow account for one quota key in one window: what it spent and what it gave away
/// (the demarcation protocol, O'Neil 1986; its CRDT form is the bounded counter, Balegas et al. 2015).
///
/// Only the origin writes its ledger, and every field only grows within a window, so copies merge by
/// maximum. The origin's initial rights come from ``RightsAllotment``; what others gave it is read from
/// their ledgers. It may spend or give only while `initial + received − spent − given ≥ cost`, so the
/// rights of all origins together never go below zero: the window's spending stays within its limit.
public struct RightsLedger: JoinSemilattice, Hashable, Codable {
    /// The most receivers one window's ledger names, so that a record fits in a packet.
    public static let maxReceivers = 12

    /// The end of the window the ledger is for (Unix ms): windows are `windowMillis` long, aligned to the
    /// epoch, so every node names them alike.
    public var windowEnd: UnixMillis
    /// What the origin granted in the window.
    public var spent: UInt64
    /// What of `spent` the upstream did not use after all (a call that cost fewer tokens than its acquire
    /// reserved): grow-only too, never more than `spent`, and the origin's to spend again.
    public var refunded: UInt64
    /// What it gave, by receiver (sorted by receiver, one entry each).
    public private(set) var given: [RightsTransfer]

    /// An empty ledger for the window ending at `windowEnd`.
    public init(windowEnd: UnixMillis, spent: UInt64 = 0, refunded: UInt64 = 0, given: [RightsTransfer] = []) {
        self.windowEnd = windowEnd
        self.spent = spent
        self.refunded = min(refunded, spent)
        self.given = given.sorted { $0.receiver < $1.receiver }
    }

    enum CodingKeys: String, CodingKey { case windowEnd, spent, refunded, given }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            windowEnd: try container.decode(Int64.self, forKey: .windowEnd),
            spent: try container.decode(UInt64.self, forKey: .spent),
            refunded: try container.decodeIfPresent(UInt64.self, forKey: .refunded) ?? 0,
            given: try container.decode([RightsTransfer].self, forKey: .given))
    }

    /// What the origin spent net of refunds.
    public var netSpent: UInt64 { spent - min(refunded, spent) }

    /// Everything given away in the window.
    public var totalGiven: UInt64 { given.reduce(0) { $0.saturatingAdd($1.amount) } }

    /// What went to `receiver` in the window.
    public func given(to receiver: VerifyingKey) -> UInt64 {
        given.first { $0.receiver == receiver }?.amount ?? 0
    }

    /// Whether the ledger can name `receiver` (it does already, or has room for one more).
    public func canGive(to receiver: VerifyingKey) -> Bool {
        given.count < Self.maxReceivers || given.contains { $0.receiver == receiver }
    }

    /// Records `amount` more given to `receiver`; `false` (and nothing changed) when the ledger has no
    /// room for a new receiver.
    @discardableResult
    public mutating func give(_ amount: UInt64, to receiver: VerifyingKey) -> Bool {
        if let index = given.firstIndex(where: { $0.receiver == receiver }) {
            given[index].amount = given[index].amount.saturatingAdd(amount)
            return true
        }
        guard given.count < Self.maxReceivers else { return false }
        given.append(RightsTransfer(receiver: receiver, amount: amount))
        given.sort { $0.receiver < $1.receiver }
        return true
    }

    /// The join: a later window supersedes an earlier one; within a window, each count by maximum.
    public func merging(_ other: RightsLedger) -> RightsLedger {
        if windowEnd != other.windowEnd { return windowEnd > other.windowEnd ? self : other }
        var merged = RightsLedger(
            windowEnd: windowEnd, spent: max(spent, other.spent), refunded: max(refunded, other.refunded), given: given)
        for transfer in other.given where transfer.amount > merged.given(to: transfer.receiver) {
            if let index = merged.given.firstIndex(where: { $0.receiver == transfer.receiver }) {
                merged.given[index].amount = transfer.amount
            } else {
                merged.given.append(transfer)
            }
        }
        merged.given.sort { $0.receiver < $1.receiver }
        return merged
    }

    /// Whether this ledger includes everything `earlier` says, in the same window: what an origin that
    /// signs honestly always signs next, since every count only grows.
    public func covers(_ earlier: RightsLedger) -> Bool {
        guard windowEnd == earlier.windowEnd else { return windowEnd > earlier.windowEnd }
        return spent >= earlier.spent && refunded >= earlier.refunded
            && earlier.given.allSatisfy { given(to: $0.receiver) >= $0.amount }
    }

    /// Whether the ledger is well formed: receivers sorted and distinct, at most ``maxReceivers``, none of
    /// them the origin itself.
    public func isWellFormed(origin: VerifyingKey) -> Bool {
        guard given.count <= Self.maxReceivers, refunded <= spent else { return false }
        for index in given.indices {
            if given[index].receiver == origin { return false }
            if index > 0 && !(given[index - 1].receiver < given[index].receiver) { return false }
        }
        return true
    }
}

/// How a window's limit is first divided among the members (this node and every peer in its trust
/// store): the window's rights are dealt out one at a time to the members in an order hashed from the
/// window, so each holds `limit ÷ members` and the remainder falls to different members window after
/// window. Every node derives the same split from the same members, limit and window, so the initial
/// rights add up to exactly the limit.
///
/// For an upstream that refills continuously (a token bucket), only the rights dealt so far exist:
/// `unlocked` of them, growing with the window at the refill rate, so the mesh never spends faster than
/// the bucket refills over any stretch of time.
public struct RightsAllotment: Sendable, Hashable {
    /// The members, sorted.
    public let members: [VerifyingKey]
    /// The window's limit.
    public let limit: Int64
    /// The window's end.
    public let windowEnd: UnixMillis
    /// How many of the window's rights are dealt (the limit, except while a continuous refill accrues).
    public private(set) var unlocked: Int64
    /// Each member's place in the window's dealing order.
    private let place: [VerifyingKey: Int]

    /// Splits `limit` among `members` for the window ending at `windowEnd`, `unlocked` rights of it dealt
    /// (all of them when `nil`).
    public init(members: [VerifyingKey], limit: Int64, windowEnd: UnixMillis, unlocked: Int64? = nil) {
        let sorted = Array(Set(members)).sorted()
        self.members = sorted
        self.limit = max(0, limit)
        self.windowEnd = windowEnd
        self.unlocked = min(self.limit, max(0, unlocked ?? self.limit))
        let salt = UInt64(bitPattern: windowEnd) &* 0x9E37_79B9_7F4A_7C15
        let ranked = sorted.sorted { Self.rank($0, salt: salt) < Self.rank($1, salt: salt) }
        place = Dictionary(uniqueKeysWithValues: ranked.enumerated().map { ($0.element, $0.offset) })
    }

    /// The same split with `unlocked` rights dealt.
    public func dealing(_ unlocked: Int64) -> RightsAllotment {
        var copy = self
        copy.unlocked = min(limit, max(0, unlocked))
        return copy
    }

    /// The rights `member` has been dealt in the window (0 for a key that is not a member).
    public func initial(of member: VerifyingKey) -> Int64 {
        guard let place = place[member] else { return 0 }
        let count = Int64(members.count)
        return unlocked / count + (Int64(place) < unlocked % count ? 1 : 0)
    }

    /// `member`'s place in the window's dealing order (`nil` for a key that is not a member): every node
    /// ranks the members alike for the window.
    public func place(of member: VerifyingKey) -> Int? { place[member] }

    static func rank(_ member: VerifyingKey, salt: UInt64) -> UInt64 {
        var mixer = SplitMix64(
            seed: member.words.0 ^ (member.words.1 &* 3) ^ (member.words.2 &* 5) ^ (member.words.3 &* 7) ^ salt)
        return mixer.next()
    }
}

/// The balance of every member in one window, from every origin's ledger: what each holds, and what
/// each received from givers whose own books balance.
///
/// A giver's transfers count only from a version of its ledger whose books balance in this view:
/// `initial + received ≥ spent + given`, with `received` counted the same way. A ledger that does not
/// balance is either ahead of this node's view (transfers to it not heard of yet) or a liar's; either way,
/// crediting it could create rights that do not exist, so its newer transfers wait. Where an earlier
/// version of the giver's ledger was credited (`credited`, the ``creditedLedgers`` of the balances worked
/// out before), its transfers count while that version still balances: every count only grows, so it is
/// the giver's own signed word, covered by the newer one. Without it, one giver's newer record arriving
/// before the records that credit it took back every credit downstream of it (docs/PROTOCOL.md,
/// "Rights"). The credits are the
/// greatest fixpoint of that rule, found by stepping givers down (latest, last credited, none) until every
/// version credited balances: crediting never exceeds what the credited versions can pay, so the
/// balances this node acts on never add up to more than the limit.
public struct RightsBalances: Sendable {
    /// What each member holds: initial + credited − spent − given (may be negative for an uncovered one).
    public private(set) var holdings: [VerifyingKey: Int64] = [:]
    /// What each member received from credited versions of its givers' ledgers.
    public private(set) var received: [VerifyingKey: UInt64] = [:]
    /// Givers whose latest ledgers do not balance (their newer transfers are not credited).
    public private(set) var uncovered: Set<VerifyingKey> = []
    /// The version of each giver's ledger whose transfers are credited: its latest where that balances,
    /// else the earlier one still credited. Pass them to the next balances of the same window.
    public private(set) var creditedLedgers: [VerifyingKey: RightsLedger] = [:]
    /// What each member received by every transfer seen, covered or not (``believedHolding(of:)``).
    private var announced: [VerifyingKey: UInt64] = [:]
    /// The window's initial split the balances start from.
    public let allotment: RightsAllotment

    /// Works the balances out.
    /// - Parameters:
    ///   - ledgers: every origin's ledger for the window (others for other windows are passed over).
    ///   - allotment: the window's initial split.
    ///   - credited: the versions credited when the balances were last worked out (``creditedLedgers``);
    ///     one counts only while the origin's ledger in `ledgers` covers it and it still balances.
    public init(
        ledgers: [VerifyingKey: RightsLedger], allotment: RightsAllotment,
        credited: [VerifyingKey: RightsLedger] = [:]
    ) {
        self.allotment = allotment
        let current = ledgers.filter { $0.value.windowEnd == allotment.windowEnd }
        // Each giver's version in force, stepped down from its latest to the one last credited (while the
        // latest covers it), then to none.
        var inForce = current
        var fallback: [VerifyingKey: RightsLedger] = [:]
        for (origin, earlier) in credited where earlier.windowEnd == allotment.windowEnd && earlier != current[origin] {
            if let latest = current[origin], latest.covers(earlier) { fallback[origin] = earlier }
        }
        var received: [VerifyingKey: UInt64] = [:]
        var steppedDown: Set<VerifyingKey> = []
        var firstPass = true
        while true {
            received = [:]
            for (_, ledger) in inForce {
                for transfer in ledger.given {
                    received[transfer.receiver, default: 0] = received[transfer.receiver, default: 0]
                        .saturatingAdd(transfer.amount)
                }
            }
            // The first pass, with every latest ledger in force, credits every transfer seen.
            if firstPass {
                announced = received
                firstPass = false
            }
            let failing = inForce.filter { giver, ledger in
                let inflow = Int64(clamping: received[giver] ?? 0)
                let outflow = Int64(clamping: ledger.netSpent.saturatingAdd(ledger.totalGiven))
                return allotment.initial(of: giver).saturatingAdd(inflow) < outflow
            }
            if failing.isEmpty { break }
            for giver in failing.keys {
                inForce[giver] = fallback.removeValue(forKey: giver)
                steppedDown.insert(giver)
            }
        }
        self.received = received
        self.creditedLedgers = inForce
        self.uncovered = steppedDown
        for member in allotment.members {
            let ledger = current[member]
            let outflow = Int64(clamping: (ledger?.netSpent ?? 0).saturatingAdd(ledger?.totalGiven ?? 0))
            holdings[member] = allotment.initial(of: member)
                .saturatingAdd(Int64(clamping: received[member] ?? 0)).saturatingSubtract(outflow)
        }
    }

    /// What `member` holds (0 for one that is not a member).
    public func holding(of member: VerifyingKey) -> Int64 { holdings[member] ?? 0 }

    /// Takes a spend of `amount` by `member` into account without working everything out again: `true`
    /// when it could, which is when the member is covered and holds at least `amount` (its books still
    /// balance, so every giver's coverage, and so every credit, stays as it was); `false` leaves the
    /// balances unchanged, to be worked out afresh.
    public mutating func noteSpent(_ amount: UInt64, by member: VerifyingKey) -> Bool {
        // One look-up of the member, and none in `uncovered` when every giver is covered (the usual case).
        guard let index = holdings.index(forKey: member), uncovered.isEmpty || !uncovered.contains(member),
            holdings.values[index] >= Int64(clamping: amount)
        else { return false }
        holdings.values[index] -= Int64(clamping: amount)
        return true
    }

    /// What `member` probably holds: as ``holding(of:)``, crediting every transfer to it that a ledger
    /// shows, covered or not. Where a giver's books do not balance yet in this view (a ledger it was
    /// credited by has not arrived), its receivers usually hold them all the same; this is the view to
    /// choose whom to ask, never what a node may spend.
    public func believedHolding(of member: VerifyingKey) -> Int64 {
        guard let holding = holdings[member] else { return 0 }
        let uncredited = (announced[member] ?? 0) - (received[member] ?? 0)
        return holding.saturatingAdd(Int64(clamping: uncredited))
    }
}

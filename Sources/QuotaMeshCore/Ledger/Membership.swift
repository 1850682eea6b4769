import QuotaMeshCrypto

/// The members a window's rights are split among — this node and every peer in its trust store — and
/// whether the peers split them among the same: each peer's newest quota record names its set (a
/// ``MembersDigest``), and parts split among different members need not add up to the limit, so while any
/// trusted peer names another set, no rights are spent.
struct Membership: Sendable {
    /// This node and every peer in its trust store, sorted.
    private(set) var members: [VerifyingKey] = []
    /// The digest of ``members``, signed in every quota record this node makes.
    private(set) var digest = MembersDigest(count: 0, hash: 0)
    /// Per peer, the member set its newest quota record names, and when it signed that record.
    private var named: [VerifyingKey: (digest: MembersDigest, stamp: UnixMillis)] = [:]
    /// Peers whose member set is not this node's.
    private(set) var differ: Set<VerifyingKey> = []

    /// Takes the members of `directory` and this node's `own` key; `true` if the set changed (every record
    /// this node signs names it, so they are all signed again). Peers no longer trusted are forgotten.
    @discardableResult
    mutating func update(_ directory: PeerDirectory, own: VerifyingKey) -> Bool {
        members = Array(Set(directory.infos.map(\.key) + [own])).sorted()
        named = named.filter { directory.index(of: $0.key) != nil }
        let next = MembersDigest(members: members)
        guard next != digest else { return false }
        digest = next
        return true
    }

    /// Notes the set `peer`'s record signed at `stamp` names, unless a newer record named one; `true` if
    /// the set named changed.
    mutating func note(_ peerDigest: MembersDigest, of peer: VerifyingKey, stamp: UnixMillis) -> Bool {
        if let held = named[peer], held.stamp > stamp { return false }
        let changed = named[peer]?.digest != peerDigest
        named[peer] = (peerDigest, stamp)
        return changed
    }

    /// Forgets what `peer` named (it was quarantined).
    mutating func forget(_ peer: VerifyingKey) { named[peer] = nil }

    /// How many members `peer`'s newest record names (`nil` before one did).
    func count(namedBy peer: VerifyingKey) -> Int? { named[peer].map { Int($0.digest.count) } }

    /// Works out which peers (none of them in `ignored`) name another set; returns the events: a peer that
    /// starts to differ, or every peer agreeing again.
    mutating func reconcile(ignoring ignored: (VerifyingKey) -> Bool) -> [MeshEvent] {
        var next: Set<VerifyingKey> = []
        for (peer, held) in named where held.digest != digest && !ignored(peer) { next.insert(peer) }
        guard next != differ else { return [] }
        var events = next.subtracting(differ).sorted().map { MeshEvent.membersDiffer($0, count: count(namedBy: $0) ?? 0) }
        if next.isEmpty { events.append(.membersAgree) }
        differ = next
        return events
    }
}

import QuotaMeshCrypto

/// The members a window's rights are split among — this node and every peer in its trust store — and
/// whether the peers split them among the same: each peer's newest quota record names its set (a
/// ``MembersDigest``). Parts split among different members need not add up to the limit: a node that
/// counts fewer members than another gives itself a larger part, and a node missing from some stores is
/// unknown to them. So a node stops spending rights (``stopped``) while the peers that name another set
/// of at least as many members are at least as many as the nodes that name its own, itself included.
/// The node whose store is the odd one out stops; the others go on (and report it). One vouched peer
/// naming a bogus set stops nobody where two or more nodes agree, and rights never bound what a lying
/// peer sends upstream anyway: only honest nodes' own parts are at stake.
struct Membership: Sendable {
    /// This node and every peer in its trust store, sorted.
    private(set) var members: [VerifyingKey] = []
    /// The digest of ``members``, signed in every quota record this node makes.
    private(set) var digest = MembersDigest(count: 0, hash: 0)
    /// Per peer, the member set its newest quota record names, and when it signed that record.
    private var named: [VerifyingKey: (digest: MembersDigest, stamp: UnixMillis)] = [:]
    /// Peers whose member set is not this node's.
    private(set) var differ: Set<VerifyingKey> = []
    /// Whether this node spends no rights: the peers naming another set of at least as many members are
    /// at least as many as the nodes naming its own (itself included).
    private(set) var stopped = false

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

    /// Works out which peers (none of them in `ignored`) name another set, and whether this node stops;
    /// returns the events: a peer that starts to differ (and whether this node stopped), or every peer
    /// agreeing again.
    mutating func reconcile(ignoring ignored: (VerifyingKey) -> Bool) -> [MeshEvent] {
        var next: Set<VerifyingKey> = []
        var agreeing = 1
        var larger = 0
        for (peer, held) in named where !ignored(peer) {
            if held.digest == digest {
                agreeing += 1
            } else {
                next.insert(peer)
                if held.digest.count >= digest.count { larger += 1 }
            }
        }
        let stop = larger >= agreeing
        guard next != differ || stop != stopped else { return [] }
        let fresh = next.subtracting(differ).sorted()
        differ = next
        stopped = stop
        var events = fresh.map { MeshEvent.membersDiffer($0, count: count(namedBy: $0) ?? 0, stopped: stop) }
        if next.isEmpty { events.append(.membersAgree) }
        return events
    }
}

import QuotaMeshCrypto

/// The trust store as the protocol core reads it: every vouched peer once, in key order, each at an
/// index.
///
/// A directory is immutable and may be shared: instances made from one directory hold one copy of it
/// between them, and keep only their own view of each peer (when it was last heard, its replay window)
/// in an array beside it. A simulator's ten thousand nodes each trust the other 9,999; one shared
/// directory and a few dozen bytes per peer per node are what let them fit in one machine's memory.
/// A node's own key may be in the directory: the instance passes over its own entry.
public final class PeerDirectory: Sendable {
    /// The peers, sorted by key; a key given twice keeps its last entry.
    public let infos: [PeerInfo]
    /// The keys of `infos`, in the same order: what a look-up compares, without touching the rest.
    private let keys: [VerifyingKey]
    /// An open-addressing table (linear probing, at most half full): each entry is an index into
    /// `infos`, or -1. Every packet and most records look a key up here, and a dictionary's general
    /// hashing cost more than the rest of a duplicate's handling.
    private let table: [Int32]
    private let tableMask: Int

    /// Makes a directory of `peers`.
    public init(_ peers: [PeerInfo]) {
        var byKey: [VerifyingKey: PeerInfo] = [:]
        byKey.reserveCapacity(peers.count)
        for info in peers { byKey[info.key] = info }
        infos = byKey.values.sorted { $0.key < $1.key }
        keys = infos.map(\.key)
        var capacity = 8
        while capacity < 2 * infos.count { capacity *= 2 }
        var table = [Int32](repeating: -1, count: capacity)
        for (position, key) in keys.enumerated() {
            var slot = Self.home(of: key, mask: capacity - 1)
            while table[slot] >= 0 { slot = (slot + 1) & (capacity - 1) }
            table[slot] = Int32(position)
        }
        self.table = table
        tableMask = capacity - 1
    }

    /// The number of entries.
    public var count: Int { infos.count }

    /// The index of `key`, if it is in the directory.
    public func index(of key: VerifyingKey) -> Int? {
        var slot = Self.home(of: key, mask: tableMask)
        while true {
            let position = Int(table[slot])
            if position < 0 { return nil }
            if keys[position] == key { return position }
            slot = (slot + 1) & tableMask
        }
    }

    /// Where `key` starts probing: a public key's bytes are uniformly random, and the multiply-shift
    /// mix spreads even keys chosen to share their first word.
    private static func home(of key: VerifyingKey, mask: Int) -> Int {
        let mixed = (key.words.0 ^ key.words.3 &* 0x9E37_79B9_7F4A_7C15) &* 0xBF58_476D_1CE4_E5B9
        return Int(truncatingIfNeeded: mixed >> 20) & mask
    }
}

/// What a node knows of one peer beyond the directory's entry: when it last heard from it, its packet
/// replay window, where it was last heard from, whether it was announced up. Small, because a node keeps
/// one per trusted peer.
struct PeerState: Sendable {
    var lastHeardAt: UnixMillis?
    var replay = ReplayWindow()
    var announcedLive = false
    /// Verified packets the peer may still send now (a bucket of ``packetBurst``, refilled at
    /// ``packetsPerSecond``), and when it was last counted.
    var packetTokens = Self.packetBurst
    var packetTokensAt: UnixMillis = .min

    /// How many verified packets one peer may send at once, and a second after that: many times what
    /// gossip, anti-entropy answers and rights traffic need, so that a vouched peer flooding valid packets
    /// costs at most this many signature checks a second and its further packets a look-up each.
    static let packetBurst = 500.0
    static let packetsPerSecond = 200.0

    /// Whether the peer may have another packet checked now.
    func mayBeChecked(now: UnixMillis) -> Bool { packets(at: now) >= 1 }

    /// Counts a verified packet of the peer's.
    mutating func noteVerifiedPacket(now: UnixMillis) {
        packetTokens = packets(at: now) - 1
        packetTokensAt = now
    }

    private func packets(at now: UnixMillis) -> Double {
        guard packetTokensAt != .min else { return packetTokens }
        let refill = Double(max(0, now.saturatingSubtract(packetTokensAt))) * Self.packetsPerSecond / 1000
        return min(Self.packetBurst, packetTokens + refill)
    }

    func isLive(now: UnixMillis, timeout: Int64) -> Bool {
        guard let last = lastHeardAt else { return false }
        return now.saturatingSubtract(last) < timeout
    }
}

/// A node's peers: the shared directory less the node itself, and the node's own state per peer.
struct PeerTable: Sendable {
    let directory: PeerDirectory
    /// The node's own entry in the directory, if its key is there: never a peer.
    let ownIndex: Int?
    /// By directory index: where the peer's state is in `states`, or -1 while none was stored (a peer
    /// never heard from: most of a young large cluster, so a node keeps 4 bytes for each of those).
    private var slots: [Int32]
    /// The states stored, in the order they were first stored.
    private var states: [PeerState] = []
    /// Where a peer was last heard from, where that differs from its directory entry (so this stays
    /// empty wherever peers send from the address the trust store gives).
    private var observedEndpoints: [Int: Endpoint] = [:]

    init(directory: PeerDirectory, own: VerifyingKey) {
        self.directory = directory
        self.ownIndex = directory.index(of: own)
        self.slots = Array(repeating: -1, count: directory.count)
    }

    /// The number of peers (the directory less this node).
    var count: Int { directory.count - (ownIndex == nil ? 0 : 1) }
    var isEmpty: Bool { count == 0 }

    /// The index of peer `key`, if it is trusted and not this node.
    func index(of key: VerifyingKey) -> Int? {
        guard let index = directory.index(of: key), index != ownIndex else { return nil }
        return index
    }

    func contains(_ key: VerifyingKey) -> Bool { index(of: key) != nil }

    /// Whether `key` is a trusted peer this node has not heard from since it started.
    func neverHeard(_ key: VerifyingKey) -> Bool {
        guard let index = index(of: key) else { return false }
        return self[index].lastHeardAt == nil
    }

    /// The directory index of the `position`-th peer in key order (0 ..< count), passing over this node.
    func index(atPosition position: Int) -> Int {
        guard let own = ownIndex, position >= own else { return position }
        return position + 1
    }

    /// The directory indices of every peer, in key order.
    var indices: [Int] { (0..<count).map { index(atPosition: $0) } }

    func key(at index: Int) -> VerifyingKey { directory.infos[index].key }
    func info(at index: Int) -> PeerInfo { directory.infos[index] }

    /// The node's state for the peer at `index`.
    subscript(index: Int) -> PeerState {
        get {
            let slot = Int(slots[index])
            return slot < 0 ? PeerState() : states[slot]
        }
        set {
            let slot = Int(slots[index])
            if slot < 0 {
                slots[index] = Int32(states.count)
                states.append(newValue)
            } else {
                states[slot] = newValue
            }
        }
    }

    /// Where to send to the peer at `index`.
    func endpoint(at index: Int) -> Endpoint? { observedEndpoints[index] ?? directory.infos[index].endpoint }

    /// Notes the address the peer at `index` was last heard from.
    mutating func observe(_ endpoint: Endpoint, at index: Int) {
        if endpoint == directory.infos[index].endpoint {
            observedEndpoints[index] = nil
        } else {
            observedEndpoints[index] = endpoint
        }
    }

    /// A table on `directory` that keeps what this one knew of the peers both trust.
    func moved(to directory: PeerDirectory, own: VerifyingKey) -> PeerTable {
        var next = PeerTable(directory: directory, own: own)
        for index in next.indices {
            guard let old = self.index(of: next.key(at: index)) else { continue }
            if slots[old] >= 0 { next[index] = self[old] }
            if let endpoint = observedEndpoints[old] { next.observe(endpoint, at: index) }
        }
        return next
    }
}

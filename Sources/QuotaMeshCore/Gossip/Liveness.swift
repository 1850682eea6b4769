import QuotaMeshCrypto

/// Which trusted peers are live: heard from (directly, or through a record they signed) within the
/// liveness timeout, and not quarantined. A sorted list that fair shares, turns and rights requests
/// read every decision, kept up to date as peers are heard from and refreshed only when the earliest
/// live peer can have timed out.
struct Liveness: Sendable {
    /// Live peers, sorted.
    private(set) var live: [VerifyingKey] = []
    /// Bumped whenever ``live`` changes (caches keyed on it are then stale).
    private(set) var version: UInt64 = 0
    /// Peers never heard from since start; while the start is recent they still count for fair shares.
    private(set) var unheard = 0
    /// The earliest time a live peer can time out: liveness is refreshed only from then on.
    private(set) var checkAt: UnixMillis = .min

    /// Starts over for `peers`: none live, those never heard from counted, a refresh due at once.
    mutating func reset(_ peers: PeerTable) {
        live = live.filter { peers.contains($0) }
        unheard = peers.indices.count { peers[$0].lastHeardAt == nil }
        checkAt = .min
        version += 1
    }

    /// Notes that `key` (whose state is `peer`) was heard from at `time`; `true` when that brought it up.
    mutating func markHeard(
        _ peer: inout PeerState, key: VerifyingKey, at time: UnixMillis, now: UnixMillis, timeout: Int64,
        quarantined: Bool
    ) -> Bool {
        let wasLive = peer.isLive(now: now, timeout: timeout)
        if peer.lastHeardAt == nil { unheard -= 1 }
        peer.lastHeardAt = max(peer.lastHeardAt ?? time, time)
        guard !wasLive && peer.isLive(now: now, timeout: timeout) && !quarantined else { return false }
        peer.announcedLive = true
        checkAt = min(checkAt, (peer.lastHeardAt ?? time).saturatingAdd(timeout))
        // Binary search for the insertion point: `live` stays sorted without re-sorting it.
        var low = 0
        var high = live.count
        while low < high {
            let middle = (low + high) / 2
            if live[middle] < key { low = middle + 1 } else { high = middle }
        }
        if low == live.count || live[low] != key {
            live.insert(key, at: low)
            version += 1
        }
        return true
    }

    /// Works the live list out again at `now`; returns the peers that went down since they were announced
    /// up (their `announcedLive` is cleared).
    mutating func refresh(
        _ peers: inout PeerTable, now: UnixMillis, timeout: Int64, isQuarantined: (VerifyingKey) -> Bool
    ) -> [VerifyingKey] {
        var next: [VerifyingKey] = []
        next.reserveCapacity(live.count)
        var down: [VerifyingKey] = []
        var earliest = UnixMillis.max
        // In the directory's order, which is by key, so `next` needs no sort.
        for position in 0..<peers.count {
            let index = peers.index(atPosition: position)
            let key = peers.key(at: index)
            let peer = peers[index]
            if peer.isLive(now: now, timeout: timeout), let heard = peer.lastHeardAt, !isQuarantined(key) {
                next.append(key)
                earliest = min(earliest, heard.saturatingAdd(timeout))
            } else if peer.announcedLive {
                peers[index].announcedLive = false
                down.append(key)
            }
        }
        checkAt = earliest
        if next != live {
            live = next
            version += 1
        }
        return down
    }

    /// Takes `key` out of the live list (it was quarantined).
    mutating func remove(_ key: VerifyingKey) {
        live.removeAll { $0 == key }
        version += 1
    }
}

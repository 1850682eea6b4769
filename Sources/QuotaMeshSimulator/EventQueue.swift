import HeapModule

/// Timed events, earliest first (swift-collections' `Heap`); ties keep insertion order, so runs are
/// deterministic.
///
/// The heap holds only keys (time, insertion order, payload slot), so it moves plain words; the payloads
/// (datagrams among them) stay in a slot array and move once in and once out.
struct EventQueue<Payload> {
    private struct Key: Comparable {
        var time: Int64
        var order: UInt64
        var slot: Int

        static func < (lhs: Key, rhs: Key) -> Bool { (lhs.time, lhs.order) < (rhs.time, rhs.order) }
        static func == (lhs: Key, rhs: Key) -> Bool { lhs.time == rhs.time && lhs.order == rhs.order }
    }

    private var heap = Heap<Key>()
    private var payloads: [Payload?] = []
    private var freeSlots: [Int] = []
    private var nextOrder: UInt64 = 0

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count }

    mutating func push(_ payload: Payload, at time: Int64) {
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
            payloads[slot] = payload
        } else {
            slot = payloads.count
            payloads.append(payload)
        }
        heap.insert(Key(time: time, order: nextOrder, slot: slot))
        nextOrder += 1
    }

    mutating func pop() -> (time: Int64, payload: Payload)? {
        guard let top = heap.popMin() else { return nil }
        freeSlots.append(top.slot)
        guard let payload = payloads[top.slot].take() else { return nil }
        return (top.time, payload)
    }
}

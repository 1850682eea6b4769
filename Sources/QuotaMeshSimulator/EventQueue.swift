/// A binary min-heap of timed events; ties keep insertion order, so runs are deterministic.
///
/// The heap holds only keys (time, insertion order, payload slot), so sifting moves plain words; the
/// payloads (datagrams among them) stay in a slot array and move once in and once out.
struct EventQueue<Payload> {
    private var heap: [(time: Int64, order: UInt64, slot: Int)] = []
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
        heap.append((time, nextOrder, slot))
        nextOrder += 1
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard isEarlier(child, than: parent) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (time: Int64, payload: Payload)? {
        guard !heap.isEmpty else { return nil }
        heap.swapAt(0, heap.count - 1)
        let top = heap.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < heap.count && isEarlier(left, than: smallest) { smallest = left }
            if right < heap.count && isEarlier(right, than: smallest) { smallest = right }
            if smallest == parent { break }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
        freeSlots.append(top.slot)
        guard let payload = payloads[top.slot].take() else { return nil }
        return (top.time, payload)
    }

    private func isEarlier(_ a: Int, than b: Int) -> Bool {
        (heap[a].time, heap[a].order) < (heap[b].time, heap[b].order)
    }
}

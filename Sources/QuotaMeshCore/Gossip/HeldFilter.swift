/// A Bloom filter of the record versions a node received lately, sent with its pushes: the receiver
/// answers with the records of its own latest updates that the filter lacks (push-pull on every push, so
/// a node that a record's pushes missed pulls it from the next peer it pushes to).
///
/// 1,024 bits and 6 probes: about 2% false positives at 128 entries (a record then waits for the next
/// exchange, or an announcement). A false negative cannot happen; a forged filter (a vouched peer's) can
/// only ask its receiver for records the receiver would send on request anyway.
public struct HeldFilter: Hashable, Sendable {
    /// The filter's size on the wire.
    public static let byteCount = 128
    static let probes = 6

    /// The bits, 64 to a word.
    public private(set) var words: [UInt64]

    /// An empty filter.
    public init() { words = Array(repeating: 0, count: Self.byteCount / 8) }

    /// A filter with these words (from the wire): `nil` unless there are exactly `byteCount / 8`.
    public init?(words: [UInt64]) {
        guard words.count == Self.byteCount / 8 else { return nil }
        self.words = words
    }

    /// Adds the version `version` of the slot hashed `slotHash`.
    mutating func insert(slotHash: UInt64, version: RecordVersion) {
        forEachBit(slotHash: slotHash, version: version) { words[$0 >> 6] |= 1 << UInt64($0 & 63) }
    }

    /// Whether the version `version` of the slot hashed `slotHash` may have been added.
    func mayContain(slotHash: UInt64, version: RecordVersion) -> Bool {
        var all = true
        forEachBit(slotHash: slotHash, version: version) { bit in
            if words[bit >> 6] & (1 << UInt64(bit & 63)) == 0 { all = false }
        }
        return all
    }

    /// Double hashing (Kirsch and Mitzenmacher) over a mix of the slot's hash and the version.
    private func forEachBit(slotHash: UInt64, version: RecordVersion, _ body: (Int) -> Void) {
        var mixer = SplitMix64(seed: slotHash ^ (version.incarnation &* 0x9E37_79B9_7F4A_7C15) ^ version.sequence.byteSwapped)
        let first = mixer.next()
        let step = mixer.next() | 1
        let bits = UInt64(Self.byteCount * 8)
        for probe in 0..<UInt64(Self.probes) { body(Int((first &+ probe &* step) % bits)) }
    }
}

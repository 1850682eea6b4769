/// Detects replayed packets per sender with a sliding window of the last 64 sequence numbers (the
/// anti-replay window of IPsec, RFC 4303 §3.4.3): reordered packets pass, duplicates and old ones do not.
public struct ReplayWindow: Sendable, Hashable {
    /// The sender's incarnation this window tracks.
    public private(set) var incarnation: UInt64 = 0
    /// The highest sequence accepted.
    public private(set) var highest: UInt64 = 0
    private var seen: UInt64 = 0
    private var started = false

    /// Whether any packet was accepted yet.
    public var hasStarted: Bool { started }

    /// Creates an empty window.
    public init() {}

    /// `true` if a packet with this incarnation and sequence would be new.
    public func isFresh(incarnation: UInt64, sequence: UInt64) -> Bool {
        guard started else { return true }
        if incarnation != self.incarnation { return incarnation > self.incarnation }
        if sequence > highest { return true }
        let age = highest - sequence
        return age < 64 && seen & (1 << age) == 0
    }

    /// Records a packet that passed `isFresh` and authentication.
    public mutating func accept(incarnation: UInt64, sequence: UInt64) {
        if !started || incarnation > self.incarnation {
            started = true
            self.incarnation = incarnation
            highest = sequence
            seen = 1
            return
        }
        if sequence > highest {
            let shift = sequence - highest
            seen = shift >= 64 ? 1 : (seen << shift) | 1
            highest = sequence
        } else {
            let age = highest - sequence
            if age < 64 { seen |= 1 << age }
        }
    }
}

import QuotaMeshCrypto

/// A node's entitlement relative to the others' (`weight`, default 1): weighted max-min shares split what
/// is left in proportion to it among nodes with unmet demand. Kept in thousandths, so that every node
/// reads and compares the same value: 0.001 to 1000.
public struct Weight: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    /// The weight × 1000.
    public let thousandths: UInt32

    /// Weight 1, everyone's unless configured.
    public static let one = Weight(thousandths: 1_000)
    /// The range of thousandths accepted: 0.001 to 1000.
    public static let allowedThousandths: ClosedRange<UInt32> = 1...1_000_000

    /// A weight from its thousandths, clamped to the allowed range.
    public init(thousandths: UInt32) {
        self.thousandths = min(max(thousandths, Self.allowedThousandths.lowerBound), Self.allowedThousandths.upperBound)
    }

    /// `value` (0.001 to 1000, at most three decimals kept), or `nil` outside the range.
    public init?(_ value: Double) {
        guard value.isFinite else { return nil }
        let scaled = (value * 1000).rounded()
        guard scaled >= Double(Self.allowedThousandths.lowerBound), scaled <= Double(Self.allowedThousandths.upperBound) else {
            return nil
        }
        self.thousandths = UInt32(scaled)
    }

    /// The weight as a number.
    public var value: Double { Double(thousandths) / 1000 }

    public static func < (lhs: Weight, rhs: Weight) -> Bool { lhs.thousandths < rhs.thousandths }

    public var description: String {
        let whole = thousandths / 1000
        let fraction = thousandths % 1000
        guard fraction != 0 else { return "\(whole)" }
        var digits = String(fraction)
        while digits.count < 3 { digits = "0" + digits }
        while digits.hasSuffix("0") { digits.removeLast() }
        return "\(whole).\(digits)"
    }
}

/// Human durations as written in configuration and flags: `500ms`, `30s`, `1.5m`, `2h`, `1d`, or a bare
/// number of seconds.
public enum DurationText {
    /// Milliseconds for `text`, or `nil` if it is not a non-negative duration.
    public static func milliseconds(_ text: String) -> Int64? {
        let trimmed = text.trimmingASCIIWhitespace().lowercased()
        guard !trimmed.isEmpty else { return nil }
        let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        var number = Substring(trimmed)
        var scale = 1000.0
        for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
            let candidate = trimmed.dropLast(suffix.count)
            if let last = candidate.last, last.isNumber || last == "." {
                number = candidate
                scale = factor
                break
            }
        }
        guard number.allSatisfy({ $0.isNumber || $0 == "." }), let value = Double(number), value.isFinite,
            value >= 0, value * scale < 9.0e15
        else { return nil }
        return Int64((value * scale).rounded())
    }
}

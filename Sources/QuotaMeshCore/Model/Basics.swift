import QuotaMeshCrypto

/// Wall-clock time in milliseconds since the Unix epoch. The core never reads a clock: the shell passes
/// `now` into every call.
public typealias UnixMillis = Int64

extension StringProtocol {
    /// The text without leading and trailing spaces, tabs, CR and LF.
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(self[first...last])
    }
}

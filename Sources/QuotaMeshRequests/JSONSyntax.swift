/// Where a text stops being JSON (RFC 8259), for error messages: Foundation's `JSONDecoder` says only that
/// the data is not valid JSON. A scanner of the grammar, not a decoder: it builds nothing.
public enum JSONSyntax {
    /// The first place `bytes` breaks the grammar, as a line and column (both from 1) and what was
    /// expected there; `nil` for valid JSON.
    public static func firstError(in bytes: some Collection<UInt8>) -> (line: Int, column: Int, expected: String)? {
        var scanner = Scanner(bytes: Array(bytes))
        scanner.skipSpace()
        if let expected = scanner.value() ?? scanner.end() {
            let (line, column) = scanner.position()
            return (line, column, expected)
        }
        return nil
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0
        /// How deep values nest: past `maxDepth` the text is refused rather than the stack risked.
        var depth = 0
        static let maxDepth = 512

        var current: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipSpace() {
            while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 { index += 1 }
        }

        /// What was expected where the text ended early or went on, or `nil`.
        mutating func end() -> String? { current == nil ? nil : "the end of the text" }

        /// Scans one value; returns what was expected where it failed, or `nil`.
        mutating func value() -> String? {
            guard let byte = current else { return "a value" }
            switch byte {
            case UInt8(ascii: "{"): return container(close: UInt8(ascii: "}"), member: true)
            case UInt8(ascii: "["): return container(close: UInt8(ascii: "]"), member: false)
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "t"): return literal("true")
            case UInt8(ascii: "f"): return literal("false")
            case UInt8(ascii: "n"): return literal("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
            default: return "a value"
            }
        }

        mutating func container(close: UInt8, member: Bool) -> String? {
            depth += 1
            defer { depth -= 1 }
            guard depth <= Self.maxDepth else { return "less nesting" }
            index += 1
            skipSpace()
            if current == close {
                index += 1
                skipSpace()
                return nil
            }
            while true {
                if member {
                    guard current == UInt8(ascii: "\"") else { return "a quoted key" }
                    if let expected = string() { return expected }
                    guard current == UInt8(ascii: ":") else { return "`:`" }
                    index += 1
                    skipSpace()
                }
                if let expected = value() { return expected }
                if current == UInt8(ascii: ",") {
                    index += 1
                    skipSpace()
                    continue
                }
                guard current == close else { return "`,` or `\(Character(UnicodeScalar(close)))`" }
                index += 1
                skipSpace()
                return nil
            }
        }

        mutating func string() -> String? {
            index += 1
            while let byte = current {
                index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    skipSpace()
                    return nil
                case UInt8(ascii: "\\"):
                    guard let escaped = current else { return "an escape" }
                    index += 1
                    if escaped == UInt8(ascii: "u") {
                        for _ in 0..<4 {
                            guard let hex = current, isHex(hex) else { return "four hex digits" }
                            index += 1
                        }
                    } else if !Array("\"\\/bfnrt".utf8).contains(escaped) {
                        index -= 1
                        return "an escape"
                    }
                case 0..<0x20:
                    index -= 1
                    return "`\"` (a control character must be escaped)"
                case 0x80...:
                    index -= 1
                    guard utf8Sequence() else { return "UTF-8" }
                default:
                    break
                }
            }
            return "`\"`"
        }

        /// Steps over one well-formed UTF-8 sequence of two to four bytes at `index` (no overlong forms,
        /// no surrogates, nothing past U+10FFFF); `false`, with `index` on the bad byte, when there is none.
        mutating func utf8Sequence() -> Bool {
            guard let lead = current else { return false }
            let (count, second): (Int, ClosedRange<UInt8>) = switch lead {
            case 0xC2...0xDF: (2, 0x80...0xBF)
            case 0xE0: (3, 0xA0...0xBF)
            case 0xE1...0xEC, 0xEE...0xEF: (3, 0x80...0xBF)
            case 0xED: (3, 0x80...0x9F)
            case 0xF0: (4, 0x90...0xBF)
            case 0xF1...0xF3: (4, 0x80...0xBF)
            case 0xF4: (4, 0x80...0x8F)
            default: (0, 0x80...0xBF)
            }
            guard count > 0 else { return false }
            for offset in 1..<count {
                guard index + offset < bytes.count, (offset == 1 ? second : 0x80...0xBF).contains(bytes[index + offset]) else {
                    index += offset
                    return false
                }
            }
            index += count
            return true
        }

        mutating func number() -> String? {
            if current == UInt8(ascii: "-") { index += 1 }
            guard let first = current, isDigit(first) else { return "a digit" }
            index += 1
            if first != UInt8(ascii: "0") { while let byte = current, isDigit(byte) { index += 1 } }
            if current == UInt8(ascii: ".") {
                index += 1
                guard let byte = current, isDigit(byte) else { return "a digit" }
                while let byte = current, isDigit(byte) { index += 1 }
            }
            if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
                index += 1
                if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
                guard let byte = current, isDigit(byte) else { return "a digit" }
                while let byte = current, isDigit(byte) { index += 1 }
            }
            skipSpace()
            return nil
        }

        mutating func literal(_ word: String) -> String? {
            for expected in word.utf8 {
                guard current == expected else { return "`\(word)`" }
                index += 1
            }
            skipSpace()
            return nil
        }

        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

        func isHex(_ byte: UInt8) -> Bool {
            isDigit(byte) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "f"))
        }

        /// The line and column of `index` (columns count bytes).
        func position() -> (Int, Int) {
            var line = 1
            var lineStart = 0
            for offset in 0..<min(index, bytes.count) where bytes[offset] == 0x0A {
                line += 1
                lineStart = offset + 1
            }
            return (line, index - lineStart + 1)
        }
    }
}

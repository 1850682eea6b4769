// Hand-written, allocation-light parsers for the scalar formats found in rate-limit headers:
// integers, decimal seconds, Go durations, RFC 3339 timestamps and HTTP-dates.
// Everything here is pure: no clock, no locale, no Foundation formatters.

/// Why one header value could not be used; becomes `IgnoredHeader.reason`.
struct RateLimitFieldError: Error, Equatable, Sendable {
    var reason: String

    init(_ reason: String) {
        self.reason = reason
    }
}

/// A forward-only reader over the UTF-8 bytes of one value.
struct RateLimitByteCursor {
    let bytes: [UInt8]
    var index = 0

    init(_ text: some StringProtocol) {
        self.bytes = Array(text.utf8)
    }

    var isAtEnd: Bool { index >= bytes.count }

    var peek: UInt8? { isAtEnd ? nil : bytes[index] }

    /// Consumes `byte` if it is next.
    mutating func take(_ byte: UInt8) -> Bool {
        guard peek == byte else { return false }
        index += 1
        return true
    }

    /// Consumes exactly `count` ASCII digits and returns their value.
    mutating func fixedDigits(_ count: Int) -> Int? {
        guard index + count <= bytes.count else { return nil }
        var value = 0
        for offset in 0..<count {
            let byte = bytes[index + offset]
            guard RateLimitValueFormats.isDigit(byte) else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        index += count
        return value
    }

    /// Consumes between `minimum` and `maximum` ASCII digits and returns their value.
    mutating func digits(minimum: Int, maximum: Int) -> Int? {
        var value = 0
        var count = 0
        while count < maximum, let byte = peek, RateLimitValueFormats.isDigit(byte) {
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
            index += 1
            count += 1
        }
        return count >= minimum ? value : nil
    }
}

/// Parsers for the scalar value formats of rate-limit headers.
enum RateLimitValueFormats {
    static let millisPerDay: Int64 = 86_400_000

    static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    /// Trims optional whitespace (space, tab) and stray CR/LF from both ends.
    static func trimmed(_ text: some StringProtocol) -> String {
        let isOWS: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = text.firstIndex(where: { !isOWS($0) }),
            let last = text.lastIndex(where: { !isOWS($0) })
        else { return "" }
        return String(text[first...last])
    }

    /// Quotes a value for a diagnostic, shortened so an absurd header cannot bloat the report.
    static func quoted(_ text: String) -> String {
        let limit = 64
        if text.count <= limit { return "\"\(text)\"" }
        return "\"\(text.prefix(limit))…\""
    }

    // MARK: - Numbers

    /// A non-negative decimal integer (`+` allowed), rejecting signs, fractions and Int64 overflow.
    static func nonNegativeInteger(_ text: String) -> Result<Int64, RateLimitFieldError> {
        switch decimalScaled(text, fractionDigits: 0, allowFraction: false) {
        case .success(let value): return .success(value)
        case .failure(let error): return .failure(error)
        }
    }

    /// A non-negative decimal number multiplied by 10^`fractionDigits`, rounded up
    /// (so `"1.0004"` seconds with 3 digits is 1001 ms: never earlier than the server said).
    static func decimalScaled(
        _ text: String,
        fractionDigits: Int,
        allowFraction: Bool = true
    ) -> Result<Int64, RateLimitFieldError> {
        var cursor = RateLimitByteCursor(text)
        guard !cursor.isAtEnd else { return .failure(.init("empty value")) }
        let negative = cursor.take(UInt8(ascii: "-"))
        if !negative { _ = cursor.take(UInt8(ascii: "+")) }
        let kind = allowFraction ? "a number" : "an integer"

        var integerPart: Int64 = 0
        var integerDigits = 0
        var overflow = false
        while let byte = cursor.peek, isDigit(byte) {
            cursor.index += 1
            integerDigits += 1
            let (times10, o1) = integerPart.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int64(byte - UInt8(ascii: "0")))
            if o1 || o2 { overflow = true }
            integerPart = sum
        }
        var fraction: Int64 = 0
        var keptDigits = 0
        var fractionDigitsSeen = 0
        var roundUp = false
        if allowFraction, cursor.take(UInt8(ascii: ".")) {
            while let byte = cursor.peek, isDigit(byte) {
                cursor.index += 1
                fractionDigitsSeen += 1
                let digit = Int64(byte - UInt8(ascii: "0"))
                if keptDigits < fractionDigits {
                    fraction = fraction * 10 + digit
                    keptDigits += 1
                } else if digit != 0 {
                    roundUp = true
                }
            }
            guard fractionDigitsSeen > 0 else {
                return .failure(.init("not \(kind): \(quoted(text))"))
            }
        }
        guard cursor.isAtEnd, integerDigits > 0 || fractionDigitsSeen > 0 else {
            return .failure(.init("not \(kind): \(quoted(text))"))
        }
        if overflow { return .failure(.init("number overflows Int64: \(quoted(text))")) }
        if negative, integerPart != 0 || fraction != 0 || roundUp {
            return .failure(.init("negative value: \(quoted(text))"))
        }
        while keptDigits < fractionDigits {
            fraction *= 10
            keptDigits += 1
        }
        var scale: Int64 = 1
        for _ in 0..<fractionDigits { scale *= 10 }
        let (scaled, o1) = integerPart.multipliedReportingOverflow(by: scale)
        let (withFraction, o2) = scaled.addingReportingOverflow(fraction + (roundUp ? 1 : 0))
        if o1 || o2 { return .failure(.init("number overflows Int64: \(quoted(text))")) }
        return .success(withFraction)
    }

    // MARK: - Go durations

    /// Parses a Go `time.Duration` string (`"6m0s"`, `"4m12.172s"`, `"1.5h"`, `"300µs"`) into nanoseconds,
    /// following the algorithm of Go's `time.ParseDuration`. Negative durations are rejected.
    static func goDurationNanoseconds(_ text: String) -> Result<Int64, RateLimitFieldError> {
        let limit: UInt64 = 1 << 63
        var cursor = RateLimitByteCursor(text)
        guard !cursor.isAtEnd else { return .failure(.init("empty duration")) }
        var negative = false
        if cursor.take(UInt8(ascii: "-")) {
            negative = true
        } else {
            _ = cursor.take(UInt8(ascii: "+"))
        }
        // Go accepts a bare "0" without a unit.
        if cursor.index == cursor.bytes.count - 1, cursor.peek == UInt8(ascii: "0") { return .success(0) }
        guard !cursor.isAtEnd else { return .failure(.init("invalid duration: \(quoted(text))")) }

        return parseDurationComponents(&cursor, text: text, limit: limit, negative: negative)
    }

    private static func parseDurationComponents(
        _ cursor: inout RateLimitByteCursor,
        text: String,
        limit: UInt64,
        negative: Bool
    ) -> Result<Int64, RateLimitFieldError> {
        var total: UInt64 = 0
        while !cursor.isAtEnd {
            guard let first = cursor.peek, first == UInt8(ascii: ".") || isDigit(first) else {
                return .failure(.init("invalid duration (expected a number): \(quoted(text))"))
            }
            // Integer part.
            var whole: UInt64 = 0
            var sawWhole = false
            while let byte = cursor.peek, isDigit(byte) {
                cursor.index += 1
                sawWhole = true
                if whole > limit / 10 {
                    return .failure(.init("duration overflows Int64: \(quoted(text))"))
                }
                whole = whole * 10 + UInt64(byte - UInt8(ascii: "0"))
                if whole > limit { return .failure(.init("duration overflows Int64: \(quoted(text))")) }
            }
            // Fraction part: digits are accumulated until they would overflow, then only counted.
            var fraction: UInt64 = 0
            var scale: Double = 1
            var sawFraction = false
            if cursor.take(UInt8(ascii: ".")) {
                var overflowed = false
                while let byte = cursor.peek, isDigit(byte) {
                    cursor.index += 1
                    sawFraction = true
                    if overflowed { continue }
                    if fraction > (UInt64(Int64.max) - 9) / 10 {
                        overflowed = true
                        continue
                    }
                    fraction = fraction * 10 + UInt64(byte - UInt8(ascii: "0"))
                    scale *= 10
                }
            }
            guard sawWhole || sawFraction else {
                return .failure(.init("invalid duration (bad number): \(quoted(text))"))
            }
            // Unit: everything up to the next digit or '.'.
            let unitStart = cursor.index
            while let byte = cursor.peek, byte != UInt8(ascii: "."), !isDigit(byte) {
                cursor.index += 1
            }
            guard cursor.index > unitStart else {
                return .failure(.init("invalid duration (missing unit): \(quoted(text))"))
            }
            let unitName = String(decoding: cursor.bytes[unitStart..<cursor.index], as: UTF8.self)
            guard let unit = goDurationUnits[unitName] else {
                return .failure(.init("invalid duration (unknown unit \(quoted(unitName))): \(quoted(text))"))
            }
            if whole > limit / unit { return .failure(.init("duration overflows Int64: \(quoted(text))")) }
            var component = whole * unit
            if fraction > 0 {
                let extra = Double(fraction) * (Double(unit) / scale)
                guard extra < Double(limit) else {
                    return .failure(.init("duration overflows Int64: \(quoted(text))"))
                }
                component += UInt64(extra)
                if component > limit { return .failure(.init("duration overflows Int64: \(quoted(text))")) }
            }
            total += component
            if total > limit { return .failure(.init("duration overflows Int64: \(quoted(text))")) }
        }
        if negative, total > 0 { return .failure(.init("negative duration: \(quoted(text))")) }
        guard total <= UInt64(Int64.max) else {
            return .failure(.init("duration overflows Int64: \(quoted(text))"))
        }
        return .success(Int64(total))
    }

    private static let goDurationUnits: [String: UInt64] = [
        "ns": 1,
        "us": 1_000,
        "\u{00B5}s": 1_000,  // micro sign
        "\u{03BC}s": 1_000,  // Greek small letter mu
        "ms": 1_000_000,
        "s": 1_000_000_000,
        "m": 60_000_000_000,
        "h": 3_600_000_000_000,
    ]

    /// Nanoseconds to milliseconds, rounded up.
    static func millisRoundingUp(nanoseconds: Int64) -> Int64 {
        nanoseconds / 1_000_000 + (nanoseconds % 1_000_000 > 0 ? 1 : 0)
    }

    // MARK: - Calendar arithmetic

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let m = Int64(month)
        let dayOfYear = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    static func civilFromDays(_ days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// The proleptic Gregorian year containing `days` since 1970-01-01.
    static func yearFromDays(_ days: Int64) -> Int64 { civilFromDays(days).year }

    static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 1, 3, 5, 7, 8, 10, 12: return 31
        case 4, 6, 9, 11: return 30
        case 2:
            let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
            return leap ? 29 : 28
        default: return 0
        }
    }

    /// Unix milliseconds of a validated UTC civil time, or a reason.
    static func civilMillis(
        year: Int,
        month: Int,
        day: Int,
        hour: Int,
        minute: Int,
        second: Int
    ) -> Result<Int64, RateLimitFieldError> {
        guard (1...12).contains(month) else { return .failure(.init("month out of range")) }
        guard day >= 1, day <= daysInMonth(year: year, month: month) else {
            return .failure(.init("day out of range"))
        }
        guard (0...23).contains(hour), (0...59).contains(minute), (0...60).contains(second) else {
            return .failure(.init("time of day out of range"))
        }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = ((days * 24 + Int64(hour)) * 60 + Int64(minute)) * 60 + Int64(second)
        return .success(seconds * 1000)
    }

    // MARK: - RFC 3339

    /// Parses an RFC 3339 `date-time` (`2024-05-01T12:00:03.25Z`, `…+02:00`) into Unix milliseconds.
    /// Fractions finer than a millisecond round up. `t`/`z` and a space separator are accepted.
    static func rfc3339Millis(_ text: String) -> Result<Int64, RateLimitFieldError> {
        let failure = RateLimitFieldError("not an RFC 3339 timestamp: \(quoted(text))")
        var cursor = RateLimitByteCursor(text)
        guard let year = cursor.fixedDigits(4), cursor.take(UInt8(ascii: "-")),
            let month = cursor.fixedDigits(2), cursor.take(UInt8(ascii: "-")),
            let day = cursor.fixedDigits(2)
        else { return .failure(failure) }
        guard cursor.take(UInt8(ascii: "T")) || cursor.take(UInt8(ascii: "t")) || cursor.take(UInt8(ascii: " "))
        else { return .failure(failure) }
        guard let hour = cursor.fixedDigits(2), cursor.take(UInt8(ascii: ":")),
            let minute = cursor.fixedDigits(2), cursor.take(UInt8(ascii: ":")),
            let second = cursor.fixedDigits(2)
        else { return .failure(failure) }
        var fractionMillis: Int64 = 0
        if cursor.take(UInt8(ascii: ".")) {
            var kept = 0
            var seen = 0
            var roundUp = false
            while let byte = cursor.peek, isDigit(byte) {
                cursor.index += 1
                seen += 1
                if kept < 3 {
                    fractionMillis = fractionMillis * 10 + Int64(byte - UInt8(ascii: "0"))
                    kept += 1
                } else if byte != UInt8(ascii: "0") {
                    roundUp = true
                }
            }
            guard seen > 0 else { return .failure(failure) }
            while kept < 3 {
                fractionMillis *= 10
                kept += 1
            }
            if roundUp { fractionMillis += 1 }
        }
        var offsetMinutes = 0
        if cursor.take(UInt8(ascii: "Z")) || cursor.take(UInt8(ascii: "z")) {
            offsetMinutes = 0
        } else if let sign = cursor.peek, sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") {
            cursor.index += 1
            guard let offsetHour = cursor.fixedDigits(2), cursor.take(UInt8(ascii: ":")),
                let offsetMinute = cursor.fixedDigits(2), offsetHour <= 23, offsetMinute <= 59
            else { return .failure(failure) }
            offsetMinutes = (offsetHour * 60 + offsetMinute) * (sign == UInt8(ascii: "-") ? -1 : 1)
        } else {
            return .failure(.init("RFC 3339 timestamp without a time zone offset: \(quoted(text))"))
        }
        guard cursor.isAtEnd else { return .failure(failure) }
        switch civilMillis(year: year, month: month, day: day, hour: hour, minute: minute, second: second) {
        case .failure(let error):
            return .failure(.init("\(error.reason) in RFC 3339 timestamp \(quoted(text))"))
        case .success(let millis):
            return .success(millis + fractionMillis - Int64(offsetMinutes) * 60_000)
        }
    }

    // MARK: - HTTP-date

    private static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    private static let shortDayNames: Set<String> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    private static let longDayNames: Set<String> = [
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    ]

    private static func month(_ token: some StringProtocol) -> Int? {
        monthNames.firstIndex(of: token.lowercased()).map { $0 + 1 }
    }

    private static func timeOfDay(_ token: some StringProtocol) -> (Int, Int, Int)? {
        var cursor = RateLimitByteCursor(token)
        guard let hour = cursor.fixedDigits(2), cursor.take(UInt8(ascii: ":")),
            let minute = cursor.fixedDigits(2), cursor.take(UInt8(ascii: ":")),
            let second = cursor.fixedDigits(2), cursor.isAtEnd
        else { return nil }
        return (hour, minute, second)
    }

    private static func number(_ token: some StringProtocol, digits: ClosedRange<Int>) -> Int? {
        var cursor = RateLimitByteCursor(token)
        guard let value = cursor.digits(minimum: digits.lowerBound, maximum: digits.upperBound), cursor.isAtEnd
        else { return nil }
        return value
    }

    /// Parses an HTTP-date (RFC 9110 §5.6.7) into Unix milliseconds: IMF-fixdate
    /// (`Sun, 06 Nov 1994 08:49:37 GMT`), obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and
    /// asctime (`Sun Nov  6 08:49:37 1994`). Two-digit years are placed no more than 50 years after
    /// the year of `now`, as RFC 9110 requires. Names match case-insensitively; the weekday is not cross-checked.
    static func httpDateMillis(_ text: String, now: UnixMillis) -> Result<Int64, RateLimitFieldError> {
        let failure = RateLimitFieldError("not an HTTP-date: \(quoted(text))")
        let tokens = text.split(separator: " ", omittingEmptySubsequences: true)
        var parts: (year: Int, month: Int, day: Int, time: (Int, Int, Int))?

        if tokens.count == 6, tokens[0].hasSuffix(",") {
            // IMF-fixdate: day-name "," SP day SP month SP year SP time SP "GMT"
            guard shortDayNames.contains(tokens[0].dropLast().lowercased()),
                let day = number(tokens[1], digits: 1...2),
                let month = month(tokens[2]),
                let year = number(tokens[3], digits: 4...4),
                let time = timeOfDay(tokens[4]),
                tokens[5] == "GMT" || tokens[5] == "UTC"
            else { return .failure(failure) }
            parts = (year, month, day, time)
        } else if tokens.count == 4, tokens[0].hasSuffix(",") {
            // RFC 850: day-name-l "," SP day "-" month "-" 2DIGIT SP time SP "GMT"
            let dateParts = tokens[1].split(separator: "-", omittingEmptySubsequences: false)
            guard longDayNames.contains(tokens[0].dropLast().lowercased()),
                dateParts.count == 3,
                let day = number(dateParts[0], digits: 1...2),
                let month = month(dateParts[1]),
                let shortYear = number(dateParts[2], digits: 2...4),
                let time = timeOfDay(tokens[2]),
                tokens[3] == "GMT"
            else { return .failure(failure) }
            var year = shortYear
            if dateParts[2].count == 2 {
                let currentYear = Int(yearFromDays(floorDiv(now, millisPerDay)))
                year = (currentYear / 100) * 100 + shortYear
                if year > currentYear + 50 { year -= 100 }
            } else if dateParts[2].count != 4 {
                return .failure(failure)
            }
            parts = (year, month, day, time)
        } else if tokens.count == 5, !tokens[0].hasSuffix(",") {
            // asctime: day-name SP month SP ( 2DIGIT / ( SP DIGIT ) ) SP time SP year
            guard shortDayNames.contains(tokens[0].lowercased()),
                let month = month(tokens[1]),
                let day = number(tokens[2], digits: 1...2),
                let time = timeOfDay(tokens[3]),
                let year = number(tokens[4], digits: 4...4)
            else { return .failure(failure) }
            parts = (year, month, day, time)
        }
        guard let parts else { return .failure(failure) }
        switch civilMillis(
            year: parts.year,
            month: parts.month,
            day: parts.day,
            hour: parts.time.0,
            minute: parts.time.1,
            second: parts.time.2
        ) {
        case .success(let millis): return .success(millis)
        case .failure(let error): return .failure(.init("\(error.reason) in HTTP-date \(quoted(text))"))
        }
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    // MARK: - Saturating arithmetic

    static func adding(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        if !overflow { return sum }
        return b > 0 ? Int64.max : Int64.min
    }

    static func subtracting(_ a: Int64, _ b: Int64) -> Int64 {
        let (difference, overflow) = a.subtractingReportingOverflow(b)
        if !overflow { return difference }
        return b < 0 ? Int64.max : Int64.min
    }
}

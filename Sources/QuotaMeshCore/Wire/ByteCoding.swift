import QuotaMeshCrypto

/// Why bytes from the network could not be decoded. One case per reason, so that metrics and logs can
/// count reasons without parsing strings.
public enum DecodeError: Error, Equatable, Sendable {
    /// The input ended before a complete value.
    case truncated
    /// The packet is larger than `WireFormat.maxPacketBytes`.
    case oversized
    /// The first bytes are not QuotaMesh's magic.
    case badMagic
    /// The wire version is not one this node speaks.
    case unknownVersion(UInt8)
    /// The packet or record type is unknown.
    case unknownType(UInt8)
    /// A field holds a value that is not allowed (named).
    case malformed(String)
    /// Bytes remain after the last field.
    case trailingBytes

    /// A short, stable name for metrics and logs.
    public var reason: String {
        switch self {
        case .truncated: "truncated"
        case .oversized: "oversized"
        case .badMagic: "bad_magic"
        case .unknownVersion: "unknown_version"
        case .unknownType: "unknown_type"
        case .malformed: "malformed"
        case .trailingBytes: "trailing_bytes"
        }
    }
}

/// Whether `a` and `b` hold the same bytes, compared eight at a time.
func bytesEqual(_ a: ArraySlice<UInt8>, _ b: ArraySlice<UInt8>) -> Bool {
    guard a.count == b.count else { return false }
    return a.withUnsafeBytes { left in
        b.withUnsafeBytes { right in
            var offset = 0
            while offset + 8 <= left.count {
                guard left.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                    == right.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                else { return false }
                offset += 8
            }
            while offset < left.count {
                guard left[offset] == right[offset] else { return false }
                offset += 1
            }
            return true
        }
    }
}

/// Appends big-endian fixed-width fields to a byte array.
struct ByteWriter {
    private(set) var bytes: [UInt8] = []

    init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    mutating func write(_ value: UInt8) { bytes.append(value) }
    mutating func write(_ value: UInt16) { append(UInt64(value), width: 2) }
    mutating func write(_ value: UInt32) { append(UInt64(value), width: 4) }
    mutating func write(_ value: UInt64) { append(value, width: 8) }
    mutating func write(_ value: Int64) { append(UInt64(bitPattern: value), width: 8) }
    mutating func write(bytes other: some Collection<UInt8>) { bytes.append(contentsOf: other) }
    mutating func write(utf8 text: String) { bytes += text.utf8 }
    mutating func write(key: VerifyingKey) {
        write(key.words.0)
        write(key.words.1)
        write(key.words.2)
        write(key.words.3)
    }

    /// A string of at most 255 UTF-8 bytes, preceded by its length.
    mutating func write(shortString: String) {
        let utf8 = Array(shortString.utf8.prefix(255))
        write(UInt8(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    private mutating func append(_ value: UInt64, width: Int) {
        for shift in stride(from: (width - 1) * 8, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }
}

/// Reads big-endian fixed-width fields, throwing `DecodeError.truncated` instead of reading past the end.
struct ByteReader {
    let bytes: [UInt8]
    private(set) var offset: Int
    /// Where reading stops: the end of `bytes`, or earlier (a packet's payload ends at its signature).
    let end: Int

    init(_ bytes: [UInt8], offset: Int = 0, end: Int? = nil) {
        self.bytes = bytes
        self.offset = offset
        self.end = min(end ?? bytes.count, bytes.count)
    }

    var remainingCount: Int { end - offset }
    var isAtEnd: Bool { offset >= end }

    mutating func readUInt8() throws(DecodeError) -> UInt8 {
        guard remainingCount >= 1 else { throw .truncated }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func readUInt16() throws(DecodeError) -> UInt16 { UInt16(try read(width: 2)) }
    mutating func readUInt32() throws(DecodeError) -> UInt32 { UInt32(try read(width: 4)) }
    mutating func readUInt64() throws(DecodeError) -> UInt64 { try read(width: 8) }
    mutating func readInt64() throws(DecodeError) -> Int64 { Int64(bitPattern: try read(width: 8)) }

    /// Reads a 32-byte public key as four big-endian words, without an intermediate array.
    mutating func readKey() throws(DecodeError) -> VerifyingKey {
        VerifyingKey(words: (try readUInt64(), try readUInt64(), try readUInt64(), try readUInt64()))
    }

    /// Moves past `count` bytes.
    mutating func skip(_ count: Int) throws(DecodeError) {
        guard count >= 0, remainingCount >= count else { throw .truncated }
        offset += count
    }

    mutating func readBytes(_ count: Int) throws(DecodeError) -> [UInt8] {
        guard count >= 0, remainingCount >= count else { throw .truncated }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    mutating func readShortString(field: String) throws(DecodeError) -> String {
        let length = Int(try readUInt8())
        guard remainingCount >= length else { throw .truncated }
        defer { offset += length }
        // Straight from the slice: no intermediate array.
        guard let text = String(validating: bytes[offset..<(offset + length)], as: UTF8.self) else {
            throw .malformed(field)
        }
        return text
    }

    private mutating func read(width: Int) throws(DecodeError) -> UInt64 {
        guard remainingCount >= width else { throw .truncated }
        if width == 8 {
            // The common case in one load.
            let value = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }
            offset += 8
            return UInt64(bigEndian: value)
        }
        var value: UInt64 = 0
        for index in offset..<(offset + width) { value = (value << 8) | UInt64(bytes[index]) }
        offset += width
        return value
    }
}

// Tolerant Codable views of RFC 9651 structured fields, decoded with swift-http-structured-headers.
// A syntax error anywhere makes the decoder throw (the whole field is then ignored); a member or
// parameter of an unexpected type decodes as `.other`, so the parser can reject it individually.

import StructuredFieldValues

/// One bare item of a structured field, typed loosely so an odd parameter cannot fail the whole field.
enum RateLimitSFBareItem: Codable, Equatable, Sendable {
    case integer(Int64)
    case decimal(Double)
    case string(String)
    case bool(Bool)
    /// Byte sequences, dates, display strings, inner lists: nothing a rate-limit field uses.
    case other

    init(from decoder: any Decoder) throws {
        guard let container = try? decoder.singleValueContainer() else {
            self = .other
            return
        }
        if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .decimal(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else {
            self = .other
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .integer(let value): try container.encode(value)
        case .decimal(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .bool(let value): try container.encode(value)
        case .other: try container.encode(true)
        }
    }

    /// A string or token, e.g. a policy name.
    var text: String? {
        if case .string(let value) = self { return value }
        return nil
    }
}

/// A list member or dictionary value: an item with its parameters (`.other` for inner lists).
struct RateLimitSFMember: Codable, Equatable, Sendable {
    var item: RateLimitSFBareItem
    var parameters: [String: RateLimitSFBareItem]

    private enum CodingKeys: String, CodingKey {
        case item
        case parameters
    }

    init(item: RateLimitSFBareItem, parameters: [String: RateLimitSFBareItem]) {
        self.item = item
        self.parameters = parameters
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.item = (try? container.decode(RateLimitSFBareItem.self, forKey: .item)) ?? .other
        self.parameters = (try? container.decode([String: RateLimitSFBareItem].self, forKey: .parameters)) ?? [:]
    }
}

/// A structured-field List (`RateLimit-Policy`, the current `RateLimit`).
struct RateLimitSFList: StructuredFieldValue, Equatable, Sendable {
    static let structuredFieldType = StructuredFieldType.list
    var items: [RateLimitSFMember]
}

/// A structured-field Dictionary (the older `RateLimit: limit=…, remaining=…, reset=…`), in field order.
struct RateLimitSFDictionary: StructuredFieldValue, Equatable, Sendable {
    static let structuredFieldType = StructuredFieldType.dictionary
    var entries: [(key: String, value: RateLimitSFMember)]

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        var entries: [(key: String, value: RateLimitSFMember)] = []
        for key in container.allKeys {
            let member = try container.decode(RateLimitSFMember.self, forKey: key)
            entries.append((key.stringValue, member))
        }
        self.entries = entries
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: AnyKey.self)
        for entry in entries {
            try container.encode(entry.value, forKey: AnyKey(stringValue: entry.key))
        }
    }

    static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.entries.elementsEqual(rhs.entries) { $0.key == $1.key && $0.value == $1.value }
    }

    /// The value of `key`, if present.
    subscript(key: String) -> RateLimitSFMember? {
        entries.first { $0.key == key }?.value
    }
}

/// Entry points that turn a field value into one of the views above.
enum RateLimitStructuredFields {
    static func list(_ text: String) -> Result<RateLimitSFList, RateLimitFieldError> {
        do {
            return .success(try StructuredFieldValueDecoder().decode(RateLimitSFList.self, from: Array(text.utf8)))
        } catch {
            return .failure(.init("malformed structured field list (\(error)): \(RateLimitValueFormats.quoted(text))"))
        }
    }

    static func dictionary(_ text: String) -> RateLimitSFDictionary? {
        try? StructuredFieldValueDecoder().decode(RateLimitSFDictionary.self, from: Array(text.utf8))
    }
}

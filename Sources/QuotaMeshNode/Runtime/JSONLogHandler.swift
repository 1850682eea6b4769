import Foundation
import Logging

/// A swift-log handler that writes one JSON object per line to standard error (`quotamesh run
/// --log-format json`), for log shippers: `ts` (RFC 3339, ms, UTC), `level`, `message`, `label`, the
/// source location, and the metadata's keys as they are (`peer.id`, `service`, …) under `metadata`.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let write: @Sendable (String) -> Void

    /// A handler for `label` writing to standard error (or to `write`, for tests).
    public init(label: String, write: @escaping @Sendable (String) -> Void = JSONLogHandler.standardError) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// One line as it is written.
    struct Line: Encodable {
        var ts: String
        var level: String
        var message: String
        var label: String
        var source: String
        var location: String
        var metadata: [String: JSONMetadataValue]?
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let own = event.metadata { merged.merge(own) { _, new in new } }
        let line = Line(
            ts: Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)),
            level: event.level.rawValue, message: event.message.description, label: label, source: event.source,
            location: "\((event.file as NSString).lastPathComponent):\(event.line)",
            metadata: merged.isEmpty ? nil : merged.mapValues(JSONMetadataValue.init))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(line) else { return }
        write(String(decoding: data, as: UTF8.self))
    }

    /// Writes `line` and a newline to standard error in one call, so that lines from several threads do not
    /// interleave.
    public static let standardError: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

/// A metadata value as JSON: strings stay strings, arrays and dictionaries nest.
enum JSONMetadataValue: Encodable {
    case string(String)
    case array([JSONMetadataValue])
    case object([String: JSONMetadataValue])

    init(_ value: Logger.Metadata.Value) {
        switch value {
        case .string(let text): self = .string(text)
        case .stringConvertible(let convertible): self = .string(convertible.description)
        case .array(let values): self = .array(values.map(JSONMetadataValue.init))
        case .dictionary(let values): self = .object(values.mapValues(JSONMetadataValue.init))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let text): try container.encode(text)
        case .array(let values): try container.encode(values)
        case .object(let values): try container.encode(values)
        }
    }
}

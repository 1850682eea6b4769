import ArgumentParser
import Foundation
import OpenAPIRuntime
import OpenAPIURLSession
import QuotaMeshAPI
import QuotaMeshCore
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

enum FileHandleWriter {
    static func writeStandardError(_ string: String) {
        FileHandle.standardError.write(Data(string.utf8))
    }
}

/// `--api HOST:PORT` for commands that talk to a running node.
struct APIOptions: ParsableArguments {
    @Option(name: .customLong("api"), help: "The node's local API (HOST:PORT). Default: $QUOTAMESH_API or 127.0.0.1:9721.")
    var api: String?

    @Option(help: "A file holding the node's API token, if it requires one. Default: $QUOTAMESH_API_TOKEN_FILE.")
    var tokenFile: String?

    func validate() throws {
        if let api, Endpoint(parsing: api) == nil { throw ValidationError("--api must be HOST:PORT, got '\(api)'") }
    }

    var endpoint: Endpoint {
        let text = api ?? ProcessInfo.processInfo.environment["QUOTAMESH_API"] ?? "127.0.0.1:9721"
        return Endpoint(parsing: text) ?? Endpoint(host: "127.0.0.1", port: 9721)
    }

    /// A client for the chosen node, with its token if one is given.
    func client() throws -> NodeClient {
        guard let path = tokenFile ?? ProcessInfo.processInfo.environment["QUOTAMESH_API_TOKEN_FILE"] else {
            return NodeClient(endpoint: endpoint, token: nil)
        }
        guard let data = FileManager.default.contents(atPath: path),
            let text = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty
        else {
            throw CLIError(code: ExitCodes.usage, message: "cannot read an API token from \(path)")
        }
        return NodeClient(endpoint: endpoint, token: text)
    }
}

/// The loopback API through the client generated from openapi.yaml, its failures as the CLI's exit codes.
struct NodeClient {
    let endpoint: Endpoint
    let api: QuotaMeshAPI.Client

    init(endpoint: Endpoint, token: String?) {
        self.endpoint = endpoint
        let url = URL(string: "http://\(endpoint)") ?? URL(fileURLWithPath: "/")
        api = QuotaMeshAPI.Client(
            serverURL: url, transport: URLSessionTransport(), middlewares: [BearerToken(token)])
    }

    /// Runs one request: a node that cannot be reached is `unavailable`, one that wants a token
    /// `noPermission`.
    func send<Output>(_ request: (QuotaMeshAPI.Client) async throws -> Output) async throws -> Output {
        do {
            return try await request(api)
        } catch {
            let cause = (error as? ClientError)?.underlyingError ?? error
            throw CLIError(
                code: ExitCodes.unavailable,
                message: "cannot reach the QuotaMesh node at \(endpoint) (is `quotamesh run` running?): \(cause.localizedDescription)")
        }
    }

    /// The error for a 401.
    var unauthorized: CLIError {
        CLIError(
            code: ExitCodes.noPermission,
            message: "the node at \(endpoint) requires an API token: --token-file FILE or $QUOTAMESH_API_TOKEN_FILE")
    }

    /// The error for an answer the command cannot use (a 4xx with its message, or an undocumented status).
    func refused(_ status: Int, _ message: String?) -> CLIError {
        CLIError(code: ExitCodes.dataError, message: message ?? "HTTP \(status)")
    }
}

/// An error that ends the command with a specific exit code and message.
struct CLIError: Error, CustomStringConvertible {
    var code: Int32
    var message: String
    var description: String { message }
}

extension AsyncParsableCommand {
    /// Runs `body`, turning `CLIError` into its message and exit code.
    func withExitCodes(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as CLIError {
            printError("error: \(error.message)")
            throw ExitCode(error.code)
        }
    }
}

/// Renders JSON for `--json` output; an object JSON cannot hold is an error, never an empty line.
func renderJSON(_ object: Any) throws -> String {
    guard JSONSerialization.isValidJSONObject(object) else {
        throw ValidationError("internal error: the answer cannot be printed as JSON")
    }
    let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    return String(decoding: data, as: UTF8.self)
}

/// Renders a typed value as JSON for `--json` output (keys sorted, pretty-printed).
func renderJSON(encoding value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

/// "1.2s", "3m04s", "1h02m".
func humanDuration(seconds: Double) -> String {
    if seconds < 0.001 { return "now" }
    if seconds < 10 { return String(format: "%.1fs", seconds) }
    let total = Int(seconds.rounded(.up))
    if total < 60 { return "\(total)s" }
    if total < 3600 { return String(format: "%dm%02ds", total / 60, total % 60) }
    return String(format: "%dh%02dm", total / 3600, (total % 3600) / 60)
}

/// Rows as columns padded to their widest cell, two spaces apart, with no trailing blanks.
func columns(_ rows: [[String]]) -> String {
    let count = rows.map(\.count).max() ?? 0
    let widths = (0..<count).map { column in rows.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
    return rows.map { row in
        row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
            .joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
    }.joined(separator: "\n")
}

/// Q's top level describes its tightest dimension: " tokens" (say) when that is not requests, else "".
func dimensionSuffix(_ quota: QuotaAnswer) -> String {
    quota.dimension == "requests" ? "" : " \(quota.dimension)"
}

/// One line describing a Q.
func summary(_ quota: QuotaAnswer) -> String {
    var parts = ["\(quota.service)/\(quota.account)"]
    let unit = dimensionSuffix(quota)
    if let remaining = quota.remaining {
        if let limit = quota.limit {
            parts.append("remaining \(remaining) of \(limit)\(unit)")
        } else {
            parts.append("remaining \(remaining)")
        }
    } else {
        parts.append("no limit known")
    }
    if let reset = quota.resetAt {
        let seconds = Double(reset) - Date().timeIntervalSince1970
        parts.append("resets in \(humanDuration(seconds: max(0, seconds)))")
    }
    if quota.breaker.state != .closed { parts.append("breaker \(quota.breaker.state.rawValue)") }
    return parts.joined(separator: ", ")
}

/// `--cost` and `--usage` as the CLI takes them: a number of requests (`4`), or amounts by dimension
/// (`requests=1,tokens=1800`), each a label and a whole number, within the limits the API and the core
/// apply (`AcquireRequest.maxCost` requests, `maxDimensionCost` in another dimension).
enum CostText {
    static func parse(_ text: String, option: String) -> Result<[String: Int64], ValidationError> {
        if let requests = Int64(text.trimmingCharacters(in: .whitespaces)) {
            guard (1...AcquireRequest.maxCost).contains(requests) else {
                return .failure(ValidationError("\(option) in requests must be 1 to \(AcquireRequest.maxCost), got \(requests)"))
            }
            return .success(["requests": requests])
        }
        var amounts: [String: Int64] = [:]
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, QuotaKey.isValidLabel(pair[0]), let amount = Int64(pair[1]) else {
                return .failure(ValidationError("\(option) must be a number of requests or DIMENSION=N pairs such as requests=1,tokens=1800; got '\(part)'"))
            }
            let range: ClosedRange<Int64> = pair[0] == "requests"
                ? 1...AcquireRequest.maxCost : 0...AcquireRequest.maxDimensionCost
            guard range.contains(amount) else {
                return .failure(ValidationError("\(option): \(pair[0]) must be \(range.lowerBound) to \(range.upperBound), got \(amount)"))
            }
            guard amounts.updateValue(amount, forKey: pair[0]) == nil else {
                return .failure(ValidationError("\(option) names \(pair[0]) twice"))
            }
        }
        guard amounts.count <= 16 else { return .failure(ValidationError("\(option) names more than 16 dimensions")) }
        return .success(amounts)
    }
}

/// `date` as the local wall clock in 24-hour time, `HH:MM:SS` (a locale's 12-hour clock without AM or PM
/// made 18:05 read 06:05).
func clockTime(_ date: Date, in zone: TimeZone = .current) -> String {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = zone
    let parts = calendar.dateComponents([.hour, .minute, .second], from: date)
    func two(_ value: Int?) -> String {
        let text = String(value ?? 0)
        return text.count < 2 ? "0" + text : text
    }
    return "\(two(parts.hour)):\(two(parts.minute)):\(two(parts.second))"
}

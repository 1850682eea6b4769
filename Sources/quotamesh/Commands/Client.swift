import ArgumentParser
import Foundation
import QuotaMeshCore

/// `quotamesh quota [SERVICE]`: the merged quota as the node sees it.
struct Quota: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the merged quota (all services, or one).")

    @Argument(help: "A service; all services when omitted.")
    var service: String?

    @Flag(help: "Print the API's JSON.")
    var json = false

    @Flag(help: "Keep the view open, refreshed every --interval (Ctrl-C to quit).")
    var watch = false

    @Option(help: "Refresh interval for --watch, e.g. 1s, 500ms.")
    var interval: String = "1s"

    @OptionGroup var options: APIOptions

    func validate() throws {
        guard let millis = DurationText.milliseconds(interval), millis >= 100 else {
            throw ValidationError("--interval must be a duration of at least 100ms, e.g. 1s")
        }
        if watch && json { throw ValidationError("--watch and --json do not go together") }
    }

    func run() async throws {
        try await withExitCodes {
            let client = try options.client()
            guard watch else {
                let quotas = try await fetch(client)
                if json { return }
                if quotas.isEmpty { print("no services known yet (configure one, or report an observation)") }
                print(table(quotas))
                return
            }
            let pause = Duration.milliseconds(DurationText.milliseconds(interval) ?? 1000)
            while !Task.isCancelled {
                let screen: String
                do {
                    let quotas = try await fetch(client)
                    screen = quotas.isEmpty ? "no services known yet (configure one, or report an observation)" : table(quotas)
                } catch let error as CLIError where error.code == ExitCodes.unavailable {
                    // Keep watching: a node restarting comes back on its own.
                    screen = "node unreachable, retrying: \(error.message)"
                }
                let time = Date().formatted(.dateTime.hour(.twoDigits(amPM: .omitted)).minute(.twoDigits).second(.twoDigits))
                // Home, clear, then the frame: the terminal shows one current view, not a scroll.
                let frame = "\u{1B}[H\u{1B}[2J" + "quotamesh quota: node \(options.endpoint), \(time), every \(interval) (Ctrl-C to quit)\n\n"
                    + screen + "\n"
                do {
                    try FileHandle.standardOutput.write(contentsOf: Data(frame.utf8))
                } catch {
                    return  // The terminal is gone (closed window, broken pipe): nothing left to show.
                }
                try await Task.sleep(for: pause)
            }
        }
    }

    /// Fetches the quotas; with --json prints the API's answer as it is.
    private func fetch(_ client: APIClient) async throws -> [[String: Any]] {
        let reply = try await client.get(service.map { "/v1/quota/\($0)" } ?? "/v1/quota")
        guard reply.status == 200 else {
            throw CLIError(code: ExitCodes.dataError, message: reply.json["error"] as? String ?? "HTTP \(reply.status)")
        }
        if json { print(try renderJSON(reply.json)) }
        if service != nil { return reply.json["accounts"] as? [[String: Any]] ?? [reply.json] }
        return reply.json["quotas"] as? [[String: Any]] ?? []
    }

    /// A bar of `width` cells, filled in proportion to what is left of the limit.
    private func bar(_ remaining: NSNumber?, of limit: NSNumber?, width: Int = 16) -> String {
        guard let remaining, let limit, limit.doubleValue > 0 else { return String(repeating: " ", count: width + 2) }
        let filled = Int((remaining.doubleValue / limit.doubleValue * Double(width)).rounded())
        let cells = min(width, max(0, filled))
        return "[" + String(repeating: "#", count: cells) + String(repeating: ".", count: width - cells) + "]"
    }

    private func table(_ quotas: [[String: Any]]) -> String {
        var rows = [["SERVICE", "ACCOUNT", "REMAINING", "LIMIT", "LEFT", "RESET", "BREAKER", "CONSUMED g/l", "NEXT u/n/l", "PEERS"]]
        let now = Date().timeIntervalSince1970
        for quota in quotas {
            let next = quota["next_available"] as? [String: Any] ?? [:]
            let consumed = quota["consumed"] as? [String: Any] ?? [:]
            let breaker = quota["breaker"] as? [String: Any] ?? [:]
            let peers = quota["peers"] as? [String: Any] ?? [:]
            let reset = (quota["reset_at"] as? NSNumber).map { humanDuration(seconds: max(0, $0.doubleValue - now)) } ?? "-"
            // The tightest dimension is shown; its name follows the number when it is not requests.
            let unit = dimensionSuffix(quota)
            rows.append([
                quota["service"] as? String ?? "?",
                quota["account"] as? String ?? "?",
                ((quota["remaining"] as? NSNumber)?.stringValue).map { $0 + unit } ?? "-",
                (quota["limit"] as? NSNumber)?.stringValue ?? "-",
                bar(quota["remaining"] as? NSNumber, of: quota["limit"] as? NSNumber),
                reset,
                breaker["state"] as? String ?? "?",
                "\(consumed["global"] ?? "-")/\(consumed["local"] ?? "-")",
                ["urgent", "normal", "low"].map { humanDuration(seconds: (next[$0] as? NSNumber)?.doubleValue ?? 0) }
                    .joined(separator: "/"),
                "\(peers["live"] ?? 0)/\(peers["known"] ?? 0)",
            ])
        }
        return columns(rows)
    }
}

/// `quotamesh acquire SERVICE`: asks for permission to make one upstream call.
struct Acquire: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Ask for permission to call SERVICE. Exit 0 granted, 75 denied (printing why and when to retry).")

    @Argument(help: "The upstream service.")
    var service: String

    @Option(help: "urgent, normal or low.")
    var priority: String = "normal"

    @Option(help: "The call's cost in requests.")
    var cost: Int = 1

    @Option(help: "How long to wait for a grant, e.g. 500ms, 5s. Default: answer at once.")
    var wait: String = "0"

    @Flag(help: "Print the API's JSON.")
    var json = false

    @OptionGroup var options: APIOptions

    func validate() throws {
        guard QuotaKey.isValidLabel(service) else { throw ValidationError("SERVICE must be 1-64 letters, digits, '-', '_', '.', ':'") }
        guard Priority(rawValue: priority) != nil else { throw ValidationError("--priority must be urgent, normal or low") }
        guard cost >= 1 else { throw ValidationError("--cost must be at least 1") }
        guard let millis = DurationText.milliseconds(wait), millis <= 600_000 else {
            throw ValidationError("--wait must be a duration up to 10m, such as 500ms or 5s")
        }
        _ = millis
    }

    func run() async throws {
        try await withExitCodes {
            let client = try options.client()
            let reply = try await client.post(
                "/v1/acquire",
                [
                    "service": service, "priority": priority, "cost": cost,
                    "wait_ms": DurationText.milliseconds(wait) ?? 0,
                ])
            if json { print(try renderJSON(reply.json)) }
            switch reply.status {
            case 200:
                if !json {
                    let quota = reply.json["quota"] as? [String: Any]
                    print("granted: \(quota.map(summary) ?? service)")
                }
            case 429:
                if !json {
                    let reason = reply.json["reason"] as? String ?? "denied"
                    let retry = (reply.json["retry_after_ms"] as? NSNumber)?.doubleValue ?? 0
                    var line = "denied: \(reason); retry in \(humanDuration(seconds: retry / 1000))"
                    if let detail = reply.json["detail"] as? String { line += " (\(detail))" }
                    print(line)
                    if let quota = reply.json["quota"] as? [String: Any] { print("quota: \(summary(quota))") }
                }
                throw ExitCode(ExitCodes.denied)
            default:
                throw CLIError(code: ExitCodes.dataError, message: reply.json["error"] as? String ?? "HTTP \(reply.status)")
            }
        }
    }
}

/// `quotamesh observe SERVICE --status N --header 'name: value'`: reports an upstream response.
struct Observe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Report an upstream response (status and headers).")

    @Argument(help: "The upstream service.")
    var service: String

    @Option(help: "The HTTP status the upstream answered.")
    var status: Int

    @Option(name: .customLong("header"), help: "A response header, 'name: value' (repeatable).")
    var headers: [String] = []

    @Option(help: "The account label used, if the service has several.")
    var account: String?

    @Flag(help: "Print the API's JSON.")
    var json = false

    @OptionGroup var options: APIOptions

    func validate() throws {
        guard QuotaKey.isValidLabel(service) else { throw ValidationError("SERVICE must be 1-64 letters, digits, '-', '_', '.', ':'") }
        guard (100...599).contains(status) else { throw ValidationError("--status must be an HTTP status (100-599)") }
        for header in headers where !header.contains(":") {
            throw ValidationError("--header must be 'name: value', got '\(header)'")
        }
    }

    func run() async throws {
        try await withExitCodes {
            var fields: [String: Any] = [:]
            for header in headers {
                guard let colon = header.firstIndex(of: ":") else { continue }
                let name = header[..<colon].trimmingCharacters(in: .whitespaces)
                let value = header[header.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                if let existing = fields[name] as? [String] {
                    fields[name] = existing + [value]
                } else if let existing = fields[name] as? String {
                    fields[name] = [existing, value]
                } else {
                    fields[name] = value
                }
            }
            var body: [String: Any] = ["service": service, "status": status, "headers": fields]
            if let account { body["account"] = account }
            let reply = try await options.client().post("/v1/observe", body)
            guard reply.status == 200 else {
                throw CLIError(code: ExitCodes.dataError, message: reply.json["error"] as? String ?? "HTTP \(reply.status)")
            }
            if json {
                print(try renderJSON(reply.json))
                return
            }
            let understood = reply.json["understood"] as? [String] ?? []
            print("understood: \(understood.isEmpty ? "nothing" : understood.joined(separator: ", "))")
            for ignored in reply.json["ignored"] as? [[String: Any]] ?? [] {
                print("ignored: \(ignored["header"] ?? "?"): \(ignored["reason"] ?? "?")")
            }
            if reply.json["breaker_opened"] as? Bool == true { print("breaker opened for every node") }
            if reply.json["breaker_closed"] as? Bool == true { print("breaker closed for every node") }
            if let quota = reply.json["quota"] as? [String: Any] {
                print("quota: \(summary(quota))")
            } else if let message = reply.json["message"] as? String {
                print(message)
            }
        }
    }
}

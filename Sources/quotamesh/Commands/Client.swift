import ArgumentParser
import Foundation
import QuotaMeshAPI
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
                let time = clockTime(Date())
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

    /// Fetches the quotas; with --json prints the API's answer.
    private func fetch(_ client: NodeClient) async throws -> [QuotaAnswer] {
        if let service {
            switch try await client.send({ try await $0.quota(path: .init(service: service)) }) {
            case .ok(let ok):
                let answer = try ok.body.json
                if json { print(try renderJSON(encoding: answer)) }
                return answer.accounts
            case .notFound(let missing): throw client.refused(404, try? missing.body.json.error)
            case .unauthorized: throw client.unauthorized
            case .undocumented(let status, _): throw client.refused(status, nil)
            }
        }
        switch try await client.send({ try await $0.quotas() }) {
        case .ok(let ok):
            let answer = try ok.body.json
            if json { print(try renderJSON(encoding: answer)) }
            return answer.quotas
        case .unauthorized: throw client.unauthorized
        case .undocumented(let status, _): throw client.refused(status, nil)
        }
    }

    /// A bar of `width` cells, filled in proportion to what is left of the limit.
    private func bar(_ remaining: Int64?, of limit: Int64?, width: Int = 16) -> String {
        guard let remaining, let limit, limit > 0 else { return String(repeating: " ", count: width + 2) }
        let filled = Int((Double(remaining) / Double(limit) * Double(width)).rounded())
        let cells = min(width, max(0, filled))
        return "[" + String(repeating: "#", count: cells) + String(repeating: ".", count: width - cells) + "]"
    }

    private func table(_ quotas: [QuotaAnswer]) -> String {
        var rows = [["SERVICE", "ACCOUNT", "REMAINING", "LIMIT", "LEFT", "RESET", "BREAKER", "CONSUMED g/l", "NEXT u/n/l", "PEERS"]]
        let now = Date().timeIntervalSince1970
        for quota in quotas {
            let next = quota.nextAvailable
            let reset = quota.resetAt.map { humanDuration(seconds: max(0, Double($0) - now)) } ?? "-"
            // The tightest dimension is shown; its name follows the number when it is not requests.
            let unit = dimensionSuffix(quota)
            rows.append([
                quota.service,
                quota.account,
                quota.remaining.map { "\($0)\(unit)" } ?? "-",
                quota.limit.map { "\($0)" } ?? "-",
                bar(quota.remaining, of: quota.limit),
                reset,
                quota.breaker.state.rawValue,
                "\(quota.consumed.global)/\(quota.consumed.local)",
                [next.urgent, next.normal, next.low].map { humanDuration(seconds: $0) }.joined(separator: "/"),
                "\(quota.peers.live)/\(quota.peers.known)",
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

    @Option(help: "The call's cost: requests (4), or by dimension (requests=1,tokens=1800).")
    var cost: String = "1"

    @Option(help: "How long to wait for a grant, e.g. 500ms, 5s. Default: answer at once.")
    var wait: String = "0"

    @Flag(help: "Print the API's JSON.")
    var json = false

    @OptionGroup var options: APIOptions

    func validate() throws {
        guard QuotaKey.isValidLabel(service) else { throw ValidationError("SERVICE must be 1-64 letters, digits, '-', '_', '.', ':'") }
        guard Priority(rawValue: priority) != nil else { throw ValidationError("--priority must be urgent, normal or low") }
        _ = try CostText.parse(cost, option: "--cost").get()
        guard let millis = DurationText.milliseconds(wait), millis <= 600_000 else {
            throw ValidationError("--wait must be a duration up to 10m, such as 500ms or 5s")
        }
        _ = millis
    }

    func run() async throws {
        try await withExitCodes {
            let client = try options.client()
            var costs = try CostText.parse(cost, option: "--cost").get()
            let requests = costs.removeValue(forKey: "requests") ?? 1
            let body = AcquireBody(
                service: service, priority: priority, cost: requests, costs: costs,
                waitMillis: DurationText.milliseconds(wait) ?? 0)
            switch try await client.send({ try await $0.acquire(body: .json(body)) }) {
            case .ok(let ok):
                let grant = try ok.body.json
                if json {
                    print(try renderJSON(encoding: grant))
                } else {
                    print("granted: \(grant.quota.map(summary) ?? service)")
                }
            case .tooManyRequests(let refused):
                let denial = try refused.body.json
                if json {
                    print(try renderJSON(encoding: denial))
                } else {
                    var line = "denied: \(denial.reason.rawValue); retry in \(humanDuration(seconds: Double(denial.retryAfterMillis) / 1000))"
                    if let detail = denial.detail { line += " (\(detail))" }
                    print(line)
                    if let quota = denial.quota { print("quota: \(summary(quota))") }
                }
                throw ExitCode(ExitCodes.denied)
            case .badRequest(let error): throw client.refused(400, try? error.body.json.error)
            case .contentTooLarge(let error): throw client.refused(413, try? error.body.json.error)
            case .unauthorized: throw client.unauthorized
            case .undocumented(let status, _): throw client.refused(status, nil)
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

    @Option(help: "What the call used, by dimension (tokens=1234): with --cost, the difference is refunded or charged.")
    var usage: String?

    @Option(help: "What the call's acquire reserved, by dimension (tokens=1800), as the grant's `cost` says.")
    var cost: String?

    @Flag(help: "Print the API's JSON.")
    var json = false

    @OptionGroup var options: APIOptions

    func validate() throws {
        guard QuotaKey.isValidLabel(service) else { throw ValidationError("SERVICE must be 1-64 letters, digits, '-', '_', '.', ':'") }
        guard (100...599).contains(status) else { throw ValidationError("--status must be an HTTP status (100-599)") }
        if let usage { _ = try CostText.parse(usage, option: "--usage").get() }
        if let cost { _ = try CostText.parse(cost, option: "--cost").get() }
        if cost != nil && usage == nil { throw ValidationError("--cost goes with --usage: it is what the usage is measured against") }
        for header in headers where !header.contains(":") {
            throw ValidationError("--header must be 'name: value', got '\(header)'")
        }
    }

    func run() async throws {
        try await withExitCodes {
            var fields: [String: [String]] = [:]
            for header in headers {
                guard let colon = header.firstIndex(of: ":") else { continue }
                let name = header[..<colon].trimmingCharacters(in: .whitespaces)
                let value = header[header.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                fields[name, default: []].append(value)
            }
            let used = try usage.map { try CostText.parse($0, option: "--usage").get() } ?? [:]
            let reserved = try cost.map { try CostText.parse($0, option: "--cost").get() } ?? [:]
            let body = ObserveBody(
                service: service, account: account, status: status, headers: fields, usage: used, costs: reserved)
            let client = try options.client()
            let answer: ObserveAnswer
            switch try await client.send({ try await $0.observe(body: .json(body)) }) {
            case .ok(let ok): answer = try ok.body.json
            case .unprocessableContent(let refused): throw client.refused(422, try? refused.body.json.error)
            case .badRequest(let error): throw client.refused(400, try? error.body.json.error)
            case .contentTooLarge(let error): throw client.refused(413, try? error.body.json.error)
            case .unauthorized: throw client.unauthorized
            case .undocumented(let status, _): throw client.refused(status, nil)
            }
            if json {
                print(try renderJSON(encoding: answer))
                return
            }
            print("understood: \(answer.understood.isEmpty ? "nothing" : answer.understood.joined(separator: ", "))")
            for ignored in answer.ignored { print("ignored: \(ignored.header): \(ignored.reason)") }
            if answer.breakerOpened { print("breaker opened for every node") }
            if answer.breakerClosed { print("breaker closed for every node") }
            if let quota = answer.quota {
                print("quota: \(summary(quota))")
            } else if let message = answer.message {
                print(message)
            }
        }
    }
}

import ArgumentParser
import Foundation
import Logging
import QuotaMeshCore
import QuotaMeshDemo

/// `quotamesh demo`: a local mesh on loopback, agents against a stand-in upstream, and the merged quota of
/// every node side by side.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Start a local mesh on loopback, drive agents against a stand-in upstream, show the result.",
        discussion: """
            Each node has its own generated identity, trust store and state in a temporary folder, gossips \
            over UDP on 127.0.0.1 and serves its agents over its loopback API. Agents of three priorities \
            (urgent 10%, normal 50%, low 40%) create tasks at DEMAND × the upstream's limit; each task is one \
            upstream call that must succeed. At the end every node's merged quota is printed side by side, \
            with the upstream's 429 count and each priority's outcome. The folder is removed afterwards.
            """)

    @Option(help: "Nodes in the mesh (1-20).") var nodes: Int = 3
    @Option(help: "Seconds the agents run.") var seconds: Int = 20
    @Option(help: "The stand-in upstream's limit per window.") var limit: Int = 60
    @Option(help: "The stand-in upstream's window, whole seconds: 10s, 1m (a bare number is seconds).") var window: String = "10s"
    @Option(help: "Demand as a multiple of the limit.") var demand: Double = 2
    @Flag(help: "Keep the temporary folder (identities, peers, state) and print where it is.") var keep = false
    @Flag(help: "Print one JSON object instead of tables.") var json = false

    func validate() throws {
        guard (1...20).contains(nodes) else { throw ValidationError("--nodes must be between 1 and 20") }
        guard (1...3600).contains(seconds) else { throw ValidationError("--seconds must be between 1 and 3600") }
        guard (1...100_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 100000") }
        guard let millis = DurationText.milliseconds(window), millis % 1000 == 0, (1...3600).contains(millis / 1000) else {
            throw ValidationError("--window must be whole seconds from 1s to 1h, such as 10s or 1m")
        }
        guard demand > 0, demand <= 100 else { throw ValidationError("--demand must be in (0, 100]") }
    }

    /// `--window` in seconds (validated).
    var windowSeconds: Int { Int((DurationText.milliseconds(window) ?? 10_000) / 1000) }

    func run() async throws {
        var options = Demo.Options()
        options.nodes = nodes
        options.seconds = seconds
        options.limit = limit
        options.windowSeconds = windowSeconds
        options.demand = demand
        options.keep = keep
        // The nodes' own logs would drown the display: warnings and errors only.
        var logger = Logger(label: "quotamesh-demo")
        logger.logLevel = .warning
        let interactive = isatty(STDERR_FILENO) == 1
        FileHandleWriter.writeStandardError(options.header + "\n")
        let report: Demo.Report
        do {
            report = try await Demo.run(options, logger: logger) { progress in
                let line = "demo: \(progress.elapsedSeconds)/\(progress.totalSeconds) s · \(progress.summary)"
                // A live line on a terminal; one line every 5 s (and the last) in a log.
                if interactive {
                    FileHandleWriter.writeStandardError("\r\u{1B}[K" + line)
                } else if progress.elapsedSeconds % 5 == 0 || progress.elapsedSeconds == progress.totalSeconds {
                    FileHandleWriter.writeStandardError(line + "\n")
                }
            }
        } catch {
            if interactive { FileHandleWriter.writeStandardError("\n") }
            printError("error: \(error)")
            throw ExitCode(ExitCodes.unavailable)
        }
        if interactive { FileHandleWriter.writeStandardError("\n") }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(DemoTables.render(report))
        }
    }
}

/// The demo's tables.
enum DemoTables {
    static func render(_ report: Demo.Report) -> String {
        var lines: [String] = []
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let names = report.nodes.map(\.name)
        let rows: [(String, (Demo.NodeView) -> String)] = [
            ("remaining", { $0.remaining.map(String.init) ?? "?" }),
            ("limit", { $0.limit.map(String.init) ?? "?" }),
            ("consumed (mesh)", { "\($0.consumedGlobal)" }),
            ("consumed (this node)", { "\($0.consumedLocal)" }),
            ("resets in", { $0.resetAtMillis.map { "\(max(0, ($0 - now + 999) / 1000)) s" } ?? "?" }),
            ("breaker", { $0.breaker }),
            ("peers live", { "\($0.peersLive)/\($0.peersKnown)" }),
        ]
        lines.append("Merged quota of \(Demo.service) on every node:")
        lines.append(columns([[""] + names] + rows.map { row in [row.0] + report.nodes.map(row.1) }))
        lines.append(
            report.agree
                ? "Every node holds the same view (remaining, consumption, reset, breaker)."
                : "The views differ: gossip had not settled when the demo read them.")
        lines.append("")
        let share = report.upstreamCalls == 0 ? 0 : 100 * Double(report.upstream429s) / Double(report.upstreamCalls)
        lines.append(
            "Upstream: \(report.upstreamCalls) calls, \(report.upstream429s) answered 429 (\(String(format: "%.1f", share))%); "
                + "at most \(report.maxAdmittedPerWindow) admitted in one window (limit \(report.limit)).")
        lines.append("")
        lines.append("Tasks by priority (each is one upstream call that must succeed):")
        lines.append(
            columns(
                [["priority", "tasks", "succeeded", "told to wait", "p50 to success", "p99 to success"]]
                    + report.priorities.map { outcome in
                        [outcome.priority, "\(outcome.tasks)", "\(outcome.succeeded)", "\(outcome.toldToWait)",
                         outcome.waitP50Millis.map { "\($0) ms" } ?? "-", outcome.waitP99Millis.map { "\($0) ms" } ?? "-"]
                    }))
        lines.append(
            report.unanswered == 0
                ? "Every request to a node was answered."
                : "\(report.unanswered) requests to a node got no answer.")
        lines.append(report.removed ? "Removed \(report.folder)." : "Kept \(report.folder).")
        return lines.joined(separator: "\n")
    }
}

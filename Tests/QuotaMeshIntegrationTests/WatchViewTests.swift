import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

let hasTmux = FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux")

/// `quotamesh quota --watch` in a real terminal (tmux), compared with the API's JSON.
@Suite(.serialized, .timeLimit(.minutes(5))) struct WatchViewTests {
    /// A tmux server of this test's own (`tmux -L`), so no other server is touched or reused.
    let server = "qmwatch\(getpid())"

    func capture(_ session: String) async throws -> String {
        try await shell(["tmux", "-L", server, "capture-pane", "-p", "-t", session])
    }

    /// The cells of the table row for `service` (columns split on two or more spaces).
    func row(_ screen: String, service: String) -> [String]? {
        screen.split(separator: "\n").map(String.init).first { $0.hasPrefix(service + " ") }.map { line in
            line.components(separatedBy: "  ").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
    }

    @Test(.enabled(if: hasTmux, "needs tmux to capture the terminal"))
    func theWatchViewShowsWhatTheAPISaysAndRefreshes() async throws {
        let node = try await NodeProcess(name: "watched", root: makeRoot())
        try node.writeConfig(#"{"services": {"api": {"limit": 40, "window": "1h", "burst": 1}}}"#)
        try await node.start()
        defer { node.signal(SIGTERM) }
        try await node.waitForAPI()
        for _ in 0..<3 { _ = try await node.request("POST", "/v1/acquire", body: ["service": "api", "priority": "urgent"]) }

        let session = "watch"
        defer { Task { _ = try? await shell(["tmux", "-L", server, "kill-server"]) } }
        // The tmux server outlives the client that starts it, and would keep every descriptor the client
        // inherited, among them the test's hold on the client's output. So the
        // client is started from a shell that closes every descriptor above 2 first.
        // A time zone where it is 3 pm now: the header must say 15, not 03 (a 12-hour clock without AM/PM).
        let utcHour = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: Date()).hour ?? 0
        let offset = (15 - utcHour + 36) % 24 - 12  // -12...11 hours from UTC; Etc/GMT-3 is UTC+3
        let zone = offset >= 0 ? "Etc/GMT-\(offset)" : "Etc/GMT+\(-offset)"
        let command = "env TZ=\(zone) \(try quotameshBinary()) quota --watch --interval 200ms --api \(node.api)"
        let started = try await runToCompletion(
            "/bin/bash",
            ["-c", #"for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$@""#,
             "bash", "tmux", "-L", server, "new-session", "-d", "-s", session, "-x", "160", "-y", "12", command],
            output: .discard, timeout: .seconds(30))
        #expect(started.status == 0)
        // The server and the watching process end with the test, whatever tmux's kill-server does to them.
        let owned = (try? await shell(["tmux", "-L", server, "display-message", "-p", "-t", session, "#{pid} #{pane_pid}"])) ?? ""
        defer { for pid in owned.split(whereSeparator: \.isWhitespace).compactMap({ Int32($0) }) { kill(pid, SIGKILL) } }

        // The view matches the API: remaining, limit, the bar, breaker, consumption, peers.
        let api = try await node.quota("api")
        let remaining = api["remaining"] as? Int ?? -1
        try await node.waitUntil("the watch view to show the table") {
            row(try await capture(session), service: "api")?.count ?? 0 >= 10
        }
        let screen = try await capture(session)
        #expect(screen.contains("quotamesh quota: node \(node.api), 15:") || screen.contains("quotamesh quota: node \(node.api), 16:"),
                "24-hour time in the header: \(screen.split(separator: "\n").first ?? "")")
        let cells = row(screen, service: "api") ?? []
        #expect(cells.count >= 10, "\(screen)")
        if cells.count >= 10 {
            #expect(cells[1] == "default")
            #expect(cells[2] == "\(remaining)")
            #expect(cells[3] == "\(api["limit"] as? Int ?? -1)")
            #expect(cells[4] == "[" + String(repeating: "#", count: 15) + "." + "]", "37 of 40 left is 15 of 16 cells")
            #expect(cells[6] == (api["breaker"] as? [String: Any])?["state"] as? String)
            let consumed = api["consumed"] as? [String: Any] ?? [:]
            #expect(cells[7] == "\(consumed["global"] ?? "?")/\(consumed["local"] ?? "?")")
            let peers = api["peers"] as? [String: Any] ?? [:]
            #expect(cells[9] == "\(peers["live"] ?? "?")/\(peers["known"] ?? "?")")
        }

        // It refreshes: an acquire shows up without touching the terminal.
        _ = try await node.request("POST", "/v1/acquire", body: ["service": "api", "priority": "urgent"])
        try await node.waitUntil("the watch view to refresh") {
            row(try await capture(session), service: "api")?[2] == "\(remaining - 1)"
        }
    }
}

import ArgumentParser
import QuotaMeshNode

/// The `quotamesh` command: run a node, manage identity and peers, and talk to a running node.
@main
struct QuotaMeshCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quotamesh",
        abstract: "Share API quota between AI agents: signed gossip, CRDT merge, local enforcement.",
        version: QuotaMeshVersion.current,
        subcommands: [
            Run.self, Keygen.self, Identity.self, Invite.self, Join.self, Peer.self, Quota.self, Acquire.self, Observe.self, Simulate.self,
            DemoCommand.self, Fingerprint.self,
        ])
}

/// Exit codes beyond 0 (success) and ArgumentParser's 64 (usage).
enum ExitCodes {
    /// Denied (sysexits EX_TEMPFAIL: try again later).
    static let denied: Int32 = 75
    /// The node could not be reached (EX_UNAVAILABLE).
    static let unavailable: Int32 = 69
    /// Invalid data, such as a malformed identity (EX_DATAERR).
    static let dataError: Int32 = 65
    /// A configuration error (EX_CONFIG).
    static let configuration: Int32 = 78
    /// Cannot create or write a file (EX_CANTCREAT).
    static let cannotCreate: Int32 = 73
    /// The node refused the request: a missing or wrong API token (EX_NOPERM).
    static let noPermission: Int32 = 77
    /// Bad usage: an unreadable token file, a malformed flag (EX_USAGE).
    static let usage: Int32 = 64
}

/// Prints to standard error.
func printError(_ message: String) {
    var stream = StandardError()
    print(message, to: &stream)
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        FileHandleWriter.writeStandardError(string)
    }
}

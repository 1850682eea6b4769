import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A child process whose exit is observed through `terminationHandler`, installed before `run()` so that
/// a fast exit is never missed, and whose every wait has a deadline.
///
/// These tests never call `Process.waitUntilExit()`: on Linux it spins a run loop on the calling thread,
/// and called from a pool thread under load it can wait for ever for a child that has already exited.
/// One CI run hung so until its time ran out. Output goes to a file, not a pipe, so a child that writes a
/// lot never blocks, and a grandchild that keeps the descriptor cannot hold a reader.
final class ChildProcess: @unchecked Sendable {
    // `process` is configured before `run()` and only read afterwards.
    let process: Process
    private let exited = DispatchGroup()
    private let done = ExitFlag()
    /// Where standard output (and standard error, unless discarded) go, when captured.
    let outputPath: String?

    /// A child running `executable` with `arguments` in `directory`.
    /// - Parameters:
    ///   - output: `.capture` writes both streams to a temporary file, `.file` appends them to a file,
    ///     `.discard` drops them, `.captureStandardOutput` keeps only standard output.
    init(_ executable: String, _ arguments: [String], in directory: String? = nil, output: Output = .capture) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        switch output {
        case .discard:
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            outputPath = nil
        case .capture, .captureStandardOutput:
            let path = NSTemporaryDirectory() + "quotamesh-child-\(UUID().uuidString.prefix(12)).out"
            guard FileManager.default.createFile(atPath: path, contents: nil),
                let handle = FileHandle(forWritingAtPath: path)
            else { throw TestFailure("cannot create \(path)") }
            process.standardOutput = handle
            process.standardError = output == .capture ? handle : FileHandle.nullDevice
            outputPath = path
        case .append(let path):
            if !FileManager.default.fileExists(atPath: path) {
                _ = FileManager.default.createFile(atPath: path, contents: nil)
            }
            guard let handle = FileHandle(forWritingAtPath: path) else { throw TestFailure("cannot open \(path)") }
            handle.seekToEndOfFile()
            process.standardOutput = handle
            process.standardError = handle
            outputPath = path
        }
        self.process = process
        exited.enter()
        process.terminationHandler = { [exited, done] _ in
            done.value.withLock { $0 = true }
            exited.leave()
        }
    }

    /// Where a child's output goes.
    enum Output: Equatable {
        case capture, captureStandardOutput, discard
        case append(String)
    }

    func run() throws { try process.run() }

    var pid: Int32 { process.processIdentifier }
    var hasExited: Bool { done.value.withLock { $0 } }
    /// The exit status, or 128 + the signal that ended it; `nil` while running.
    var status: Int32? {
        guard hasExited else { return nil }
        return process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    /// What the child wrote (for `.capture`, `.captureStandardOutput` and `.append`).
    var output: String {
        guard let outputPath, let data = FileManager.default.contents(atPath: outputPath) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Waits without blocking a thread; `true` once the child has exited, `false` at the deadline.
    func waitForExit(timeout: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while !hasExited {
            guard clock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    /// Blocks the calling thread until the child exits or `timeout` passes; for synchronous callers.
    func waitForExitBlocking(timeout: Duration) -> Bool {
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        return exited.wait(timeout: .now() + seconds) == .success
    }

    /// Sends `signal` if the child is still running.
    func signal(_ signal: Int32) {
        if !hasExited { kill(pid, signal) }
    }

    /// SIGKILLs the child (if running) and waits a bounded time for the exit to be observed.
    func killAndWait() {
        guard !hasExited else { return }
        kill(pid, SIGKILL)
        _ = waitForExitBlocking(timeout: .seconds(10))
    }

    /// Kills the child that ran past `timeout` and says so, with the end of its output.
    func overran(_ timeout: Duration) -> TestFailure {
        killAndWait()
        let command = ([process.executableURL?.path ?? "?"] + (process.arguments ?? [])).joined(separator: " ")
        return TestFailure("`\(command)` did not finish within \(timeout): \(output.suffix(2000))")
    }

    deinit {
        if let outputPath, outputPath.contains("quotamesh-child-") { try? FileManager.default.removeItem(atPath: outputPath) }
    }
}

/// Set once the child's exit has been observed.
private final class ExitFlag: Sendable {
    let value = Mutex(false)
}

/// Runs `executable` to completion (killed after `timeout`) and returns its status and output.
func runToCompletion(
    _ executable: String, _ arguments: [String], in directory: String? = nil, output: ChildProcess.Output = .capture,
    timeout: Duration = .seconds(120)
) throws -> (status: Int32, output: String) {
    let child = try ChildProcess(executable, arguments, in: directory, output: output)
    try child.run()
    guard child.waitForExitBlocking(timeout: timeout) else { throw child.overran(timeout) }
    return (child.status ?? -1, child.output)
}

/// Runs `executable` to completion without blocking a thread while it runs: for long commands, which
/// would otherwise hold one of the few threads every test shares.
func runWithoutBlocking(
    _ executable: String, _ arguments: [String], in directory: String? = nil, timeout: Duration
) async throws -> (status: Int32, output: String) {
    let child = try ChildProcess(executable, arguments, in: directory, output: .capture)
    try child.run()
    guard await child.waitForExit(timeout: timeout) else { throw child.overran(timeout) }
    return (child.status ?? -1, child.output)
}

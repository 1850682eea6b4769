import Foundation
import Subprocess
import Synchronization

#if canImport(System)
import System
#else
import SystemPackage
#endif

#if canImport(Glibc)
import Glibc
#endif

/// A child process run by swift-subprocess in a task of its own, which ends when the child exits; every
/// wait on it has a deadline.
///
/// Output goes to a file, not a pipe, so a child that writes a lot never blocks, and a grandchild that
/// keeps the descriptor cannot hold a reader.
final class ChildProcess: Sendable {
    let pid: Int32
    /// Where standard output (and standard error, unless discarded) go, when kept.
    let outputPath: String?
    /// The command line, for messages.
    let command: String
    private let exit: ExitStatus

    private init(pid: Int32, outputPath: String?, command: String, exit: ExitStatus) {
        self.pid = pid
        self.outputPath = outputPath
        self.command = command
        self.exit = exit
    }

    /// Where a child's output goes.
    enum Output: Equatable {
        /// Both streams to a temporary file.
        case capture
        /// Standard output to a temporary file, standard error dropped.
        case captureStandardOutput
        case discard
        /// Both streams appended to the file at this path.
        case append(String)
    }

    /// Starts `executable` with `arguments` in `directory`, with `environment` added to this process's.
    static func start(
        _ executable: String, _ arguments: [String], in directory: String? = nil, output: Output = .capture,
        environment: [String: String] = [:]
    ) async throws -> ChildProcess {
        let (outputPath, standardOutput, standardError) = try open(output)
        let exit = ExitStatus()
        let (started, reportStart) = AsyncStream<Int32>.makeStream()
        let updates = Dictionary(uniqueKeysWithValues: environment.compactMap { name, value in
            Environment.Key(rawValue: name).map { ($0, Optional(value)) }
        })
        Task {
            do {
                let result = try await Subprocess.run(
                    .path(FilePath(executable)), arguments: Arguments(arguments),
                    environment: .inherit.updating(updates), workingDirectory: directory.map { FilePath($0) },
                    input: .none, output: standardOutput, error: standardError
                ) { execution in
                    reportStart.yield(execution.processIdentifier.value)
                    reportStart.finish()
                }
                switch result.terminationStatus {
                case .exited(let code): exit.set(code)
                case .signaled(let signal): exit.set(128 + signal)
                }
            } catch {
                exit.set(-1, failure: "\(error)")
                reportStart.finish()
            }
        }
        var pids = started.makeAsyncIterator()
        guard let pid = await pids.next() else {
            throw TestFailure("cannot start \(executable): \(exit.failure ?? "unknown error")")
        }
        return ChildProcess(
            pid: pid, outputPath: outputPath, command: ([executable] + arguments).joined(separator: " "), exit: exit)
    }

    private static func open(_ output: Output) throws -> (String?, FileDescriptorOutput, FileDescriptorOutput) {
        func append(to path: String) throws -> FileDescriptor {
            try FileDescriptor.open(
                FilePath(path), .writeOnly, options: [.create, .append], permissions: [.ownerReadWrite, .groupRead])
        }
        switch output {
        case .discard:
            let null = try FileDescriptor.open("/dev/null", .writeOnly)
            return (nil, .fileDescriptor(null, closeAfterSpawningProcess: true),
                .fileDescriptor(try FileDescriptor.open("/dev/null", .writeOnly), closeAfterSpawningProcess: true))
        case .capture, .captureStandardOutput:
            let path = NSTemporaryDirectory() + "quotamesh-child-\(UUID().uuidString.prefix(12)).out"
            let file = try append(to: path)
            let error = output == .capture ? try file.duplicate() : try FileDescriptor.open("/dev/null", .writeOnly)
            return (path, .fileDescriptor(file, closeAfterSpawningProcess: true),
                .fileDescriptor(error, closeAfterSpawningProcess: true))
        case .append(let path):
            let file = try append(to: path)
            return (path, .fileDescriptor(file, closeAfterSpawningProcess: true),
                .fileDescriptor(try file.duplicate(), closeAfterSpawningProcess: true))
        }
    }

    var hasExited: Bool { exit.status != nil }
    /// The exit status, or 128 + the signal that ended it; `nil` while running.
    var status: Int32? { exit.status }

    /// What the child wrote (for `.capture`, `.captureStandardOutput` and `.append`).
    var output: String {
        guard let outputPath, let data = FileManager.default.contents(atPath: outputPath) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// `true` once the child has exited, `false` at the deadline; holds no thread while it waits.
    func waitForExit(timeout: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while !hasExited {
            guard clock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    /// Sends `signal` if the child is still running.
    func signal(_ signal: Int32) {
        if !hasExited { kill(pid, signal) }
    }

    /// SIGKILLs the child (if running) and waits a bounded time for its exit.
    func killAndWait() async {
        guard !hasExited else { return }
        kill(pid, SIGKILL)
        _ = await waitForExit(timeout: .seconds(10))
    }

    /// Kills the child that ran past `timeout` and says so, with the end of its output.
    func overran(_ timeout: Duration) async -> TestFailure {
        await killAndWait()
        return TestFailure("`\(command)` did not finish within \(timeout): \(output.suffix(2000))")
    }

    deinit {
        // A child still running when its owner goes is killed; its run task reaps it.
        if !hasExited { kill(pid, SIGKILL) }
        if let outputPath, outputPath.contains("quotamesh-child-") { try? FileManager.default.removeItem(atPath: outputPath) }
    }
}

/// How a child ended: set once, by its run task.
private final class ExitStatus: Sendable {
    private let state = Mutex<(status: Int32?, failure: String?)>((nil, nil))

    func set(_ status: Int32, failure: String? = nil) {
        state.withLock { $0 = (status, failure) }
    }

    var status: Int32? { state.withLock { $0.status } }
    var failure: String? { state.withLock { $0.failure } }
}

/// Runs `executable` to completion (killed after `timeout`) and returns its status and output.
func runToCompletion(
    _ executable: String, _ arguments: [String], in directory: String? = nil, output: ChildProcess.Output = .capture,
    environment: [String: String] = [:], timeout: Duration = .seconds(120)
) async throws -> (status: Int32, output: String) {
    let child = try await ChildProcess.start(executable, arguments, in: directory, output: output, environment: environment)
    guard await child.waitForExit(timeout: timeout) else { throw await child.overran(timeout) }
    return (child.status ?? -1, child.output)
}

import Foundation
import HTTPTypes
import Hummingbird
import Logging
import ServiceLifecycle
import Synchronization

/// A stand-in upstream API on loopback with a real fixed-window quota: `limit` calls per window, counted
/// by the server itself. It answers `POST /call` with 200 and GitHub-style rate-limit headers
/// (`x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset` in epoch seconds), or with 429 and
/// `retry-after` once the window's calls are spent, and it counts every call it answers.
public final class StandInUpstream: Sendable {
    /// Calls allowed per window.
    public let limit: Int
    /// The window's length in seconds; windows start at multiples of it (Unix time).
    public let windowSeconds: Int

    private let tally = Mutex(Tally())
    private let group: Mutex<ServiceGroup?> = Mutex(nil)

    /// What the upstream has answered so far.
    public struct Tally: Sendable, Equatable {
        /// Calls answered, with either status.
        public var calls = 0
        /// Calls answered 429.
        public var rejected = 0
        /// Calls answered 200, by window (its start, Unix seconds).
        public var admittedPerWindow: [Int64: Int] = [:]
    }

    /// An upstream allowing `limit` calls per `windowSeconds`.
    public init(limit: Int, windowSeconds: Int) {
        self.limit = max(1, limit)
        self.windowSeconds = max(1, windowSeconds)
    }

    /// What has been answered so far.
    public var answered: Tally { tally.withLock { $0 } }

    /// Answers one call made at `now` (Unix ms): the status and the headers to send.
    public func answer(at now: Int64) -> (status: Int, headers: [(String, String)]) {
        let window = Int64(windowSeconds)
        let start = (now / 1000) / window * window
        let reset = start + window
        return tally.withLock { tally in
            tally.calls += 1
            let used = tally.admittedPerWindow[start, default: 0]
            guard used < limit else {
                tally.rejected += 1
                let retry = max(1, reset - now / 1000)
                return (429, [("retry-after", "\(retry)"), ("x-ratelimit-limit", "\(limit)"),
                              ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "\(reset)")])
            }
            tally.admittedPerWindow[start] = used + 1
            return (200, [("x-ratelimit-limit", "\(limit)"), ("x-ratelimit-remaining", "\(limit - used - 1)"),
                          ("x-ratelimit-reset", "\(reset)")])
        }
    }

    /// Starts serving on 127.0.0.1 (a free port) and returns the address, `host:port`.
    public func start(logger: Logger) async throws -> String {
        let router = Router()
        router.post("call") { [self] _, _ -> Response in
            let (status, headers) = answer(at: Int64(Date().timeIntervalSince1970 * 1000))
            var fields = HTTPFields()
            for (name, value) in headers {
                if let name = HTTPField.Name(name) { fields[name] = value }
            }
            fields[.contentType] = "application/json"
            let body = status == 200 ? #"{"ok":true}"# : #"{"error":"rate limited"}"#
            return Response(
                status: .init(code: status), headers: fields, body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        let (listening, announce) = AsyncStream<String>.makeStream()
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "stand-in"),
            onServerRunning: { channel in
                announce.yield("127.0.0.1:\(channel.localAddress?.port ?? 0)")
                announce.finish()
            },
            logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: app)], logger: logger))
        self.group.withLock { $0 = group }
        let running = Task {
            defer { announce.finish() }
            try await group.run()
        }
        for await address in listening { return address }
        try await running.value
        throw DemoError("the stand-in upstream stopped before it was listening")
    }

    /// Stops serving.
    public func stop() async {
        guard let group = group.withLock({ $0 }) else { return }
        await group.triggerGracefulShutdown()
    }
}

/// Why the demo could not run.
public struct DemoError: Error, CustomStringConvertible, Sendable {
    /// What went wrong.
    public var description: String
    init(_ description: String) { self.description = description }
}

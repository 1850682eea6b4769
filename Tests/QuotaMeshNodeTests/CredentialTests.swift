import Foundation
import Logging
import QuotaMeshCore
import QuotaMeshCrypto
import QuotaMeshNode
import Synchronization
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Every log event, rendered with its metadata, kept for the test to search.
final class CapturedLog: Sendable {
    let lines = Mutex<[String]>([])

    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    /// A logger at `trace` that writes here.
    func logger() -> Logger {
        Logger(label: "captured") { _ in CapturingLogHandler(log: self) }
    }
}

struct CapturingLogHandler: LogHandler {
    let log: CapturedLog
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        let line = "\(event.level) \(event.message) \(all) \(event.error.map { "\($0)" } ?? "")"
        log.lines.withLock { $0.append(line) }
    }
}

struct SocketError: Error { var reason: String }

/// A UDP socket on loopback standing in for a vouched peer: it receives everything the node sends it.
final class LoopbackPeerSocket {
    let fd: Int32
    let port: Int
    private(set) var received: [[UInt8]] = []

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw SocketError(reason: String(cString: strerror(errno))) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else {
            close(fd)
            throw SocketError(reason: String(cString: strerror(errno)))
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        self.fd = fd
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }

    /// Reads every datagram waiting, without blocking.
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 2_048)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return }
            received.append(Array(buffer[..<count]))
        }
    }

    func send(_ bytes: [UInt8], to port: Int) {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
}

/// Whether `needle` occurs in `haystack`.
func occurs(_ needle: [UInt8], in haystack: [UInt8]) -> Bool {
    guard !needle.isEmpty, haystack.count >= needle.count else { return false }
    return (0...(haystack.count - needle.count)).contains { start in
        haystack[start] == needle[0] && haystack[start..<(start + needle.count)].elementsEqual(needle)
    }
}

/// Credentials an agent hands the node by mistake never leave it: not in a datagram, the state file or
/// the log.
@Suite(.timeLimit(.minutes(1))) struct CredentialTests {
    /// An agent reports a response with its API key in `Authorization`, `x-api-key` and `Cookie`, and names
    /// the account by the key's fingerprint (the README's way); the key's bytes (raw, hex or base64) are in
    /// no datagram the node sent, no file of its state folder and no log line, even at `trace`.
    @Test func anAPIKeyInObservedHeadersOrBehindAnAccountLabelIsNeverGossipedStoredOrLogged() async throws {
        let secret = "sk-qm-" + (0..<32).map { _ in String("abcdefghijklmnopqrstuvwxyz0123456789".randomElement()!) }.joined()
        let secretBytes = Array(secret.utf8)
        let needles: [(String, [UInt8])] = [
            ("raw", secretBytes),
            ("hex", Array(secretBytes.map { String(format: "%02x", $0) }.joined().utf8)),
            ("base64", Array(Data(secretBytes).base64EncodedString().utf8)),
        ]
        let salt = [UInt8]((0..<32).map { _ in UInt8.random(in: 0...255) })
        let label = try AccountFingerprint.label(secret: secretBytes, salt: salt)

        let folder = NSTemporaryDirectory() + "quotamesh-credentials-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var configuration = NodeConfiguration()
        configuration.gossip = Endpoint(host: "127.0.0.1", port: 0)
        configuration.api = Endpoint(host: "127.0.0.1", port: 0)
        configuration.identityPath = "\(folder)/identity"
        configuration.peersDirectory = "\(folder)/Peers"
        configuration.stateDirectory = "\(folder)/state"
        let log = CapturedLog()
        let embedded = try await EmbeddedNode.start(configuration, logger: log.logger())
        var stopped = false
        defer { if !stopped { Task { try? await embedded.stop() } } }

        // A vouched peer that is this test's socket, so every datagram the node sends it is seen here.
        let peer = try LoopbackPeerSocket()
        let peerKey = SigningKey()
        await embedded.node.replacePeers([
            PeerInfo(name: "peer", key: peerKey.publicKey, endpoint: Endpoint(host: "127.0.0.1", port: peer.port))
        ])
        let gossipPort = Endpoint(parsing: embedded.gossipAddress)?.port ?? 0
        var sequence: UInt64 = 0
        /// A signed heartbeat from the peer, so the node holds it live and pushes its records to it.
        func heartbeat() {
            sequence += 1
            let now = wallClockMillis()
            let record = SignedRecord(
                signing: .heartbeat, version: RecordVersion(incarnation: 1, sequence: sequence), timestamp: now,
                with: peerKey, cluster: configuration.mesh.cluster)
            peer.send(
                WireFormat.encodePacket(
                    header: PacketHeader(sender: peerKey.publicKey, incarnation: 1, sequence: sequence, sentAt: now),
                    payload: .records([record]), signingKey: peerKey, cluster: configuration.mesh.cluster),
                to: gossipPort)
        }
        heartbeat()

        func post(_ path: String, _ body: [String: Any]) async throws -> (Int, [String: Any]) {
            var request = URLRequest(url: URL(string: "http://\(embedded.apiAddress)\(path)")!, timeoutInterval: 10)
            request.httpMethod = "POST"
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
            let (data, response) = try await URLSession.shared.data(for: request)
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:])
        }
        let reset = Int(Date().timeIntervalSince1970) + 120
        let (observed, answer) = try await post("/v1/observe", [
            "service": "github", "account": label, "status": 200,
            "headers": [
                "Authorization": "Bearer \(secret)", "x-api-key": secret, "Cookie": "session=\(secret)",
                "x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4990", "x-ratelimit-reset": "\(reset)",
            ],
        ])
        #expect(observed == 200, "\(answer)")
        let (acquired, grant) = try await post("/v1/acquire", ["service": "github", "priority": "urgent"])
        #expect(acquired == 200 && grant["account"] as? String == label, "\(grant)")

        // Wait (at most 10 s) until the account's record has gone out to the peer and the state is saved.
        let statePath = "\(folder)/state/state.json"
        let labelBytes = Array(label.utf8)
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        func labelIsOut() -> Bool {
            peer.received.contains { occurs(labelBytes, in: $0) }
                && [statePath, "\(folder)/state/spends.log"].contains { path in
                    FileManager.default.contents(atPath: path).map { occurs(labelBytes, in: [UInt8]($0)) } ?? false
                }
        }
        while clock.now < deadline && !labelIsOut() {
            heartbeat()
            try await Task.sleep(for: .milliseconds(50))
            peer.drain()
        }
        #expect(labelIsOut(), "the account's record reached the peer and the state file (\(peer.received.count) datagrams)")

        try await embedded.stop()
        stopped = true
        peer.drain()

        let stateFiles = try FileManager.default.subpathsOfDirectory(atPath: "\(folder)/state").compactMap {
            name -> (String, [UInt8])? in
            FileManager.default.contents(atPath: "\(folder)/state/\(name)").map { (name, [UInt8]($0)) }
        }
        #expect(!stateFiles.isEmpty)
        let logText = log.text
        #expect(logText.contains("Service learned"), "the log was captured")
        let logBytes = Array(logText.utf8)
        var leaks: [String] = []
        for (encoding, needle) in needles {
            let datagrams = peer.received.filter { occurs(needle, in: $0) }.count
            if datagrams > 0 { leaks.append("datagrams: \(datagrams) (\(encoding))") }
            for (name, bytes) in stateFiles where occurs(needle, in: bytes) { leaks.append("state/\(name) (\(encoding))") }
            if occurs(needle, in: logBytes) { leaks.append("the log (\(encoding))") }
        }
        let searched = "\(peer.received.count) datagrams, \(stateFiles.count) state files, \(log.lines.withLock { $0.count }) log lines"
        #expect(leaks.isEmpty, "the key was found in \(leaks.joined(separator: ", ")) (searched \(searched))")
    }
}

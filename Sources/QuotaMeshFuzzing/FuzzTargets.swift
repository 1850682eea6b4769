import QuotaMeshCore
import QuotaMeshCrypto
import QuotaMeshRequests

/// Fuzz targets over every decoder of untrusted input. `run` takes one input: its first byte picks the
/// target, the rest is the target's input. libFuzzer drives it from `Fuzz/` (coverage-guided), and the
/// corpus-replay test runs every file of `Fuzz/Corpus` through it in `swift test`.
///
/// A target must never crash, trap or hang, whatever the bytes; where a decoder accepts its input, the
/// target also checks what must then hold (an encoded packet decodes to what was encoded, a granted
/// acquire never exceeds what the merged view said was left).
public enum FuzzTargets {
    /// The targets, by the first byte of an input (modulo their count).
    public enum Target: UInt8, CaseIterable, Sendable {
        /// A datagram into a node that trusts its sender: decode, merge, enforce.
        case trustedPacket = 0
        /// A datagram into a node with real Ed25519 checks (nothing forged may pass).
        case signedPacket = 1
        /// A record body alone.
        case recordBody = 2
        /// Upstream response headers, one `name: value` per line, through the rate-limit parser.
        case headers = 3
        /// A `POST /v1/acquire` body.
        case acquireBody = 4
        /// A `POST /v1/observe` body, then its headers through the parser.
        case observeBody = 5
    }

    /// Runs one input.
    public static func run(_ input: [UInt8]) {
        guard let first = input.first else { return }
        let target = Target.allCases[Int(first) % Target.allCases.count]
        let rest = Array(input.dropFirst())
        switch target {
        case .trustedPacket: trustedPacket(rest)
        case .signedPacket: signedPacket(rest)
        case .recordBody: recordBody(rest)
        case .headers: headers(rest)
        case .acquireBody: acquireBody(rest)
        case .observeBody: observeBody(rest)
        }
    }

    static let now: UnixMillis = 1_800_000_000_000
    static let source = Endpoint(host: "127.0.0.1", port: 9720)

    /// Two trusted peers whose keys a fuzzer finds at once: all zero bytes and all 0x01 bytes.
    static let trusted = [
        PeerInfo(name: "zero", key: VerifyingKey(words: (0, 0, 0, 0)), endpoint: source),
        PeerInfo(
            name: "ones",
            key: VerifyingKey(words: (0x0101_0101_0101_0101, 0x0101_0101_0101_0101, 0x0101_0101_0101_0101, 0x0101_0101_0101_0101)),
            endpoint: source),
    ]

    static func instance(signatures: any SignatureScheme) -> MeshInstance {
        let identity = (try? SigningKey(seed: [UInt8](repeating: 7, count: 32))) ?? SigningKey()
        var services: [String: ServicePolicy] = [:]
        services["api"] = ServicePolicy(limit: 100, windowMillis: 10_000)
        return MeshInstance(
            identity: identity,
            configuration: MeshConfiguration(services: services, signatures: signatures),
            peers: trusted, restored: nil, now: now, seed: 1)
    }

    static func trustedPacket(_ bytes: [UInt8]) {
        var node = instance(signatures: AcceptingSignatures())
        _ = node.start(now: now)
        _ = node.receive(datagram: bytes, from: source, now: now + 1)
        // Whatever validly signed values were merged, what they claim stays within what the configuration
        // allows: the configured limit is a ceiling, no reset lies more than a window past the latest time a
        // record may be stamped, a peer holds the breaker open for at most the service's open time, and this
        // node never holds more rights than the limit.
        let latestStamp = now + 1 + node.configuration.maxClockSkewMillis
        for view in node.quotas(service: "api", now: now + 2) where view.key.dimension == QuotaKey.requests {
            if let limit = view.limit, limit > 100 { fatalError("a signed record lifted the configured limit to \(limit)") }
            if let reset = view.resetAt, reset > latestStamp + 10_000 { fatalError("a reset \(reset - now) ms ahead") }
            if let until = view.breakerOpenUntil, view.breakerState == .open, until > latestStamp + 30_000 {
                fatalError("a peer held the breaker open until \(until - now) ms ahead")
            }
            if let rights = view.rights, rights > 100 { fatalError("\(rights) rights held of a limit of 100") }
        }
        // Whatever was merged, enforcement must stay within what the merged view says is left for the
        // account it grants from.
        for service in Set(node.quotas(now: now + 2).map(\.key.service)).sorted() {
            let views = node.quotas(service: service, now: now + 2)
            let directives = node.acquire(AcquireRequest(service: service, priority: .urgent), ticket: 1, now: now + 2)
            for case .reply(_, let decision) in directives where decision.granted && decision.detail == nil {
                let left = views.first { $0.key == decision.key }?.remaining
                if let left, left < 1 { fatalError("granted from \(String(describing: decision.key)) with \(left) left") }
            }
        }
        _ = node.tick(now: now + 1_000)
    }

    static func signedPacket(_ bytes: [UInt8]) {
        // The node trusts only keys nobody holds the secret of, so no packet may get a record accepted.
        var node = instance(signatures: Ed25519Signatures())
        let directives = node.receive(datagram: bytes, from: source, now: now)
        for case .event(let event) in directives {
            if case .recordAccepted = event { fatalError("a record was accepted without a valid signature") }
        }
    }

    static func recordBody(_ bytes: [UInt8]) {
        guard let body = try? WireFormat.decode(body: bytes) else { return }
        // Accepted bodies re-encode to bytes that decode to the same body.
        let again = WireFormat.encode(body: body)
        guard let decoded = try? WireFormat.decode(body: again), decoded.slot == body.slot else {
            fatalError("a decoded body did not survive a round trip")
        }
    }

    static func headers(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        var headers: [(name: String, value: String)] = []
        var status = 200
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let colon = line.firstIndex(of: ":") else {
                if let code = Int(line), (100...599).contains(code) { status = code }
                continue
            }
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
        }
        let report = RateLimitHeaderParser.parse(headers: headers, status: status, now: now)
        // Whatever the headers claim, the node merges them without trapping and still decides.
        var node = instance(signatures: AcceptingSignatures())
        _ = node.observe(service: "api", account: nil, status: status, report: report, now: now)
        _ = node.acquire(AcquireRequest(service: "api"), ticket: 1, now: now)
    }

    static func acquireBody(_ bytes: [UInt8]) {
        guard case .success(let object) = RequestBodies.object(from: bytes),
            case .success(let request) = RequestBodies.acquire(object)
        else { return }
        guard request.cost >= 1, request.cost <= RequestBodies.maxCost, request.waitMillis >= 0,
            request.waitMillis <= RequestBodies.maxWaitMillis, QuotaKey.isValidLabel(request.service)
        else { fatalError("an acquire body outside the documented ranges was accepted") }
        var node = instance(signatures: AcceptingSignatures())
        _ = node.acquire(request, ticket: 1, now: now)
    }

    static func observeBody(_ bytes: [UInt8]) {
        guard case .success(let object) = RequestBodies.object(from: bytes),
            case .success(let response) = RequestBodies.observe(object)
        else { return }
        guard (100...599).contains(response.status) else { fatalError("status out of range accepted") }
        let report = RateLimitHeaderParser.parse(headers: response.headers, status: response.status, now: now)
        var node = instance(signatures: AcceptingSignatures())
        _ = node.observe(service: response.service, account: response.account, status: response.status, report: report, now: now)
    }
}

/// A scheme that accepts every signature, so that fuzzed packets reach the merge and enforcement code
/// behind the signature checks. For fuzzing only; a node always uses `Ed25519Signatures`.
struct AcceptingSignatures: SignatureScheme {
    func sign(_ message: [UInt8], with key: SigningKey) -> Signature {
        (try? Signature(rawRepresentation: [UInt8](repeating: 0, count: Signature.byteCount))) ?? key.signature(for: message)
    }

    func isValid(_ signature: Signature, for message: [UInt8], by key: VerifyingKey) -> Bool { true }
}

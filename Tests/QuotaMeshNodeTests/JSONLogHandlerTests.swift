import Foundation
import Logging
import QuotaMeshCore
import QuotaMeshCrypto
import Testing

@testable import QuotaMeshNode

/// `quotamesh run --log-format json`: one JSON object per line, with the metadata's keys as they are.
@Suite struct JSONLogHandlerTests {
    final class Lines: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: [String] = []
        func append(_ line: String) { lock.withLock { stored.append(line) } }
        var all: [String] { lock.withLock { stored } }
    }

    @Test func eachLineIsOneJSONObjectWithTheEventsFields() throws {
        let lines = Lines()
        var handler = JSONLogHandler(label: "quotamesh", write: { lines.append($0) })
        handler.logLevel = .debug
        handler[metadataKey: "node"] = "a"
        let logger = Logger(label: "quotamesh", factory: { _ in handler })
        logger.notice("Peer up", metadata: ["peer.id": "QXdK", "quote": "say \"hi\"\n", "list": ["1", "2"]])
        logger.trace("not at this level")
        #expect(lines.all.count == 1)
        let line = try #require(lines.all.first)
        #expect(!line.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["level"] as? String == "notice")
        #expect(object["message"] as? String == "Peer up")
        #expect(object["label"] as? String == "quotamesh")
        #expect((object["ts"] as? String)?.hasSuffix("Z") == true)
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(metadata["peer.id"] as? String == "QXdK")
        #expect(metadata["quote"] as? String == "say \"hi\"\n")
        #expect(metadata["list"] as? [String] == ["1", "2"])
        #expect(metadata["node"] as? String == "a")
    }

    @Test func atDebugEveryAcquireDecisionIsALineThatSaysWhy() async throws {
        let lines = Lines()
        var handler = JSONLogHandler(label: "quotamesh", write: { lines.append($0) })
        handler.logLevel = .debug
        let node = try MeshNode(
            identity: SigningKey(),
            configuration: MeshConfiguration(services: ["api": ServicePolicy(limit: 1, windowMillis: 3_600_000, burstFraction: 1)]),
            peers: [], stateStore: nil, logger: Logger(label: "quotamesh", factory: { _ in handler }))
        await node.startWithoutNetwork()
        _ = await node.acquire(AcquireRequest(service: "api", priority: .urgent))
        _ = await node.acquire(AcquireRequest(service: "api", priority: .urgent))
        let decisions = lines.all.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { ($0["message"] as? String)?.hasPrefix("Acquire") == true }
        #expect(decisions.map { $0["message"] as? String } == ["Acquire granted", "Acquire denied"])
        let denied = try #require(decisions.last?["metadata"] as? [String: Any])
        #expect(denied["service"] as? String == "api")
        #expect(denied["reason"] as? String == "quota_exhausted")
        #expect(denied["detail"] != nil && denied["retry_in_ms"] != nil)
    }
}

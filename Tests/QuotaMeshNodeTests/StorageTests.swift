import Foundation
import Testing
@testable import QuotaMeshCore
@testable import QuotaMeshNode
import QuotaMeshCrypto

func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "quotamesh-test-\(UUID().uuidString)"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

@Suite struct StorageTests {
    @Test func identityIsCreatedPrivateAndLoadsBack() throws {
        let dir = temporaryDirectory()
        let path = dir + "/id/identity"
        let key = try IdentityStore.create(at: path)
        #expect(try Files.mode(of: path) == 0o600)
        #expect(try IdentityStore.load(from: path).publicKey == key.publicKey)
        #expect(throws: IdentityError.self) { try IdentityStore.create(at: path) }
    }

    @Test func worldReadableSecretIsRefused() throws {
        let dir = temporaryDirectory()
        let path = dir + "/identity"
        try IdentityStore.create(at: path)
        chmod(path, 0o644)
        do {
            _ = try IdentityStore.load(from: path)
            Issue.record("a world-readable secret was accepted")
        } catch IdentityError.tooOpen(_, let mode) {
            #expect(mode == 0o644)
        }
    }

    @Test func malformedIdentityNamesTheLine() throws {
        let dir = temporaryDirectory()
        let path = dir + "/identity"
        try Files.writeAtomically(Array("# comment\nsecret = !!!\n".utf8), to: path, mode: 0o600)
        do {
            _ = try IdentityStore.load(from: path)
            Issue.record("malformed identity accepted")
        } catch IdentityError.malformed(_, let line, _) {
            #expect(line == 2)
        }
    }

    @Test func trustStoreAddsListsAndRemovesPeers() throws {
        let dir = temporaryDirectory()
        let store = TrustStore(directory: dir)
        let key = SigningKey().publicKey
        try store.add(PeerInfo(name: "alice", key: key, endpoint: Endpoint(host: "127.0.0.1", port: 9720)))
        #expect(throws: (any Error).self) { try store.add(PeerInfo(name: "alice2", key: key, endpoint: nil)) }
        let contents = store.load()
        #expect(contents.peers.map(\.name) == ["alice"])
        #expect(contents.peers.first?.key == key)
        #expect(contents.peers.first?.endpoint == Endpoint(host: "127.0.0.1", port: 9720))
        #expect(try store.remove(name: "alice"))
        #expect(store.load().peers.isEmpty)
        #expect(try !store.remove(name: "alice"))
        // A vouched weight is written, read back, and checked.
        try store.add(PeerInfo(name: "heavy", key: key, endpoint: nil, weight: Weight(2.5) ?? .one))
        #expect(store.load().peers.first?.weight == Weight(2.5))
        try Files.writeAtomically(Array("key = \(SigningKey().publicKey.base64)\nweight = 0\n".utf8), to: dir + "/zero.peer")
        #expect(store.load().problems.contains { $0.reason.contains("weight") })
    }

    @Test func theNodesWeightIsConfiguredAndCheckedByName() throws {
        let configuration = try NodeConfiguration.parse(json: Data(#"{"weight": 2}"#.utf8), source: "test.json")
        #expect(configuration.mesh.weight == Weight(2))
        #expect(NodeConfiguration().mesh.weight == .one)
        for bad in [#"{"weight": 0}"#, #"{"weight": "heavy"}"#, #"{"weight": 5000}"#] {
            #expect(throws: ConfigurationError.self) { try NodeConfiguration.parse(json: Data(bad.utf8), source: "test.json") }
        }
    }

    @Test(arguments: [
        ("name = bob\nkey = AAAA\n", 2, "key"),
        ("name = bob\nkey = \(SigningKey().publicKey.base64)\nendpoint = nowhere\n", 3, "endpoint"),
        ("name = bob\ncolour = blue\n", 2, "unknown field"),
        ("just some text\n", 1, "expected"),
        ("name = bob\n", 0, "no `key"),
    ])
    func malformedPeerFilesAreSkippedAndReportedByFileAndLine(text: String, line: Int, reason: String) throws {
        let dir = temporaryDirectory()
        let good = SigningKey().publicKey
        try Files.writeAtomically(Array("key = \(good.base64)\n".utf8), to: dir + "/good.peer")
        try Files.writeAtomically(Array(text.utf8), to: dir + "/bad.peer")
        try Files.writeAtomically(Array("not a peer".utf8), to: dir + "/README.md")
        let contents = TrustStore(directory: dir).load()
        #expect(contents.peers.map(\.key) == [good])
        #expect(contents.problems.count == 1)
        #expect(contents.problems.first?.file.hasSuffix("bad.peer") == true)
        #expect(contents.problems.first?.line == line)
        #expect(contents.problems.first?.reason.contains(reason) == true, "\(contents.problems)")
    }

    @Test func peerFilesAndTrustFoldersWritableByOthersAreRefusedWithTheChmod() throws {
        let dir = temporaryDirectory()
        chmod(dir, 0o755)
        let good = SigningKey().publicKey
        let planted = SigningKey().publicKey
        try Files.writeAtomically(Array("key = \(good.base64)\n".utf8), to: dir + "/good.peer", mode: 0o644)
        try Files.writeAtomically(Array("key = \(planted.base64)\n".utf8), to: dir + "/open.peer", mode: 0o644)
        chmod(dir + "/open.peer", 0o666)
        var contents = TrustStore(directory: dir).load()
        #expect(contents.peers.map(\.key) == [good], "a world-writable peer file is not trusted")
        #expect(contents.problems.first?.reason.contains("chmod go-w \(dir)/open.peer") == true, "\(contents.problems)")
        chmod(dir + "/open.peer", 0o644)
        chmod(dir, 0o777)
        contents = TrustStore(directory: dir).load()
        #expect(contents.peers.isEmpty, "a folder anyone can write to vouches for nobody")
        #expect(contents.problems.first?.reason.contains("chmod go-w \(dir)") == true, "\(contents.problems)")
        chmod(dir, 0o755)
        #expect(TrustStore(directory: dir).load().peers.count == 2)
    }

    @Test func stateRoundTripsAndCorruptionRefusesToStart() throws {
        let dir = temporaryDirectory()
        let store = try StateStore(directory: dir)
        #expect(try store.load() == nil)
        let state = PersistedNodeState(
            incarnation: 7,
            quotas: [PersistedQuota(key: QuotaKey(service: "a"), state: QuotaState(consumption: ConsumptionEntry(total: 3, windowEnd: 9, windowCount: 2)))])
        try store.save(state)
        #expect(try store.load() == state)
        try Files.writeAtomically(Array("{ not json".utf8), to: store.path)
        #expect(throws: FileError.self) { try store.load() }
    }

    /// A configuration written as a Swift dictionary, read as the node reads its file: as JSON text.
    func parse(_ object: [String: Any]) throws(ConfigurationError) -> NodeConfiguration {
        let data = try! JSONSerialization.data(withJSONObject: object)
        return try NodeConfiguration.parse(json: data, source: "test.json")
    }

    @Test func configurationParsesServicesAndNamesBadKeys() throws {
        let good: [String: Any] = [
            "gossip": "127.0.0.1:7000", "gossip_interval": "100ms", "fanout": 4,
            "services": ["openai": [
                "limit": 500, "window": "1m", "accounts": ["a", "b"], "reserves": ["low": 0.6, "normal": 0.2],
                "breaker": ["failure_threshold": 3, "open": "10s"],
                "limits": ["tokens": ["limit": 90_000, "window": "1m"]], "scopes": ["org": ["a", "b"]],
                "refill": "continuous", "max_held_rights": 40,
            ]],
        ]
        let config = try parse(good)
        #expect(config.gossip == Endpoint(host: "127.0.0.1", port: 7000))
        #expect(config.mesh.gossipIntervalMillis == 100)
        #expect(config.mesh.fanout == 4)
        let openai = config.mesh.services["openai"]
        #expect(openai?.limit == 500)
        #expect(openai?.windowMillis == 60_000)
        #expect(openai?.accounts == ["a", "b"])
        #expect(openai?.reserves.low == 0.6)
        #expect(openai?.breaker.failureThreshold == 3)
        #expect(openai?.breaker.openMillis == 10_000)
        #expect(openai?.dimensionLimits["tokens"] == AdvertisedPolicy(limit: 90_000, windowMillis: 60_000))
        #expect(openai?.scopes == ["org": ["a", "b"]])
        #expect(openai?.scopeAccount(of: "b") == "scope:org")
        #expect(openai?.refill == .continuous)
        #expect(openai?.maxHeldRights == 40)

        let cases: [([String: Any], String)] = [
            (["services": ["openai": ["limit": -1, "window": "1m"]]], "services.openai.limit"),
            (["services": ["openai": ["limit": 5]]], "services.openai.window"),
            (["services": ["openai": ["limit": 5, "window": "soon"]]], "services.openai.window"),
            (["services": ["openai": ["limit": 5, "window": "1m", "reserves": ["low": 2]]]], "services.openai.reserves.low"),
            (["services": ["openai": ["limits": 5]]], "services.openai.limits"),
            (["services": ["openai": ["limits": ["tokens": ["limit": 5]]]]], "services.openai.limits"),
            (["services": ["openai": ["limits": ["requests": ["limit": 5, "window": "1m"]]]]], "services.openai.limits"),
            (["services": ["openai": ["limits": ["tokens": ["limit": 5, "window": "1m", "colour": 1]]]]],
             "services.openai.limits.tokens.colour"),
            (["services": ["openai": ["accounts": ["a"], "scopes": ["org": ["z"]]]]], "services.openai.scopes"),
            (["services": ["openai": ["accounts": ["a", "b"], "scopes": ["x": ["a"], "y": ["a", "b"]]]]], "services.openai.scopes"),
            (["services": ["openai": ["limit": 5, "window": "1m", "refill": "bucket"]]], "services.openai.refill"),
            (["services": ["openai": ["refill": "continuous"]]], "services.openai.refill"),
            // A misspelt key is named, not the rule its absence breaks.
            (["services": ["openai": ["limit": 5, "windw": "1m"]]], "services.openai.windw"),
            (["services": ["openai": ["limit": 5, "window": "1m", "max_held_rights": 0]]], "services.openai.max_held_rights"),
            (["services": ["openai": ["max_held_rights": 3]]], "services.openai.max_held_rights"),
            (["fanout": 0], "fanout"),
            (["gossip": "nowhere"], "gossip"),
            (["colour": "blue"], "colour"),
            (["allow_remote_api": 1], "allow_remote_api"),
            (["fanout": true], "fanout"),
            (["api_idle_timeout": "0s"], "api_idle_timeout"),
        ]
        for (object, key) in cases {
            do {
                _ = try parse(object)
                Issue.record("accepted \(object)")
            } catch {
                #expect(error.key == key, "\(error)")
            }
        }
    }

    @Test func environmentValuesOverrideTheFileAndNameTheirVariable() throws {
        let path = NSTemporaryDirectory() + "quotamesh-config-\(UUID().uuidString.prefix(8)).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(#"{"fanout": 4, "gossip_interval": "300ms", "services": {"svc": {"limit": 5, "window": "1m"}}}"#.utf8)
            .write(to: URL(fileURLWithPath: path))
        let config = try NodeConfiguration.load(
            file: path, environment: ["fanout": "6", "allow_remote_api": "false", "liveness_timeout": "3s"])
        #expect(config.mesh.fanout == 6)
        #expect(config.mesh.gossipIntervalMillis == 300)
        #expect(config.mesh.livenessTimeoutMillis == 3_000)
        #expect(config.mesh.services["svc"]?.limit == 5)
        #expect(NodeConfiguration.variable(for: "gossip_interval") == "QUOTAMESH_GOSSIP_INTERVAL")
        // Without a file, the variables alone; a bad value names its variable, not the file.
        #expect(try NodeConfiguration.load(file: nil, environment: ["api": "127.0.0.1:7000"]).api == Endpoint(host: "127.0.0.1", port: 7000))
        do {
            _ = try NodeConfiguration.load(file: path, environment: ["fanout": "many"])
            Issue.record("accepted a fanout of many")
        } catch {
            #expect(error.source == "$QUOTAMESH_FANOUT")
            #expect(error.key == "fanout")
        }
        // `services` is the file's alone.
        #expect(!NodeConfiguration.environmentKeys.contains("services"))
    }

    @Test func invalidJSONNamesTheLineAndColumn() throws {
        let path = NSTemporaryDirectory() + "quotamesh-config-\(UUID().uuidString.prefix(8)).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("{\"services\": {\n  \"openai\": {\"limit\": 5\n \"window\": \"1m\"}\n}}".utf8).write(to: URL(fileURLWithPath: path))
        do {
            _ = try NodeConfiguration.load(file: path)
            Issue.record("accepted invalid JSON")
        } catch {
            #expect(error.reason.contains("line 3"), "\(error)")
            #expect(error.reason.contains("column"), "\(error)")
        }
    }

    @Test func durationsParse() {
        #expect(DurationText.milliseconds("500ms") == 500)
        #expect(DurationText.milliseconds("1.5s") == 1500)
        #expect(DurationText.milliseconds("2m") == 120_000)
        #expect(DurationText.milliseconds("3") == 3000)
        #expect(DurationText.milliseconds("-1s") == nil)
        #expect(DurationText.milliseconds("soon") == nil)
    }
}

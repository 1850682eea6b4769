import Foundation
import QuotaMeshCore
import QuotaMeshCrypto

// Writes the seed corpus into the folder given (default Fuzz/Corpus): for each fuzz target, inputs that
// decode, so that the fuzzer starts from the interesting part of the input space. The first byte of each
// file selects the target (see `FuzzTargets.Target`).
let folder = URL(fileURLWithPath: CommandLine.arguments.dropFirst().first ?? "Fuzz/Corpus")
try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)

func write(_ name: String, target: UInt8, _ bytes: [UInt8]) throws {
    try Data([target] + bytes).write(to: folder.appendingPathComponent("seed-\(name)"))
}

let now: UnixMillis = 1_800_000_000_000
let key = try SigningKey(seed: [UInt8](repeating: 3, count: 32))
let observation = UpstreamObservation(
    resetAt: now + 10_000, remaining: 40, limit: 100, windowMillis: 10_000, observedAt: now,
    consumedTotalAtObservation: 7)
var state = QuotaState(
    consumption: ConsumptionEntry(total: 9, windowEnd: now + 10_000, windowCount: 4), observation: observation,
    breaker: BreakerRegister(openedAt: now - 5_000, openUntil: now + 20_000, closedAt: 0),
    policy: AdvertisedPolicy(limit: 100, windowMillis: 10_000))
state.demand[.urgent] = 0.5
let records = [
    SignedRecord(signing: .heartbeat, version: RecordVersion(incarnation: 5, sequence: 1), timestamp: now, with: key, cluster: "quotamesh"),
    SignedRecord(
        signing: .quota(QuotaKey(service: "api", account: "default"), state), version: RecordVersion(incarnation: 5, sequence: 2),
        timestamp: now, with: key, cluster: "quotamesh"),
]
let header = PacketHeader(sender: key.publicKey, incarnation: 5, sequence: 1, sentAt: now)
var packet = WireFormat.encodePacket(header: header, payload: .records(records), signingKey: key, cluster: "quotamesh")
// The trusted-packet target trusts the all-zero key: put it where the sender and the origins go.
func zeroKey(in bytes: inout [UInt8], at offsets: [Int]) {
    for offset in offsets { for index in offset..<(offset + 32) { bytes[index] = 0 } }
}
var trusted = packet
let senderOffset = 4
let firstRecord = 4 + 32 + 24 + 1
zeroKey(in: &trusted, at: [senderOffset, firstRecord, firstRecord + records[0].encodedCount])
try write("trusted-records", target: 0, trusted)
let digest = WireFormat.encodePacket(
    header: PacketHeader(sender: key.publicKey, incarnation: 5, sequence: 2, sentAt: now),
    payload: .digest(isReply: false, entries: [DigestEntry(slotHash: 42, version: RecordVersion(incarnation: 1, sequence: 9))]),
    signingKey: key, cluster: "quotamesh")
var trustedDigest = digest
zeroKey(in: &trustedDigest, at: [senderOffset])
try write("trusted-digest", target: 0, trustedDigest)
try write("signed-records", target: 1, packet)
packet[packet.count - 1] ^= 1
try write("signed-records-bad-signature", target: 1, packet)
try write("body-quota", target: 2, records[1].bodyBytes)
try write("body-heartbeat", target: 2, records[0].bodyBytes)
var tokens = state
tokens.consumption = ConsumptionEntry(total: 9_000, windowEnd: now + 60_000, windowCount: 6_000, windowRefund: 1_500)
try write(
    "body-dimension-quota", target: 2,
    WireFormat.encode(body: .quota(QuotaKey(service: "api", account: "scope:org", dimension: "tokens"), tokens)))
let headerSets = [
    "200\nx-ratelimit-limit-requests: 500\nx-ratelimit-remaining-requests: 499\nx-ratelimit-reset-requests: 6m0s\nx-ratelimit-remaining-tokens: 149984\nx-ratelimit-reset-tokens: 4m12.172s",
    "429\nanthropic-ratelimit-requests-limit: 50\nanthropic-ratelimit-requests-remaining: 0\nanthropic-ratelimit-requests-reset: 2026-11-29T05:00:30Z\nretry-after: 20",
    "403\nx-ratelimit-limit: 5000\nx-ratelimit-remaining: 0\nx-ratelimit-used: 5000\nx-ratelimit-reset: 1800000060\nx-ratelimit-resource: core",
    "200\nRateLimit-Policy: \"burst\";q=100;w=60, \"daily\";q=1000;w=86400\nRateLimit: \"burst\";r=50;t=30\ndate: Sun, 29 Nov 2026 05:00:00 GMT",
    "503\nretry-after: Sun, 29 Nov 2026 05:01:00 GMT\nretry-after-ms: 1500\nx-should-retry: true\nRateLimit: limit=100, remaining=50, reset=5",
]
for (index, text) in headerSets.enumerated() { try write("headers-\(index)", target: 3, Array(text.utf8)) }
try write("acquire", target: 4, Array(#"{"service":"api","priority":"urgent","cost":2,"wait_ms":500}"#.utf8))
try write("acquire-dimensions", target: 4, Array(#"{"service":"api","cost":{"requests":1,"tokens":1800}}"#.utf8))
try write("acquire-bad", target: 4, Array(#"{"service":"api","cost":1.5,"priority":"now"}"#.utf8))
try write(
    "observe", target: 5,
    Array(#"{"service":"api","status":429,"account":"team-a","headers":{"retry-after":"20","x-ratelimit-remaining":["0","1"]}}"#.utf8))
try write(
    "observe-usage", target: 5,
    Array(#"{"service":"api","status":200,"cost":{"requests":1,"tokens":1800},"usage":{"tokens":1234}}"#.utf8))
print("wrote seeds to \(folder.path)")

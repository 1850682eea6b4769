import Testing

@testable import QuotaMeshCore

/// Quota keys hash by a fingerprint of their labels, taken once; dictionaries and sets mix their own seed
/// into it (`_rawHashValue(seed:)`) instead of running a hasher at every look-up.
@Suite struct QuotaKeyTests {
    static let keys: [QuotaKey] = (0..<40).flatMap { service in
        (0..<5).flatMap { account in
            ["requests", "tokens", "hourly"].map {
                QuotaKey(service: "svc-\(service)", account: "acct-\(account)", dimension: $0)
            }
        }
    }

    @Test func equalKeysHashAlikeUnderEverySeedAndDifferentOnesApart() {
        for seed in [0, 1, -7, 0x5EED_5EED] {
            for key in Self.keys.prefix(50) {
                let made = QuotaKey(service: key.service, account: key.account, dimension: key.dimension)
                #expect(made._rawHashValue(seed: seed) == key._rawHashValue(seed: seed))
            }
            let distinct = Set(Self.keys.map { $0._rawHashValue(seed: seed) })
            #expect(distinct.count == Self.keys.count, "600 keys, \(distinct.count) hashes under seed \(seed)")
            // Low bits pick a dictionary's bucket: they must spread too.
            let buckets = Set(Self.keys.map { $0._rawHashValue(seed: seed) & 1023 })
            #expect(buckets.count > 400, "\(buckets.count) of 1024 buckets for 600 keys")
        }
    }

    @Test func tablesFindEveryKeyHoweverItWasMade() {
        var table: [QuotaKey: Int] = [:]
        for (index, key) in Self.keys.enumerated() { table[key] = index }
        #expect(table.count == Self.keys.count)
        for (index, key) in Self.keys.enumerated() {
            var relabelled = QuotaKey(service: "other")
            relabelled.service = key.service
            relabelled.account = key.account
            relabelled.dimension = key.dimension
            #expect(table[relabelled] == index)
            #expect(table[key.counting("requests").counting(key.dimension)] == index)
        }
        #expect(table[QuotaKey(service: "svc-0", account: "acct-0", dimension: "input_tokens")] == nil)
    }
}

import QuotaMeshCore
import QuotaMeshCrypto

/// One copy of each record for all of a simulation's nodes (`RecordSharing`): each node decodes what it
/// receives, as a node does, and then holds the copy every other node holds. A record is an immutable
/// value, so this changes nothing any node decides or sends (the simulator's tests and benchmarks check
/// that runs are the same with it); it divides the memory records take by up to N, which is what lets
/// tens of thousands of simulated nodes fit in one machine.
public final class SharedRecords: RecordSharing, @unchecked Sendable {
    // Used by the single simulation thread only; `@unchecked` because the configuration that holds it
    // is `Sendable`.
    private struct Key: Hashable {
        var origin: VerifyingKey
        var version: RecordVersion
    }

    private var table: [Key: [SignedRecord]] = [:]
    private var count = 0
    private var purgeAt = 4096

    /// Records shared now.
    public var sharedCount: Int { count }

    /// Creates an empty table.
    public init() {}

    public func share(_ record: SignedRecord) -> SignedRecord {
        let key = Key(origin: record.origin, version: record.version)
        if let held = table[key]?.first(where: { $0 == record }) { return held }
        table[key, default: []].append(record)
        count += 1
        if count >= purgeAt { purge() }
        return record
    }

    /// Drops the records no node holds any more (superseded versions), so that the table stays the
    /// size of the cluster's current state.
    private func purge() {
        for key in Array(table.keys) {
            // Out of the table first, so that the array below is the only one holding its records:
            // a record popped from it is then held by the local variable and by the nodes, if any.
            guard var records = table.removeValue(forKey: key) else { continue }
            var kept: [SignedRecord] = []
            while var record = records.popLast() {
                if !record.isUniquelyReferenced() { kept.append(record) }
            }
            if !kept.isEmpty { table[key] = kept }
        }
        count = table.values.reduce(0) { $0 + $1.count }
        purgeAt = max(4096, 2 * count)
    }
}

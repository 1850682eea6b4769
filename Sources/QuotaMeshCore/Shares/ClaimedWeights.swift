import QuotaMeshCrypto

/// The weight each peer claims for itself, from the newest of its signed records.
struct ClaimedWeights: Sendable {
    private var claims: [VerifyingKey: (weight: Weight, stamp: UnixMillis)] = [:]
    /// Whether any peer claims another weight than 1.
    private(set) var anyNotOne = false

    /// Notes `origin`'s claim in a record signed at `stamp`; an older record changes nothing.
    mutating func note(_ weight: Weight, of origin: VerifyingKey, stamp: UnixMillis) {
        if let held = claims[origin], held.stamp > stamp { return }
        claims[origin] = (weight, stamp)
        if weight != .one { anyNotOne = true }
    }

    /// What `origin` claims (1 until it says otherwise).
    func claim(of origin: VerifyingKey) -> Weight { claims[origin]?.weight ?? .one }

    /// Forgets origins no longer trusted.
    mutating func keep(where isTrusted: (VerifyingKey) -> Bool) {
        claims = claims.filter { isTrusted($0.key) }
        anyNotOne = claims.values.contains { $0.weight != .one }
    }
}

extension QuotaLedger {
    /// `peer`'s weight here: the smaller of what it claims and what this node vouches for it, so that no
    /// node raises its own entitlement by saying so. This node's own is its configured weight.
    func effectiveWeight(of peer: VerifyingKey) -> Weight {
        if peer == publicKey { return configuration.weight }
        let vouched = directory.index(of: peer).map { directory.infos[$0].weight } ?? .one
        return min(weights.claim(of: peer), vouched)
    }

    /// Whether weights change anything: some node (this one or a live peer) has another weight than 1.
    /// Where every weight is 1, shares and rights follow the unweighted rules exactly.
    var weightsApply: Bool {
        configuration.weight != .one || (weights.anyNotOne && live.contains { effectiveWeight(of: $0) != .one })
    }
}

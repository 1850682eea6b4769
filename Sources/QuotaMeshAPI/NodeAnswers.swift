/// `GET /healthz`: whether the node is healthy, and why not.
public struct HealthAnswer: Codable, Sendable, Hashable {
    public enum Status: String, Codable, Sendable {
        case ok
        /// State cannot be saved, or trust stores differ.
        case degraded
    }

    public var status: Status
    /// This node's public key, base64.
    public var identity: String
    public var incarnation: UInt64
    public var peers: QuotaAnswer.PeerCount
    public var counters: [String: Int]
    /// The last error saving state, while saves fail.
    public var persistenceError: String?
    /// Peers whose trust stores name other members than this node's.
    public var trustStoresDiffer: [String]
    /// Whether this node spends no rights because its trust store is the odd one out.
    public var rightsStopped: Bool

    public init(
        status: Status, identity: String, incarnation: UInt64, peers: QuotaAnswer.PeerCount, counters: [String: Int],
        persistenceError: String?, trustStoresDiffer: [String], rightsStopped: Bool
    ) {
        self.status = status
        self.identity = identity
        self.incarnation = incarnation
        self.peers = peers
        self.counters = counters
        self.persistenceError = persistenceError
        self.trustStoresDiffer = trustStoresDiffer
        self.rightsStopped = rightsStopped
    }

    enum CodingKeys: String, CodingKey {
        case status, identity, incarnation, peers, counters
        case persistenceError = "persistence_error", trustStoresDiffer = "trust_stores_differ"
        case rightsStopped = "rights_stopped"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(status, forKey: .status)
        try container.encode(identity, forKey: .identity)
        try container.encode(incarnation, forKey: .incarnation)
        try container.encode(peers, forKey: .peers)
        try container.encode(counters, forKey: .counters)
        try container.encodeOrNull(persistenceError, forKey: .persistenceError)
        try container.encode(trustStoresDiffer, forKey: .trustStoresDiffer)
        try container.encode(rightsStopped, forKey: .rightsStopped)
    }
}

/// `GET /v1/peers`: this node and every trusted peer.
public struct PeersAnswer: Codable, Sendable, Hashable {
    /// This node.
    public var node: Node
    public var peers: [Peer]
    public var counters: [String: Int]

    public init(node: Node, peers: [Peer], counters: [String: Int]) {
        self.node = node
        self.peers = peers
        self.counters = counters
    }

    enum CodingKeys: String, CodingKey {
        case node = "self", peers, counters
    }

    /// This node's key and incarnation.
    public struct Node: Codable, Sendable, Hashable {
        public var key: String
        public var incarnation: UInt64

        public init(key: String, incarnation: UInt64) {
            self.key = key
            self.incarnation = incarnation
        }
    }

    /// One trusted peer as this node sees it.
    public struct Peer: Codable, Sendable, Hashable {
        public var name: String
        /// Ed25519 public key, base64.
        public var key: String
        public var endpoint: String?
        public var live: Bool
        public var lastHeardSecondsAgo: Double?
        /// Records held from it.
        public var records: Int
        /// Why its records are set aside (`equivocation`, `ledger_regressed`), if they are.
        public var quarantined: String?
        public var observationScore: Double
        public var graylisted: Bool
        /// How many members its records say its trust store names.
        public var members: Int?
        public var membersAgree: Bool
        /// The weight shares use for it: the smaller of what it claims and what this node vouches.
        public var weight: Double?
        public var claimedWeight: Double?
        public var vouchedWeight: Double?

        public init(
            name: String, key: String, endpoint: String?, live: Bool, lastHeardSecondsAgo: Double?, records: Int,
            quarantined: String?, observationScore: Double, graylisted: Bool, members: Int?, membersAgree: Bool
        ) {
            self.name = name
            self.key = key
            self.endpoint = endpoint
            self.live = live
            self.lastHeardSecondsAgo = lastHeardSecondsAgo
            self.records = records
            self.quarantined = quarantined
            self.observationScore = observationScore
            self.graylisted = graylisted
            self.members = members
            self.membersAgree = membersAgree
        }

        enum CodingKeys: String, CodingKey {
            case name, key, endpoint, live, records, quarantined, graylisted, members
            case lastHeardSecondsAgo = "last_heard_s_ago", observationScore = "observation_score"
            case membersAgree = "members_agree"
            case weight, claimedWeight = "claimed_weight", vouchedWeight = "vouched_weight"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encode(key, forKey: .key)
            try container.encodeOrNull(endpoint, forKey: .endpoint)
            try container.encode(live, forKey: .live)
            try container.encodeOrNull(lastHeardSecondsAgo, forKey: .lastHeardSecondsAgo)
            try container.encode(records, forKey: .records)
            try container.encodeOrNull(quarantined, forKey: .quarantined)
            try container.encode(observationScore, forKey: .observationScore)
            try container.encode(graylisted, forKey: .graylisted)
            try container.encodeOrNull(members, forKey: .members)
            try container.encode(membersAgree, forKey: .membersAgree)
            try container.encodeIfPresent(weight, forKey: .weight)
            try container.encodeIfPresent(claimedWeight, forKey: .claimedWeight)
            try container.encodeIfPresent(vouchedWeight, forKey: .vouchedWeight)
        }
    }
}

/// An error: 400 (a body this API does not take), 401, 404, 413; `error` says what was wrong.
public struct ErrorAnswer: Codable, Sendable, Hashable {
    public var error: String
    /// The HTTP status again.
    public var status: Int?
    /// Where a refusal has a name of its own (`unconfigured_account`).
    public var reason: String?

    public init(error: String, status: Int?, reason: String? = nil) {
        self.error = error
        self.status = status
        self.reason = reason
    }
}

/// `POST /v1/observe` answered 422: a new service, account or dimension beyond the node's caps.
public struct CapRefusalAnswer: Codable, Sendable, Hashable {
    public enum Reason: String, Codable, Sendable, CaseIterable {
        case tooManyServices = "too_many_services"
        case tooManyAccounts = "too_many_accounts"
        case tooManyDimensions = "too_many_dimensions"
    }

    public var error: String
    public var reason: Reason

    public init(error: String, reason: Reason) {
        self.error = error
        self.reason = reason
    }
}

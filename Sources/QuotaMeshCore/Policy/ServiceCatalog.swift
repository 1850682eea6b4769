/// The services, accounts and dimensions a node knows — configured, learned from an observation, or named
/// by a peer's record — and what the decision path needs of each service in one look-up.
///
/// Names are only ever added, and no more than the configured caps (`max_services`, accounts and
/// dimensions per service): a name beyond a cap is refused (``refusal(ofNew:)``) before anything is kept.
struct ServiceCatalog: Sendable {
    /// The configured services' policies.
    private(set) var configured: [String: ServicePolicy] = [:]
    private var maxServices = 0
    private var maxAccountsPerService = 0
    private var maxDimensionsPerService = 0

    /// Accounts seen per service (configured, used or gossiped), scopes included.
    private(set) var accountsByService: [String: Set<String>] = [:]
    /// Dimensions other than requests that are configured, observed or gossiped, by service.
    private var dimensionsByService: [String: Set<String>] = [:]
    /// Dimensions this node's own agents reported, by service (``noteReported(_:)``).
    private var reportedWindows: [String: Set<String>] = [:]
    /// Services known only from an observation or a peer's record (they get the default policy).
    private(set) var learned: Set<String> = []
    /// The keys ``note(_:)`` has noted.
    private var noted: Set<QuotaKey> = []
    /// What the decision path needs of a service, rebuilt when an account is noted or the service learned.
    private var entries: [String: ServiceEntry] = [:]

    init(_ configuration: MeshConfiguration) {
        configure(configuration)
    }

    /// Takes the configuration's services and caps (names already known stay; the caps hold for new ones).
    mutating func configure(_ configuration: MeshConfiguration) {
        configured = configuration.services
        maxServices = configuration.maxServices
        maxAccountsPerService = configuration.maxAccountsPerService
        maxDimensionsPerService = configuration.maxDimensionsPerService
        for (service, policy) in configured {
            for dimension in policy.dimensionLimits.keys where dimension != QuotaKey.requests {
                dimensionsByService[service, default: []].insert(dimension)
            }
        }
        for service in Array(entries.keys) { entries[service] = makeEntry(service) }
    }

    // MARK: - Adding names

    /// Notes a key's service, account and dimension. Nearly every arriving quota record names a key noted
    /// before: that costs one look-up.
    mutating func note(_ key: QuotaKey) {
        guard noted.insert(key).inserted else { return }
        if accountsByService[key.service, default: []].insert(key.account).inserted || entries[key.service] == nil {
            // The decision path reads the rotation list on every acquire: keep it built.
            entries[key.service] = makeEntry(key.service)
        }
        if key.dimension != QuotaKey.requests { dimensionsByService[key.service, default: []].insert(key.dimension) }
    }

    /// Notes that this node's own agents reported `key` (an upstream's policy over requests, say): if it
    /// ``countsRequests(_:configured:)``, every call is charged to it from now on. Only a node's own
    /// reports do this: a dimension a peer names is shown, never charged, so that a vouched peer cannot
    /// throttle a service by inventing a policy with a tiny limit.
    mutating func noteReported(_ key: QuotaKey) {
        note(key)
        guard Self.countsRequests(key.dimension, configured: configured[key.service]),
            reportedWindows[key.service, default: []].insert(key.dimension).inserted
        else { return }
        // A new dimension every call is charged to: the decision path must see it.
        entries[key.service] = makeEntry(key.service)
    }

    /// The dimensions counted under keys of their own whose cost an acquire names (`{"tokens": 1800}`).
    static let tokenDimensions: Set<String> = ["tokens", "input_tokens", "output_tokens"]

    /// Whether every call is charged to `dimension` at its requests cost: the upstream's own windows over
    /// requests (IETF `RateLimit-Policy` names, such as an hourly and a daily policy), as opposed to the
    /// token dimensions and the dimensions configured under `limits`, which a call is charged only when
    /// its acquire names a cost in them.
    static func countsRequests(_ dimension: String, configured: ServicePolicy?) -> Bool {
        dimension != QuotaKey.requests && !tokenDimensions.contains(dimension)
            && configured?.dimensionLimits[dimension] == nil
    }

    /// Learns a service that is not configured (it gets the default policy); `true` if it was not known.
    @discardableResult
    mutating func learn(_ service: String) -> Bool {
        guard configured[service] == nil, learned.insert(service).inserted else { return false }
        entries[service] = makeEntry(service)
        return true
    }

    /// Why `key` may not be added, when it names a service, account or dimension not known yet and the
    /// cap on those is reached; `nil` when it may (or is known already).
    func refusal(ofNew key: QuotaKey) -> NameRefusal? {
        if noted.contains(key) { return nil }
        let configured = configured[key.service]
        if configured == nil && !isKnown(key.service) && accountsByService[key.service] == nil
            && accountsByService.count >= maxServices
        {
            return .tooManyServices
        }
        let accounts = accountsByService[key.service] ?? []
        if !accounts.contains(key.account) && !(configured?.accounts.contains(key.account) ?? false)
            && accounts.count >= maxAccountsPerService
        {
            return .tooManyAccounts
        }
        if key.dimension != QuotaKey.requests, !(dimensionsByService[key.service]?.contains(key.dimension) ?? false),
            (dimensionsByService[key.service]?.count ?? 0) >= maxDimensionsPerService
        {
            return .tooManyDimensions
        }
        return nil
    }

    // MARK: - Reading

    /// Whether a service is configured or learned.
    func isKnown(_ service: String) -> Bool { configured[service] != nil || learned.contains(service) }

    /// A service's policy: the configured one, else the default.
    func policy(_ service: String) -> ServicePolicy { configured[service] ?? ServicePolicy() }

    /// A service's policy and rotation keys, from the cache or worked out.
    func entry(_ service: String) -> ServiceEntry { entries[service] ?? makeEntry(service) }

    /// The accounts calls rotate across (scopes, counted under keys of their own, are not among them).
    func accounts(of service: String) -> [String] {
        if let cached = entries[service] { return cached.keys.map(\.account) }
        return rotationAccounts(of: service)
    }

    /// The scope keys of a service (requests), for the API's `scopes`.
    func scopeKeys(of service: String) -> [QuotaKey] {
        (configured[service]?.scopes.keys.sorted() ?? []).map {
            QuotaKey(service: service, account: ServicePolicy.scopePrefix + $0)
        }
    }

    /// Whether this node's own agents reported `dimension` of `service` under a key of its own.
    func hasReported(_ dimension: String, of service: String) -> Bool {
        reportedWindows[service]?.contains(dimension) ?? false
    }

    /// The dimensions counted for `service`: requests first, then the others by name.
    func dimensions(of service: String) -> [String] {
        [QuotaKey.requests] + (dimensionsByService[service] ?? []).sorted()
    }

    /// Every known service and account (their requests keys; other dimensions hang off them).
    func knownKeys() -> [QuotaKey] {
        accountsByService.flatMap { service, accounts in
            isKnown(service) ? accounts.map { QuotaKey(service: service, account: $0) } : []
        }.sorted()
    }

    /// A service's entry worked out afresh: its policy if it is known (configured, or learned with the
    /// default policy) and the requests keys of its rotation accounts.
    private func makeEntry(_ service: String) -> ServiceEntry {
        let policy = configured[service] ?? (learned.contains(service) ? ServicePolicy() : nil)
        let windows = (reportedWindows[service] ?? []).filter { Self.countsRequests($0, configured: configured[service]) }
        return ServiceEntry(
            policy: policy, keys: rotationAccounts(of: service).map { QuotaKey(service: service, account: $0) },
            requestWindows: windows.sorted())
    }

    /// The accounts seen and configured for `service`, scopes left out, sorted.
    private func rotationAccounts(of service: String) -> [String] {
        var names = accountsByService[service] ?? []
        for account in configured[service]?.accounts ?? [] { names.insert(account) }
        return names.filter { !$0.hasPrefix(ServicePolicy.scopePrefix) }.sorted()
    }
}

/// A service's policy (`nil` while the service is unknown), the requests keys of the accounts calls
/// rotate across, and the other dimensions every call is charged to (``ServiceCatalog/countsRequests(_:configured:)``).
/// A class, so that a decision passes its service's entry on by reference rather than copying a policy
/// and two arrays at every step.
final class ServiceEntry: Sendable {
    let policy: ServicePolicy?
    let keys: [QuotaKey]
    let requestWindows: [String]

    init(policy: ServicePolicy?, keys: [QuotaKey], requestWindows: [String] = []) {
        self.policy = policy
        self.keys = keys
        self.requestWindows = requestWindows
    }
}

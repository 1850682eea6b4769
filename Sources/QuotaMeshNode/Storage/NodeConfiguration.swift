import Foundation
import QuotaMeshAPI
import QuotaMeshCore
import QuotaMeshRequests

/// A configuration error that names the key and the reason; the node does not start.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file (or flag) the error is in.
    public var source: String
    /// The dotted key path, e.g. `services.openai.limit`.
    public var key: String
    /// What is wrong with it.
    public var reason: String

    public var description: String { "\(source): \(key): \(reason)" }
}

/// Everything `quotamesh run` needs: addresses, file locations and the protocol configuration.
public struct NodeConfiguration: Sendable {
    /// Where gossip listens (UDP).
    public var gossip = Endpoint(host: "0.0.0.0", port: 9720)
    /// Where the local HTTP API listens.
    public var api = Endpoint(host: "127.0.0.1", port: 9721)
    /// The identity file.
    public var identityPath = IdentityStore.defaultPath
    /// The trust store folder.
    public var peersDirectory = "Peers"
    /// The state folder.
    public var stateDirectory = StateStore.defaultDirectory
    /// How far a save goes before the grants it counts are answered (`durability`).
    public var durability = StateStore.Durability.synced
    /// Protocol parameters and services.
    public var mesh = MeshConfiguration()
    /// Allows the API to listen on a non-loopback address (which also requires `apiTokenFile`).
    public var allowRemoteAPI = false
    /// A file holding the API's bearer token (mode 0600); when set, every API request must present it.
    public var apiTokenFile: String?
    /// Whether `/metrics` and `/healthz` need the API token too (`metrics_auth`); false leaves them open for
    /// a scraper and a probe.
    public var metricsAuth = true
    /// How long an API connection may stay silent (mid-request or between requests) before it is closed.
    public var apiIdleTimeoutMillis: Int64 = 30_000

    /// The defaults.
    public init() {}

    /// Reads a JSON configuration file. Unknown keys are errors (a typo must not silently change
    /// nothing).
    ///
    /// ```json
    /// {
    ///   "cluster": "quotamesh", "gossip": "0.0.0.0:9720", "api": "127.0.0.1:9721",
    ///   "identity": ".quotamesh/identity", "peers": "Peers", "state": ".quotamesh",
    ///   "gossip_interval": "200ms", "fanout": 3, "liveness_timeout": "10s",
    ///   "services": {
    ///     "openai": { "limit": 500, "window": "60s", "accounts": ["team-a", "team-b"],
    ///                 "reserves": { "low": 0.5, "normal": 0.1, "urgent": 0 },
    ///                 "breaker": { "failure_threshold": 5, "open": "30s" }, "burst": 0.1 }
    ///   }
    /// }
    /// ```
    /// Where `data` stops being JSON, as " at line L, column C: expected …" (`JSONDecoder` does not say).
    static func place(in data: Data) -> String {
        guard let error = JSONSyntax.firstError(in: data) else { return "" }
        return " at line \(error.line), column \(error.column): expected \(error.expected)"
    }

    /// The keys an environment variable may set, `QUOTAMESH_` and the key in capitals
    /// (`QUOTAMESH_GOSSIP_INTERVAL=100ms`): every top-level key but `services`.
    public static let environmentKeys = [
        "cluster", "gossip", "api", "identity", "peers", "state", "allow_remote_api", "api_token_file",
        "api_idle_timeout", "gossip_interval", "fanout", "liveness_timeout", "heartbeat_interval", "max_breaker_open",
        "max_learned_window", "max_packet_age", "max_services", "max_accounts", "max_dimensions", "rights_edge",
        "rights_lead", "vouching", "metrics_auth", "weight", "durability",
    ]

    /// The environment variable that sets `key`.
    public static func variable(for key: String) -> String { "QUOTAMESH_" + key.uppercased() }

    /// The configuration from a file (if any) with `environment`'s values over it, by key (the text of
    /// each variable, as ``environmentKeys`` name them): a value set by a variable overrides the file's, and
    /// an error in it names the variable.
    public static func load(file path: String?, environment: [String: String]) throws(ConfigurationError) -> NodeConfiguration {
        var root: [String: JSONValue] = [:]
        if let path {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigurationError(source: path, key: "(file)", reason: "cannot be read")
            }
            root = try object(json: data, source: path)
        }
        var fromEnvironment: Set<String> = []
        for (key, text) in environment where environmentKeys.contains(key) {
            // A variable is text: a whole number or true/false is read as one, anything else as a string.
            root[key] = Int64(text).map { .integer($0) } ?? (text == "true" ? .bool(true) : text == "false" ? .bool(false) : .string(text))
            fromEnvironment.insert(key)
        }
        do {
            return try parse(root, source: path ?? "(no file)")
        } catch where fromEnvironment.contains(error.key) {
            throw ConfigurationError(source: "$" + variable(for: error.key), key: error.key, reason: error.reason)
        }
    }

    public static func load(file path: String) throws(ConfigurationError) -> NodeConfiguration {
        try load(file: path, environment: [:])
    }

    /// Reads a configuration from JSON text (`source` names it in errors).
    public static func parse(json data: Data, source: String) throws(ConfigurationError) -> NodeConfiguration {
        try parse(object(json: data, source: source), source: source)
    }

    /// The JSON object `data` holds, or an error that says where it stops being one.
    static func object(json data: Data, source: String) throws(ConfigurationError) -> [String: JSONValue] {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: data) else {
            throw ConfigurationError(source: source, key: "(file)", reason: "not valid JSON" + Self.place(in: data))
        }
        guard let root = value.object else {
            throw ConfigurationError(source: source, key: "(file)", reason: "must be a JSON object")
        }
        return root
    }

    /// Builds a configuration from a decoded JSON object.
    public static func parse(_ root: [String: JSONValue], source: String) throws(ConfigurationError) -> NodeConfiguration {
        var reader = ObjectReader(object: root, path: "", source: source)
        var config = NodeConfiguration()
        if let cluster = try reader.string("cluster") {
            guard !cluster.isEmpty, cluster.utf8.count <= 64 else { throw reader.error("cluster", "must be 1-64 characters") }
            config.mesh.cluster = cluster
        }
        if let gossip = try reader.endpoint("gossip") { config.gossip = gossip }
        if let api = try reader.endpoint("api") { config.api = api }
        if let identity = try reader.string("identity") { config.identityPath = identity }
        if let peers = try reader.string("peers") { config.peersDirectory = peers }
        if let state = try reader.string("state") { config.stateDirectory = state }
        if let durability = try reader.string("durability") {
            guard let parsed = StateStore.Durability(rawValue: durability) else {
                throw reader.error(
                    "durability",
                    "must be \"synced\" (a grant is synced to the device before it is answered) or \"process\" (written to the kernel: survives the node's crash, not the machine's)")
            }
            config.durability = parsed
        }
        if let remote = try reader.bool("allow_remote_api") { config.allowRemoteAPI = remote }
        if let tokenFile = try reader.string("api_token_file") { config.apiTokenFile = tokenFile }
        if let metricsAuth = try reader.bool("metrics_auth") { config.metricsAuth = metricsAuth }
        if let idle = try reader.duration("api_idle_timeout", range: 100...3_600_000) { config.apiIdleTimeoutMillis = idle }
        if let interval = try reader.duration("gossip_interval", range: 10...60_000) {
            config.mesh.gossipIntervalMillis = interval
        }
        if let fanout = try reader.integer("fanout", range: 1...64) { config.mesh.fanout = Int(fanout) }
        if let timeout = try reader.duration("liveness_timeout", range: 100...3_600_000) {
            config.mesh.livenessTimeoutMillis = timeout
        }
        if let heartbeat = try reader.duration("heartbeat_interval", range: 10...3_600_000) {
            config.mesh.heartbeatIntervalMillis = heartbeat
        }
        // Bounds on what statements may claim, and the edges of a window's rights (docs/PROTOCOL.md).
        if let open = try reader.duration("max_breaker_open", range: 1_000...86_400_000) {
            config.mesh.maxBreakerOpenMillis = open
        }
        if let window = try reader.duration("max_learned_window", range: 1_000...(366 * 86_400_000)) {
            config.mesh.maxLearnedWindowMillis = window
        }
        if let age = try reader.duration("max_packet_age", range: 100...3_600_000) { config.mesh.maxPacketAgeMillis = age }
        if let services = try reader.integer("max_services", range: 1...10_000) { config.mesh.maxServices = Int(services) }
        if let accounts = try reader.integer("max_accounts", range: 1...10_000) {
            config.mesh.maxAccountsPerService = Int(accounts)
        }
        if let dimensions = try reader.integer("max_dimensions", range: 1...64) {
            config.mesh.maxDimensionsPerService = Int(dimensions)
        }
        if let edge = try reader.duration("rights_edge", range: 0...60_000) { config.mesh.rightsEdgeMillis = edge }
        if let lead = try reader.duration("rights_lead", range: 0...60_000) { config.mesh.rightsLeadMillis = lead }
        if let raw = reader.value("weight") {
            guard let number = raw.number, let parsed = Weight(number) else {
                throw reader.error("weight", "must be a number from 0.001 to 1000")
            }
            config.mesh.weight = parsed
        }
        if let vouching = try reader.string("vouching") {
            guard let policy = VouchingPolicy(parsing: vouching) else {
                throw reader.error(
                    "vouching",
                    "must be \"direct\" or \"introduced-by: K\", K a trusted peer's name or base64 key (several separated by commas)")
            }
            config.mesh.vouching = policy
        }
        if let services = try reader.object("services") {
            for name in services.keys.sorted() {
                guard QuotaKey.isValidLabel(name) else {
                    throw reader.error("services.\(name)", "service names are 1-64 letters, digits, '-', '_', '.', ':'")
                }
                guard let body = services[name]?.object else {
                    throw reader.error("services.\(name)", "must be an object")
                }
                var service = ObjectReader(object: body, path: "services.\(name).", source: source)
                config.mesh.services[name] = try service.servicePolicy()
                try service.rejectUnknownKeys()
            }
        }
        try reader.rejectUnknownKeys()
        return config
    }
}

/// Reads typed fields from a JSON object, remembering which keys were used.
struct ObjectReader {
    let object: [String: JSONValue]
    let path: String
    let source: String
    private var used: Set<String> = []

    init(object: [String: JSONValue], path: String, source: String) {
        self.object = object
        self.path = path
        self.source = source
    }

    func error(_ key: String, _ reason: String) -> ConfigurationError {
        ConfigurationError(source: source, key: key.hasPrefix(path) ? key : path + key, reason: reason)
    }

    mutating func value(_ key: String) -> JSONValue? {
        used.insert(key)
        guard let value = object[key], value != .null else { return nil }
        return value
    }

    mutating func string(_ key: String) throws(ConfigurationError) -> String? {
        guard let value = value(key) else { return nil }
        guard let text = value.string else { throw error(key, "must be a string") }
        return text
    }

    mutating func bool(_ key: String) throws(ConfigurationError) -> Bool? {
        guard let value = value(key) else { return nil }
        // `1` must not pass for `true`.
        guard case .bool(let flag) = value else { throw error(key, "must be true or false") }
        return flag
    }

    mutating func integer(_ key: String, range: ClosedRange<Int64>) throws(ConfigurationError) -> Int64? {
        guard let value = value(key) else { return nil }
        guard let double = value.number else { throw error(key, "must be a whole number") }
        if case .integer(let whole) = value, range.contains(whole) { return whole }
        guard double.rounded() == double, double >= Double(range.lowerBound), double <= Double(range.upperBound) else {
            throw error(key, "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return Int64(double)
    }

    mutating func fraction(_ key: String) throws(ConfigurationError) -> Double? {
        guard let value = value(key) else { return nil }
        guard let double = value.number else { throw error(key, "must be a number") }
        guard double.isFinite, double >= 0, double <= 1 else { throw error(key, "must be between 0 and 1") }
        return double
    }

    mutating func duration(_ key: String, range: ClosedRange<Int64>) throws(ConfigurationError) -> Int64? {
        guard let value = value(key) else { return nil }
        let millis: Int64?
        if let text = value.string {
            millis = DurationText.milliseconds(text)
        } else if let seconds = value.number, seconds.isFinite, seconds >= 0, seconds < 1e12 {
            millis = Int64(seconds * 1000)
        } else {
            millis = nil
        }
        guard let millis else { throw error(key, "must be a duration such as \"500ms\", \"30s\", \"1m\"") }
        guard range.contains(millis) else {
            throw error(key, "must be between \(range.lowerBound) ms and \(range.upperBound) ms")
        }
        return millis
    }

    mutating func endpoint(_ key: String) throws(ConfigurationError) -> Endpoint? {
        guard let text = try string(key) else { return nil }
        guard let endpoint = Endpoint(parsing: text) else { throw error(key, "must be HOST:PORT") }
        return endpoint
    }

    mutating func object(_ key: String) throws(ConfigurationError) -> [String: JSONValue]? {
        guard let value = value(key) else { return nil }
        guard let object = value.object else { throw error(key, "must be an object") }
        return object
    }

    /// The keys a service's configuration takes.
    static let serviceKeys: Set<String> = [
        "limit", "window", "accounts", "reserves", "breaker", "burst", "refill", "max_held_rights", "scopes", "limits",
    ]

    mutating func servicePolicy() throws(ConfigurationError) -> ServicePolicy {
        // A misspelt key is named before any rule that its absence breaks ("windw", not "`limit` and
        // `window` go together").
        try rejectUnknownKeys(allowed: Self.serviceKeys)
        var policy = ServicePolicy()
        policy.limit = try integer("limit", range: 1...1_000_000_000_000)
        policy.windowMillis = try duration("window", range: 1...(366 * 86_400_000))
        if (policy.limit == nil) != (policy.windowMillis == nil) {
            throw error("window", "`limit` and `window` go together")
        }
        if let accountsValue = value("accounts") {
            guard let accounts = accountsValue.array, !accounts.isEmpty else {
                throw error("accounts", "must be a non-empty list of labels")
            }
            var labels: [String] = []
            for item in accounts {
                guard let label = item.string, QuotaKey.isValidLabel(label) else {
                    throw error("accounts", "labels are 1-64 letters, digits, '-', '_', '.', ':' (never credentials)")
                }
                guard !labels.contains(label) else { throw error("accounts", "`\(label)` is listed twice") }
                labels.append(label)
            }
            policy.accounts = labels
        }
        if let reserves = try object("reserves") {
            var reader = ObjectReader(object: reserves, path: path + "reserves.", source: source)
            if let urgent = try reader.fraction("urgent") { policy.reserves.urgent = urgent }
            if let normal = try reader.fraction("normal") { policy.reserves.normal = normal }
            if let low = try reader.fraction("low") { policy.reserves.low = low }
            try reader.rejectUnknownKeys()
            guard policy.reserves.urgent <= policy.reserves.normal, policy.reserves.normal <= policy.reserves.low else {
                throw error("reserves", "must satisfy urgent <= normal <= low")
            }
        }
        if let breaker = try object("breaker") {
            var reader = ObjectReader(object: breaker, path: path + "breaker.", source: source)
            if let threshold = try reader.integer("failure_threshold", range: 1...10_000) {
                policy.breaker.failureThreshold = Int(threshold)
            }
            if let open = try reader.duration("open", range: 1...86_400_000) { policy.breaker.openMillis = open }
            if let probe = try reader.duration("probe_timeout", range: 1...86_400_000) {
                policy.breaker.probeTimeoutMillis = probe
            }
            try reader.rejectUnknownKeys()
        }
        if let burst = try fraction("burst") { policy.burstFraction = burst }
        if let refill = value("refill") {
            guard let name = refill.string, let parsed = ServicePolicy.Refill(rawValue: name) else {
                throw error("refill", "must be \"window\" (the limit comes back at each reset) or \"continuous\" (a token bucket)")
            }
            guard policy.limit != nil else { throw error("refill", "needs `limit` and `window`") }
            policy.refill = parsed
        }
        if let cap = try integer("max_held_rights", range: 1...1_000_000_000_000) {
            guard policy.limit != nil else { throw error("max_held_rights", "needs `limit` and `window`") }
            policy.maxHeldRights = cap
        }
        if let scopes = try object("scopes") {
            // Accounts the provider limits together: {"org-1": ["team-a", "team-b"]}.
            var seen: [String: String] = [:]
            for name in scopes.keys.sorted() {
                guard QuotaKey.isValidLabel(ServicePolicy.scopePrefix + name) else {
                    throw error("scopes", "`\(name)`: scope names are labels of letters, digits, '-', '_', '.'")
                }
                let members = scopes[name]?.array?.compactMap(\.string) ?? []
                guard members.count >= 1, members.count == scopes[name]?.array?.count else {
                    throw error("scopes", "`\(name)` must be a list of account labels")
                }
                for member in members {
                    guard policy.accounts.contains(member) else {
                        throw error("scopes", "`\(name)` names `\(member)`, which is not in `accounts`")
                    }
                    if let other = seen[member] {
                        throw error("scopes", "`\(member)` is in both `\(other)` and `\(name)`: an account has one scope")
                    }
                    seen[member] = name
                }
                policy.scopes[name] = members
            }
        }
        if let limits = try object("limits") {
            // Other dimensions, each per account: {"tokens": {"limit": 90000, "window": "1m"}, …}.
            for name in limits.keys.sorted() {
                guard QuotaKey.isValidLabel(name), name != QuotaKey.requests else {
                    throw error("limits", "`\(name)`: dimension names are labels such as tokens; requests take `limit` and `window`")
                }
                var reader = ObjectReader(object: limits[name]?.object ?? [:], path: path + "limits.\(name).", source: source)
                guard limits[name]?.object != nil,
                    let limit = try reader.integer("limit", range: 1...1_000_000_000_000),
                    let window = try reader.duration("window", range: 1...(366 * 86_400_000))
                else {
                    throw error("limits", "`\(name)` needs an object with `limit` and `window`, e.g. {\"limit\": 90000, \"window\": \"1m\"}")
                }
                try reader.rejectUnknownKeys()
                policy.dimensionLimits[name] = AdvertisedPolicy(limit: limit, windowMillis: window)
            }
        }
        return policy
    }

    func rejectUnknownKeys() throws(ConfigurationError) {
        try rejectUnknownKeys(allowed: used)
    }

    /// Refuses the first key (in name order) that `allowed` does not hold.
    func rejectUnknownKeys(allowed: Set<String>) throws(ConfigurationError) {
        if let unknown = object.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw error(unknown, "unknown key (\(path.isEmpty ? "the file" : String(path.dropLast())) takes \(allowed.sorted().joined(separator: ", ")))")
        }
    }
}

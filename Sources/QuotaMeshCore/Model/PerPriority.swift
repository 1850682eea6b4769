/// One value for each priority: what each priority demands, or what each leaves to those above it.
public struct PerPriority<Value: Hashable & Sendable>: Hashable, Sendable {
    public var urgent: Value
    public var normal: Value
    public var low: Value

    /// A value for each priority.
    public init(urgent: Value, normal: Value, low: Value) {
        self.urgent = urgent
        self.normal = normal
        self.low = low
    }

    /// The value for `priority`.
    public subscript(priority: Priority) -> Value {
        get {
            switch priority {
            case .urgent: urgent
            case .normal: normal
            case .low: low
            }
        }
        set {
            switch priority {
            case .urgent: urgent = newValue
            case .normal: normal = newValue
            case .low: low = newValue
            }
        }
    }
}

extension PerPriority: Codable where Value: Codable {}

extension PerPriority where Value == Double {
    /// Nothing for every priority.
    public static var zero: PerPriority { PerPriority(urgent: 0, normal: 0, low: 0) }

    /// All priorities together.
    public var total: Double { urgent + normal + low }
}

/// An origin's recent demand for one key: the rate of requested cost per second, by priority.
public typealias Demand = PerPriority<Double>

/// How far into the window's limit each priority may go: a priority stops when less than
/// `fraction × limit` would remain.
public typealias Reserves = PerPriority<Double>

extension PerPriority where Value == Double {
    /// The documented reserves: urgent may use the whole limit, normal stops at a tenth left, low at half.
    public static var standardReserves: Reserves { Reserves(urgent: 0, normal: 0.1, low: 0.5) }
}

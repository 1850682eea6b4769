extension KeyedEncodingContainer {
    /// Encodes `value`, or an explicit `null` when it is `nil`: the API's documented fields are always
    /// present (README.md, openapi.yaml), a field whose value is unknown is `null`, not missing.
    mutating func encodeOrNull<Value: Encodable>(_ value: Value?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }
}

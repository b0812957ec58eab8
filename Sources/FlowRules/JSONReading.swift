/// Reading JSON into the same value the printers write, for what other tools print
/// (`nft -j`). Objects read back with their keys sorted: readers look keys up by name.
extension JSONValue: Decodable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(UInt64.self) {
            self = .number(value)
        } else if let value = try? container.decode(Double.self) {
            self = .real(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            let fields = try container.decode([String: JSONValue].self)
            self = .object(fields.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        }
    }

    /// The member `key` of an object; nil for a missing key or another value.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let fields) = self else { return nil }
        return fields.first { $0.0 == key }?.1
    }

    /// An object with one member, as nftables writes its expressions (`{"prefix": {...}}`).
    public var singleMember: (key: String, value: JSONValue)? {
        guard case .object(let fields) = self, fields.count == 1 else { return nil }
        return (fields[0].0, fields[0].1)
    }

    public var string: String? {
        if case .string(let value) = self { value } else { nil }
    }

    /// A whole number, negative ones included (which read as `real`).
    public var integer: Int? {
        switch self {
        case .number(let value): Int(exactly: value)
        case .real(let value): Int(exactly: value)
        default: nil
        }
    }

    public var array: [JSONValue]? {
        if case .array(let items) = self { items } else { nil }
    }
}

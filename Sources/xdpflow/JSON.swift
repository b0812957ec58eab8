/// Just enough JSON for `compile` and `trace`: object keys keep their order, as in
/// `filter show -j`. (FlowRules has the same printer for rules, internal to it; once it
/// is public this copy can go.)
enum JSON {
    case null
    case bool(Bool)
    case integer(UInt64)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    static func number<N: BinaryInteger>(_ value: N) -> JSON { .integer(UInt64(value)) }
    static func optional<N: BinaryInteger>(_ value: N?) -> JSON { value.map { .integer(UInt64($0)) } ?? .null }

    /// Compact, or indented by four spaces per level as iproute2's `-p`.
    func serialized(pretty: Bool) -> String {
        var out = ""
        write(to: &out, pretty: pretty, depth: 0)
        return out
    }

    private func write(to out: inout String, pretty: Bool, depth: Int) {
        let newline = pretty ? "\n" + String(repeating: "    ", count: depth + 1) : ""
        let closing = pretty ? "\n" + String(repeating: "    ", count: depth) : ""
        switch self {
        case .null: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .integer(let value): out += String(value)
        case .string(let value): out += Self.quoted(value)
        case .array(let items):
            guard !items.isEmpty else { out += "[]"; return }
            out += "["
            for (index, item) in items.enumerated() {
                out += (index == 0 ? "" : ",") + newline
                item.write(to: &out, pretty: pretty, depth: depth + 1)
            }
            out += closing + "]"
        case .object(let fields):
            guard !fields.isEmpty else { out += "{}"; return }
            out += "{"
            for (index, (key, value)) in fields.enumerated() {
                out += (index == 0 ? "" : ",") + newline + Self.quoted(key) + (pretty ? ": " : ":")
                value.write(to: &out, pretty: pretty, depth: depth + 1)
            }
            out += closing + "}"
        }
    }

    private static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case _ where scalar.value < 0x20:
                let digits = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

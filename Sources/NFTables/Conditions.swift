import FlowRules
import Packets

/// The header fields an offloaded match may compare, each as flower has it.
enum Field: Hashable {
    case srcMAC, dstMAC
    /// `ether type`, `meta protocol`: the EtherType (untagged frames only reach XDP's rules).
    case etherType
    case src4, dst4, src6, dst6
    /// `ip protocol` (IPv4), `ip6 nexthdr` (IPv6), `meta l4proto` (either).
    case ipProtocol, nextHeader, l4proto
    case srcPort(l4: UInt8), dstPort(l4: UInt8)
    case icmpType(v6: Bool), icmpCode(v6: Bool)
    case inputName
}

/// One value a field is compared with.
enum FieldValue: Hashable {
    case mac(Masked<MACAddress>)
    case ipv4(Masked<IPv4Address>)
    case ipv6(Masked<IPv6Address>)
    /// A number or an inclusive range of numbers (protocols, ports, ICMP type and code).
    case numbers(ClosedRange<UInt32>)
    /// An interface name; a trailing `*` matches every name it begins.
    case name(String)
}

/// A field compared with one value.
struct Atom: Hashable {
    var field: Field
    var value: FieldValue
}

/// What a match asks of a frame: any one of the alternatives, each every one of its atoms
/// (a concatenation compares several fields at once).
struct Condition {
    /// The fields compared, in order.
    var fields: [Field]
    var alternatives: [[Atom]]
}

extension Field {
    /// What nftables needs of a frame to read the field at all, as alternatives: without
    /// it neither `==` nor `!=` matches (`ip saddr != X` needs IPv4, `meta l4proto != tcp`
    /// an IP frame).
    var dependency: [FlowKey] {
        switch self {
        case .srcMAC, .dstMAC, .etherType, .inputName: [FlowKey()]
        case .src4, .dst4, .ipProtocol: [FlowKey(network: .ipv4)]
        case .src6, .dst6, .nextHeader: [FlowKey(network: .ipv6)]
        case .l4proto: [FlowKey(network: .ipv4), FlowKey(network: .ipv6)]
        case .srcPort(let l4), .dstPort(let l4): [FlowKey(l4: l4)]
        case .icmpType(let v6), .icmpCode(let v6): [FlowKey(network: v6 ? .ipv6 : .ipv4, l4: v6 ? 58 : 1)]
        }
    }
}

/// Why a match or statement cannot run in XDP; the rule is handed to nftables.
struct Untranslatable: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The EtherTypes and protocol numbers nftables prints by name.
enum Names {
    static let etherTypes: [String: UInt32] = ["ip": 0x0800, "ip6": 0x86dd, "arp": 0x0806, "vlan": 0x8100, "8021ad": 0x88a8]
    static let protocols: [String: UInt32] = [
        "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "dccp": 33, "gre": 47, "esp": 50, "ah": 51,
        "icmpv6": 58, "ipv6-icmp": 58, "comp": 108, "sctp": 132, "udplite": 136,
    ]
    static let icmpTypes: [String: UInt32] = [
        "echo-reply": 0, "destination-unreachable": 3, "source-quench": 4, "redirect": 5, "echo-request": 8,
        "router-advertisement": 9, "router-solicitation": 10, "time-exceeded": 11, "parameter-problem": 12,
        "timestamp-request": 13, "timestamp-reply": 14, "info-request": 15, "info-reply": 16,
        "address-mask-request": 17, "address-mask-reply": 18,
    ]
    static let icmpv6Types: [String: UInt32] = [
        "destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3, "parameter-problem": 4,
        "echo-request": 128, "echo-reply": 129, "mld-listener-query": 130, "mld-listener-report": 131,
        "mld-listener-done": 132, "mld-listener-reduction": 132, "nd-router-solicit": 133, "nd-router-advert": 134,
        "nd-neighbor-solicit": 135, "nd-neighbor-advert": 136, "nd-redirect": 137, "router-renumbering": 138,
        "ind-neighbor-solicit": 141, "ind-neighbor-advert": 142, "mld2-listener-report": 143,
    ]
}

/// A match read as a `Condition`: the fields of its left side, the values of its right.
struct ConditionReader {
    var ruleset: Ruleset
    var table: TableID

    func condition(_ match: Match) throws(Untranslatable) -> Condition {
        let fields = try fields(match.left)
        let elements: [Expression]
        switch match.right {
        case .set(let items): elements = items
        case .reference(let name):
            guard let set = ruleset.set(name, in: table), !set.isMap else {
                throw Untranslatable("@\(name): no such set in table \(table)")
            }
            // No event tells of an element the packet path adds or a timeout takes away.
            guard !set.changesUnseen else { throw Untranslatable("@\(name) changes without events (dynamic or timeout)") }
            elements = set.elements
        default: elements = [match.right]
        }
        var alternatives: [[Atom]] = []
        for element in elements {
            let parts: [Expression]
            if case .concatenation(let items) = element { parts = items } else { parts = [element] }
            guard parts.count == fields.count else {
                throw Untranslatable("a value of \(parts.count) parts for \(fields.count) fields")
            }
            // Each part may be several values (a range of addresses is several prefixes).
            var product: [[Atom]] = [[]]
            for (field, part) in zip(fields, parts) {
                let values = try Self.values(of: part, for: field, op: match.op)
                product = product.flatMap { atoms in values.map { atoms + [Atom(field: field, value: $0)] } }
            }
            alternatives += product
        }
        return Condition(fields: fields, alternatives: alternatives)
    }

    /// The fields a left side reads.
    private func fields(_ expression: Expression) throws(Untranslatable) -> [Field] {
        switch expression {
        case .concatenation(let items):
            var fields: [Field] = []
            for item in items { fields += try self.fields(item) }
            return fields
        case .payload(let proto, let field):
            switch (proto, field) {
            case ("ether", "saddr"): return [.srcMAC]
            case ("ether", "daddr"): return [.dstMAC]
            case ("ether", "type"): return [.etherType]
            case ("ip", "saddr"): return [.src4]
            case ("ip", "daddr"): return [.dst4]
            case ("ip", "protocol"): return [.ipProtocol]
            case ("ip6", "saddr"): return [.src6]
            case ("ip6", "daddr"): return [.dst6]
            case ("ip6", "nexthdr"): return [.nextHeader]
            case ("tcp", "sport"): return [.srcPort(l4: 6)]
            case ("tcp", "dport"): return [.dstPort(l4: 6)]
            case ("udp", "sport"): return [.srcPort(l4: 17)]
            case ("udp", "dport"): return [.dstPort(l4: 17)]
            case ("sctp", "sport"): return [.srcPort(l4: 132)]
            case ("sctp", "dport"): return [.dstPort(l4: 132)]
            case ("icmp", "type"): return [.icmpType(v6: false)]
            case ("icmp", "code"): return [.icmpCode(v6: false)]
            case ("icmpv6", "type"): return [.icmpType(v6: true)]
            case ("icmpv6", "code"): return [.icmpCode(v6: true)]
            default: throw Untranslatable("\(proto) \(field) is not offloaded")
            }
        case .meta(let key):
            switch key {
            case "l4proto": return [.l4proto]
            case "protocol": return [.etherType]
            case "iifname": return [.inputName]
            default: throw Untranslatable("meta \(key) is not offloaded")
            }
        case .other(let keyword):
            throw Untranslatable("\(keyword) is not offloaded")
        default:
            throw Untranslatable("an expression that is not a header field on the left of a match")
        }
    }

    /// The values `expression` stands for under `op`, for `field`.
    static func values(of expression: Expression, for field: Field, op: String) throws(Untranslatable) -> [FieldValue] {
        let values = try compared(expression, for: field, op: op)
        // Flower compares a port with a range; every other number is one value a rule.
        if case .srcPort = field { return values }
        if case .dstPort = field { return values }
        var singles: [FieldValue] = []
        for value in values {
            guard case .numbers(let range) = value, range.count > 1 else { singles.append(value); continue }
            guard range.count <= 256 else { throw Untranslatable("a range of \(range.count) values of one field") }
            singles += range.map { .numbers($0 ... $0) }
        }
        return singles
    }

    private static func compared(_ expression: Expression, for field: Field, op: String) throws(Untranslatable) -> [FieldValue] {
        switch op {
        case "==", "!=", "in": break
        case "<", "<=", ">", ">=":
            guard case .value(let json) = expression, let bound = number(json, for: field) else {
                throw Untranslatable("\(op) with a value that is not a number")
            }
            let top = UInt32(maxValue(field))
            let range: ClosedRange<UInt32>? = switch op {
            case "<": bound == 0 ? nil : 0 ... bound - 1
            case "<=": 0 ... bound
            case ">": bound >= top ? nil : bound + 1 ... top
            default: bound ... top
            }
            return range.map { [.numbers($0)] } ?? []
        default:
            throw Untranslatable("the operator \(op) is not offloaded")
        }
        switch (field, expression) {
        case (.src4, _), (.dst4, _):
            return try addresses(expression, parse: IPv4Address.init).map(FieldValue.ipv4)
        case (.src6, _), (.dst6, _):
            return try addresses(expression, parse: IPv6Address.init).map(FieldValue.ipv6)
        case (.srcMAC, .value(let json)), (.dstMAC, .value(let json)):
            guard let text = json.string, let mac = MACAddress(text) else { throw Untranslatable("not a MAC address") }
            return [.mac(Masked(mac))]
        case (.inputName, .value(let json)):
            guard let name = json.string else { throw Untranslatable("not an interface name") }
            return [.name(name)]
        case (.etherType, .value(let json)) where [0x8100, 0x88a8].contains(number(json, for: field)):
            throw Untranslatable("the kernel takes a VLAN tag off before the hook")
        case (_, .value(let json)):
            guard let value = number(json, for: field) else {
                throw Untranslatable("\(json.serialized(pretty: false)) is not a value nftables offloads here")
            }
            return [.numbers(value ... value)]
        case (_, .range(.value(let low), .value(let high))):
            guard let low = number(low, for: field), let high = number(high, for: field), low <= high else {
                throw Untranslatable("a range that is not of numbers")
            }
            return [.numbers(low ... high)]
        default:
            throw Untranslatable("a value of a kind not offloaded")
        }
    }

    private static func maxValue(_ field: Field) -> UInt32 {
        switch field {
        case .srcPort, .dstPort, .etherType: 0xffff
        default: 0xff
        }
    }

    private static func number(_ json: JSONValue, for field: Field) -> UInt32? {
        if let value = json.integer { return value >= 0 && value <= maxValue(field) ? UInt32(value) : nil }
        guard let name = json.string else { return nil }
        switch field {
        case .etherType: return Names.etherTypes[name]
        case .ipProtocol, .nextHeader, .l4proto: return Names.protocols[name]
        case .icmpType(let v6): return v6 ? Names.icmpv6Types[name] : Names.icmpTypes[name]
        case .srcPort, .dstPort: return UInt32(name).flatMap { $0 <= 0xffff ? $0 : nil }
        default: return nil
        }
    }

    /// An address, a prefix, or a range of addresses (as the prefixes that cover it exactly).
    private static func addresses<A: MaskableField>(_ expression: Expression, parse: (String) -> A?)
        throws(Untranslatable) -> [Masked<A>] {
        switch expression {
        case .value(let json):
            guard let text = json.string, let address = parse(text) else { throw Untranslatable("not an address") }
            return [Masked(address)]
        case .prefix(let text, let length):
            guard let address = parse(text), let prefix = Masked(address, prefixLength: length) else {
                throw Untranslatable("not a prefix: \(text)/\(length)")
            }
            return [prefix]
        case .range(.value(let low), .value(let high)):
            guard let lowText = low.string, let highText = high.string, let low = parse(lowText),
                  let high = parse(highText), low.fieldBits <= high.fieldBits else {
                throw Untranslatable("not a range of addresses")
            }
            return Masked.covering(low, through: high)
        default:
            throw Untranslatable("an address of a kind not offloaded")
        }
    }
}

import Packets

/// A rule's counters, from whoever counts (the offload's per-rule maps).
public struct RuleStats: Hashable, Sendable, Codable {
    public var packets: UInt64
    public var bytes: UInt64
    /// Seconds since the rule last matched; nil when it never has.
    public var lastUsed: UInt64?
    /// Per action, in order: the frames it dropped and the frames over its rate (police
    /// only), the `dropped` and `overlimits` of tc's action statistics.
    public var actionDrops: [UInt64]
    public var actionOverlimits: [UInt64]

    public init(packets: UInt64, bytes: UInt64, lastUsed: UInt64?, actionDrops: [UInt64] = [],
                actionOverlimits: [UInt64] = []) {
        self.packets = packets
        self.bytes = bytes
        self.lastUsed = lastUsed
        self.actionDrops = actionDrops
        self.actionOverlimits = actionOverlimits
    }

    /// From what a datapath counts: the rule's frames, the frames it dropped (by any
    /// action), and each police action's own counts by its index among the actions. A
    /// frame ends in one action: the drops police did not make are the first non-police
    /// action's that ends the list with drop (the actions before it pipe).
    public init(rule: FlowRule, packets: UInt64, bytes: UInt64, lastUsed: UInt64?, dropped: UInt64,
                police: [Int: (dropped: UInt64, overlimits: UInt64)]) {
        var drops = rule.actions.indices.map { police[$0]?.dropped ?? 0 }
        let overlimits = rule.actions.indices.map { police[$0]?.overlimits ?? 0 }
        let policed = drops.reduce(0, &+)
        let ending = rule.actions.firstIndex { action in
            if case .police = action.kind { return false }
            return action.control != .pipe
        }
        if let ending, rule.actions[ending].control == .drop { drops[ending] = dropped >= policed ? dropped - policed : 0 }
        self.init(packets: packets, bytes: bytes, lastUsed: lastUsed, actionDrops: drops, actionOverlimits: overlimits)
    }

    /// The rule's totals: a frame is dropped by one action.
    public var dropped: UInt64 { actionDrops.reduce(0, &+) }
    public var overlimits: UInt64 { actionOverlimits.reduce(0, &+) }

    /// tc's `Sent B bytes P pkt (dropped D, overlimits O requeues 0)` (print_tcstats2_attr).
    public var sentText: String {
        "Sent \(bytes) bytes \(packets) pkt (dropped \(dropped), overlimits \(overlimits) requeues 0)"
    }
}

/// `filter show` output for the rules of one device, as text in the style of
/// `tc filter show` or as JSON in the schema of `tc -j filter show` (RuleShowJSON.swift,
/// docs/flower.md). `stats` is given
/// with `-s`; a rule it has no counters for shows none.
public struct RuleShow {
    public var device: String
    public var rules: [FlowRule]
    public var stats: ((FlowRule) -> RuleStats?)?

    public init(device: String, rules: [FlowRule], stats: ((FlowRule) -> RuleStats?)? = nil) {
        self.device = device
        self.rules = rules
        self.stats = stats
    }

    /// Per prio, a line for the prio, then per rule its header, its keys indented by two
    /// spaces, and its actions indented by a tab.
    public var text: String {
        var lines: [String] = []
        var previous: (UInt32, UInt16)?
        for rule in rules {
            let head = "filter parent ffff: protocol \(rule.filterProtocol.name) pref \(rule.prio) flower chain \(rule.chain)"
            if previous.map({ $0 != (rule.chain, rule.prio) }) ?? true { lines.append(head) }
            previous = (rule.chain, rule.prio)
            lines.append(head + " handle \(TCNames.handle(rule.handle))")
            if let classID = rule.classID { lines.append("  classid \(TCNames.classID(classID))") }
            if rule.filterProtocol != .all {
                lines.append("  eth_type \(TCNames.etherTypeName(rule.filterProtocol.rawValue))")
            }
            for (keyword, value) in rule.flowerKeys { lines.append("  \(keyword) \(value)") }
            if rule.skipHardware { lines.append("  skip_hw") }
            lines.append("  not_in_hw")
            if let counters = stats?(rule) {
                let used = counters.lastUsed.map { "last used \($0) sec" } ?? "never used"
                lines.append("\t\(counters.sentText), \(used)")
            }
            for (order, action) in rule.actions.enumerated() {
                lines.append("\taction order \(order + 1): \(action.showText)")
            }
            lines.append("")
        }
        return lines.joined(separator: "\n")
    }
}

extension FlowAction {
    /// The part of a `tc filter show` action line after "action order N: ".
    var showText: String {
        switch kind {
        case .gact:
            return "gact action \(control)"
        case .mirred(let mirred):
            let direction = mirred.direction == .egress ? "Egress" : "Ingress"
            let mode = mirred.mode == .redirect ? "Redirect" : "Mirror"
            return "mirred (\(direction) \(mode) to device \(mirred.device)) \(control)"
        case .vlan(.pop):
            return "vlan  pop \(control)"
        case .vlan(.push(let id, let priority, let tpid)):
            return "vlan  push id \(id) protocol \(TCNames.protocolName(tpid)) priority \(priority) \(control)"
        case .vlan(.modify(let id, let priority, let tpid)):
            return "vlan  modify id \(id) protocol \(TCNames.protocolName(tpid))"
                + (priority.map { " priority \($0)" } ?? "") + " \(control)"
        case .pedit(let edits):
            return "pedit action \(control) keys \(edits.count) "
                + edits.map { "eth \($0.field.rawValue) set \($0.address)" }.joined(separator: " ")
        case .skbmod(let edit):
            return "skbmod \(control)" + (edit.dstMAC.map { " set dmac \($0)" } ?? "")
                + (edit.srcMAC.map { " set smac \($0)" } ?? "")
        case .skbeditMark(let mark):
            return "skbedit  mark \(mark.value)" + FlowRule.hexMask(mark.mask, unless: .max) + " \(control)"
        case .police(let police):
            return "police rate \(Self.rateText(police.bytesPerSecond)) burst \(Self.sizeText(police.burstBytes))"
                + " action \(police.exceed)/\(control)"
        case .xsk:
            // No tc action prints this; the control is what a frame gets without a socket.
            return "xsk (AF_XDP socket of the receive queue, else \(control))"
        }
    }
}

/// Just enough JSON to print: object keys keep their order (iproute2's order, which
/// the schemas in the docs follow).
public enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case number(UInt64)
    /// A measurement (seconds, a rate): Swift's shortest form that reads back the same.
    case real(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func integer<N: BinaryInteger>(_ value: N) -> JSONValue { .number(UInt64(value)) }
    public static func optional<N: BinaryInteger>(_ value: N?) -> JSONValue { value.map(integer) ?? .null }

    /// Compact, or indented by four spaces per level as iproute2's `-p`.
    public func serialized(pretty: Bool) -> String {
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
        case .number(let value): out += String(value)
        case .real(let value): out += value.isFinite ? "\(value)" : "null"
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
            case _ where scalar.value < 0x20: out += "\\u" + TCNames.hex(scalar.value, width: 4)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// One `filter` command, as `tc filter ...` takes it:
///
///     filter add|replace|change|del|get|show dev DEV [ingress] [pref|prio N] [handle N]
///            [protocol PROTO] [chain N] [flower [KEY VALUE...] [action ACTION...]]
public struct FilterCommand: Hashable, Sendable {
    public var device: String
    public var operation: Operation
    /// What the command means that its writer may not have meant (`ip_proto 17` is
    /// 0x17, as in tc): the command line prints each as a warning.
    public var notes: [ParseError] = []
    /// tc's `verbose` (report the offload in full): the command line prints the
    /// verifier's log of the program the device runs once the command is done.
    public var verbose = false

    public enum Operation: Hashable, Sendable {
        case add(FlowRule)
        case replace(FlowRule)
        case change(FlowRule)
        case delete(RuleSelector)
        case get(RuleSelector)
        case show(RuleSelector)
    }

    public init(device: String, operation: Operation) {
        self.device = device
        self.operation = operation
    }

    /// Reads a command from its words, the first being `filter`.
    public static func parse(_ words: [String]) throws(ParseError) -> FilterCommand {
        var parser = FilterLineParser(Words(words))
        return try parser.parse()
    }
}

private enum Verb: Equatable, Sendable {
    case add, replace, change, delete, get, show

    var createsRules: Bool { self == .add || self == .replace || self == .change }
}

private enum LineKeyword: Equatable, Sendable {
    case dev, ingress, parent, handle, prio, `protocol`, chain
    case flower
    case unsupported(String)
}

private struct FilterLineParser {
    var words: Words

    init(_ words: Words) { self.words = words }

    static let objects = Keywords<String?>([
        ("filter", "filter"), ("filters", "filter"),
        ("qdisc", nil), ("class", nil), ("chain", nil), ("actions", nil), ("monitor", nil), ("exec", nil),
    ])

    static let verbs = Keywords<Verb>([
        ("add", .add), ("change", .change), ("replace", .replace), ("delete", .delete), ("get", .get),
        ("show", .show), ("list", .show), ("lst", .show),
    ])

    static let lineKeywords = Keywords<LineKeyword>([
        ("dev", .dev), ("ingress", .ingress), ("parent", .parent), ("handle", .handle),
        ("preference", .prio), ("priority", .prio), ("protocol", .protocol), ("chain", .chain),
        ("flower", .flower),
        ("egress", .unsupported("egress: XDP sees received frames only; use ingress")),
        ("root", .unsupported("root: XDPFlow attaches at ingress only; use ingress")),
        ("block", .unsupported("shared blocks are not supported; give dev DEV ingress")),
        ("estimator", .unsupported("estimator is not supported")),
    ], exactOnly: ["dev", "ingress", "egress", "parent", "handle", "root", "block", "flower"])

    /// Filter kinds tc knows that XDPFlow does not run.
    static let otherKinds: Set<String> = [
        "u32", "bpf", "matchall", "basic", "fw", "route", "flow", "cgroup", "tcindex", "rsvp", "rsvp6",
    ]

    mutating func parse() throws(ParseError) -> FilterCommand {
        guard let objectWord = words.take() else { throw words.endError("expected 'filter'") }
        switch Self.objects.resolve(objectWord) {
        case "filter"?: break
        case nil?: throw words.errorAtPrevious("'\(objectWord)' is not supported; xdpflow manages filters only")
        default: throw words.errorAtPrevious(Self.objects.complaint(about: objectWord, kind: "object"))
        }
        guard let verbWord = words.take() else {
            throw words.endError("filter needs a command: add, replace, change, del, get or show")
        }
        guard let verb = Self.verbs.resolve(verbWord) else {
            throw words.errorAtPrevious(Self.verbs.complaint(about: verbWord, kind: "filter command"))
        }

        var device: String?
        var sawIngress = false
        var chain: UInt32?, prio: UInt16?, handle: UInt32?, filterProtocol: FilterProtocol?
        var handleIndex: Int?
        var flowerIndex: Int?

        lineLoop: while let word = words.current {
            let keywordIndex = words.index
            guard let keyword = Self.lineKeywords.resolve(word) else {
                if Self.otherKinds.contains(word) {
                    throw words.error("filter kind '\(word)' is not supported; xdpflow runs flower rules", at: keywordIndex)
                }
                throw words.error(Self.lineKeywords.complaint(about: word, kind: "word"), at: keywordIndex)
            }
            words.advance()
            switch keyword {
            case .dev:
                let name = try words.value(of: "dev")
                guard device == nil else { throw words.errorAtPrevious("duplicate dev") }
                guard isValidInterfaceName(name) else {
                    throw words.errorAtPrevious("dev \(name): \(interfaceNameExpectation)")
                }
                device = name
            case .ingress:
                guard !sawIngress else { throw words.errorAtPrevious("duplicate ingress") }
                sawIngress = true
            case .parent:
                let parent = try words.value(of: "parent")
                guard !sawIngress else { throw words.errorAtPrevious("duplicate parent") }
                guard ["ffff:", "ffff:0", "ffff:fff2"].contains(parent.lowercased()) else {
                    throw words.errorAtPrevious("parent \(parent): XDPFlow attaches at ingress only (parent ffff:)")
                }
                sawIngress = true
            case .handle:
                let text = try words.value(of: "handle")
                guard handle == nil else { throw words.errorAtPrevious("duplicate handle") }
                guard let value = UInt32(tcText: text, base: .automatic) else {
                    throw words.errorAtPrevious("handle \(text): expected a number 0-0xffffffff")
                }
                handle = value
                handleIndex = keywordIndex
            case .prio:
                let text = try words.value(of: "prio")
                guard prio == nil else { throw words.errorAtPrevious("duplicate prio") }
                guard let value = UInt16(tcText: text, base: .automatic) else {
                    throw words.errorAtPrevious("prio \(text): expected 0-65535 (0 allocates one)")
                }
                prio = value
            case .protocol:
                let text = try words.value(of: "protocol")
                guard filterProtocol == nil else { throw words.errorAtPrevious("duplicate protocol") }
                if let refusal = TCNames.unsupportedEtherType(text) { throw words.errorAtPrevious("protocol \(text): \(refusal)") }
                guard let value = TCNames.etherType(text) else {
                    throw words.errorAtPrevious(
                        "protocol \(text): expected ip, ipv6, 802.1Q, 802.1ad, arp, rarp, all or a number 0-0xffff")
                }
                filterProtocol = FilterProtocol(rawValue: value)
            case .chain:
                let text = try words.value(of: "chain")
                guard chain == nil else { throw words.errorAtPrevious("duplicate chain") }
                guard let value = UInt32(tcText: text, base: .automatic), value <= 0x0fff_ffff else {
                    throw words.errorAtPrevious("chain \(text): expected 0-0xfffffff")
                }
                chain = value
            case .flower:
                flowerIndex = keywordIndex
                break lineLoop
            case .unsupported(let message):
                throw words.errorAtPrevious(message)
            }
        }

        guard let device else { throw words.endError("filter \(verbWord) needs dev DEV") }

        guard verb.createsRules else {
            if let flowerIndex, !words.isAtEnd {
                throw words.error("filter \(verbWord) takes no flower keys or actions", at: flowerIndex + 1)
            }
            if let handleIndex, flowerIndex == nil {
                throw words.error("handle needs the filter kind: add 'flower'", at: handleIndex)
            }
            let selector = RuleSelector(chain: chain, prio: prio, filterProtocol: filterProtocol, handle: handle)
            switch verb {
            case .delete:
                return FilterCommand(device: device, operation: .delete(selector))
            case .get:
                guard prio != nil, filterProtocol != nil, handle != nil else {
                    throw words.endError("filter get needs prio, protocol and handle")
                }
                return FilterCommand(device: device, operation: .get(selector))
            default:
                return FilterCommand(device: device, operation: .show(selector))
            }
        }

        guard flowerIndex != nil else { throw words.endError("filter \(verbWord) needs 'flower'") }
        var rule = FlowRule(chain: chain ?? 0, prio: prio ?? 0, handle: handle ?? 0,
                            filterProtocol: filterProtocol ?? .all)
        var flower = FlowerParser(words: words, rule: rule)
        try flower.parse()
        rule = flower.rule
        var command = switch verb {
        case .add: FilterCommand(device: device, operation: .add(rule))
        case .replace: FilterCommand(device: device, operation: .replace(rule))
        default: FilterCommand(device: device, operation: .change(rule))
        }
        command.notes = flower.notes
        command.verbose = flower.verbose
        return command
    }
}

/// The kernel's dev_valid_name: 1-15 bytes, not "." or "..", no '/', ':' or white space.
func isValidInterfaceName(_ name: String) -> Bool {
    (1 ... 15).contains(name.utf8.count) && name != "." && name != ".."
        && !name.contains { $0 == "/" || $0 == ":" || $0.isWhitespace }
}

let interfaceNameExpectation = "expected an interface name (1-15 bytes, no '/', ':' or spaces)"

import FlowCompiler
import FlowRules
import Packets

/// A rule set of the live benchmark, the frame sent through it, and the rule that frame
/// must end in: the last in classification order, so every peer does its full work
/// (nftables walks all the rules before it; XDPFlow looks up every subtable).
struct LiveRuleSet {
    var name: String
    /// How the issue's targets name it ("1 rule"), and its targets: XDPFlow's rate at
    /// least `limit` times the peer's.
    var short: String
    var targets: [(peer: String, limit: Double)] = []
    /// `tc filter` lines as written for `RuleLines.device`.
    var lines: [String]
    /// The rules in classification order (prio, then handle), as tc and `xdpflow show` list them.
    var rules: [FlowRule]
    var subtables: Int
    var frame: [UInt8]

    init(_ name: String, short: String, lines: [String], frame: [UInt8],
         targets: [(peer: String, limit: Double)] = []) throws {
        self.name = name
        self.short = short
        self.targets = targets
        self.lines = lines
        self.frame = frame
        let ruleSet = try RuleSet(RuleLines.rules(lines))
        rules = ruleSet.show()
        subtables = try Plan(ruleSet, device: RuleLines.device).subtables.count
        var reference = try ReferenceClassifier(rules: ruleSet, device: RuleLines.device)
        let matched = reference.classify(frame, now: 0).matchedRules
        guard matched == [rules.last!] else {
            throw BenchError("\(name): the frame matches \(matched.count) rules, not just the last one")
        }
    }

    /// The `tc filter` lines for `device`, as `xdpflow -batch` reads them.
    func batch(for device: String) -> String {
        lines.map { $0.replacingOccurrences(of: "dev \(RuleLines.device) ", with: "dev \(device) ") }
            .joined(separator: "\n") + "\n"
    }

    /// The issue's three rule sets; quick runs leave out the 10,000.
    static func all(quick: Bool) throws -> [LiveRuleSet] {
        let groups = 16, prefixes = 10_000
        // The last rule of the 16th prio: entry 624 of group 15, a /17 (15 host bits free).
        let lastPrefix = RuleLines.prefix(group: groups - 1, entry: prefixes / groups - 1).rawValue | 0x1234
        return [
            try LiveRuleSet("1 rule (udp dst_port 53)", short: "1 rule", lines: RuleLines.dnsDrop,
                            frame: Frames.udp(dst: Frames.nowhere, dstPort: 53),
                            targets: [("floor", 0.9), ("xdp-filter", 1), ("nftables", 3)]),
            try LiveRuleSet("100 dst_ip /32, 1 subtable, hit the 100th", short: "100 rules",
                            lines: RuleLines.hostRoutes(100),
                            frame: Frames.udp(dst: RuleLines.hostRoute(99), dstPort: 9)),
        ] + (quick ? [] : [
            try LiveRuleSet("10,000 dst_ip /17../32, 16 subtables, hit the last", short: "10,000 rules in 16 subtables",
                            lines: RuleLines.prefixes(prefixes, groups: groups),
                            frame: Frames.udp(dst: IPv4Address(rawValue: lastPrefix), dstPort: 9),
                            targets: [("nftables", 5)]),
        ])
    }
}

/// The keys the live rule sets use, read off a flower rule for the peers that take them
/// in their own words: `protocol ip`, `ip_proto`, an IPv4 `dst_ip` and an exact
/// `dst_port`, with the single action `drop`. Anything else has no translation here.
struct DropRule {
    var ipProto: UInt8?
    var dstIP: Masked<IPv4Address>?
    var dstPort: UInt16?

    init(_ rule: FlowRule) throws {
        var rest = rule.match
        ipProto = rest.ipProto
        if case .v4(let address)? = rest.dstIP { dstIP = address }
        if case .masked(let port)? = rest.dstPort, port.isExact { dstPort = port.value }
        rest.ipProto = nil
        if dstIP != nil { rest.dstIP = nil }
        if dstPort != nil { rest.dstPort = nil }
        guard rule.filterProtocol == .ip, rule.actions == [.gact(.drop)], rest == FlowMatch(),
              dstIP.map({ $0.prefixLength != nil }) ?? true else {
            throw BenchError("the live benchmark cannot translate \(rule.match) for its peers")
        }
    }

    var transport: String? {
        switch ipProto {
        case IPProtocolNumber.udp: "udp"
        case IPProtocolNumber.tcp: "tcp"
        default: nil
        }
    }

    /// One nftables rule (netdev family), counting what it drops. `ip ...` expressions
    /// imply `meta protocol ip`; a port implies its `ip protocol`.
    var nftables: String {
        var words: [String] = []
        if let ipProto { words.append("ip protocol \(transport ?? "\(ipProto)")") }
        if let dstIP {
            let length = dstIP.prefixLength!
            words.append("ip daddr \(dstIP.key)" + (length < 32 ? "/\(length)" : ""))
        }
        if let dstPort, let transport { words.append("\(transport) dport \(dstPort)") }
        if words.isEmpty { words.append("meta protocol ip") }
        return (words + ["counter", "drop"]).joined(separator: " ")
    }

    /// xdp-filter's feature (its program variant) and command for this rule, or why it
    /// has none: it drops whole IP addresses and single ports, no prefixes, no conjunctions.
    var xdpFilter: Result<(feature: String, arguments: [String]), XDPFilterCannot> {
        switch (transport, dstIP, dstPort) {
        case (let transport?, nil, let port?):
            // A port of xdp-filter is dropped over IPv4 and IPv6: the same for these IPv4 frames.
            .success((transport, ["port", "--proto", transport, "--mode", "dst", "\(port)"]))
        case (nil, let address?, nil) where address.isExact:
            .success(("ipv4", ["ip", "--mode", "dst", "\(address.key)"]))
        case (nil, _?, nil):
            .failure(XDPFilterCannot("n/a: xdp-filter has no prefixes"))
        default:
            .failure(XDPFilterCannot("n/a: xdp-filter matches one field per entry"))
        }
    }
}

struct XDPFilterCannot: Error {
    var why: String
    init(_ why: String) { self.why = why }
}

import FlowRules
import Packets

/// Seeded rule sets shaped like access control lists (ClassBench's acl and fw sets), so
/// that the classifier is tested and measured on sets it has never seen: prefixes that
/// nest and overlap because they grow from a few networks, the port classes ACLs use,
/// tcp/udp/any, some IPv6, drop and pass mixed, now and then a TOS, TTL, TCP flags or
/// VLAN match.
public struct ACLGenerator: Sendable {
    public var ruleCount: Int
    /// Rules at each prio (handles 1, 2, ...); 1...1 gives each rule its own prio, as
    /// ClassBench's sets are.
    public var rulesPerPrio: ClosedRange<Int>
    /// The share of rules on IPv6, 0-1.
    public var ipv6Share: Double
    public var device: String

    public init(ruleCount: Int, rulesPerPrio: ClosedRange<Int> = 1 ... 1, ipv6Share: Double = 0.2,
                device: String = RuleSetWorkload.defaultDevice) {
        precondition(rulesPerPrio.lowerBound >= 1)
        let mostPrios = (ruleCount + rulesPerPrio.lowerBound - 1) / rulesPerPrio.lowerBound
        precondition(mostPrios <= Int(UInt16.max), "tc has 65535 prios")
        self.ruleCount = ruleCount
        self.rulesPerPrio = rulesPerPrio
        self.ipv6Share = ipv6Share
        self.device = device
    }

    public func workload(seed: UInt64) -> RuleSetWorkload {
        let lines = lines(seed: seed)
        do {
            return try RuleSetWorkload(name: "ACLGenerator seed \(seed)", lines: lines)
        } catch {
            preconditionFailure("the generator wrote a line the grammar refuses: \(error)")
        }
    }

    /// `filter add` lines, prio 1, 2, ... in order.
    public func lines(seed: UInt64) -> [String] {
        var rng = SeededRandom(seed: seed)
        var draw = RuleDraw()
        var lines: [String] = []
        lines.reserveCapacity(ruleCount)
        var prio = 0
        while lines.count < ruleCount {
            prio += 1
            let vlan = rng.chance(0.04)
            let prioOnIPv6 = rng.chance(ipv6Share)
            let size = min(rng.int(rulesPerPrio), ruleCount - lines.count)
            // Rules of one prio need distinct matches (tc refuses a second equal one).
            var matches: Set<String> = []
            while matches.count < size {
                // A prio holds one protocol; under 802.1Q each rule's vlan_ethtype is its own.
                let v6 = vlan ? rng.chance(ipv6Share) : prioOnIPv6
                let match = (vlan ? draw.vlanWords(v6: v6, &rng) : "") + draw.ipWords(v6: v6, &rng)
                guard matches.insert(match).inserted else { continue }
                let filterProtocol = vlan ? "802.1Q" : v6 ? "ipv6" : "ip"
                let action = rng.chance(0.4) ? "drop" : "pass"
                lines.append("filter add dev \(device) ingress protocol \(filterProtocol) prio \(prio) "
                    + "handle \(matches.count) flower \(match)action \(action)")
            }
        }
        return lines
    }
}

/// The state of one generated set: the prefixes drawn so far, which later rules reuse
/// and narrow.
private struct RuleDraw {
    var ipv4 = PrefixPool<IPv4Address>(
        bases: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "198.18.0.0/15", "203.0.113.0/24"],
        favouredLengths: [16, 24, 28, 32])
    var ipv6 = PrefixPool<IPv6Address>(
        bases: ["2001:db8::/32", "fd00::/8", "2001:db8:a000::/36", "2a02:c7c::/32"],
        favouredLengths: [48, 56, 64, 128])

    static let services: [UInt16] = [20, 21, 22, 23, 25, 53, 80, 110, 123, 143, 161, 389, 443, 445, 993, 1433,
                                     1521, 3306, 3389, 5060, 5432, 8080, 8443]

    /// Words ending in a space: `vlan_id`, maybe `vlan_prio`, and the `vlan_ethtype` the
    /// IP keys are read under.
    mutating func vlanWords(v6: Bool, _ rng: inout SeededRandom) -> String {
        var words = "vlan_id \(rng.pick([10, 20, 100, 200, 1000, 4000])) "
        if rng.chance(0.2) { words += "vlan_prio \(rng.int(0 ... 7)) " }
        return words + "vlan_ethtype \(v6 ? "ipv6" : "ip") "
    }

    /// Words ending in a space, in the order the grammar needs (ip_proto before ports).
    mutating func ipWords(v6: Bool, _ rng: inout SeededRandom) -> String {
        var words = ""
        // As in ClassBench's sets, few rules name neither end: such a rule hides much of
        // the set below it, and matches most random frames.
        let (source, destination) = rng.weighted([(750, (true, true)), (150, (false, true)), (97, (true, false)),
                                                  (3, (false, false))])
        if source { words += "src_ip \(prefix(v6: v6, &rng)) " }
        if destination { words += "dst_ip \(prefix(v6: v6, &rng)) " }
        let proto: String? = rng.weighted([(6, "tcp"), (3, "udp"), (2, nil)])
        if let proto { words += "ip_proto \(proto) " }
        if rng.chance(0.04) { words += "ip_tos \(rng.pick(["0xb8/0xfc", "0x28/0xfc", "0x10/0x1c"])) " }
        if rng.chance(0.02) { words += "ip_ttl \(rng.pick(["1", "255", "64/0xc0"])) " }
        // tc takes ports with tcp or udp only.
        guard proto != nil else { return words }
        if let ports = sourcePorts(&rng) { words += "src_port \(ports) " }
        if let ports = destinationPorts(&rng) { words += "dst_port \(ports) " }
        if proto == "tcp", rng.chance(0.05) {
            // SYN without ACK (a new connection), ACK (an established one), RST, FIN.
            words += "tcp_flags \(rng.pick(["0x2/0x12", "0x10/0x10", "0x4/0x4", "0x1/0x1"])) "
        }
        return words
    }

    private mutating func prefix(v6: Bool, _ rng: inout SeededRandom) -> String {
        v6 ? ipv6.draw(&rng) : ipv4.draw(&rng)
    }

    /// Mostly any: clients use ephemeral ports.
    private func sourcePorts(_ rng: inout SeededRandom) -> String? {
        switch rng.weighted([(10, 0), (1, 1), (2, 2), (1, 3), (1, 4)]) {
        case 0: nil
        case 1: Self.wellKnown
        case 2: "1024-65535"
        case 3: "\(rng.pick(Self.services))"
        default: randomRange(&rng)
        }
    }

    /// Mostly one service.
    private func destinationPorts(_ rng: inout SeededRandom) -> String? {
        switch rng.weighted([(3, 0), (1, 1), (1, 2), (4, 3), (1, 4), (2, 5)]) {
        case 0: nil
        case 1: Self.wellKnown
        case 2: "1024-65535"
        case 3: "\(rng.pick(Self.services))"
        case 4: "\(rng.int(1 ... 65535))"
        default: randomRange(&rng)
        }
    }

    /// 0-1023: a range must start at 1 in tc (0 is "no port"), the masked form takes 0.
    private static let wellKnown = "0/0xfc00"

    private func randomRange(_ rng: inout SeededRandom) -> String {
        let low = rng.int(1 ... 65000)
        let high = min(65535, low + rng.int(1 ... rng.pick([15, 255, 4095])))
        return "\(low)-\(high)"
    }
}

/// Prefixes that nest: each draw is a prefix drawn before, or a longer one inside it.
private struct PrefixPool<Address: MaskableField & LosslessStringConvertible> {
    private var prefixes: [Masked<Address>]
    /// The lengths operators write (/24, /64, hosts...), drawn more often than others.
    private let favouredLengths: [Int]

    init(bases: [String], favouredLengths: [Int]) {
        prefixes = bases.map { base in
            let parts = base.split(separator: "/")
            return Masked(Address(String(parts[0]))!, prefixLength: Int(parts[1])!)!
        }
        self.favouredLengths = favouredLengths
    }

    /// ADDRESS/LEN, the address without host bits (so equal texts are equal matches).
    mutating func draw(_ rng: inout SeededRandom) -> String {
        let parent = rng.pick(prefixes)
        let parentLength = parent.prefixLength!
        guard parentLength < Address.fieldWidth, rng.chance(0.7) else { return Self.text(parent) }
        let longer = favouredLengths.filter { $0 > parentLength }
        let length = !longer.isEmpty && rng.chance(0.7) ? rng.pick(longer) : rng.int(parentLength + 1 ... Address.fieldWidth)
        let mask = Address.prefixMask(length)
        let bits = Address.FieldBits.random(in: 0 ... .max, using: &rng) & mask.fieldBits & ~parent.mask.fieldBits
        let child = Masked(Address(fieldBits: parent.key.fieldBits | bits), mask: mask)
        prefixes.append(child)
        return Self.text(child)
    }

    private static func text(_ prefix: Masked<Address>) -> String { "\(prefix.key)/\(prefix.prefixLength!)" }
}

import FlowRules
import Packets

/// Frames for a rule set, deterministic from a seed: for a rule, a frame the rule
/// matches (addresses inside its prefixes, ports inside its ranges, its protocol, or tcp
/// or udp when it names none); and frames of random addresses, which likely match nothing.
public struct TraceGenerator {
    /// Chain 0's rules, in classification order.
    public let rules: [FlowRule]
    /// Random frames are IPv6 as often as the rules are.
    private let ipv6Share: Double
    private var rng: SeededRandom

    public init(rules: RuleSet, seed: UInt64) {
        self.rules = rules.rules.filter { $0.chain == 0 }
        let ipv6Rules = self.rules.count { $0.l3EtherType == EtherType.ipv6 }
        ipv6Share = self.rules.isEmpty ? 0 : Double(ipv6Rules) / Double(self.rules.count)
        rng = SeededRandom(seed: seed)
    }

    /// `count` frames: a share `missShare` of random ones, the others each matching a rule
    /// drawn from the set (which an earlier rule may shadow).
    public mutating func frames(count: Int, missShare: Double = 0) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        frames.reserveCapacity(count)
        for _ in 0 ..< count {
            frames.append(rules.isEmpty || rng.chance(missShare) ? randomFrame() : frame(matching: rng.pick(rules)))
        }
        return frames
    }

    /// A frame `rule` matches. It draws the keys the workloads use: the protocol (ip,
    /// ipv6, all, or a VLAN TPID with one tag), vlan_id, vlan_prio, vlan_ethtype (ip or
    /// ipv6), MACs, ip_proto, ip_tos, ip_ttl, addresses, ports, tcp_flags, ICMP type and
    /// code; a rule with other keys (ARP, a second tag, ip_flags, indev) is refused.
    public mutating func frame(matching rule: FlowRule) -> [UInt8] {
        let m = rule.match
        precondition(m.indev == nil && m.ipFlags == nil && m.cvlanID == nil && m.cvlanPriority == nil
            && m.cvlanEtherType == nil && m.vlanEtherType?.isVLANType != true,
            "TraceGenerator does not draw indev, ip_flags or a second VLAN tag")
        let v6: Bool
        switch rule.l3EtherType {
        case EtherType.ipv4: v6 = false
        case EtherType.ipv6: v6 = true
        // No IP key can be named: any IP frame will do.
        case FilterProtocol.all.rawValue, EtherType.vlan, EtherType.qinq: v6 = false
        default: preconditionFailure("TraceGenerator draws IP frames only")
        }
        var frame = FrameBuilder().ethernet(dst: m.dstMAC.map { sample($0) } ?? randomMAC(),
                                            src: m.srcMAC.map { sample($0) } ?? randomMAC())
        if rule.filterProtocol.rawValue.isVLANType {
            frame = frame.vlan(id: m.vlanID ?? UInt16(rng.int(1 ... 4094)), priority: m.vlanPriority ?? 0,
                               tpid: rule.filterProtocol.rawValue)
        }
        let proto = m.ipProto ?? rng.pick([IPProtocolNumber.tcp, IPProtocolNumber.udp])
        let tos = m.ipTOS.map { sample($0) } ?? 0
        let ttl = m.ipTTL.map { sample($0) } ?? 64
        if v6 {
            frame = frame.ipv6(src: ipv6(in: m.srcIP), dst: ipv6(in: m.dstIP), trafficClass: tos, hopLimit: ttl,
                               nextHeader: proto)
        } else {
            frame = frame.ipv4(src: ipv4(in: m.srcIP), dst: ipv4(in: m.dstIP), proto: proto, tos: tos, ttl: ttl)
        }
        let src = port(in: m.srcPort), dst = port(in: m.dstPort)
        switch proto {
        case IPProtocolNumber.tcp:
            frame = frame.tcp(src: src, dst: dst, flags: m.tcpFlags.map { sample($0) & 0x0fff } ?? TCPFlag.syn)
        case IPProtocolNumber.udp:
            frame = frame.udp(src: src, dst: dst)
        case IPProtocolNumber.sctp:
            frame = frame.sctp(src: src, dst: dst)
        case IPProtocolNumber.icmp where !v6:
            frame = frame.icmp(type: m.icmpType.map { sample($0) } ?? 8, code: m.icmpCode.map { sample($0) } ?? 0)
        case IPProtocolNumber.icmpv6 where v6:
            frame = frame.icmpv6(type: m.icmpType.map { sample($0) } ?? 128, code: m.icmpCode.map { sample($0) } ?? 0)
        default:
            frame = frame.payload((0 ..< 8).map { _ in UInt8.random(in: 0 ... .max, using: &rng) })
        }
        return frame.padded().bytes
    }

    /// TCP or UDP between random addresses and ports.
    public mutating func randomFrame() -> [UInt8] {
        var frame = FrameBuilder().ethernet(dst: randomMAC(), src: randomMAC())
        frame = rng.chance(ipv6Share)
            ? frame.ipv6(src: ipv6(in: nil), dst: ipv6(in: nil)) : frame.ipv4(src: ipv4(in: nil), dst: ipv4(in: nil))
        let src = port(in: nil), dst = port(in: nil)
        return (rng.chance(0.5) ? frame.tcp(src: src, dst: dst) : frame.udp(src: src, dst: dst)).padded().bytes
    }

    // MARK: Values

    /// A value the mask selects: the key, random bits elsewhere.
    private mutating func sample<Value: MaskableField>(_ masked: Masked<Value>) -> Value {
        let random = Value.FieldBits.random(in: 0 ... .max, using: &rng)
        return Value(fieldBits: masked.key.fieldBits | random & ~masked.mask.fieldBits & Value.allOnes.fieldBits)
    }

    private mutating func ipv4(in match: IPMatch?) -> IPv4Address {
        if case .v4(let prefix)? = match { return sample(prefix) }
        return IPv4Address(rawValue: .random(in: 0 ... .max, using: &rng))
    }

    private mutating func ipv6(in match: IPMatch?) -> IPv6Address {
        if case .v6(let prefix)? = match { return sample(prefix) }
        return IPv6Address(rawValue: .random(in: 0 ... .max, using: &rng))
    }

    /// Inside the match, or an ephemeral port.
    private mutating func port(in match: PortMatch?) -> UInt16 {
        switch match {
        case .masked(let masked)?: sample(masked)
        case .range(let range)?: .random(in: range.min ... range.max, using: &rng)
        case nil: .random(in: 1024 ... .max, using: &rng)
        }
    }

    /// A unicast address (the group bit clear), as hosts send from.
    private mutating func randomMAC() -> MACAddress {
        MACAddress(rawValue: .random(in: 0 ... .max, using: &rng) & ~0x0100_0000_0000)
    }
}

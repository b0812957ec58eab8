import FlowCompiler
import FlowRules
import Packets

/// Random rule sets built as `FlowRule` values, every key kind and every action XDP runs,
/// within the grammar's constraints (a key only with the protocol and ip_proto it needs).
/// Prios come from a small set and values from a `ValuePool`, so that rules share prios
/// and masks, overlap, and are hit by frames.
struct RuleGenerator {
    let pool: ValuePool
    /// 1-4 prios; the rules of a prio share its protocol (tc's rule).
    let prios: [UInt16]

    init(pool: ValuePool, _ rng: inout SeededRandom) {
        self.pool = pool
        let candidates: [UInt16] = [1, 2, 3, 5, 10, 100, 0xc000, 0xffff]
        prios = Array(candidates.shuffled(using: &rng).prefix(rng.int(1 ... 4))).sorted()
    }

    /// Up to `count` rules: a drawn rule that the set refuses (a prio's protocol, a
    /// handle or a match taken) or that would take the plan past its subtable budget
    /// is skipped. The budget is `Plan.maxSubtables` in some cases, to try the edge.
    func ruleSet(count: Int, _ rng: inout SeededRandom) -> RuleSet {
        let budget = rng.chance(0.3) ? Plan.maxSubtables : Plan.maxSubtables - 8
        var set = RuleSet()
        var shapes = Set<SubtableShape>()
        var protocols: [UInt16: FilterProtocol] = [:]
        for _ in 0 ..< count {
            let prio = rng.pick(prios)
            let held = protocols[prio].flatMap { rng.chance(0.9) ? $0 : nil }
            var rule = rule(prio: prio, filterProtocol: held ?? randomProtocol(&rng), &rng)
            if rng.chance(0.2) { rule.handle = UInt32(rng.int(1 ... 300)) }
            guard rule.xdpLimitations.isEmpty else { continue }
            var trial = set
            guard let stored = try? trial.add(rule), let alone = try? Plan(RuleSet([stored]), device: testDevice)
            else { continue }
            let grown = shapes.union(alone.subtables.map { SubtableShape(prio: $0.prio, mask: $0.mask) })
            guard grown.count <= budget else { continue }
            set = trial
            shapes = grown
            protocols[prio] = stored.filterProtocol
        }
        return set
    }

    private struct SubtableShape: Hashable {
        var prio: UInt16
        var mask: SubtableMask
    }

    private func randomProtocol(_ rng: inout SeededRandom) -> FilterProtocol {
        rng.weighted([(3, .all), (5, .ip), (4, .ipv6), (3, .vlan), (2, .qinq), (2, .arp), (1, .rarp)])
    }

    // MARK: Match

    func rule(prio: UInt16, filterProtocol: FilterProtocol, _ rng: inout SeededRandom) -> FlowRule {
        var rule = FlowRule(prio: prio, filterProtocol: filterProtocol)
        var m = FlowMatch()
        m.indev = rng.maybe(0.05) { $0.pick([testDevice, "xft1"]) }
        m.dstMAC = rng.maybe(0.3) { pool.masked(pool.macs, pool.macMasks, &$0) }
        m.srcMAC = rng.maybe(0.2) { pool.masked(pool.macs, pool.macMasks, &$0) }
        if filterProtocol.rawValue.isVLAN {
            m.vlanID = rng.maybe(0.4) { $0.pick(pool.vlanIDs) }
            m.vlanPriority = rng.maybe(0.25) { UInt8($0.int(0 ... 7)) }
            m.vlanEtherType = rng.maybe(0.6) { etherType(&$0, tagWeight: 4) }
            if m.vlanEtherType?.isVLAN == true {
                m.cvlanID = rng.maybe(0.4) { $0.pick(pool.vlanIDs) }
                m.cvlanPriority = rng.maybe(0.25) { UInt8($0.int(0 ... 7)) }
                // A TPID here asks for a third tag: frames with one are unclassifiable.
                m.cvlanEtherType = rng.maybe(0.6) { etherType(&$0, tagWeight: 1) }
            }
        }
        rule.match = m
        let l3 = rule.l3EtherType
        if l3 == EtherType.ipv4 || l3 == EtherType.ipv6 {
            ipKeys(&m, v4: l3 == EtherType.ipv4, &rng)
        } else if l3 == EtherType.arp || l3 == EtherType.rarp {
            m.arpOp = rng.maybe(0.4) { Masked(UInt8($0.int(0 ... 2)), mask: $0.pick([0xff, 0x01, 0x02, 0])) }
            m.arpSenderIP = rng.maybe(0.3) { pool.masked(pool.ipv4, pool.ipv4Masks, &$0) }
            m.arpTargetIP = rng.maybe(0.4) { pool.masked(pool.ipv4, pool.ipv4Masks, &$0) }
            m.arpSenderMAC = rng.maybe(0.2) { pool.masked(pool.macs, pool.macMasks, &$0) }
            m.arpTargetMAC = rng.maybe(0.2) { pool.masked(pool.macs, pool.macMasks, &$0) }
        }
        rule.match = m
        rule.actions = (0 ..< rng.weighted([(1, 0), (5, 1), (3, 2), (2, 3), (1, 4)])).map { _ in action(&rng) }
        return rule
    }

    /// An EtherType for `vlan_ethtype` / `cvlan_ethtype`; `tagWeight` is the weight of
    /// each TPID against 20 for the others.
    private func etherType(_ rng: inout SeededRandom, tagWeight: Int) -> UInt16 {
        let other = rng.pick(pool.otherEtherTypes)
        return rng.weighted([(8, EtherType.ipv4), (6, EtherType.ipv6), (2, EtherType.arp), (2, EtherType.rarp),
                             (2, other), (tagWeight, EtherType.vlan), (tagWeight, EtherType.qinq)])
    }

    private func ipKeys(_ m: inout FlowMatch, v4: Bool, _ rng: inout SeededRandom) {
        let icmp = v4 ? IPProtocolNumber.icmp : IPProtocolNumber.icmpv6
        // Numbers tc takes as they are: AH, GRE, no-next-header, hop-by-hop, the other ICMP.
        let opaque: [UInt8] = [51, 47, 59, 0, v4 ? IPProtocolNumber.icmpv6 : IPProtocolNumber.icmp]
        m.ipProto = rng.maybe(0.6) {
            $0.weighted([(3, IPProtocolNumber.tcp), (3, IPProtocolNumber.udp), (1, IPProtocolNumber.sctp),
                         (2, icmp), (1, $0.pick(opaque))])
        }
        m.ipTOS = rng.maybe(0.15) { pool.masked(pool.bytes, pool.byteMasks, &$0) }
        m.ipTTL = rng.maybe(0.15) { pool.masked(pool.bytes, pool.byteMasks, &$0) }
        let address: (inout SeededRandom) -> IPMatch = { rng in
            v4 ? .v4(pool.masked(pool.ipv4, pool.ipv4Masks, &rng)) : .v6(pool.masked(pool.ipv6, pool.ipv6Masks, &rng))
        }
        m.dstIP = rng.maybe(0.4, address)
        m.srcIP = rng.maybe(0.25, address)
        m.ipFlags = rng.maybe(0.15) {
            $0.pick([IPFlagsMatch(isFragment: true), IPFlagsMatch(isFragment: false),
                     IPFlagsMatch(isFirstFragment: true), IPFlagsMatch(isFirstFragment: false),
                     IPFlagsMatch(isFragment: true, isFirstFragment: true),
                     IPFlagsMatch(isFragment: true, isFirstFragment: false)])
        }
        switch m.ipProto {
        case IPProtocolNumber.tcp?, IPProtocolNumber.udp?, IPProtocolNumber.sctp?:
            m.dstPort = rng.maybe(0.5, port)
            m.srcPort = rng.maybe(0.3, port)
            if m.ipProto == IPProtocolNumber.tcp {
                m.tcpFlags = rng.maybe(0.3) { pool.masked(pool.tcpFlags, pool.tcpFlagMasks, &$0) }
            }
        case icmp?:
            m.icmpType = rng.maybe(0.5) { pool.masked(pool.bytes, pool.byteMasks, &$0) }
            m.icmpCode = rng.maybe(0.3) { pool.masked(pool.bytes, pool.byteMasks, &$0) }
        default:
            break
        }
    }

    private func port(_ rng: inout SeededRandom) -> PortMatch {
        switch rng.weighted([(3, 0), (2, 1), (1, 2)]) {
        case 0:
            return .masked(Masked(rng.pick(pool.ports)))
        case 1:
            return .masked(pool.masked(pool.ports, pool.portMasks, &rng))
        default:
            // Around a pool port, so that frames reach both edges.
            let low = max(1, Int(rng.pick(pool.ports)) - rng.pick([0, 1, 5]))
            let high = min(65535, low + rng.pick([1, 2, 7, 100, 1000, rng.int(1 ... 65535)]))
            return PortRange(min: UInt16(low), max: UInt16(high)).map(PortMatch.range)
                ?? .masked(Masked(UInt16(low)))
        }
    }

    // MARK: Actions

    private func action(_ rng: inout SeededRandom) -> FlowAction {
        let control: ActionControl = rng.weighted([(4, .pipe), (2, .continue), (1, .pass), (1, .drop)])
        switch rng.weighted([(4, 0), (2, 1), (3, 2), (1, 3), (1, 4), (2, 5), (2, 6)]) {
        case 0:
            // A bare pipe becomes an xsk with the drawn control, so that the draws (and the
            // rule sets of every seed) stay as they were. No socket is bound in a test run:
            // the control decides, as in the reference.
            let gact: ActionControl = rng.weighted([(2, .drop), (2, .pass), (2, .continue), (1, .pipe)])
            return gact == .pipe ? FlowAction(.xsk, control: control) : .gact(gact)
        case 1:
            return FlowAction(.mirred(Mirred(direction: .egress, mode: .redirect, device: rng.pick(pool.devices))))
        case 2:
            let tpid = rng.pick([EtherType.vlan, EtherType.qinq])
            // tc and the kernel take 0-4094 for a tag an action writes.
            let id = min(rng.pick(pool.vlanIDs), 4094)
            let vlan: VLANAction = switch rng.int(0 ... 2) {
            case 0: .pop
            case 1: .push(id: id, priority: UInt8(rng.int(0 ... 7)), tpid: tpid)
            default: .modify(id: id, priority: rng.maybe(0.5) { UInt8($0.int(0 ... 7)) }, tpid: tpid)
            }
            return FlowAction(.vlan(vlan), control: control)
        case 3:
            let edits = (0 ..< rng.int(1 ... 2)).map { _ in
                EthernetAddressEdit(rng.pick([.dst, .src]), rng.pick(pool.macs))
            }
            return FlowAction(.pedit(edits), control: control)
        case 4:
            let dst = rng.pick(pool.macs), src = rng.pick(pool.macs)
            let edit = rng.pick([SKBMod(dstMAC: dst), SKBMod(srcMAC: src), SKBMod(dstMAC: dst, srcMAC: src)])
            return FlowAction(.skbmod(edit), control: control)
        case 5:
            return FlowAction(.skbeditMark(pool.masked(pool.marks, pool.markMasks, &rng)), control: control)
        default:
            // 1 byte/s: over a test run (far less than a second) the kernel's bucket refills
            // by less than a byte, so it decides every frame as the reference does at now 0.
            let exceed: ActionControl = rng.weighted([(2, .drop), (1, .pass), (2, .pipe), (2, .continue)])
            let police = Police(bytesPerSecond: 1, burstBytes: rng.pick([60, 100, 150, 300, 1500]), exceed: exceed)
            return FlowAction(.police(police), control: control)
        }
    }
}

extension UInt16 {
    var isVLAN: Bool { self == EtherType.vlan || self == EtherType.qinq }
}

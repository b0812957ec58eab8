import FlowRules
import Packets

/// Builds a valid rule (one the grammar accepts) from a list of random numbers, so that
/// property tests can draw rules with swift-property-based's integer generators.
struct RandomRule {
    private var numbers: [UInt64]
    private var next = 0

    static func make(from numbers: [UInt64]) -> FlowRule {
        var source = RandomRule(numbers: numbers)
        return source.rule()
    }

    private init(numbers: [UInt64]) { self.numbers = numbers.isEmpty ? [0] : numbers }

    private mutating func draw() -> UInt64 {
        defer { next += 1 }
        // Past the end, reuse the numbers mixed with the position.
        let base = numbers[next % numbers.count]
        return next < numbers.count ? base : base &* 0x9e37_79b9_7f4a_7c15 &+ UInt64(next)
    }

    private mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(draw() % UInt64(range.count))
    }

    private mutating func chance() -> Bool { draw() % 2 == 0 }

    private mutating func pick<T>(_ choices: [T]) -> T { choices[int(0 ... choices.count - 1)] }

    private mutating func bits<T: FixedWidthInteger & UnsignedInteger>(_: T.Type) -> T { T(truncatingIfNeeded: draw()) }

    private mutating func maybe<T>(_ make: (inout RandomRule) -> T) -> T? { chance() ? make(&self) : nil }

    private mutating func masked<T: MaskableField & FixedWidthInteger & UnsignedInteger>(_: T.Type) -> Masked<T> {
        Masked(bits(T.self), mask: chance() ? .allOnes : bits(T.self))
    }

    private mutating func mac() -> Masked<MACAddress> {
        let address = MACAddress(rawValue: draw())
        switch int(0 ... 2) {
        case 0: return Masked(address)
        case 1: return Masked(address, prefixLength: int(0 ... 48))!
        default: return Masked(address, mask: MACAddress(rawValue: draw()))
        }
    }

    private mutating func v4Prefix() -> Masked<IPv4Address> {
        Masked(IPv4Address(rawValue: bits(UInt32.self)), prefixLength: int(0 ... 32))!
    }

    private mutating func v6Prefix() -> Masked<IPv6Address> {
        let raw = UInt128(draw()) << 64 | UInt128(draw())
        return Masked(IPv6Address(rawValue: raw >> (16 * int(0 ... 7))), prefixLength: int(0 ... 128))!
    }

    private mutating func port() -> PortMatch {
        if chance() {
            let min = UInt16(int(1 ... 65534))
            return .range(PortRange(min: min, max: UInt16(int(Int(min) + 1 ... 65535)))!)
        }
        return .masked(chance() ? Masked(UInt16(int(1 ... 65535))) : masked(UInt16.self))
    }

    private mutating func device() -> String { "eth\(int(0 ... 99))" }

    private mutating func etherType(allowingVLAN: Bool) -> UInt16 {
        let named: [UInt16] = [EtherType.ipv4, EtherType.ipv6, EtherType.arp, EtherType.rarp]
            + (allowingVLAN ? [EtherType.vlan, EtherType.qinq] : [])
        return chance() ? pick(named) : bits(UInt16.self)
    }

    private mutating func rule() -> FlowRule {
        var rule = FlowRule(
            chain: chance() ? 0 : UInt32(int(0 ... 0x0fff_ffff)),
            prio: UInt16(int(0 ... 65535)),
            handle: chance() ? UInt32(int(0 ... 10)) : bits(UInt32.self),
            filterProtocol: FilterProtocol(rawValue: chance()
                ? pick([0x0003, EtherType.ipv4, EtherType.ipv6, EtherType.arp, EtherType.vlan, EtherType.qinq])
                : etherType(allowingVLAN: true)))
        var m = FlowMatch()
        m.indev = maybe { $0.device() }
        m.dstMAC = maybe { $0.mac() }
        m.srcMAC = maybe { $0.mac() }
        if rule.filterProtocol.rawValue == EtherType.vlan || rule.filterProtocol.rawValue == EtherType.qinq {
            m.vlanID = maybe { UInt16($0.int(0 ... 4095)) }
            m.vlanPriority = maybe { UInt8($0.int(0 ... 7)) }
            m.vlanEtherType = maybe { $0.etherType(allowingVLAN: true) }
            if m.vlanEtherType == EtherType.vlan || m.vlanEtherType == EtherType.qinq {
                m.cvlanID = maybe { UInt16($0.int(0 ... 4095)) }
                m.cvlanPriority = maybe { UInt8($0.int(0 ... 7)) }
                m.cvlanEtherType = maybe { $0.etherType(allowingVLAN: false) }
            }
        }
        rule.match = m
        let l3 = rule.l3EtherType
        if l3 == EtherType.ipv4 || l3 == EtherType.ipv6 {
            let v4 = l3 == EtherType.ipv4
            m.ipProto = maybe { $0.pick([6, 17, 132, v4 ? 1 : 58, $0.bits(UInt8.self)]) }
            m.ipTOS = maybe { $0.masked(UInt8.self) }
            m.ipTTL = maybe { $0.masked(UInt8.self) }
            m.dstIP = maybe { v4 ? .v4($0.v4Prefix()) : .v6($0.v6Prefix()) }
            m.srcIP = maybe { v4 ? .v4($0.v4Prefix()) : .v6($0.v6Prefix()) }
            m.ipFlags = maybe { $0.pick([
                IPFlagsMatch(isFragment: $0.chance()), IPFlagsMatch(isFirstFragment: $0.chance()),
                IPFlagsMatch(isFragment: $0.chance(), isFirstFragment: $0.chance()),
            ]) }
            if [6, 17, 132].contains(m.ipProto) {
                m.dstPort = maybe { $0.port() }
                m.srcPort = maybe { $0.port() }
            }
            if m.ipProto == 6 {
                m.tcpFlags = maybe { Masked($0.bits(UInt16.self) & 0xfff, mask: $0.chance() ? 0xfff : $0.bits(UInt16.self) & 0xfff) }
            }
            if m.ipProto == (v4 ? 1 : 58) {
                m.icmpType = maybe { $0.masked(UInt8.self) }
                m.icmpCode = maybe { $0.masked(UInt8.self) }
            }
        }
        if l3 == EtherType.arp || l3 == EtherType.rarp {
            m.arpOp = maybe { Masked(UInt8($0.int(0 ... 2)), mask: $0.chance() ? 0xff : $0.bits(UInt8.self)) }
            m.arpSenderIP = maybe { $0.v4Prefix() }
            m.arpTargetIP = maybe { $0.v4Prefix() }
            m.arpSenderMAC = maybe { $0.mac() }
            m.arpTargetMAC = maybe { $0.mac() }
        }
        rule.match = m
        rule.skipHardware = chance()
        rule.classID = maybe { $0.bits(UInt32.self) }
        rule.actions = (0 ..< int(0 ... 4)).map { _ in action() }
        return rule
    }

    private mutating func simpleControl() -> ActionControl {
        pick([.continue, .drop, .pass, .pipe, .reclassify, .trap])
    }

    private mutating func control() -> ActionControl {
        switch int(0 ... 7) {
        case 0: .gotoChain(UInt32(int(0 ... 0x0fff_ffff)))
        case 1: .jump(UInt32(int(1 ... 0x0fff_ffff)))
        default: simpleControl()
        }
    }

    private mutating func action() -> FlowAction {
        switch int(0 ... 8) {
        case 0:
            return .gact(control())
        case 1:
            let mirred = Mirred(direction: chance() ? .egress : .ingress, mode: chance() ? .redirect : .mirror,
                                device: device())
            return FlowAction(.mirred(mirred), control: mirred.mode == .redirect ? .stolen : control())
        case 2:
            let tpid = chance() ? EtherType.vlan : EtherType.qinq
            let vlan: VLANAction = switch int(0 ... 2) {
            case 0: .pop
            case 1: .push(id: UInt16(int(0 ... 4094)), priority: UInt8(int(0 ... 7)), tpid: tpid)
            default: .modify(id: UInt16(int(0 ... 4094)), priority: maybe { UInt8($0.int(0 ... 7)) }, tpid: tpid)
            }
            return FlowAction(.vlan(vlan), control: control())
        case 3:
            let edits = (0 ... int(0 ... 2)).map { _ in
                EthernetAddressEdit(chance() ? .dst : .src, MACAddress(rawValue: draw()))
            }
            return FlowAction(.pedit(edits), control: control())
        case 4:
            let dst = MACAddress(rawValue: draw())
            let src = MACAddress(rawValue: draw())
            let edit = pick([SKBMod(dstMAC: dst), SKBMod(srcMAC: src), SKBMod(dstMAC: dst, srcMAC: src)])
            return FlowAction(.skbmod(edit), control: control())
        case 5:
            return FlowAction(.skbeditMark(masked(UInt32.self)), control: control())
        case 6:
            return FlowAction(.xsk, control: control())
        default:
            let police = Police(bytesPerSecond: draw() % (1 << 40) + 1, burstBytes: bits(UInt32.self) | 1,
                                exceed: simpleControl())
            return FlowAction(.police(police), control: simpleControl())
        }
    }
}

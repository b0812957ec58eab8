import FlowRules
import Packets

/// The rule sets the benchmarks compile, written as `tc filter` lines (so they read as a
/// user would write them), and the frames sent through them.
enum RuleLines {
    static let device = "xb0"

    /// The smallest useful offload: one 5-byte key (protocol, ip_proto, dst_port).
    static let dnsDrop = ["filter add dev \(device) protocol ip flower ip_proto udp dst_port 53 action drop"]

    /// `count` host routes (dst_ip /32) in one prio: one subtable.
    static func hostRoutes(_ count: Int) -> [String] {
        (0 ..< count).map { index in
            "filter add dev \(device) prio 1 protocol ip flower dst_ip \(hostRoute(index)) action drop"
        }
    }

    static func hostRoute(_ index: Int) -> IPv4Address {
        IPv4Address(rawValue: 0x0a00_0001 + UInt32(index))  // 10.0.0.1, ...
    }

    /// `count` dst_ip prefixes in `groups` prios, one prefix length per prio (/32 in prio 1,
    /// /31 in prio 2, ...): `groups` subtables, looked up in that order. Each group owns
    /// a disjoint /5 region below 128.0.0.0, so a frame matches in at most one group and
    /// `Frames.nowhere` in none.
    static func prefixes(_ count: Int, groups: Int) -> [String] {
        precondition(groups <= 16, "one /5 region per group, prefixes /17 to /32")
        return (0 ..< count).map { index in
            let group = index % groups, entry = index / groups
            return "filter add dev \(device) prio \(group + 1) protocol ip flower dst_ip "
                + "\(prefix(group: group, entry: entry))/\(prefixLength(group: group)) action drop"
        }
    }

    static func prefixLength(group: Int) -> Int { 32 - group }

    /// The network of a group's entry, in the group's region (0.0.0.0/5 + group).
    static func prefix(group: Int, entry: Int) -> IPv4Address {
        IPv4Address(rawValue: UInt32(group) << 27 | UInt32(entry) << (32 - prefixLength(group: group)))
    }

    /// `count` exact 5-tuples (src/dst ip, udp, src/dst port) in one prio: one subtable.
    static func fiveTuples(_ count: Int) -> [String] {
        (0 ..< count).map { index in
            let flow = FiveTuple(index)
            return "filter add dev \(device) prio 1 protocol ip flower src_ip \(flow.src) dst_ip \(flow.dst) "
                + "ip_proto udp src_port \(flow.srcPort) dst_port \(flow.dstPort) action drop"
        }
    }

    /// IPv4 and IPv6, tagged and not, in four prios of `count / 4` rules each: /24 HTTPS
    /// servers, IPv6 /48s, a VLAN's IPv4 sources, a VLAN's IPv6 UDP ports.
    static func mixed(_ count: Int) -> [String] {
        (0 ..< count).map { index in
            let entry = index / 4
            return switch index % 4 {
            case 0: "filter add dev \(device) prio 1 protocol ip flower dst_ip 10.\(entry >> 8).\(entry & 0xff).0/24 "
                + "ip_proto tcp dst_port 443 action drop"
            case 1: "filter add dev \(device) prio 2 protocol ipv6 flower dst_ip 2001:db8:\(String(entry, radix: 16))::/48 "
                + "action drop"
            case 2: "filter add dev \(device) prio 3 protocol 802.1Q flower vlan_id \(mixedVLAN(entry)) vlan_ethtype ip "
                + "src_ip 172.16.\(entry >> 8).\(entry & 0xff) action drop"
            default: "filter add dev \(device) prio 4 protocol 802.1Q flower vlan_id \(mixedVLAN(entry)) "
                + "vlan_ethtype ipv6 ip_proto udp dst_port \(mixedPort(entry)) action drop"
            }
        }
    }

    static func mixedVLAN(_ entry: Int) -> UInt16 { UInt16(100 + entry % 8) }
    static func mixedPort(_ entry: Int) -> UInt16 { UInt16(5000 + entry) }

    /// Parses `lines` into rules (prio and handle as written, or left for RuleSet to allocate).
    static func rules(_ lines: [String]) throws -> [FlowRule] {
        try lines.map { line in
            let command = try FilterCommand.parse(line.split(separator: " ").map(String.init))
            guard case .add(let rule) = command.operation else { throw BenchError("not an add: \(line)") }
            return rule
        }
    }
}

/// The index-th flow of `RuleLines.fiveTuples`.
struct FiveTuple {
    var src, dst: IPv4Address
    var srcPort, dstPort: UInt16

    init(_ index: Int) {
        src = IPv4Address(rawValue: 0x0a01_0000 + UInt32(index))  // 10.1.0.0 + index
        dst = IPv4Address(rawValue: 0x0a02_0000 + UInt32(index))  // 10.2.0.0 + index
        srcPort = UInt16(1024 + index % 60000)
        dstPort = UInt16(1 + index % 1000)
    }
}

/// 64-byte (on the wire) UDP/IPv4 frames.
enum Frames {
    static func udp(src: IPv4Address = IPv4Address(rawValue: 0xc000_0201), dst: IPv4Address,
                    srcPort: UInt16 = 4000, dstPort: UInt16) -> [UInt8] {
        FrameBuilder()
            .ethernet(dst: MACAddress(rawValue: 0x0200_0000_0002), src: MACAddress(rawValue: 0x0200_0000_0001))
            .ipv4(src: src, dst: dst)
            .udp(src: srcPort, dst: dstPort)
            .padded()
            .bytes
    }

    static func udp(_ flow: FiveTuple) -> [UInt8] {
        udp(src: flow.src, dst: flow.dst, srcPort: flow.srcPort, dstPort: flow.dstPort)
    }

    /// A tagged IPv6 UDP frame.
    static func taggedUDP6(vlan: UInt16, dstPort: UInt16) -> [UInt8] {
        FrameBuilder()
            .ethernet(dst: MACAddress(rawValue: 0x0200_0000_0002), src: MACAddress(rawValue: 0x0200_0000_0001))
            .vlan(id: vlan)
            .ipv6(src: IPv6Address(rawValue: 0x2001_0db8_ffff_0000_0000_0000_0000_0001),
                  dst: IPv6Address(rawValue: 0x2001_0db8_fffe_0000_0000_0000_0000_0001))
            .udp(src: 4000, dst: dstPort)
            .padded()
            .bytes
    }

    /// Documentation address 192.0.2.2, in no benchmark's rules.
    static let nowhere = IPv4Address(rawValue: 0xc000_0202)
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

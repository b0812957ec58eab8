/// A key the compiled program extracts from a frame into its key record: the record is
/// on the stack, every field in network byte order at a fixed offset, so that a
/// subtable's key is a copy of some of its bytes under a mask.
public enum KeyField: Int, CaseIterable, Comparable, Hashable, Sendable, Codable {
    case outerType, etherType, dstMAC, srcMAC
    case vlanTCI, vlanTPID, cvlanTCI, cvlanTPID
    case ipProto, tos, ttl, ipFlags
    case srcPort, dstPort, tcpFlags, icmpType, icmpCode
    case srcIPv4, dstIPv4, srcIPv6, dstIPv6
    case arpOp, arpSenderIP, arpTargetIP, arpSenderMAC, arpTargetMAC

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    /// Offset in the key record. Fields are placed at offsets aligned to their width
    /// (addresses to 4), so the program moves them with as few loads as possible.
    public var offset: Int { Self.layoutByRawValue[rawValue].offset }
    public var width: Int { Self.layoutByRawValue[rawValue].width }
    /// The header whose presence the field needs.
    public var presence: Presence { Self.layoutByRawValue[rawValue].presence }

    /// The name `compile` prints (tc's key where there is one).
    public var name: String {
        switch self {
        case .outerType: "protocol"
        case .etherType: "eth_type"
        case .dstMAC: "dst_mac"
        case .srcMAC: "src_mac"
        case .vlanTCI: "vlan_tci"
        case .vlanTPID: "vlan_tpid"
        case .cvlanTCI: "cvlan_tci"
        case .cvlanTPID: "cvlan_tpid"
        case .ipProto: "ip_proto"
        case .tos: "ip_tos"
        case .ttl: "ip_ttl"
        case .ipFlags: "ip_flags"
        case .srcPort: "src_port"
        case .dstPort: "dst_port"
        case .tcpFlags: "tcp_flags"
        case .icmpType: "icmp_type"
        case .icmpCode: "icmp_code"
        case .srcIPv4: "src_ip"
        case .dstIPv4: "dst_ip"
        case .srcIPv6: "src_ip6"
        case .dstIPv6: "dst_ip6"
        case .arpOp: "arp_op"
        case .arpSenderIP: "arp_sip"
        case .arpTargetIP: "arp_tip"
        case .arpSenderMAC: "arp_sha"
        case .arpTargetMAC: "arp_tha"
        }
    }

    private static let layout: [KeyField: (offset: Int, width: Int, presence: Presence)] = [
        .outerType: (4, 2, .ethernet), .etherType: (6, 2, .ethernet),
        .dstMAC: (8, 6, .ethernet), .srcMAC: (14, 6, .ethernet),
        .vlanTCI: (20, 2, .vlan), .vlanTPID: (22, 2, .vlan),
        .cvlanTCI: (24, 2, .cvlan), .cvlanTPID: (26, 2, .cvlan),
        .ipProto: (28, 1, .ip), .tos: (29, 1, .ip), .ttl: (30, 1, .ip), .ipFlags: (31, 1, .ip),
        .srcPort: (32, 2, .ports), .dstPort: (34, 2, .ports), .tcpFlags: (36, 2, .tcp),
        .icmpType: (38, 1, .icmp), .icmpCode: (39, 1, .icmp),
        .srcIPv4: (40, 4, .ipv4), .dstIPv4: (44, 4, .ipv4),
        .srcIPv6: (48, 16, .ipv6), .dstIPv6: (64, 16, .ipv6),
        .arpOp: (80, 1, .arp), .arpSenderIP: (84, 4, .arp), .arpTargetIP: (88, 4, .arp),
        .arpSenderMAC: (92, 6, .arp), .arpTargetMAC: (98, 6, .arp),
    ]

    /// `layout` in case order: planning a million rules reads it millions of times.
    private static let layoutByRawValue = allCases.map { layout[$0]! }

    /// The key record: a 4-byte presence word, then the fields; 8-byte aligned.
    public static let recordSize = 104
    public static let presenceOffset = 0
}

/// Which headers the program read completely: a rule's subtable is looked up only when
/// every header its fields come from is present (a rule never matches a missing key).
public struct Presence: OptionSet, Hashable, Sendable, Codable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let ethernet = Presence(rawValue: 1 << 0)
    public static let vlan = Presence(rawValue: 1 << 1)
    public static let cvlan = Presence(rawValue: 1 << 2)
    public static let arp = Presence(rawValue: 1 << 3)
    /// IPv4 or IPv6 fixed header: protocol, tos, ttl, flags.
    public static let ip = Presence(rawValue: 1 << 4)
    public static let ipv4 = Presence(rawValue: 1 << 5)
    public static let ipv6 = Presence(rawValue: 1 << 6)
    /// TCP, UDP or SCTP.
    public static let ports = Presence(rawValue: 1 << 7)
    public static let tcp = Presence(rawValue: 1 << 8)
    public static let icmp = Presence(rawValue: 1 << 9)
}

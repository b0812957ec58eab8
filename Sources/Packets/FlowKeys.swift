/// What a frame says about itself, as far as a flow rule can ask: the keys that
/// tc flower's flow dissector extracts, in host byte order.
///
/// A key is `nil` when the frame does not carry it: a header that is absent, or
/// truncated before the field ends. A rule that matches on a `nil` key does not
/// match. `unclassifiable` is set when the dissector stopped for a reason a rule
/// cannot see through (for example more IPv6 extension headers than it walks);
/// such a frame is passed to the kernel and counted, whatever the rules say.
public struct FlowKeys: Hashable, Sendable {
    /// The most VLAN tags read (outer, then inner "cvlan"), as tc flower.
    public static let maxVLANDepth = 2

    public var dstMAC: MACAddress?
    public var srcMAC: MACAddress?
    /// Outermost first; at most `maxVLANDepth` tags.
    public var vlans: [VLANTag] = []
    /// The EtherType after the VLAN tags that were read (tc's `n_proto`).
    public var etherType: UInt16?

    public var arp: ARPKeys?

    /// IPv4 protocol, or the IPv6 next header after the walked extension headers.
    public var ipProto: UInt8?
    public var srcIP: IPAddress?
    public var dstIP: IPAddress?
    /// IPv4 TOS byte, or the IPv6 traffic class.
    public var tos: UInt8?
    /// IPv4 TTL, or the IPv6 hop limit.
    public var ttl: UInt8?
    public var ipFlags: IPFlags?

    /// TCP, UDP or SCTP ports; only in a first (or unfragmented) fragment.
    public var srcPort: UInt16?
    public var dstPort: UInt16?
    /// The low 12 bits of the TCP header's offset/flags word.
    public var tcpFlags: UInt16?
    /// ICMP (with IPv4) or ICMPv6 (with IPv6) type and code.
    public var icmpType: UInt8?
    public var icmpCode: UInt8?

    public var unclassifiable: Unclassifiable?

    public init() {}
}

public struct VLANTag: Hashable, Sendable {
    /// 0x8100 (802.1Q) or 0x88a8 (802.1ad).
    public var tpid: UInt16
    /// Priority code point, 0-7.
    public var priority: UInt8
    /// VLAN identifier, 0-4095.
    public var id: UInt16

    public init(tpid: UInt16, priority: UInt8, id: UInt16) {
        self.tpid = tpid
        self.priority = priority
        self.id = id
    }
}

public struct ARPKeys: Hashable, Sendable {
    public var op: UInt16
    public var senderMAC: MACAddress
    public var senderIP: IPv4Address
    public var targetMAC: MACAddress
    public var targetIP: IPv4Address

    public init(op: UInt16, senderMAC: MACAddress, senderIP: IPv4Address,
                targetMAC: MACAddress, targetIP: IPv4Address) {
        self.op = op
        self.senderMAC = senderMAC
        self.senderIP = senderIP
        self.targetMAC = targetMAC
        self.targetIP = targetIP
    }
}

/// tc flower's `ip_flags`: `frag` and `firstfrag`.
public struct IPFlags: Hashable, Sendable {
    public var isFragment: Bool
    public var isFirstFragment: Bool

    public init(isFragment: Bool, isFirstFragment: Bool) {
        self.isFragment = isFragment
        self.isFirstFragment = isFirstFragment
    }
}

/// Why the dissector could not finish with certainty.
public enum Unclassifiable: String, Hashable, Sendable, Codable {
    /// More VLAN tags than `FlowKeys.maxVLANDepth` before the payload.
    case vlanTooDeep = "vlan_too_deep"
    /// More IPv6 extension headers than the dissector walks.
    case ipv6ExtensionsTooDeep = "ipv6_extensions_too_deep"
    /// A header whose own length field is impossible (IPv4 IHL < 5, TCP offset < 5).
    case malformedHeader = "malformed_header"
}

public struct MACAddress: RawRepresentable, Hashable, Comparable, Sendable, Codable {
    /// The 48-bit address in the low bits, first octet most significant.
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue & 0xffff_ffff_ffff }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

public struct IPv4Address: RawRepresentable, Hashable, Comparable, Sendable, Codable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

public struct IPv6Address: RawRepresentable, Hashable, Comparable, Sendable, Codable {
    public var rawValue: UInt128
    public init(rawValue: UInt128) { self.rawValue = rawValue }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

public enum IPAddress: Hashable, Sendable {
    case v4(IPv4Address)
    case v6(IPv6Address)
}

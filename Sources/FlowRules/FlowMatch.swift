import Packets

/// tc's `protocol`: the EtherType a rule applies to (the outermost one: a VLAN TPID for
/// tagged frames), or `all`.
public struct FilterProtocol: RawRepresentable, Hashable, Sendable, Codable {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// ETH_P_ALL: every frame; the default of `filter add`.
    public static let all = FilterProtocol(rawValue: 0x0003)
    public static let ip = FilterProtocol(rawValue: EtherType.ipv4)
    public static let ipv6 = FilterProtocol(rawValue: EtherType.ipv6)
    public static let arp = FilterProtocol(rawValue: EtherType.arp)
    public static let rarp = FilterProtocol(rawValue: EtherType.rarp)
    public static let vlan = FilterProtocol(rawValue: EtherType.vlan)
    public static let qinq = FilterProtocol(rawValue: EtherType.qinq)
}

extension UInt16 {
    /// 802.1Q or 802.1ad: tc's `eth_type_vlan()`.
    public var isVLANType: Bool { self == EtherType.vlan || self == EtherType.qinq }
    var isIPType: Bool { self == EtherType.ipv4 || self == EtherType.ipv6 }
    var isARPType: Bool { self == EtherType.arp || self == EtherType.rarp }
}

/// An IPv4 or IPv6 address with a prefix mask (tc's `dst_ip`/`src_ip`).
public enum IPMatch: Hashable, Sendable, Codable {
    case v4(Masked<IPv4Address>)
    case v6(Masked<IPv6Address>)
}

/// tc's `dst_port`/`src_port`: an exact or masked value, or an inclusive range.
public enum PortMatch: Hashable, Sendable, Codable {
    case masked(Masked<UInt16>)
    case range(PortRange)
}

/// `MIN-MAX`, both inclusive. tc requires 1 <= MIN < MAX.
public struct PortRange: Hashable, Sendable, Codable {
    public let min: UInt16
    public let max: UInt16

    public init?(min: UInt16, max: UInt16) {
        guard min >= 1, min < max else { return nil }
        self.min = min
        self.max = max
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let min = try container.decode(UInt16.self, forKey: .min)
        let max = try container.decode(UInt16.self, forKey: .max)
        guard let range = PortRange(min: min, max: max) else {
            throw DecodingError.dataCorruptedError(forKey: .max, in: container,
                                                   debugDescription: "port range \(min)-\(max): needs 1 <= min < max")
        }
        self = range
    }

    public func contains(_ port: UInt16) -> Bool { min <= port && port <= max }
}

/// tc's `ip_flags`: each flag is required set, required clear, or not compared.
public struct IPFlagsMatch: Hashable, Sendable, Codable {
    /// `frag` (true) or `nofrag` (false).
    public var isFragment: Bool?
    /// `firstfrag` (true) or `nofirstfrag` (false).
    public var isFirstFragment: Bool?

    public init(isFragment: Bool? = nil, isFirstFragment: Bool? = nil) {
        self.isFragment = isFragment
        self.isFirstFragment = isFirstFragment
    }

    /// The kernel's flags key: bit 0 IS_FRAGMENT, bit 1 FRAG_IS_FIRST.
    public var masked: Masked<UInt8> {
        var value: UInt8 = 0
        var mask: UInt8 = 0
        if let fragment = isFragment { mask |= 1; value |= fragment ? 1 : 0 }
        if let first = isFirstFragment { mask |= 2; value |= first ? 2 : 0 }
        return Masked(value, mask: mask)
    }
}

/// The flower keys of one rule. A nil key is not compared. Keys that tc reads as a
/// plain value (`vlan_id`, `ip_proto`, ...) are exact; the others carry their mask.
public struct FlowMatch: Hashable, Sendable, Codable {
    public var indev: String?
    public var dstMAC: Masked<MACAddress>?
    public var srcMAC: Masked<MACAddress>?
    /// Outer tag; its TPID is the rule's protocol.
    public var vlanID: UInt16?
    public var vlanPriority: UInt8?
    /// The EtherType after the outer tag: the inner TPID, or the payload type.
    public var vlanEtherType: UInt16?
    /// Inner tag; its TPID is `vlanEtherType`.
    public var cvlanID: UInt16?
    public var cvlanPriority: UInt8?
    public var cvlanEtherType: UInt16?
    public var ipProto: UInt8?
    public var ipTOS: Masked<UInt8>?
    public var ipTTL: Masked<UInt8>?
    public var dstIP: IPMatch?
    public var srcIP: IPMatch?
    public var dstPort: PortMatch?
    public var srcPort: PortMatch?
    /// The low 12 bits of TCP's offset/flags word.
    public var tcpFlags: Masked<UInt16>?
    public var icmpType: Masked<UInt8>?
    public var icmpCode: Masked<UInt8>?
    /// tc keeps the ARP opcode in 8 bits.
    public var arpOp: Masked<UInt8>?
    public var arpSenderIP: Masked<IPv4Address>?
    public var arpTargetIP: Masked<IPv4Address>?
    public var arpSenderMAC: Masked<MACAddress>?
    public var arpTargetMAC: Masked<MACAddress>?
    public var ipFlags: IPFlagsMatch?

    public init() {}
}

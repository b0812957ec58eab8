import Packets

/// The layers past Ethernet and VLAN tags whose keys rules read. A rule set's layers
/// decide two things: which headers the compiled program parses, and which dissection
/// failures make a frame unclassifiable (a failure in a layer no rule reads is harmless:
/// every rule can still be decided).
public struct KeyLayers: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The EtherType after the VLAN tags (`vlan_ethtype` that is not a TPID, `cvlan_ethtype`).
    public static let etherType = KeyLayers(rawValue: 1 << 0)
    public static let arp = KeyLayers(rawValue: 1 << 1)
    /// The IPv4 header: addresses, tos, ttl, protocol, flags.
    public static let ipv4 = KeyLayers(rawValue: 1 << 2)
    /// Ports, TCP flags and ICMP under IPv4.
    public static let ipv4Transport = KeyLayers(rawValue: 1 << 3)
    /// The IPv6 fixed header: addresses, traffic class, hop limit.
    public static let ipv6 = KeyLayers(rawValue: 1 << 4)
    /// The IPv6 upper-layer protocol and fragment flags: they need the extension walk.
    public static let ipv6Protocol = KeyLayers(rawValue: 1 << 5)
    /// Ports, TCP flags and ICMPv6 under IPv6.
    public static let ipv6Transport = KeyLayers(rawValue: 1 << 6)

    public static let all: KeyLayers = [.etherType, .arp, .ipv4, .ipv4Transport, .ipv6, .ipv6Protocol, .ipv6Transport]
}

extension FlowRule {
    /// The layers this rule's keys come from. IP and transport keys count for the rule's
    /// family (`l3EtherType`); for a rule that names none, for both.
    public var keyLayers: KeyLayers {
        let m = match
        var layers: KeyLayers = []
        if let type = m.vlanEtherType, !type.isVLANType { layers.insert(.etherType) }
        if m.cvlanEtherType != nil { layers.insert(.etherType) }
        if m.arpOp != nil || m.arpSenderIP != nil || m.arpTargetIP != nil || m.arpSenderMAC != nil
            || m.arpTargetMAC != nil {
            layers.insert(.arp)
        }
        let header = m.ipTOS != nil || m.ipTTL != nil || m.dstIP != nil || m.srcIP != nil
        let protocolKeys = m.ipProto != nil || m.ipFlags != nil
        let transport = m.dstPort != nil || m.srcPort != nil || m.tcpFlags != nil || m.icmpType != nil
            || m.icmpCode != nil
        let family = l3EtherType
        if family != EtherType.ipv6 && (header || protocolKeys || transport) {
            layers.insert(.ipv4)
            if transport { layers.insert(.ipv4Transport) }
        }
        if family != EtherType.ipv4 {
            if header { layers.insert(.ipv6) }
            if protocolKeys { layers.insert(.ipv6Protocol) }
            if transport { layers.insert(.ipv6Transport) }
        }
        return layers
    }
}

extension RuleSet {
    /// Every layer a rule of chain 0 reads.
    public var keyLayers: KeyLayers {
        rules.reduce(into: []) { layers, rule in layers.formUnion(rule.keyLayers) }
    }
}

extension FlowKeys {
    /// The layers whose keys the dissector could not determine because it stopped on an
    /// unclassifiable header: a rule reading them cannot be decided.
    public var undeterminedLayers: KeyLayers {
        switch unclassifiable {
        case nil:
            return []
        case .vlanTooDeep:
            return .all
        case .ipv6ExtensionsTooDeep:
            return [.ipv6Protocol, .ipv6Transport]
        case .malformedHeader:
            // The IP header itself (no addresses read), or the TCP header after it.
            let headerRead = srcIP != nil
            switch etherType {
            case EtherType.ipv4: return headerRead ? .ipv4Transport : [.ipv4, .ipv4Transport]
            case EtherType.ipv6: return headerRead ? .ipv6Transport : [.ipv6, .ipv6Protocol, .ipv6Transport]
            default: return .all
            }
        }
    }
}

import FlowRules
import Packets

/// What one flower rule of an offloaded nftables rule compares: the fields its atoms
/// constrain, built atom by atom; nil from `adding` when two atoms cannot both hold.
struct FlowKey: Hashable {
    enum Network: Hashable {
        case any, ipv4, ipv6
        /// Another EtherType (ARP, ...).
        case other(UInt16)
    }

    var network = Network.any
    var srcMAC: Masked<MACAddress>?
    var dstMAC: Masked<MACAddress>?
    var src4: Masked<IPv4Address>?
    var dst4: Masked<IPv4Address>?
    var src6: Masked<IPv6Address>?
    var dst6: Masked<IPv6Address>?
    var l4: UInt8?
    var srcPorts: ClosedRange<UInt32>?
    var dstPorts: ClosedRange<UInt32>?
    var icmpType: UInt8?
    var icmpCode: UInt8?

    /// This key with `atom` too, on `device`; nil when no frame could match both: the
    /// field's network and protocol joined, then its value intersected.
    func adding(_ atom: Atom, device: String) -> FlowKey? {
        switch (atom.field, atom.value) {
        case (.srcMAC, .mac(let mac)): intersecting(\.srcMAC, mac)
        case (.dstMAC, .mac(let mac)): intersecting(\.dstMAC, mac)
        case (.etherType, .numbers(let types)):
            types.count == 1 ? UInt16(exactly: types.lowerBound).flatMap { type in
                joining(type == EtherType.ipv4 ? .ipv4 : type == EtherType.ipv6 ? .ipv6 : .other(type))
            } : nil
        case (.src4, .ipv4(let prefix)): joining(.ipv4)?.intersecting(\.src4, prefix)
        case (.dst4, .ipv4(let prefix)): joining(.ipv4)?.intersecting(\.dst4, prefix)
        case (.src6, .ipv6(let prefix)): joining(.ipv6)?.intersecting(\.src6, prefix)
        case (.dst6, .ipv6(let prefix)): joining(.ipv6)?.intersecting(\.dst6, prefix)
        case (.ipProtocol, .numbers(let protocols)): joining(.ipv4)?.withProtocol(protocols)
        case (.nextHeader, .numbers(let protocols)): joining(.ipv6)?.withProtocol(protocols)
        case (.l4proto, .numbers(let protocols)): withProtocol(protocols)
        case (.srcPort(let l4), .numbers(let ports)): withProtocol(UInt32(l4) ... UInt32(l4))?.intersecting(\.srcPorts, ports)
        case (.dstPort(let l4), .numbers(let ports)): withProtocol(UInt32(l4) ... UInt32(l4))?.intersecting(\.dstPorts, ports)
        case (.icmpType(let v6), .numbers(let types)): icmp(v6: v6)?.fixing(\.icmpType, types)
        case (.icmpCode(let v6), .numbers(let codes)): icmp(v6: v6)?.fixing(\.icmpCode, codes)
        case (.inputName, .name(let name)):
            (name.hasSuffix("*") ? device.hasPrefix(name.dropLast()) : device == name) ? self : nil
        default:
            nil
        }
    }

    /// This key with its IP protocol: flower reads one value, so a range is not offloaded.
    func withProtocol(_ protocols: ClosedRange<UInt32>) -> FlowKey? {
        guard protocols.count == 1, let value = UInt8(exactly: protocols.lowerBound) else { return nil }
        guard network == .any || network == .ipv4 || network == .ipv6, l4 == nil || l4 == value else { return nil }
        var key = self
        key.l4 = value
        return key
    }

    private func joining(_ other: Network) -> FlowKey? {
        guard network == .any || network == other else { return nil }
        var key = self
        key.network = other
        return key
    }

    /// ICMP of the family: its network and protocol.
    private func icmp(v6: Bool) -> FlowKey? {
        joining(v6 ? .ipv6 : .ipv4)?.withProtocol(v6 ? 58 ... 58 : 1 ... 1)
    }

    /// Both prefixes (or masked values) at once: their bits where both masks have them.
    private func intersecting<A>(_ field: WritableKeyPath<FlowKey, Masked<A>?>, _ new: Masked<A>) -> FlowKey? {
        var key = self
        guard let old = self[keyPath: field] else {
            key[keyPath: field] = new
            return key
        }
        let shared = old.mask.fieldBits & new.mask.fieldBits
        guard old.key.fieldBits & shared == new.key.fieldBits & shared else { return nil }
        key[keyPath: field] = Masked(A(fieldBits: old.key.fieldBits | new.key.fieldBits),
                                     mask: A(fieldBits: old.mask.fieldBits | new.mask.fieldBits))
        return key
    }

    private func intersecting(_ field: WritableKeyPath<FlowKey, ClosedRange<UInt32>?>, _ new: ClosedRange<UInt32>) -> FlowKey? {
        var key = self
        guard let old = self[keyPath: field] else {
            key[keyPath: field] = new
            return key
        }
        guard old.overlaps(new) else { return nil }
        key[keyPath: field] = max(old.lowerBound, new.lowerBound) ... min(old.upperBound, new.upperBound)
        return key
    }

    /// One value of a byte field (ICMP's type or code), the one it has if any.
    private func fixing(_ field: WritableKeyPath<FlowKey, UInt8?>, _ values: ClosedRange<UInt32>) -> FlowKey? {
        guard values.count == 1, let value = UInt8(exactly: values.lowerBound),
              self[keyPath: field] == nil || self[keyPath: field] == value else { return nil }
        var key = self
        key[keyPath: field] = value
        return key
    }

    /// The flower rules of this key: one per protocol (an IP key of either family is two)
    /// and per piece of its port ranges (flower's ranges start at 1).
    func flowRules(actions: [FlowAction]) -> [FlowRule] {
        var networks: [Network] = [network]
        if network == .any, l4 != nil { networks = [.ipv4, .ipv6] }
        return networks.flatMap { network -> [FlowRule] in
            var rule = FlowRule(filterProtocol: Self.filterProtocol(network), actions: actions)
            rule.match.srcMAC = srcMAC
            rule.match.dstMAC = dstMAC
            rule.match.srcIP = src4.map(IPMatch.v4) ?? src6.map(IPMatch.v6)
            rule.match.dstIP = dst4.map(IPMatch.v4) ?? dst6.map(IPMatch.v6)
            rule.match.ipProto = l4
            rule.match.icmpType = icmpType.map { Masked($0) }
            rule.match.icmpCode = icmpCode.map { Masked($0) }
            return Self.portMatches(srcPorts).flatMap { src in
                Self.portMatches(dstPorts).map { dst in
                    var each = rule
                    each.match.srcPort = src
                    each.match.dstPort = dst
                    return each
                }
            }
        }
    }

    static func filterProtocol(_ network: Network) -> FilterProtocol {
        switch network {
        case .any: .all
        case .ipv4: .ip
        case .ipv6: .ipv6
        case .other(let type): FilterProtocol(rawValue: type)
        }
    }

    /// A port range as flower's matches: nil (any), an exact port, or ranges from 1.
    private static func portMatches(_ ports: ClosedRange<UInt32>?) -> [PortMatch?] {
        guard let ports, ports != 0 ... 0xffff else { return [nil] }
        let low = UInt16(ports.lowerBound), high = UInt16(ports.upperBound)
        var pieces: [PortMatch?] = []
        var from = low
        if from == 0 {
            pieces.append(.masked(Masked(0)))
            guard high > 0 else { return pieces }
            from = 1
        }
        if from == high {
            pieces.append(.masked(Masked(from)))
        } else if let range = PortRange(min: from, max: high) {
            pieces.append(.range(range))
        }
        return pieces
    }
}

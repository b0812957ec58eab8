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

    /// This key with `atom` too, on `device`; nil when no frame could match both.
    func adding(_ atom: Atom, device: String) -> FlowKey? {
        var key = self
        switch (atom.field, atom.value) {
        case (.srcMAC, .mac(let mac)): guard let both = Self.both(key.srcMAC, mac) else { return nil }; key.srcMAC = both
        case (.dstMAC, .mac(let mac)): guard let both = Self.both(key.dstMAC, mac) else { return nil }; key.dstMAC = both
        case (.etherType, .numbers(let types)):
            guard types.count == 1, let type = UInt16(exactly: types.lowerBound) else { return nil }
            let network: Network = type == EtherType.ipv4 ? .ipv4 : type == EtherType.ipv6 ? .ipv6 : .other(type)
            guard let joined = key.joining(network) else { return nil }
            key = joined
        case (.src4, .ipv4(let prefix)):
            guard let joined = key.joining(.ipv4), let both = Self.both(joined.src4, prefix) else { return nil }
            key = joined
            key.src4 = both
        case (.dst4, .ipv4(let prefix)):
            guard let joined = key.joining(.ipv4), let both = Self.both(joined.dst4, prefix) else { return nil }
            key = joined
            key.dst4 = both
        case (.src6, .ipv6(let prefix)):
            guard let joined = key.joining(.ipv6), let both = Self.both(joined.src6, prefix) else { return nil }
            key = joined
            key.src6 = both
        case (.dst6, .ipv6(let prefix)):
            guard let joined = key.joining(.ipv6), let both = Self.both(joined.dst6, prefix) else { return nil }
            key = joined
            key.dst6 = both
        case (.ipProtocol, .numbers(let protocols)):
            guard let joined = key.joining(.ipv4) else { return nil }
            return joined.withProtocol(protocols)
        case (.nextHeader, .numbers(let protocols)):
            guard let joined = key.joining(.ipv6) else { return nil }
            return joined.withProtocol(protocols)
        case (.l4proto, .numbers(let protocols)):
            return key.withProtocol(protocols)
        case (.srcPort(let l4), .numbers(let ports)):
            guard var with = key.withProtocol(UInt32(l4) ... UInt32(l4)) else { return nil }
            guard let both = Self.both(with.srcPorts, ports) else { return nil }
            with.srcPorts = both
            return with
        case (.dstPort(let l4), .numbers(let ports)):
            guard var with = key.withProtocol(UInt32(l4) ... UInt32(l4)) else { return nil }
            guard let both = Self.both(with.dstPorts, ports) else { return nil }
            with.dstPorts = both
            return with
        case (.icmpType(let v6), .numbers(let types)):
            guard types.count == 1, let joined = key.joining(v6 ? .ipv6 : .ipv4),
                  var with = joined.withProtocol(v6 ? 58 ... 58 : 1 ... 1) else { return nil }
            let type = UInt8(types.lowerBound)
            guard with.icmpType == nil || with.icmpType == type else { return nil }
            with.icmpType = type
            return with
        case (.icmpCode(let v6), .numbers(let codes)):
            guard codes.count == 1, let joined = key.joining(v6 ? .ipv6 : .ipv4),
                  var with = joined.withProtocol(v6 ? 58 ... 58 : 1 ... 1) else { return nil }
            let code = UInt8(codes.lowerBound)
            guard with.icmpCode == nil || with.icmpCode == code else { return nil }
            with.icmpCode = code
            return with
        case (.inputName, .name(let name)):
            let matches = name.hasSuffix("*") ? device.hasPrefix(name.dropLast()) : device == name
            return matches ? key : nil
        default:
            return nil
        }
        return key
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

    private static func both<A>(_ old: Masked<A>?, _ new: Masked<A>) -> Masked<A>? {
        guard let old else { return new }
        let shared = old.mask.fieldBits & new.mask.fieldBits
        guard old.key.fieldBits & shared == new.key.fieldBits & shared else { return nil }
        return Masked(A(fieldBits: old.key.fieldBits | new.key.fieldBits), mask: A(fieldBits: old.mask.fieldBits | new.mask.fieldBits))
    }

    private static func both(_ old: ClosedRange<UInt32>?, _ new: ClosedRange<UInt32>) -> ClosedRange<UInt32>? {
        guard let old else { return new }
        guard old.overlaps(new) else { return nil }
        return max(old.lowerBound, new.lowerBound) ... min(old.upperBound, new.upperBound)
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

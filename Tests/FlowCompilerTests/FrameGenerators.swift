import FlowRules
import Packets

/// A frame described by its fields, so that it can be made to satisfy a rule, be pushed
/// just off one, or be damaged, before FrameBuilder builds it. Fields the builder always
/// writes right (IP version, ARP hardware type) are patched into the built bytes.
struct FrameRecipe: Sendable {
    var dst: MACAddress
    var src: MACAddress
    /// Outermost first; a third tag is legal here (and unclassifiable there).
    var tags: [VLANTag] = []
    var network: Network
    var payload: [UInt8] = []
    /// Padded to 60 bytes (Ethernet's minimum): padding reads as payload.
    var padded = false
    /// Cut to this many bytes, at least 14 (BPF_PROG_TEST_RUN needs the Ethernet header).
    var length: Int?

    enum Network: Sendable {
        case arp(ARP)
        case ipv4(IPv4, Transport)
        case ipv6(IPv6, Transport)
        case other(etherType: UInt16)
    }

    struct ARP: Sendable {
        var etherType = EtherType.arp
        var hardwareType: UInt16 = 1
        var protocolType = EtherType.ipv4
        /// Hardware and protocol address lengths.
        var lengths: UInt16 = 0x0604
        var op: UInt16
        var senderMAC: MACAddress
        var senderIP: IPv4Address
        var targetMAC: MACAddress
        var targetIP: IPv4Address
    }

    struct IPv4: Sendable {
        var src: IPv4Address
        var dst: IPv4Address
        var tos: UInt8
        var ttl: UInt8
        /// NOP options, a multiple of 4 bytes.
        var optionsLength = 0
        var fragmentOffset: UInt16 = 0
        var moreFragments = false
        /// Written instead of the real header length.
        var ihl: UInt8?
        var version: UInt8 = 4
    }

    struct IPv6: Sendable {
        var src: IPv6Address
        var dst: IPv6Address
        var trafficClass: UInt8
        var hopLimit: UInt8
        var extensionHeaders: [IPv6ExtensionHeader] = []
        var version: UInt8 = 6
    }

    enum Transport: Sendable {
        case tcp(src: UInt16, dst: UInt16, flags: UInt16, dataOffset: UInt8?)
        case udp(src: UInt16, dst: UInt16)
        case sctp(src: UInt16, dst: UInt16)
        case icmp(type: UInt8, code: UInt8)
        case icmpv6(type: UInt8, code: UInt8)
        /// Only the protocol number: no header follows.
        case opaque(UInt8)
    }

    // MARK: Bytes

    var networkEtherType: UInt16 {
        switch network {
        case .arp(let arp): arp.etherType
        case .ipv4: EtherType.ipv4
        case .ipv6: EtherType.ipv6
        case .other(let type): type
        }
    }

    var networkStart: Int { 14 + 4 * tags.count }

    var bytes: [UInt8] {
        var frame = FrameBuilder().ethernet(dst: dst, src: src, type: tags.first?.tpid ?? networkEtherType)
        for (index, tag) in tags.enumerated() {
            frame = frame.vlan(id: tag.id, priority: tag.priority, tpid: tag.tpid,
                               type: index + 1 < tags.count ? tags[index + 1].tpid : networkEtherType)
        }
        switch network {
        case .arp(let arp):
            frame = frame.arp(op: arp.op, sha: arp.senderMAC, spa: arp.senderIP, tha: arp.targetMAC, tpa: arp.targetIP)
        case .ipv4(let ip, let transport):
            frame = transport.appended(to: frame.ipv4(
                src: ip.src, dst: ip.dst, proto: transport.proto, tos: ip.tos, ttl: ip.ttl,
                options: [UInt8](repeating: 1, count: ip.optionsLength), fragmentOffset: ip.fragmentOffset,
                moreFragments: ip.moreFragments, ihl: ip.ihl))
        case .ipv6(let ip, let transport):
            frame = transport.appended(to: frame.ipv6(
                src: ip.src, dst: ip.dst, trafficClass: ip.trafficClass, hopLimit: ip.hopLimit,
                extensionHeaders: ip.extensionHeaders, nextHeader: transport.proto))
        case .other:
            break
        }
        var bytes = frame.payload(payload).padded(to: padded ? 60 : 0).bytes
        let start = networkStart
        switch network {
        case .arp(let arp):
            for (offset, value) in [(0, arp.hardwareType), (2, arp.protocolType), (4, arp.lengths)] {
                bytes[start + offset] = UInt8(value >> 8)
                bytes[start + offset + 1] = UInt8(value & 0xff)
            }
        case .ipv4(let ip, _):
            bytes[start] = ip.version << 4 | bytes[start] & 0x0f
        case .ipv6(let ip, _):
            bytes[start] = ip.version << 4 | bytes[start] & 0x0f
        case .other:
            break
        }
        return length.map { Array(bytes.prefix($0)) } ?? bytes
    }

    /// Where each header ends (as built): truncations around these cut a header short
    /// or leave it whole with nothing after it.
    var headerEnds: [Int] {
        var ends = [14]
        var offset = 14
        for _ in tags {
            offset += 4
            ends.append(offset)
        }
        switch network {
        case .arp:
            ends.append(offset + 28)
        case .ipv4(let ip, let transport):
            offset += 20
            ends.append(offset)
            offset += ip.optionsLength
            ends.append(offset)
            ends.append(offset + transport.headerLength)
        case .ipv6(let ip, let transport):
            offset += 40
            ends.append(offset)
            for header in ip.extensionHeaders {
                offset += header.length
                ends.append(offset)
            }
            ends.append(offset + transport.headerLength)
        case .other:
            break
        }
        return ends
    }

    // MARK: Parts, for edits

    var ipv4: IPv4? {
        get { if case .ipv4(let ip, _) = network { ip } else { nil } }
        set { if let newValue, case .ipv4(_, let transport) = network { network = .ipv4(newValue, transport) } }
    }

    var ipv6: IPv6? {
        get { if case .ipv6(let ip, _) = network { ip } else { nil } }
        set { if let newValue, case .ipv6(_, let transport) = network { network = .ipv6(newValue, transport) } }
    }

    var transport: Transport? {
        get {
            switch network {
            case .ipv4(_, let transport), .ipv6(_, let transport): transport
            default: nil
            }
        }
        set {
            guard let newValue else { return }
            switch network {
            case .ipv4(let ip, _): network = .ipv4(ip, newValue)
            case .ipv6(let ip, _): network = .ipv6(ip, newValue)
            default: break
            }
        }
    }

    var arp: ARP? {
        get { if case .arp(let arp) = network { arp } else { nil } }
        set { if let newValue, case .arp = network { network = .arp(newValue) } }
    }

    mutating func editIPv4(_ edit: (inout IPv4) -> Void) {
        guard var ip = ipv4 else { return }
        edit(&ip)
        ipv4 = ip
    }

    mutating func editIPv6(_ edit: (inout IPv6) -> Void) {
        guard var ip = ipv6 else { return }
        edit(&ip)
        ipv6 = ip
    }
}

extension FrameRecipe.Transport {
    var proto: UInt8 {
        switch self {
        case .tcp: IPProtocolNumber.tcp
        case .udp: IPProtocolNumber.udp
        case .sctp: IPProtocolNumber.sctp
        case .icmp: IPProtocolNumber.icmp
        case .icmpv6: IPProtocolNumber.icmpv6
        case .opaque(let proto): proto
        }
    }

    var headerLength: Int {
        switch self {
        case .tcp: 20
        case .udp, .icmp, .icmpv6: 8
        case .sctp: 12
        case .opaque: 0
        }
    }

    func appended(to frame: FrameBuilder) -> FrameBuilder {
        switch self {
        case .tcp(let src, let dst, let flags, let dataOffset): frame.tcp(src: src, dst: dst, flags: flags, dataOffset: dataOffset)
        case .udp(let src, let dst): frame.udp(src: src, dst: dst)
        case .sctp(let src, let dst): frame.sctp(src: src, dst: dst)
        case .icmp(let type, let code): frame.icmp(type: type, code: code)
        case .icmpv6(let type, let code): frame.icmpv6(type: type, code: code)
        case .opaque: frame
        }
    }

    var ports: (src: UInt16, dst: UInt16)? {
        get {
            switch self {
            case .tcp(let src, let dst, _, _), .udp(let src, let dst), .sctp(let src, let dst): (src, dst)
            default: nil
            }
        }
        set {
            guard let (src, dst) = newValue else { return }
            switch self {
            case .tcp(_, _, let flags, let offset): self = .tcp(src: src, dst: dst, flags: flags, dataOffset: offset)
            case .udp: self = .udp(src: src, dst: dst)
            case .sctp: self = .sctp(src: src, dst: dst)
            default: break
            }
        }
    }

    var tcpFlags: UInt16? {
        get { if case .tcp(_, _, let flags, _) = self { flags } else { nil } }
        set {
            if let newValue, case .tcp(let src, let dst, _, let offset) = self {
                self = .tcp(src: src, dst: dst, flags: newValue, dataOffset: offset)
            }
        }
    }

    var icmp: (type: UInt8, code: UInt8)? {
        get {
            switch self {
            case .icmp(let type, let code), .icmpv6(let type, let code): (type, code)
            default: nil
            }
        }
        set {
            guard let (type, code) = newValue else { return }
            switch self {
            case .icmp: self = .icmp(type: type, code: code)
            case .icmpv6: self = .icmpv6(type: type, code: code)
            default: break
            }
        }
    }
}

extension IPv6ExtensionHeader {
    var length: Int {
        switch self {
        case .hopByHop(let units), .routing(let units), .destinationOptions(let units): (Int(units) + 1) * 8
        case .fragment: 8
        }
    }

    var isFragment: Bool { if case .fragment = self { true } else { false } }
}

// MARK: - Drawing frames

/// Frames for one rule set: frames made to hit a rule (values taken from it), near
/// misses (one bit past a mask edge, one past a port range), random frames from the
/// pool, and damaged ones (cut at and inside every header, three tags, bad IHL, IP
/// version, TCP data offset, IPv6 extension chains one too long, bad ARP).
struct FrameGenerator {
    let pool: ValuePool

    func frames(count: Int, for rules: [FlowRule], _ rng: inout SeededRandom) -> [[UInt8]] {
        (0 ..< count).map { _ in
            var recipe: FrameRecipe
            if !rules.isEmpty, rng.chance(0.65) {
                let rule = rng.pick(rules)
                recipe = hitting(rule, &rng)
                switch rng.weighted([(9, 0), (5, 1), (3, 2), (3, 3)]) {
                case 1: nearMiss(&recipe, rule, &rng)
                case 2: truncate(&recipe, &rng)
                case 3: damage(&recipe, &rng)
                default: break
                }
            } else {
                recipe = random(&rng, adversarial: true)
                if rng.chance(0.25) { truncate(&recipe, &rng) }
            }
            return recipe.bytes
        }
    }

    // MARK: Random

    func random(_ rng: inout SeededRandom, adversarial: Bool) -> FrameRecipe {
        let tagCount = rng.weighted([(10, 0), (4, 1), (3, 2), (adversarial ? 1 : 0, 3)])
        let type = rng.weighted([(7, EtherType.ipv4), (6, EtherType.ipv6), (2, EtherType.arp), (1, EtherType.rarp),
                                 (2, rng.pick(pool.otherEtherTypes))])
        return FrameRecipe(dst: mac(&rng), src: mac(&rng), tags: (0 ..< tagCount).map { _ in tag(&rng) },
                           network: network(type, &rng, adversarial: adversarial),
                           payload: (0 ..< rng.weighted([(3, 0), (1, 8), (1, 30)])).map { _ in rng.bits() },
                           padded: rng.chance(0.3))
    }

    private func mac(_ rng: inout SeededRandom) -> MACAddress {
        rng.chance(0.8) ? rng.pick(pool.macs) : rng.bits(UInt64.self).mac
    }

    private func ipv4Address(_ rng: inout SeededRandom) -> IPv4Address {
        rng.chance(0.8) ? rng.pick(pool.ipv4) : IPv4Address(rawValue: rng.bits())
    }

    private func ipv6Address(_ rng: inout SeededRandom) -> IPv6Address {
        rng.chance(0.8) ? rng.pick(pool.ipv6) : IPv6Address(rawValue: rng.bits(UInt128.self))
    }

    private func port(_ rng: inout SeededRandom) -> UInt16 {
        rng.chance(0.8) ? rng.pick(pool.ports) : rng.bits()
    }

    private func tag(_ rng: inout SeededRandom, tpid: UInt16? = nil) -> VLANTag {
        VLANTag(tpid: tpid ?? rng.pick([EtherType.vlan, EtherType.qinq]), priority: UInt8(rng.int(0 ... 7)),
                id: rng.pick(pool.vlanIDs))
    }

    /// A network layer with EtherType `type`.
    func network(_ type: UInt16, _ rng: inout SeededRandom, adversarial: Bool, proto: UInt8? = nil)
        -> FrameRecipe.Network {
        let bad = adversarial ? 0.05 : 0
        switch type {
        case EtherType.ipv4:
            var ip = FrameRecipe.IPv4(src: ipv4Address(&rng), dst: ipv4Address(&rng), tos: rng.pick(pool.bytes),
                                      ttl: rng.pick(pool.bytes))
            if rng.chance(0.2) { ip.optionsLength = 4 * rng.int(1 ... 10) }
            if rng.chance(0.15) {
                ip.fragmentOffset = rng.pick([0, 1, 185, 0x1fff])
                ip.moreFragments = rng.chance(0.5)
            }
            if rng.chance(bad) { ip.ihl = rng.pick([0, 1, 4, 6, 15]) }
            if rng.chance(bad) { ip.version = rng.pick([0, 5, 6, 15]) }
            return .ipv4(ip, transport(proto, v4: true, &rng, adversarial: adversarial))
        case EtherType.ipv6:
            let headers = rng.weighted([(8, 0), (2, 1), (1, 2), (1, 3), (1, 4), (adversarial ? 1 : 0, 5)])
            var ip = FrameRecipe.IPv6(src: ipv6Address(&rng), dst: ipv6Address(&rng), trafficClass: rng.pick(pool.bytes),
                                      hopLimit: rng.pick(pool.bytes))
            ip.extensionHeaders = (0 ..< headers).map { _ in extensionHeader(&rng) }
            if rng.chance(bad) { ip.version = rng.pick([0, 4, 7, 15]) }
            return .ipv6(ip, transport(proto, v4: false, &rng, adversarial: adversarial))
        case EtherType.arp, EtherType.rarp:
            var arp = FrameRecipe.ARP(etherType: type, op: rng.pick([1, 2]), senderMAC: mac(&rng),
                                      senderIP: ipv4Address(&rng), targetMAC: mac(&rng), targetIP: ipv4Address(&rng))
            if adversarial {
                if rng.chance(0.1) { arp.hardwareType = rng.pick([0, 6, 0x0100]) }
                if rng.chance(0.05) { arp.protocolType = EtherType.ipv6 }
                if rng.chance(0.05) { arp.lengths = rng.pick([0x0610, 0x0404]) }
                if rng.chance(0.2) { arp.op = rng.pick([0, 3, 4, 0x0101, 0x0201]) }
            }
            return .arp(arp)
        default:
            return .other(etherType: type)
        }
    }

    private func extensionHeader(_ rng: inout SeededRandom) -> IPv6ExtensionHeader {
        switch rng.int(0 ... 3) {
        case 0: .hopByHop(lengthUnits: UInt8(rng.int(0 ... 2)))
        case 1: .routing(lengthUnits: UInt8(rng.int(0 ... 2)))
        case 2: .destinationOptions(lengthUnits: UInt8(rng.int(0 ... 2)))
        default: fragmentHeader(first: rng.chance(0.5), &rng)
        }
    }

    private func fragmentHeader(first: Bool, _ rng: inout SeededRandom) -> IPv6ExtensionHeader {
        .fragment(offset: first ? 0 : rng.pick([1, 185, 0x1fff]), moreFragments: rng.chance(0.5),
                  identification: rng.bits())
    }

    /// A transport header for `proto` (any when nil).
    func transport(_ proto: UInt8?, v4: Bool, _ rng: inout SeededRandom, adversarial: Bool)
        -> FrameRecipe.Transport {
        let opaque: [UInt8] = [4, 41, 47, 50, 51, 59, 253, 0, 43, 44, 60]
        let chosen = proto ?? rng.weighted([
            (3, IPProtocolNumber.tcp), (3, IPProtocolNumber.udp), (1, IPProtocolNumber.sctp),
            (2, v4 ? IPProtocolNumber.icmp : IPProtocolNumber.icmpv6),
            (1, v4 ? IPProtocolNumber.icmpv6 : IPProtocolNumber.icmp), (1, rng.pick(opaque)),
        ])
        let src = port(&rng), dst = port(&rng)
        switch chosen {
        case IPProtocolNumber.tcp:
            let offset: UInt8? = adversarial && rng.chance(0.05) ? rng.pick([0, 1, 4, 15]) : nil
            return .tcp(src: src, dst: dst, flags: rng.pick(pool.tcpFlags), dataOffset: offset)
        case IPProtocolNumber.udp: return .udp(src: src, dst: dst)
        case IPProtocolNumber.sctp: return .sctp(src: src, dst: dst)
        case IPProtocolNumber.icmp: return .icmp(type: rng.pick(pool.bytes), code: rng.pick(pool.bytes))
        case IPProtocolNumber.icmpv6: return .icmpv6(type: rng.pick(pool.bytes), code: rng.pick(pool.bytes))
        default: return .opaque(chosen)
        }
    }

    // MARK: Hitting a rule

    /// A frame with every key `rule` names inside the rule's mask (bits outside it from
    /// the pool). Some rules cannot be hit (a port with a later fragment, indev of another
    /// device); the frame is then as close as the rule allows.
    func hitting(_ rule: FlowRule, _ rng: inout SeededRandom) -> FrameRecipe {
        let m = rule.match
        var recipe = random(&rng, adversarial: false)
        let proto = rule.filterProtocol.rawValue
        var type: UInt16? = nil
        if rule.filterProtocol == .all {
            type = recipe.networkEtherType
        } else if proto.isVLAN {
            var tpids = [proto]
            if let vlanType = m.vlanEtherType {
                if vlanType.isVLAN {
                    tpids.append(vlanType)
                    if let inner = m.cvlanEtherType, inner.isVLAN { tpids.append(inner) } else { type = m.cvlanEtherType }
                } else {
                    type = vlanType
                }
            } else if rng.chance(0.3) {
                tpids.append(rng.pick([EtherType.vlan, EtherType.qinq]))
            }
            recipe.tags = tpids.map { tag(&rng, tpid: $0) }
        } else {
            recipe.tags = []
            type = proto
        }
        let chosenType = type ?? rng.weighted([(3, EtherType.ipv4), (3, EtherType.ipv6), (1, EtherType.arp),
                                               (1, rng.pick(pool.otherEtherTypes))])
        recipe.network = network(chosenType, &rng, adversarial: false, proto: m.ipProto)

        if let id = m.vlanID, !recipe.tags.isEmpty { recipe.tags[0].id = id }
        if let priority = m.vlanPriority, !recipe.tags.isEmpty { recipe.tags[0].priority = priority }
        if let id = m.cvlanID, recipe.tags.count > 1 { recipe.tags[1].id = id }
        if let priority = m.cvlanPriority, recipe.tags.count > 1 { recipe.tags[1].priority = priority }
        if let mac = m.dstMAC { recipe.dst = mac.sample(filler: self.mac(&rng)) }
        if let mac = m.srcMAC { recipe.src = mac.sample(filler: self.mac(&rng)) }

        if var ip = recipe.ipv4 {
            if let tos = m.ipTOS { ip.tos = tos.sample(filler: rng.pick(pool.bytes)) }
            if let ttl = m.ipTTL { ip.ttl = ttl.sample(filler: rng.pick(pool.bytes)) }
            if case .v4(let prefix)? = m.dstIP { ip.dst = prefix.sample(filler: ipv4Address(&rng)) }
            if case .v4(let prefix)? = m.srcIP { ip.src = prefix.sample(filler: ipv4Address(&rng)) }
            if let flags = m.ipFlags {
                let (fragment, first) = fragmentState(flags, &rng)
                ip.moreFragments = fragment && (first || rng.chance(0.5))
                ip.fragmentOffset = fragment && !first ? rng.pick([1, 185, 0x1fff]) : 0
            } else if m.dstPort != nil || m.srcPort != nil || m.tcpFlags != nil || m.icmpType != nil
                || m.icmpCode != nil {
                ip.fragmentOffset = 0
            }
            recipe.ipv4 = ip
        }
        if var ip = recipe.ipv6 {
            if let tos = m.ipTOS { ip.trafficClass = tos.sample(filler: rng.pick(pool.bytes)) }
            if let ttl = m.ipTTL { ip.hopLimit = ttl.sample(filler: rng.pick(pool.bytes)) }
            if case .v6(let prefix)? = m.dstIP { ip.dst = prefix.sample(filler: ipv6Address(&rng)) }
            if case .v6(let prefix)? = m.srcIP { ip.src = prefix.sample(filler: ipv6Address(&rng)) }
            // Non-first fragments end the walk: only the rule's own fragment header stays.
            ip.extensionHeaders.removeAll(where: \.isFragment)
            if let flags = m.ipFlags {
                let (fragment, first) = fragmentState(flags, &rng)
                if fragment {
                    ip.extensionHeaders.insert(fragmentHeader(first: first, &rng),
                                               at: rng.int(0 ... ip.extensionHeaders.count))
                }
            }
            recipe.ipv6 = ip
        }
        if var transport = recipe.transport {
            if var ports = transport.ports {
                if let port = m.dstPort { ports.dst = sample(port, &rng) }
                if let port = m.srcPort { ports.src = sample(port, &rng) }
                transport.ports = ports
            }
            if let flags = m.tcpFlags { transport.tcpFlags = flags.sample(filler: rng.pick(pool.tcpFlags)) }
            if var icmp = transport.icmp {
                if let type = m.icmpType { icmp.type = type.sample(filler: rng.pick(pool.bytes)) }
                if let code = m.icmpCode { icmp.code = code.sample(filler: rng.pick(pool.bytes)) }
                transport.icmp = icmp
            }
            recipe.transport = transport
        }
        if var arp = recipe.arp {
            if let op = m.arpOp { arp.op = UInt16(op.sample(filler: rng.pick([1, 2]))) }
            if let ip = m.arpSenderIP { arp.senderIP = ip.sample(filler: ipv4Address(&rng)) }
            if let ip = m.arpTargetIP { arp.targetIP = ip.sample(filler: ipv4Address(&rng)) }
            if let mac = m.arpSenderMAC { arp.senderMAC = mac.sample(filler: self.mac(&rng)) }
            if let mac = m.arpTargetMAC { arp.targetMAC = mac.sample(filler: self.mac(&rng)) }
            recipe.arp = arp
        }
        return recipe
    }

    /// (is a fragment, is the first fragment) as `flags` asks, the unasked one random.
    private func fragmentState(_ flags: IPFlagsMatch, _ rng: inout SeededRandom) -> (Bool, Bool) {
        let fragment = flags.isFragment ?? (flags.isFirstFragment == true || rng.chance(0.5))
        return (fragment, fragment && (flags.isFirstFragment ?? rng.chance(0.5)))
    }

    /// A port the match takes: for a range, mostly one of its ends.
    private func sample(_ port: PortMatch, _ rng: inout SeededRandom) -> UInt16 {
        switch port {
        case .masked(let masked):
            return masked.sample(filler: self.port(&rng))
        case .range(let range):
            return rng.pick([range.min, range.max, range.min + 1, range.max - 1,
                             UInt16(rng.int(Int(range.min) ... Int(range.max)))])
        }
    }

    // MARK: Misses and damage

    /// Moves one field the rule names just across (or just inside) its mask's edge.
    func nearMiss(_ recipe: inout FrameRecipe, _ rule: FlowRule, _ rng: inout SeededRandom) {
        let m = rule.match
        var edits: [(inout FrameRecipe, inout SeededRandom) -> Void] = []
        if let mask = m.dstMAC { edits.append { r, g in r.dst = r.dst.flipping(bit: g.pick(mask.edgeBits)) } }
        if let mask = m.srcMAC { edits.append { r, g in r.src = r.src.flipping(bit: g.pick(mask.edgeBits)) } }
        if !recipe.tags.isEmpty {
            edits.append { r, _ in r.tags[0].tpid = r.tags[0].tpid == EtherType.vlan ? EtherType.qinq : EtherType.vlan }
            if m.vlanID != nil { edits.append { r, g in r.tags[0].id = (r.tags[0].id &+ g.pick([1, 0xfff])) & 0xfff } }
            if m.vlanPriority != nil { edits.append { r, _ in r.tags[0].priority ^= 1 } }
        }
        if recipe.tags.count > 1 {
            edits.append { r, _ in r.tags[1].tpid = r.tags[1].tpid == EtherType.vlan ? EtherType.qinq : EtherType.vlan }
            if m.cvlanID != nil { edits.append { r, g in r.tags[1].id = (r.tags[1].id &+ g.pick([1, 0xfff])) & 0xfff } }
            if m.cvlanPriority != nil { edits.append { r, _ in r.tags[1].priority ^= 1 } }
        }
        if m.ipProto != nil, recipe.transport != nil {
            edits.append { r, g in
                let v4 = r.ipv4 != nil
                let proto = r.transport!.proto
                r.transport = transport(g.pick([6, 17, 132, 1, 58, 47].filter { $0 != proto }), v4: v4, &g,
                                        adversarial: false)
            }
        }
        if let tos = m.ipTOS {
            edits.append { r, g in
                let bit = g.pick(tos.edgeBits)
                r.editIPv4 { $0.tos = $0.tos.flipping(bit: bit) }
                r.editIPv6 { $0.trafficClass = $0.trafficClass.flipping(bit: bit) }
            }
        }
        if let ttl = m.ipTTL {
            edits.append { r, g in
                let bit = g.pick(ttl.edgeBits)
                r.editIPv4 { $0.ttl = $0.ttl.flipping(bit: bit) }
                r.editIPv6 { $0.hopLimit = $0.hopLimit.flipping(bit: bit) }
            }
        }
        for (ip, isDestination) in [(m.dstIP, true), (m.srcIP, false)] {
            switch ip {
            case .v4(let prefix)?:
                edits.append { r, g in
                    let bit = g.pick(prefix.edgeBits)
                    r.editIPv4 { ip in
                        if isDestination { ip.dst = ip.dst.flipping(bit: bit) } else { ip.src = ip.src.flipping(bit: bit) }
                    }
                }
            case .v6(let prefix)?:
                edits.append { r, g in
                    let bit = g.pick(prefix.edgeBits)
                    r.editIPv6 { ip in
                        if isDestination { ip.dst = ip.dst.flipping(bit: bit) } else { ip.src = ip.src.flipping(bit: bit) }
                    }
                }
            case nil:
                break
            }
        }
        if m.ipFlags != nil {
            edits.append { r, g in
                let offset: UInt16 = g.pick([1, 0x1fff])
                r.editIPv4 { ip in
                    ip.fragmentOffset = ip.fragmentOffset == 0 ? offset : 0
                    ip.moreFragments.toggle()
                }
                if var ip = r.ipv6 {
                    if ip.extensionHeaders.contains(where: \.isFragment) {
                        ip.extensionHeaders.removeAll(where: \.isFragment)
                    } else {
                        ip.extensionHeaders.append(fragmentHeader(first: g.chance(0.5), &g))
                    }
                    r.ipv6 = ip
                }
            }
        }
        for (port, isDestination) in [(m.dstPort, true), (m.srcPort, false)] {
            guard let port, recipe.transport?.ports != nil else { continue }
            edits.append { r, g in
                let current = isDestination ? r.transport!.ports!.dst : r.transport!.ports!.src
                let moved: UInt16 = switch port {
                case .range(let range): g.pick([range.min &- 1, range.max &+ 1, range.min, range.max])
                case .masked(let masked): current.flipping(bit: g.pick(masked.edgeBits))
                }
                if isDestination { r.transport!.ports!.dst = moved } else { r.transport!.ports!.src = moved }
            }
        }
        if let flags = m.tcpFlags, recipe.transport?.tcpFlags != nil {
            edits.append { r, g in r.transport!.tcpFlags = r.transport!.tcpFlags!.flipping(bit: g.pick(flags.edgeBits)) }
        }
        if let type = m.icmpType, recipe.transport?.icmp != nil {
            edits.append { r, g in r.transport!.icmp!.type = r.transport!.icmp!.type.flipping(bit: g.pick(type.edgeBits)) }
        }
        if let code = m.icmpCode, recipe.transport?.icmp != nil {
            edits.append { r, g in r.transport!.icmp!.code = r.transport!.icmp!.code.flipping(bit: g.pick(code.edgeBits)) }
        }
        if recipe.arp != nil {
            if m.arpOp != nil { edits.append { r, _ in r.arp!.op = r.arp!.op == 1 ? 2 : 1 } }
            if let ip = m.arpSenderIP { edits.append { r, g in r.arp!.senderIP = r.arp!.senderIP.flipping(bit: g.pick(ip.edgeBits)) } }
            if let ip = m.arpTargetIP { edits.append { r, g in r.arp!.targetIP = r.arp!.targetIP.flipping(bit: g.pick(ip.edgeBits)) } }
            if let mac = m.arpSenderMAC { edits.append { r, g in r.arp!.senderMAC = r.arp!.senderMAC.flipping(bit: g.pick(mac.edgeBits)) } }
            if let mac = m.arpTargetMAC { edits.append { r, g in r.arp!.targetMAC = r.arp!.targetMAC.flipping(bit: g.pick(mac.edgeBits)) } }
        }
        // The EtherType the rule's protocol or vlan_ethtype reads.
        edits.append { r, g in
            if r.tags.isEmpty || g.chance(0.5) {
                r.network = network(g.pick([EtherType.ipv4, EtherType.ipv6, EtherType.arp, EtherType.rarp, 0x88b5]),
                                    &g, adversarial: false)
            } else {
                r.tags.removeLast()
            }
        }
        guard !edits.isEmpty else { return }
        rng.pick(edits)(&recipe, &rng)
    }

    /// Cuts the frame at a header's end, one byte either side of it, or inside a header
    /// (inside the outer tag: too short for vlan pop and modify, which abort).
    func truncate(_ recipe: inout FrameRecipe, _ rng: inout SeededRandom) {
        let full = recipe.bytes.count
        let end = rng.pick(recipe.headerEnds)
        let cut = switch rng.weighted([(8, 0), (1, 1), (1, 2)]) {
        case 0: end + rng.pick([-1, 0, 1])
        case 1 where !recipe.tags.isEmpty: rng.int(15 ... 17)
        default: rng.int(14 ... max(14, end))
        }
        recipe.length = min(max(14, cut), full)
    }

    /// One structural fault: a third tag, a bad IHL or IP version, a short TCP data
    /// offset, an IPv6 extension chain one too long, bad ARP, Ethernet padding.
    func damage(_ recipe: inout FrameRecipe, _ rng: inout SeededRandom) {
        var faults: [(inout FrameRecipe, inout SeededRandom) -> Void] = [
            { r, g in r.tags.insert(tag(&g), at: g.int(0 ... r.tags.count)) },
            { r, _ in r.padded = true },
        ]
        if recipe.tags.count < 3 {
            faults.append { r, g in while r.tags.count < 3 { r.tags.append(tag(&g)) } }
        }
        if recipe.ipv4 != nil {
            faults.append { r, g in r.ipv4!.ihl = g.pick([0, 1, 4, 6, 15]) }
            faults.append { r, g in r.ipv4!.version = g.pick([0, 6, 15]) }
            faults.append { r, g in r.ipv4!.optionsLength = 4 * g.int(1 ... 10) }
        }
        if recipe.ipv6 != nil {
            faults.append { r, g in r.ipv6!.version = g.pick([0, 4, 15]) }
            faults.append { r, g in
                while r.ipv6!.extensionHeaders.count < FlowKeys.maxIPv6ExtensionHeaders + 1 {
                    r.ipv6!.extensionHeaders.insert(g.pick([.hopByHop(), .routing(), .destinationOptions()]), at: 0)
                }
            }
        }
        if case .tcp(let src, let dst, let flags, _)? = recipe.transport {
            faults.append { r, g in r.transport = .tcp(src: src, dst: dst, flags: flags, dataOffset: g.pick([0, 4, 15])) }
        }
        if recipe.arp != nil {
            faults.append { r, g in r.arp!.hardwareType = g.pick([0, 6]) }
            faults.append { r, g in r.arp!.op = g.pick([0, 3, 4, 0x0101]) }
            faults.append { r, _ in r.arp!.lengths = 0x0610 }
        }
        rng.pick(faults)(&recipe, &rng)
    }
}

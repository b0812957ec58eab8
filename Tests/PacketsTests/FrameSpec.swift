import Packets
import PropertyBased

/// A frame described by what it was built from, with the keys the dissector must find in
/// it when it is cut after any number of bytes. The expectations are written from the
/// layer lengths directly, not from the dissector's code: each header's keys appear when
/// the frame reaches the end of that header.
struct FrameSpec: Sendable, CustomStringConvertible {
    var dst = MACAddress(rawValue: 0x0011_2233_4455)
    var src = MACAddress(rawValue: 0x6677_8899_aabb)
    var vlans: [VLANTag] = []
    var network: Network = .other(etherType: 0x88b5)
    var payload: [UInt8] = []

    enum Network: Sendable {
        case arp(ARPKeys, etherType: UInt16)
        case ipv4(IPv4, Transport)
        case ipv6(IPv6, Transport)
        case other(etherType: UInt16)
    }

    struct IPv4: Sendable {
        var src = IPv4Address(rawValue: 0xc000_0201)
        var dst = IPv4Address(rawValue: 0xc633_6402)
        var tos: UInt8 = 0
        var ttl: UInt8 = 64
        /// A multiple of 4.
        var optionsLength = 0
        var fragmentOffset: UInt16 = 0
        var moreFragments = false
    }

    struct IPv6: Sendable {
        var src = IPv6Address(rawValue: 0x2001_0db8 << 96 | 1)
        var dst = IPv6Address(rawValue: 0x2001_0db8 << 96 | 2)
        var trafficClass: UInt8 = 0
        var hopLimit: UInt8 = 64
        var extensionHeaders: [IPv6ExtensionHeader] = []
    }

    enum Transport: Sendable {
        case tcp(src: UInt16, dst: UInt16, flags: UInt16)
        case udp(src: UInt16, dst: UInt16)
        case sctp(src: UInt16, dst: UInt16)
        case icmp(type: UInt8, code: UInt8)
        case icmpv6(type: UInt8, code: UInt8)
        /// An IP protocol the dissector does not parse further.
        case opaque(proto: UInt8)

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
            case .udp: 8
            case .sctp: 12
            case .icmp, .icmpv6: 8
            case .opaque: 0
            }
        }
    }

    var builder: FrameBuilder {
        var frame = FrameBuilder().ethernet(dst: dst, src: src, type: vlans.first?.tpid ?? networkEtherType)
        for (index, tag) in vlans.enumerated() {
            let next = index + 1 < vlans.count ? vlans[index + 1].tpid : networkEtherType
            frame = frame.vlan(id: tag.id, priority: tag.priority, tpid: tag.tpid, type: next)
        }
        switch network {
        case .arp(let arp, _):
            frame = frame.arp(op: arp.op, sha: arp.senderMAC, spa: arp.senderIP,
                              tha: arp.targetMAC, tpa: arp.targetIP)
        case .ipv4(let ip, let transport):
            frame = frame.ipv4(src: ip.src, dst: ip.dst, proto: transport.proto, tos: ip.tos, ttl: ip.ttl,
                               options: [UInt8](repeating: 1, count: ip.optionsLength),  // NOPs
                               fragmentOffset: ip.fragmentOffset, moreFragments: ip.moreFragments)
            frame = transport.appended(to: frame)
        case .ipv6(let ip, let transport):
            frame = frame.ipv6(src: ip.src, dst: ip.dst, trafficClass: ip.trafficClass, hopLimit: ip.hopLimit,
                               extensionHeaders: ip.extensionHeaders, nextHeader: transport.proto)
            frame = transport.appended(to: frame)
        case .other:
            break
        }
        return frame.payload(payload)
    }

    var bytes: [UInt8] { builder.bytes }

    var networkEtherType: UInt16 {
        switch network {
        case .arp(_, let etherType), .other(let etherType): etherType
        case .ipv4: EtherType.ipv4
        case .ipv6: EtherType.ipv6
        }
    }

    /// The keys of the frame cut to its first `length` bytes.
    func expectedKeys(length: Int) -> FlowKeys {
        var keys = FlowKeys()
        var end = 14
        guard length >= end else { return keys }
        keys.dstMAC = dst
        keys.srcMAC = src
        keys.etherType = vlans.first?.tpid ?? networkEtherType
        for (index, tag) in vlans.enumerated() {
            end += 4
            guard length >= end else { return keys }
            keys.vlans.append(tag)
            keys.etherType = index + 1 < vlans.count ? vlans[index + 1].tpid : networkEtherType
        }
        switch network {
        case .arp(let arp, _):
            if length >= end + 28 { keys.arp = arp }
        case .ipv4(let ip, let transport):
            end += 20
            guard length >= end else { return keys }
            keys.srcIP = .v4(ip.src)
            keys.dstIP = .v4(ip.dst)
            keys.tos = ip.tos
            keys.ttl = ip.ttl
            keys.ipProto = transport.proto
            let isFragment = ip.moreFragments || ip.fragmentOffset != 0
            keys.ipFlags = IPFlags(isFragment: isFragment, isFirstFragment: isFragment && ip.fragmentOffset == 0)
            guard ip.fragmentOffset == 0 else { return keys }
            transport.setKeys(&keys, overIPv4: true, headerStart: end + ip.optionsLength, length: length)
        case .ipv6(let ip, let transport):
            end += 40
            guard length >= end else { return keys }
            keys.srcIP = .v6(ip.src)
            keys.dstIP = .v6(ip.dst)
            keys.tos = ip.trafficClass
            keys.ttl = ip.hopLimit
            keys.ipFlags = IPFlags(isFragment: false, isFirstFragment: false)
            keys.ipProto = ip.extensionHeaders.first?.number ?? transport.proto
            for (index, header) in ip.extensionHeaders.enumerated() {
                end += header.length
                guard length >= end else { return keys }
                keys.ipProto = index + 1 < ip.extensionHeaders.count
                    ? ip.extensionHeaders[index + 1].number : transport.proto
                if case .fragment(let offset, _, _) = header {
                    keys.ipFlags = IPFlags(isFragment: true, isFirstFragment: offset == 0)
                    guard offset == 0 else { return keys }
                }
            }
            transport.setKeys(&keys, overIPv4: false, headerStart: end, length: length)
        case .other:
            break
        }
        return keys
    }

    var description: String {
        "FrameSpec(vlans: \(vlans), network: \(network), payload: \(payload.count) bytes) = \(bytes.hex)"
    }
}

extension FrameSpec.Transport {
    func appended(to frame: FrameBuilder) -> FrameBuilder {
        switch self {
        case .tcp(let src, let dst, let flags): frame.tcp(src: src, dst: dst, flags: flags)
        case .udp(let src, let dst): frame.udp(src: src, dst: dst)
        case .sctp(let src, let dst): frame.sctp(src: src, dst: dst)
        case .icmp(let type, let code): frame.icmp(type: type, code: code)
        case .icmpv6(let type, let code): frame.icmpv6(type: type, code: code)
        case .opaque: frame
        }
    }

    func setKeys(_ keys: inout FlowKeys, overIPv4: Bool, headerStart: Int, length: Int) {
        guard length >= headerStart + headerLength else { return }
        switch self {
        case .tcp(let src, let dst, let flags):
            keys.srcPort = src
            keys.dstPort = dst
            keys.tcpFlags = flags
        case .udp(let src, let dst), .sctp(let src, let dst):
            keys.srcPort = src
            keys.dstPort = dst
        case .icmp(let type, let code) where overIPv4, .icmpv6(let type, let code) where !overIPv4:
            keys.icmpType = type
            keys.icmpCode = code
        case .icmp, .icmpv6, .opaque:
            break
        }
    }
}

extension IPv6ExtensionHeader {
    var number: UInt8 {
        switch self {
        case .hopByHop: IPProtocolNumber.hopByHop
        case .routing: IPProtocolNumber.routing
        case .destinationOptions: IPProtocolNumber.destinationOptions
        case .fragment: IPProtocolNumber.fragment
        }
    }

    var length: Int {
        switch self {
        case .hopByHop(let units), .routing(let units), .destinationOptions(let units): (Int(units) + 1) * 8
        case .fragment: 8
        }
    }
}

// MARK: - Random specs

extension FrameSpec {
    static let generator = Generator<FrameSpec, Shrink.None<FrameSpec>>(run: { rng in random(using: &rng) })

    static func random(using rng: inout some RandomNumberGenerator) -> FrameSpec {
        var spec = FrameSpec()
        spec.dst = MACAddress(rawValue: .random(in: 0 ... 0xffff_ffff_ffff, using: &rng))
        spec.src = MACAddress(rawValue: .random(in: 0 ... 0xffff_ffff_ffff, using: &rng))
        spec.vlans = (0 ..< Int.random(in: 0 ... FlowKeys.maxVLANDepth, using: &rng)).map { _ in
            VLANTag(tpid: [EtherType.vlan, EtherType.qinq].randomElement(using: &rng)!,
                    priority: .random(in: 0 ... 7, using: &rng), id: .random(in: 0 ... 4095, using: &rng))
        }
        switch Int.random(in: 0 ..< 10, using: &rng) {
        case 0:
            spec.network = .arp(ARPKeys(op: .random(in: 1 ... 2, using: &rng),
                                        senderMAC: MACAddress(rawValue: .random(in: 0 ... 0xffff_ffff_ffff, using: &rng)),
                                        senderIP: IPv4Address(rawValue: .random(in: .min ... .max, using: &rng)),
                                        targetMAC: MACAddress(rawValue: .random(in: 0 ... 0xffff_ffff_ffff, using: &rng)),
                                        targetIP: IPv4Address(rawValue: .random(in: .min ... .max, using: &rng))),
                                etherType: Bool.random(using: &rng) ? EtherType.arp : EtherType.rarp)
        case 1:
            spec.network = .other(etherType: [0x88b5, 0x8847, 0x88cc].randomElement(using: &rng)!)
        case 2 ..< 6:
            var ip = IPv4()
            ip.src = IPv4Address(rawValue: .random(in: .min ... .max, using: &rng))
            ip.dst = IPv4Address(rawValue: .random(in: .min ... .max, using: &rng))
            ip.tos = .random(in: .min ... .max, using: &rng)
            ip.ttl = .random(in: .min ... .max, using: &rng)
            ip.optionsLength = 4 * Int.random(in: 0 ... 10, using: &rng)
            if Int.random(in: 0 ..< 3, using: &rng) == 0 {
                ip.fragmentOffset = [0, 1, 185, 0x1fff].randomElement(using: &rng)!
                ip.moreFragments = .random(using: &rng)
            }
            spec.network = .ipv4(ip, randomTransport(using: &rng))
        default:
            var ip = IPv6()
            ip.src = IPv6Address(rawValue: .random(in: .min ... .max, using: &rng))
            ip.dst = IPv6Address(rawValue: .random(in: .min ... .max, using: &rng))
            ip.trafficClass = .random(in: .min ... .max, using: &rng)
            ip.hopLimit = .random(in: .min ... .max, using: &rng)
            ip.extensionHeaders = (0 ..< Int.random(in: 0 ... FlowKeys.maxIPv6ExtensionHeaders, using: &rng)).map { _ in
                switch Int.random(in: 0 ..< 4, using: &rng) {
                case 0: .hopByHop(lengthUnits: .random(in: 0 ... 3, using: &rng))
                case 1: .routing(lengthUnits: .random(in: 0 ... 3, using: &rng))
                case 2: .destinationOptions(lengthUnits: .random(in: 0 ... 3, using: &rng))
                default: .fragment(offset: [0, 0, 1, 0x1fff].randomElement(using: &rng)!,
                                   moreFragments: .random(using: &rng),
                                   identification: .random(in: .min ... .max, using: &rng))
                }
            }
            spec.network = .ipv6(ip, randomTransport(using: &rng))
        }
        spec.payload = (0 ..< Int.random(in: 0 ... 16, using: &rng)).map { _ in .random(in: .min ... .max, using: &rng) }
        return spec
    }

    private static func randomTransport(using rng: inout some RandomNumberGenerator) -> Transport {
        let src = UInt16.random(in: .min ... .max, using: &rng)
        let dst = UInt16.random(in: .min ... .max, using: &rng)
        return switch Int.random(in: 0 ..< 6, using: &rng) {
        case 0: .tcp(src: src, dst: dst, flags: .random(in: 0 ... 0x0fff, using: &rng))
        case 1: .udp(src: src, dst: dst)
        case 2: .sctp(src: src, dst: dst)
        case 3: .icmp(type: .random(in: .min ... .max, using: &rng), code: .random(in: .min ... .max, using: &rng))
        case 4: .icmpv6(type: .random(in: .min ... .max, using: &rng), code: .random(in: .min ... .max, using: &rng))
        default: .opaque(proto: [4, 41, 47, 50, 51, 59, 253].randomElement(using: &rng)!)
        }
    }
}

extension Collection<UInt8> {
    var hex: String {
        map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

/// Bytes from a hex string; whitespace is ignored.
func bytes(hex: String) -> [UInt8] {
    let digits = hex.filter { !$0.isWhitespace }.map { UInt8(String($0), radix: 16)! }
    return stride(from: 0, to: digits.count, by: 2).map { digits[$0] << 4 | digits[$0 + 1] }
}

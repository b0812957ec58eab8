/// Builds Ethernet frames layer by layer, outermost first, for tests, demos and the
/// traffic generator:
///
///     let frame = FrameBuilder()
///         .ethernet(dst: router, src: host)
///         .vlan(id: 100, priority: 3)
///         .ipv4(src: host4, dst: server4, ttl: 32)
///         .udp(src: 40000, dst: 53)
///         .payload(query)
///         .bytes
///
/// Each layer's "next protocol" field (EtherType, VLAN encapsulated type, IPv4 protocol,
/// IPv6 next header) is taken from the layer that follows unless given explicitly; with no
/// known layer after it, it is 0x88b5 (local experimental EtherType) or 253 (IP protocol
/// for experimentation). Lengths and checksums (IPv4 header, TCP, UDP, SCTP CRC32c, ICMP,
/// ICMPv6) are computed from the layers as built, so frames are valid on a wire; the
/// pseudo-header of an L4 checksum comes from the nearest IP layer before it (none: the
/// checksum is 0). Malformed frames come from explicit fields (`ihl:`, `dataOffset:`,
/// `proto:`, `type:`) and `truncated(to:)`.
public struct FrameBuilder: Hashable, Sendable {
    private var layers: [Layer] = []
    private var minimumLength = 0
    private var truncation: Int?

    public init() {}

    // MARK: Layers

    /// Ethernet II; `type` defaults to the next layer's EtherType or TPID.
    public func ethernet(dst: MACAddress, src: MACAddress, type: UInt16? = nil) -> Self {
        appending(.ethernet(dst: dst, src: src, type: type))
    }

    /// A VLAN tag; its TPID goes into the type field of the layer before it, `type` (the
    /// encapsulated EtherType) defaults to the next layer's.
    public func vlan(id: UInt16, priority: UInt8 = 0, tpid: UInt16 = EtherType.vlan,
                     dei: Bool = false, type: UInt16? = nil) -> Self {
        appending(.vlan(VLANTag(tpid: tpid, priority: priority, id: id), dei: dei, type: type))
    }

    /// ARP for Ethernet/IPv4 (RARP: give `.ethernet(..., type: EtherType.rarp)`).
    public func arp(op: UInt16, sha: MACAddress, spa: IPv4Address, tha: MACAddress, tpa: IPv4Address) -> Self {
        appending(.arp(ARPKeys(op: op, senderMAC: sha, senderIP: spa, targetMAC: tha, targetIP: tpa)))
    }

    /// IPv4. `options` are padded with zeros (end of options list) to a multiple of 4
    /// bytes; `fragmentOffset` is in 8-byte units; `ihl`, when given, is written instead of
    /// the real header length (the options are still written).
    public func ipv4(src: IPv4Address, dst: IPv4Address, proto: UInt8? = nil, tos: UInt8 = 0, ttl: UInt8 = 64,
                     identification: UInt16 = 0, dontFragment: Bool = false, options: [UInt8] = [],
                     fragmentOffset: UInt16 = 0, moreFragments: Bool = false, ihl: UInt8? = nil) -> Self {
        appending(.ipv4(IPv4Fields(
            src: src, dst: dst, proto: proto, tos: tos, ttl: ttl, identification: identification,
            dontFragment: dontFragment, options: options, fragmentOffset: fragmentOffset,
            moreFragments: moreFragments, ihl: ihl)))
    }

    /// IPv6 with `extensionHeaders` in order; `nextHeader` (of the last extension header, or
    /// of the fixed header when there is none) defaults to the next layer's protocol.
    public func ipv6(src: IPv6Address, dst: IPv6Address, trafficClass: UInt8 = 0, flowLabel: UInt32 = 0,
                     hopLimit: UInt8 = 64, extensionHeaders: [IPv6ExtensionHeader] = [],
                     nextHeader: UInt8? = nil) -> Self {
        appending(.ipv6(IPv6Fields(
            src: src, dst: dst, trafficClass: trafficClass, flowLabel: flowLabel, hopLimit: hopLimit,
            extensionHeaders: extensionHeaders, nextHeader: nextHeader)))
    }

    /// TCP without options. `flags` are the low 12 bits of the offset/flags word
    /// (see `TCPFlag`); `dataOffset`, when given, is written instead of 5.
    public func tcp(src: UInt16, dst: UInt16, flags: UInt16 = TCPFlag.syn, seq: UInt32 = 0, ack: UInt32 = 0,
                    window: UInt16 = 65535, dataOffset: UInt8? = nil) -> Self {
        appending(.tcp(TCPFields(src: src, dst: dst, flags: flags, seq: seq, ack: ack, window: window,
                                 dataOffset: dataOffset)))
    }

    public func udp(src: UInt16, dst: UInt16) -> Self {
        appending(.udp(src: src, dst: dst))
    }

    /// The SCTP common header; chunks follow as `payload`.
    public func sctp(src: UInt16, dst: UInt16, verificationTag: UInt32 = 0) -> Self {
        appending(.sctp(src: src, dst: dst, verificationTag: verificationTag))
    }

    /// ICMP for IPv4; `rest` is the second word of the header (identifier and sequence for
    /// echo).
    public func icmp(type: UInt8, code: UInt8, rest: UInt32 = 0) -> Self {
        appending(.icmp(type: type, code: code, rest: rest, version: .v4))
    }

    public func icmpv6(type: UInt8, code: UInt8, rest: UInt32 = 0) -> Self {
        appending(.icmp(type: type, code: code, rest: rest, version: .v6))
    }

    public func payload(_ bytes: [UInt8]) -> Self {
        appending(.payload(bytes))
    }

    // MARK: Whole frame

    /// Pads with zeros to `length` bytes (60: Ethernet's minimum without the FCS).
    public func padded(to length: Int = 60) -> Self {
        var copy = self
        copy.minimumLength = length
        return copy
    }

    /// Keeps only the first `length` bytes, after padding.
    public func truncated(to length: Int) -> Self {
        var copy = self
        copy.truncation = max(0, length)
        return copy
    }

    /// The frame.
    public var bytes: [UInt8] {
        var frame: [UInt8] = []
        for index in layers.indices.reversed() {
            frame = encode(layerAt: index, payload: frame)
        }
        if frame.count < minimumLength {
            frame += repeatElement(0, count: minimumLength - frame.count)
        }
        if let truncation {
            frame = Array(frame.prefix(truncation))
        }
        return frame
    }

    private func appending(_ layer: Layer) -> Self {
        var copy = self
        copy.layers.append(layer)
        return copy
    }
}

/// The flag bits of TCP's offset/flags word.
public enum TCPFlag {
    public static let fin: UInt16 = 0x001
    public static let syn: UInt16 = 0x002
    public static let rst: UInt16 = 0x004
    public static let psh: UInt16 = 0x008
    public static let ack: UInt16 = 0x010
    public static let urg: UInt16 = 0x020
    public static let ece: UInt16 = 0x040
    public static let cwr: UInt16 = 0x080
    /// AE (formerly NS, RFC 3540), the lowest bit of the data offset byte.
    public static let ae: UInt16 = 0x100
}

public enum IPv6ExtensionHeader: Hashable, Sendable {
    /// Filled with one PadN option; `lengthUnits` is the Hdr Ext Len field (the header is
    /// (lengthUnits + 1) * 8 bytes).
    case hopByHop(lengthUnits: UInt8 = 0)
    /// Type 0 with segments left 0 (ignored by receivers, RFC 5095), no addresses.
    case routing(lengthUnits: UInt8 = 0)
    case destinationOptions(lengthUnits: UInt8 = 0)
    /// `offset` in 8-byte units.
    case fragment(offset: UInt16, moreFragments: Bool, identification: UInt32 = 0)

    var protocolNumber: UInt8 {
        switch self {
        case .hopByHop: IPProtocolNumber.hopByHop
        case .routing: IPProtocolNumber.routing
        case .destinationOptions: IPProtocolNumber.destinationOptions
        case .fragment: IPProtocolNumber.fragment
        }
    }

    func encoded(nextHeader: UInt8) -> [UInt8] {
        switch self {
        case .hopByHop(let units), .destinationOptions(let units):
            let padLength = Int(units) * 8 + 4
            return [nextHeader, units, 1, UInt8(truncatingIfNeeded: padLength)]
                + [UInt8](repeating: 0, count: padLength)
        case .routing(let units):
            return [nextHeader, units, 0, 0] + [UInt8](repeating: 0, count: Int(units) * 8 + 4)
        case .fragment(let offset, let moreFragments, let identification):
            return [nextHeader, 0] + (offset << 3 | (moreFragments ? 1 : 0)).bigEndianBytes
                + identification.bigEndianBytes
        }
    }
}

// MARK: - Encoding

extension FrameBuilder {
    fileprivate enum IPVersion: Hashable, Sendable { case v4, v6 }

    fileprivate struct IPv4Fields: Hashable, Sendable {
        var src, dst: IPv4Address
        var proto: UInt8?
        var tos, ttl: UInt8
        var identification: UInt16
        var dontFragment: Bool
        var options: [UInt8]
        var fragmentOffset: UInt16
        var moreFragments: Bool
        var ihl: UInt8?
    }

    fileprivate struct IPv6Fields: Hashable, Sendable {
        var src, dst: IPv6Address
        var trafficClass: UInt8
        var flowLabel: UInt32
        var hopLimit: UInt8
        var extensionHeaders: [IPv6ExtensionHeader]
        var nextHeader: UInt8?
    }

    fileprivate struct TCPFields: Hashable, Sendable {
        var src, dst, flags: UInt16
        var seq, ack: UInt32
        var window: UInt16
        var dataOffset: UInt8?
    }

    fileprivate enum Layer: Hashable, Sendable {
        case ethernet(dst: MACAddress, src: MACAddress, type: UInt16?)
        case vlan(VLANTag, dei: Bool, type: UInt16?)
        case arp(ARPKeys)
        case ipv4(IPv4Fields)
        case ipv6(IPv6Fields)
        case tcp(TCPFields)
        case udp(src: UInt16, dst: UInt16)
        case sctp(src: UInt16, dst: UInt16, verificationTag: UInt32)
        case icmp(type: UInt8, code: UInt8, rest: UInt32, version: IPVersion)
        case payload([UInt8])

        var isIP: Bool {
            switch self {
            case .ipv4, .ipv6: true
            default: false
            }
        }
    }

    /// What the layer before `index` writes in its EtherType field.
    private func etherType(before index: Int) -> UInt16 {
        switch layers[safe: index] {
        case .vlan(let tag, _, _): tag.tpid
        case .arp: EtherType.arp
        case .ipv4: EtherType.ipv4
        case .ipv6: EtherType.ipv6
        default: 0x88b5
        }
    }

    /// What the IP layer before `index` writes in its protocol / next header field.
    private func ipProtocol(before index: Int) -> UInt8 {
        switch layers[safe: index] {
        case .tcp: IPProtocolNumber.tcp
        case .udp: IPProtocolNumber.udp
        case .sctp: IPProtocolNumber.sctp
        case .icmp(_, _, _, .v4): IPProtocolNumber.icmp
        case .icmp(_, _, _, .v6): IPProtocolNumber.icmpv6
        case .ipv4: 4
        case .ipv6: 41
        default: 253
        }
    }

    /// The checksum of an L4 segment with the pseudo-header of the nearest IP layer
    /// before `index` (RFC 768, RFC 8200 section 8.1); nil without one.
    private func pseudoHeaderChecksum(before index: Int, proto: UInt8, segment: [UInt8]) -> UInt16? {
        var checksum = InternetChecksum()
        switch layers[..<index].last(where: \.isIP) {
        case .ipv4(let ip):
            checksum.add(ip.src.rawValue)
            checksum.add(ip.dst.rawValue)
            checksum.add(UInt16(proto))
            checksum.add(UInt16(truncatingIfNeeded: segment.count))
        case .ipv6(let ip):
            checksum.add(ip.src.rawValue.bigEndianBytes)
            checksum.add(ip.dst.rawValue.bigEndianBytes)
            checksum.add(UInt32(truncatingIfNeeded: segment.count))
            checksum.add(UInt32(proto))
        default:
            return nil
        }
        checksum.add(segment)
        return checksum.value
    }

    private func encode(layerAt index: Int, payload: [UInt8]) -> [UInt8] {
        switch layers[index] {
        case .ethernet(let dst, let src, let type):
            return dst.bytes + src.bytes + (type ?? etherType(before: index + 1)).bigEndianBytes + payload

        case .vlan(let tag, let dei, let type):
            return tag.tci(dei: dei).bigEndianBytes + (type ?? etherType(before: index + 1)).bigEndianBytes + payload

        case .arp(let arp):
            return [0, 1] + EtherType.ipv4.bigEndianBytes + [6, 4] + arp.op.bigEndianBytes
                + arp.senderMAC.bytes + arp.senderIP.rawValue.bigEndianBytes
                + arp.targetMAC.bytes + arp.targetIP.rawValue.bigEndianBytes + payload

        case .ipv4(let ip):
            let options = ip.options + [UInt8](repeating: 0, count: (4 - ip.options.count % 4) % 4)
            let headerLength = 20 + options.count
            let ihl = ip.ihl ?? UInt8(truncatingIfNeeded: headerLength / 4)
            let flags: UInt16 = (ip.dontFragment ? 0x4000 : 0) | (ip.moreFragments ? 0x2000 : 0)
            var header: [UInt8] = [0x40 | ihl & 0x0f, ip.tos]
            header += UInt16(truncatingIfNeeded: headerLength + payload.count).bigEndianBytes
            header += ip.identification.bigEndianBytes
            header += (flags | ip.fragmentOffset & 0x1fff).bigEndianBytes
            header += [ip.ttl, ip.proto ?? ipProtocol(before: index + 1), 0, 0]
            header += ip.src.rawValue.bigEndianBytes + ip.dst.rawValue.bigEndianBytes + options
            header.replaceSubrange(10 ..< 12, with: InternetChecksum.of(header).bigEndianBytes)
            return header + payload

        case .ipv6(let ip):
            var next = ip.nextHeader ?? ipProtocol(before: index + 1)
            var extensions: [UInt8] = []
            for header in ip.extensionHeaders.reversed() {
                extensions = header.encoded(nextHeader: next) + extensions
                next = header.protocolNumber
            }
            let versionClassLabel = 6 << 28 | UInt32(ip.trafficClass) << 20 | ip.flowLabel & 0xfffff
            return versionClassLabel.bigEndianBytes
                + UInt16(truncatingIfNeeded: extensions.count + payload.count).bigEndianBytes
                + [next, ip.hopLimit] + ip.src.rawValue.bigEndianBytes + ip.dst.rawValue.bigEndianBytes
                + extensions + payload

        case .tcp(let tcp):
            let offsetAndFlags = UInt16(tcp.dataOffset ?? 5) << 12 | tcp.flags & 0x0fff
            var segment = tcp.src.bigEndianBytes + tcp.dst.bigEndianBytes
                + tcp.seq.bigEndianBytes + tcp.ack.bigEndianBytes
                + offsetAndFlags.bigEndianBytes + tcp.window.bigEndianBytes
                + [0, 0, 0, 0] + payload  // checksum, urgent pointer
            let checksum = pseudoHeaderChecksum(before: index, proto: IPProtocolNumber.tcp, segment: segment)
            segment.replaceSubrange(16 ..< 18, with: (checksum ?? 0).bigEndianBytes)
            return segment

        case .udp(let src, let dst):
            var datagram = src.bigEndianBytes + dst.bigEndianBytes
                + UInt16(truncatingIfNeeded: 8 + payload.count).bigEndianBytes + [0, 0] + payload
            // 0 means "no checksum"; a computed 0 is sent as 0xffff (RFC 768).
            let checksum = pseudoHeaderChecksum(before: index, proto: IPProtocolNumber.udp, segment: datagram)
                .map { $0 == 0 ? 0xffff : $0 }
            datagram.replaceSubrange(6 ..< 8, with: (checksum ?? 0).bigEndianBytes)
            return datagram

        case .sctp(let src, let dst, let verificationTag):
            var packet = src.bigEndianBytes + dst.bigEndianBytes + verificationTag.bigEndianBytes
                + [0, 0, 0, 0] + payload
            // The CRC goes on the wire least significant byte first (RFC 9260 appendix A).
            packet.replaceSubrange(8 ..< 12, with: CRC32C.of(packet).byteSwapped.bigEndianBytes)
            return packet

        case .icmp(let type, let code, let rest, let version):
            var message = [type, code, 0, 0] + rest.bigEndianBytes + payload
            let checksum = switch version {
            case .v4: InternetChecksum.of(message)
            case .v6: pseudoHeaderChecksum(before: index, proto: IPProtocolNumber.icmpv6, segment: message) ?? 0
            }
            message.replaceSubrange(2 ..< 4, with: checksum.bigEndianBytes)
            return message

        case .payload(let bytes):
            return bytes + payload
        }
    }
}

extension Array {
    fileprivate subscript(safe index: Int) -> Element? {
        indices.contains(index) ? self[index] : nil
    }
}

extension FixedWidthInteger {
    /// Network byte order.
    var bigEndianBytes: [UInt8] {
        (0 ..< bitWidth / 8).reversed().map { UInt8(truncatingIfNeeded: self >> ($0 * 8)) }
    }
}

extension MACAddress {
    var bytes: [UInt8] { Array(rawValue.bigEndianBytes.suffix(6)) }
}

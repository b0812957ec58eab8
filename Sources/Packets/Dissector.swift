extension FlowKeys {
    /// The most IPv6 extension headers (hop-by-hop, routing, destination options,
    /// fragment) walked before the upper-layer header; one more is `.ipv6ExtensionsTooDeep`.
    public static let maxIPv6ExtensionHeaders = 4

    /// Dissects an Ethernet frame as tc flower's flow dissector does, with the bounds an
    /// XDP program can keep. docs/packets.md is the reference; in short:
    ///
    /// - **Whole header or nothing.** Each header is read only when all of its fixed part is
    ///   in the frame (Ethernet 14 bytes, VLAN tag 4 after its TPID, ARP 28, IPv4 20,
    ///   IPv6 40, IPv6 extension header (length + 1) * 8, fragment header 8, TCP 20, UDP 8,
    ///   SCTP 12, ICMP and ICMPv6 8); its keys are then all set, otherwise none of them, and
    ///   dissection stops. IPv4 total length and IPv6 payload length are not consulted, so
    ///   Ethernet padding reads as payload, as in the kernel.
    /// - **VLAN.** Up to `maxVLANDepth` tags, TPID 0x8100 or 0x88a8 in either position;
    ///   `etherType` is the EtherType after the last tag read (for a truncated tag, its
    ///   TPID). A third tag is `.vlanTooDeep`.
    /// - **ARP and RARP.** Only Ethernet/IPv4 (htype 1, ptype 0x0800, hlen 6, plen 4) with
    ///   op 1 (request) or 2 (reply), as the kernel; otherwise `arp` stays nil.
    /// - **IPv4.** Version 4 and IHL >= 5, else `.malformedHeader`; options are skipped.
    ///   `ipFlags.isFragment` = MF or offset != 0; `isFirstFragment` = fragment and
    ///   offset == 0. L4 keys only when offset == 0: the first fragment has them, as in
    ///   hardware flower offloads (software tc reads none from any fragment).
    /// - **IPv6.** Version 6, else `.malformedHeader`. Extension headers 0, 43, 60 and 44 are
    ///   walked, at most `maxIPv6ExtensionHeaders`, else `.ipv6ExtensionsTooDeep`. A fragment
    ///   header makes `isFragment` true (even with offset 0 and M clear, as the kernel) and
    ///   `isFirstFragment` = offset == 0; a non-first fragment ends the walk. `ipProto` is
    ///   the next header where the walk stopped: an upper layer, AH, ESP, no-next-header,
    ///   or an extension header that is truncated or one too many.
    /// - **L4.** TCP (ports, `tcpFlags` = low 12 bits of the offset/flags word; data offset
    ///   < 5 is `.malformedHeader`), UDP and SCTP (ports), ICMP under IPv4 only and ICMPv6
    ///   under IPv6 only (type, code).
    public init(dissecting frame: [UInt8]) {
        self.init()
        var cursor = ByteCursor(frame)
        dissectEthernet(&cursor)
    }

    private mutating func dissectEthernet(_ cursor: inout ByteCursor) {
        guard var header = cursor.take(EthernetLayout.headerLength),
              let dst = header.readMAC(), let src = header.readMAC(),
              var type = header.read(UInt16.self)
        else { return }
        dstMAC = dst
        srcMAC = src
        etherType = type
        while VLANLayout.tpids.contains(type) {
            guard vlans.count < Self.maxVLANDepth else {
                unclassifiable = .vlanTooDeep
                return
            }
            guard var tag = cursor.take(VLANLayout.tagLength),
                  let tci = tag.read(UInt16.self), let next = tag.read(UInt16.self)
            else { return }
            vlans.append(VLANTag(tpid: type, tci: tci))
            type = next
            etherType = next
        }
        switch type {
        case EtherType.arp, EtherType.rarp: dissectARP(&cursor)
        case EtherType.ipv4: dissectIPv4(&cursor)
        case EtherType.ipv6: dissectIPv6(&cursor)
        default: return
        }
    }

    private mutating func dissectARP(_ cursor: inout ByteCursor) {
        guard var header = cursor.take(28),
              let hardwareType = header.read(UInt16.self), let protocolType = header.read(UInt16.self),
              let hardwareLength = header.read(UInt8.self), let protocolLength = header.read(UInt8.self),
              let op = header.read(UInt16.self),
              let senderMAC = header.readMAC(), let senderIP = header.readIPv4(),
              let targetMAC = header.readMAC(), let targetIP = header.readIPv4()
        else { return }
        guard hardwareType == 1, protocolType == EtherType.ipv4, hardwareLength == 6, protocolLength == 4,
              op == 1 || op == 2
        else { return }
        arp = ARPKeys(op: op, senderMAC: senderMAC, senderIP: senderIP, targetMAC: targetMAC, targetIP: targetIP)
    }

    private mutating func dissectIPv4(_ cursor: inout ByteCursor) {
        guard var header = cursor.take(20),
              let versionAndIHL = header.read(UInt8.self), let tos = header.read(UInt8.self),
              header.skip(4),  // total length, identification
              let flagsAndOffset = header.read(UInt16.self),
              let ttl = header.read(UInt8.self), let proto = header.read(UInt8.self),
              header.skip(2),  // header checksum
              let src = header.readIPv4(), let dst = header.readIPv4()
        else { return }
        let ihl = Int(versionAndIHL & 0x0f)
        guard versionAndIHL >> 4 == 4, ihl >= 5 else {
            unclassifiable = .malformedHeader
            return
        }
        self.tos = tos
        self.ttl = ttl
        ipProto = proto
        srcIP = .v4(src)
        dstIP = .v4(dst)
        let moreFragments = flagsAndOffset & 0x2000 != 0
        let fragmentOffset = flagsAndOffset & 0x1fff
        let isFragment = moreFragments || fragmentOffset != 0
        ipFlags = IPFlags(isFragment: isFragment, isFirstFragment: isFragment && fragmentOffset == 0)
        guard fragmentOffset == 0, cursor.skip(ihl * 4 - 20) else { return }
        dissectTransport(proto, overIPv4: true, &cursor)
    }

    private mutating func dissectIPv6(_ cursor: inout ByteCursor) {
        guard var header = cursor.take(40),
              let versionClassLabel = header.read(UInt32.self),
              header.skip(2),  // payload length
              let nextHeader = header.read(UInt8.self), let hopLimit = header.read(UInt8.self),
              let src = header.readIPv6(), let dst = header.readIPv6()
        else { return }
        guard versionClassLabel >> 28 == 6 else {
            unclassifiable = .malformedHeader
            return
        }
        tos = UInt8(truncatingIfNeeded: versionClassLabel >> 20)
        ttl = hopLimit
        srcIP = .v6(src)
        dstIP = .v6(dst)
        ipFlags = IPFlags(isFragment: false, isFirstFragment: false)
        var proto = nextHeader
        defer { ipProto = proto }  // the next header where the walk stopped, however it stopped
        var walked = 0
        while IPv6Layout.walkedExtensions.contains(proto) {
            guard walked < Self.maxIPv6ExtensionHeaders else {
                unclassifiable = .ipv6ExtensionsTooDeep
                return
            }
            walked += 1
            if proto == IPProtocolNumber.fragment {
                guard var fragment = cursor.take(8),
                      let next = fragment.read(UInt8.self), fragment.skip(1),  // reserved
                      let offsetAndFlags = fragment.read(UInt16.self)
                else { return }
                let isFirst = offsetAndFlags >> 3 == 0
                ipFlags = IPFlags(isFragment: true, isFirstFragment: isFirst)
                proto = next
                guard isFirst else { return }
            } else {
                guard let next = Self.skipIPv6Options(&cursor) else { return }
                proto = next
            }
        }
        dissectTransport(proto, overIPv4: false, &cursor)
    }

    /// Moves past a hop-by-hop, routing or destination options header and returns its
    /// next header; nil (not moved) when the header is not all in the frame.
    private static func skipIPv6Options(_ cursor: inout ByteCursor) -> UInt8? {
        var probe = cursor
        guard let next = probe.read(UInt8.self), let units = probe.read(UInt8.self),
              cursor.skip((Int(units) + 1) * 8)
        else { return nil }
        return next
    }

    /// `proto` is the IPv4 protocol or the IPv6 next header.
    private mutating func dissectTransport(_ proto: UInt8, overIPv4 isIPv4: Bool, _ cursor: inout ByteCursor) {
        switch proto {
        case IPProtocolNumber.tcp:
            guard var header = cursor.take(20),
                  let src = header.read(UInt16.self), let dst = header.read(UInt16.self),
                  header.skip(8),  // sequence and acknowledgement numbers
                  let offsetAndFlags = header.read(UInt16.self)
            else { return }
            guard offsetAndFlags >> 12 >= 5 else {
                unclassifiable = .malformedHeader
                return
            }
            srcPort = src
            dstPort = dst
            tcpFlags = offsetAndFlags & 0x0fff
        case IPProtocolNumber.udp, IPProtocolNumber.sctp:
            let length = proto == IPProtocolNumber.udp ? 8 : 12
            guard var header = cursor.take(length),
                  let src = header.read(UInt16.self), let dst = header.read(UInt16.self)
            else { return }
            srcPort = src
            dstPort = dst
        case IPProtocolNumber.icmp where isIPv4, IPProtocolNumber.icmpv6 where !isIPv4:
            guard var header = cursor.take(8),
                  let type = header.read(UInt8.self), let code = header.read(UInt8.self)
            else { return }
            icmpType = type
            icmpCode = code
        default:
            return
        }
    }
}

enum IPv6Layout {
    static let walkedExtensions: Set<UInt8> = [
        IPProtocolNumber.hopByHop, IPProtocolNumber.routing,
        IPProtocolNumber.destinationOptions, IPProtocolNumber.fragment,
    ]
}

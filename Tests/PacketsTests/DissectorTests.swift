import Packets
import PropertyBased
import Testing

private let hostMAC = MACAddress(rawValue: 0x6677_8899_aabb)
private let routerMAC = MACAddress(rawValue: 0x0011_2233_4455)
private let host4 = IPv4Address(rawValue: 0xc000_0201)  // 192.0.2.1
private let server4 = IPv4Address(rawValue: 0xc633_6402)  // 198.51.100.2
private let host6 = IPv6Address(rawValue: 0x2001_0db8 << 96 | 1)
private let server6 = IPv6Address(rawValue: 0x2001_0db8 << 96 | 2)
private let ethernet = FrameBuilder().ethernet(dst: routerMAC, src: hostMAC)

private func dissect(_ frame: FrameBuilder) -> FlowKeys {
    FlowKeys(dissecting: frame.bytes)
}

/// Sets bits in the frame's byte at `offset` (for fields the builder always writes right).
private func patched(_ frame: [UInt8], at offset: Int, _ change: (inout UInt8) -> Void) -> [UInt8] {
    var copy = frame
    change(&copy[offset])
    return copy
}

@Suite struct DissectorTests {
    // MARK: Properties over built frames

    @Test func builtFramesDissectToTheFieldsTheyWereBuiltFrom() async {
        await propertyCheck(count: 500, input: FrameSpec.generator) { spec in
            let bytes = spec.bytes
            #expect(FlowKeys(dissecting: bytes) == spec.expectedKeys(length: bytes.count), "\(spec)")
        }
    }

    /// Every cut of every frame: no crash, and a header's keys appear exactly when the
    /// whole header is in the frame.
    @Test func keysAppearOnlyWhenTheirHeaderIsComplete() async {
        await propertyCheck(count: 200, input: FrameSpec.generator) { spec in
            let bytes = spec.bytes
            for length in 0 ... bytes.count {
                let keys = FlowKeys(dissecting: Array(bytes.prefix(length)))
                #expect(keys == spec.expectedKeys(length: length), "cut at \(length): \(spec)")
            }
        }
    }

    @Test func arbitraryBytesNeverCrash() async {
        await propertyCheck(count: 2000, input: Gen.uint8().array(of: 0 ... 120)) { bytes in
            _ = FlowKeys(dissecting: bytes)
        }
    }

    /// Random single-byte corruption of valid frames reaches the deeper parsers with odd
    /// lengths and fields, which random bytes alone rarely do.
    @Test func corruptedFramesNeverCrash() async {
        await propertyCheck(count: 1000, input: zip(FrameSpec.generator, Gen.int(in: 0 ... 200), Gen.uint8())) {
            spec, position, value in
            var bytes = spec.bytes
            bytes[position % bytes.count] = value
            let keys = FlowKeys(dissecting: bytes)
            #expect(keys.vlans.count <= FlowKeys.maxVLANDepth)
        }
    }

    // MARK: Ethernet and VLAN

    @Test func untaggedUDPOverIPv4() {
        let keys = dissect(ethernet.ipv4(src: host4, dst: server4, tos: 0x2e, ttl: 17).udp(src: 40000, dst: 53))
        var expected = FlowKeys()
        expected.dstMAC = routerMAC
        expected.srcMAC = hostMAC
        expected.etherType = 0x0800
        expected.ipProto = 17
        expected.srcIP = .v4(host4)
        expected.dstIP = .v4(server4)
        expected.tos = 0x2e
        expected.ttl = 17
        expected.ipFlags = IPFlags(isFragment: false, isFirstFragment: false)
        expected.srcPort = 40000
        expected.dstPort = 53
        #expect(keys == expected)
    }

    @Test func framesShorterThanAnEthernetHeaderHaveNoKeys() {
        let bytes = ethernet.ipv4(src: host4, dst: server4).bytes
        for length in 0 ..< 14 {
            #expect(FlowKeys(dissecting: Array(bytes.prefix(length))) == FlowKeys())
        }
    }

    @Test(arguments: [
        (EtherType.vlan, EtherType.vlan), (EtherType.vlan, EtherType.qinq),
        (EtherType.qinq, EtherType.vlan), (EtherType.qinq, EtherType.qinq),
    ])
    func twoTagsInAnyTPIDOrder(outer: UInt16, inner: UInt16) {
        let keys = dissect(ethernet.vlan(id: 4095, priority: 7, tpid: outer).vlan(id: 0, priority: 0, tpid: inner)
            .ipv6(src: host6, dst: server6).udp(src: 1, dst: 2))
        #expect(keys.vlans == [VLANTag(tpid: outer, priority: 7, id: 4095), VLANTag(tpid: inner, priority: 0, id: 0)])
        #expect(keys.etherType == EtherType.ipv6)
        #expect(keys.dstPort == 2)
        #expect(keys.unclassifiable == nil)
    }

    @Test func deiBitIsNotPartOfTheKey() {
        let keys = dissect(ethernet.vlan(id: 42, priority: 5, dei: true).ipv4(src: host4, dst: server4))
        #expect(keys.vlans == [VLANTag(tpid: EtherType.vlan, priority: 5, id: 42)])
    }

    @Test func aThirdTagIsTooDeep() {
        let keys = dissect(ethernet.vlan(id: 1, tpid: EtherType.qinq).vlan(id: 2).vlan(id: 3)
            .ipv4(src: host4, dst: server4).udp(src: 1, dst: 2))
        #expect(keys.unclassifiable == .vlanTooDeep)
        #expect(keys.vlans.map(\.id) == [1, 2])
        #expect(keys.etherType == EtherType.vlan)  // the third tag's TPID
        #expect(keys.ipProto == nil)
        #expect(keys.dstPort == nil)
    }

    @Test func a9100TagIsJustAnEtherType() {
        let keys = dissect(ethernet.vlan(id: 1, tpid: 0x9100).ipv4(src: host4, dst: server4))
        #expect(keys.vlans == [])
        #expect(keys.etherType == 0x9100)
        #expect(keys.ipProto == nil)
    }

    @Test func aTruncatedTagLeavesItsTPIDAsTheEtherType() {
        let bytes = ethernet.vlan(id: 7).vlan(id: 8, tpid: EtherType.qinq).ipv4(src: host4, dst: server4).bytes
        #expect(FlowKeys(dissecting: Array(bytes.prefix(17))).etherType == EtherType.vlan)
        let oneTag = FlowKeys(dissecting: Array(bytes.prefix(21)))
        #expect(oneTag.vlans.map(\.id) == [7])
        #expect(oneTag.etherType == EtherType.qinq)
    }

    // MARK: ARP

    @Test(arguments: [EtherType.arp, EtherType.rarp], [UInt16(1), 2])
    func arpRequestAndReply(etherType: UInt16, op: UInt16) {
        let keys = dissect(FrameBuilder().ethernet(dst: routerMAC, src: hostMAC, type: etherType)
            .arp(op: op, sha: hostMAC, spa: host4, tha: routerMAC, tpa: server4))
        #expect(keys.etherType == etherType)
        #expect(keys.arp == ARPKeys(op: op, senderMAC: hostMAC, senderIP: host4, targetMAC: routerMAC, targetIP: server4))
        #expect(keys.ipProto == nil)
    }

    /// Byte offset in the frame and value that make the ARP header one the kernel's
    /// dissector does not read: other hardware type, protocol type, address lengths, or
    /// an op other than request and reply (RARP's own 3 and 4 included).
    @Test(arguments: [(15, UInt8(6)), (17, 0xdd), (18, 8), (19, 16), (21, 0), (21, 3), (21, 4), (20, 1)])
    func arpOtherThanEthernetIPv4RequestOrReplyHasNoARPKeys(offset: Int, value: UInt8) {
        let bytes = ethernet.arp(op: 1, sha: hostMAC, spa: host4, tha: routerMAC, tpa: server4).bytes
        let keys = FlowKeys(dissecting: patched(bytes, at: offset) { $0 = value })
        #expect(keys.arp == nil)
        #expect(keys.etherType == EtherType.arp)
        #expect(keys.unclassifiable == nil)
    }

    // MARK: IPv4

    @Test(arguments: 0 ... 4)
    func ipv4HeaderLengthBelowFiveIsMalformed(ihl: Int) {
        let keys = dissect(ethernet.ipv4(src: host4, dst: server4, ihl: UInt8(ihl)).udp(src: 1, dst: 2))
        #expect(keys.unclassifiable == .malformedHeader)
        #expect(keys.etherType == EtherType.ipv4)
        #expect(keys.srcIP == nil && keys.ipProto == nil && keys.ipFlags == nil && keys.srcPort == nil)
    }

    @Test(arguments: [UInt8(0), 5, 6, 15])
    func ipv4VersionOtherThanFourIsMalformed(version: UInt8) {
        let bytes = ethernet.ipv4(src: host4, dst: server4).udp(src: 1, dst: 2).bytes
        let keys = FlowKeys(dissecting: patched(bytes, at: 14) { $0 = version << 4 | 5 })
        #expect(keys.unclassifiable == .malformedHeader)
        #expect(keys.srcIP == nil)
    }

    @Test func ipv4OptionsAreSkipped() {
        let keys = dissect(ethernet.ipv4(src: host4, dst: server4, options: [0x94, 0x04, 0, 0, 1, 1, 1, 0])
            .tcp(src: 22, dst: 50000, flags: TCPFlag.ack))
        #expect(keys.srcPort == 22)
        #expect(keys.tcpFlags == TCPFlag.ack)
    }

    /// IHL promises options the frame does not have: the IP keys stand, L4 is absent.
    @Test func ipv4HeaderLengthPastTheEndOfTheFrame() {
        let keys = dissect(ethernet.ipv4(src: host4, dst: server4, proto: IPProtocolNumber.udp, ihl: 15)
            .payload([0, 1, 0, 2, 0, 8, 0, 0]))
        #expect(keys.ipProto == IPProtocolNumber.udp)
        #expect(keys.srcIP == .v4(host4))
        #expect(keys.srcPort == nil)
        #expect(keys.unclassifiable == nil)
    }

    @Test(arguments: [
        // offset, MF, isFragment, isFirstFragment, ports read
        (UInt16(0), false, false, false, true),
        (0, true, true, true, true),
        (1, true, true, false, false),
        (1, false, true, false, false),
        (0x1fff, false, true, false, false),
    ])
    func ipv4Fragments(offset: UInt16, moreFragments: Bool, isFragment: Bool, isFirst: Bool, hasPorts: Bool) {
        let keys = dissect(ethernet.ipv4(src: host4, dst: server4, fragmentOffset: offset, moreFragments: moreFragments)
            .udp(src: 7, dst: 9))
        #expect(keys.ipFlags == IPFlags(isFragment: isFragment, isFirstFragment: isFirst))
        #expect(keys.ipProto == IPProtocolNumber.udp)
        #expect((keys.srcPort, keys.dstPort) == (hasPorts ? 7 : nil, hasPorts ? 9 : nil))
    }

    @Test func dontFragmentIsNotAFragment() {
        let keys = dissect(ethernet.ipv4(src: host4, dst: server4, dontFragment: true).udp(src: 7, dst: 9))
        #expect(keys.ipFlags == IPFlags(isFragment: false, isFirstFragment: false))
    }

    /// tot_len is not consulted: Ethernet padding after a short IPv4 packet reads as L4.
    @Test func ipv4TotalLengthIsNotConsulted() {
        let keys = dissect(ethernet.ipv4(src: host4, dst: server4, proto: IPProtocolNumber.udp).padded())
        #expect(keys.srcPort == 0)
        #expect(keys.dstPort == 0)
    }

    // MARK: IPv6

    @Test func ipv6TrafficClassAndHopLimit() {
        let keys = dissect(ethernet.ipv6(src: host6, dst: server6, trafficClass: 0xb8, flowLabel: 0xfffff, hopLimit: 1)
            .tcp(src: 5555, dst: 80))
        #expect(keys.tos == 0xb8)
        #expect(keys.ttl == 1)
        #expect(keys.srcIP == .v6(host6))
        #expect(keys.dstIP == .v6(server6))
        #expect(keys.ipFlags == IPFlags(isFragment: false, isFirstFragment: false))
        #expect(keys.tcpFlags == TCPFlag.syn)
    }

    @Test func ipv6VersionOtherThanSixIsMalformed() {
        let bytes = ethernet.ipv6(src: host6, dst: server6).udp(src: 1, dst: 2).bytes
        let keys = FlowKeys(dissecting: patched(bytes, at: 14) { $0 = 0x40 | $0 & 0x0f })
        #expect(keys.unclassifiable == .malformedHeader)
        #expect(keys.srcIP == nil && keys.ipFlags == nil)
    }

    @Test func ipv6ExtensionHeadersUpToTheBoundAreWalked() {
        let headers: [IPv6ExtensionHeader] = [
            .hopByHop(lengthUnits: 1), .routing(), .fragment(offset: 0, moreFragments: true), .destinationOptions(),
        ]
        #expect(headers.count == FlowKeys.maxIPv6ExtensionHeaders)
        let keys = dissect(ethernet.ipv6(src: host6, dst: server6, extensionHeaders: headers).udp(src: 546, dst: 547))
        #expect(keys.ipProto == IPProtocolNumber.udp)
        #expect(keys.ipFlags == IPFlags(isFragment: true, isFirstFragment: true))
        #expect(keys.dstPort == 547)
        #expect(keys.unclassifiable == nil)
    }

    @Test func oneExtensionHeaderMoreIsTooDeep() {
        let headers = [IPv6ExtensionHeader](repeating: .destinationOptions(), count: FlowKeys.maxIPv6ExtensionHeaders)
            + [.routing()]
        let keys = dissect(ethernet.ipv6(src: host6, dst: server6, extensionHeaders: headers).udp(src: 1, dst: 2))
        #expect(keys.unclassifiable == .ipv6ExtensionsTooDeep)
        #expect(keys.ipProto == IPProtocolNumber.routing)
        #expect(keys.srcIP == .v6(host6))
        #expect(keys.srcPort == nil)
    }

    /// The walk is bounded by headers walked, so a non-first fragment ends it before the
    /// bound matters.
    @Test func aNonFirstFragmentEndsTheWalk() {
        let headers: [IPv6ExtensionHeader] = [.fragment(offset: 3, moreFragments: false)]
            + [IPv6ExtensionHeader](repeating: .destinationOptions(), count: FlowKeys.maxIPv6ExtensionHeaders)
        let keys = dissect(ethernet.ipv6(src: host6, dst: server6, extensionHeaders: headers).udp(src: 1, dst: 2))
        #expect(keys.ipFlags == IPFlags(isFragment: true, isFirstFragment: false))
        #expect(keys.ipProto == IPProtocolNumber.destinationOptions)
        #expect(keys.unclassifiable == nil)
        #expect(keys.srcPort == nil)
    }

    /// An atomic fragment (offset 0, M clear; RFC 6946) is a first fragment to the kernel.
    @Test func anAtomicFragmentIsAFirstFragment() {
        let keys = dissect(ethernet.ipv6(src: host6, dst: server6, extensionHeaders: [.fragment(offset: 0, moreFragments: false)])
            .tcp(src: 1, dst: 2))
        #expect(keys.ipFlags == IPFlags(isFragment: true, isFirstFragment: true))
        #expect(keys.dstPort == 2)
    }

    @Test(arguments: [IPProtocolNumber.ah, IPProtocolNumber.esp, IPProtocolNumber.noNextHeader])
    func walkStopsAt(nextHeader: UInt8) {
        let keys = dissect(ethernet.ipv6(src: host6, dst: server6, extensionHeaders: [.hopByHop()], nextHeader: nextHeader)
            .payload(FrameBuilder().udp(src: 1, dst: 2).bytes))
        #expect(keys.ipProto == nextHeader)
        #expect(keys.srcPort == nil)
        #expect(keys.unclassifiable == nil)
    }

    /// An extension header counts only when all its (length + 1) * 8 bytes are there.
    @Test func aTruncatedExtensionHeaderStopsTheWalkAtItself() {
        let frame = ethernet.ipv6(src: host6, dst: server6, extensionHeaders: [.hopByHop(), .routing(lengthUnits: 2)])
            .udp(src: 1, dst: 2)
        let routingEnd = 14 + 40 + 8 + 24
        #expect(FlowKeys(dissecting: Array(frame.bytes.prefix(routingEnd - 1))).ipProto == IPProtocolNumber.routing)
        #expect(FlowKeys(dissecting: Array(frame.bytes.prefix(routingEnd))).ipProto == IPProtocolNumber.udp)
    }

    // MARK: L4

    @Test(arguments: 0 ... 4)
    func tcpDataOffsetBelowFiveIsMalformed(offset: Int) {
        let keys = dissect(ethernet.ipv4(src: host4, dst: server4).tcp(src: 1, dst: 2, dataOffset: UInt8(offset)))
        #expect(keys.unclassifiable == .malformedHeader)
        #expect(keys.ipProto == IPProtocolNumber.tcp)
        #expect(keys.srcPort == nil && keys.tcpFlags == nil)
    }

    @Test func tcpFlagsAreTheLowTwelveBitsOfTheOffsetWord() {
        let all: UInt16 = 0x0fff
        let keys = dissect(ethernet.ipv4(src: host4, dst: server4).tcp(src: 1, dst: 2, flags: all, dataOffset: 15))
        #expect(keys.tcpFlags == all)
        let ae = dissect(ethernet.ipv4(src: host4, dst: server4).tcp(src: 1, dst: 2, flags: TCPFlag.ae | TCPFlag.fin))
        #expect(ae.tcpFlags == 0x101)
    }

    @Test func sctpPorts() {
        let keys = dissect(ethernet.ipv6(src: host6, dst: server6).sctp(src: 2905, dst: 36412))
        #expect(keys.ipProto == IPProtocolNumber.sctp)
        #expect((keys.srcPort, keys.dstPort) == (2905, 36412))
        #expect(keys.tcpFlags == nil)
    }

    @Test func icmpTypeAndCodeUnderIPv4() {
        let keys = dissect(ethernet.ipv4(src: host4, dst: server4).icmp(type: 3, code: 4))
        #expect((keys.icmpType, keys.icmpCode) == (3, 4))
        #expect(keys.srcPort == nil)
    }

    @Test func icmpv6TypeAndCodeUnderIPv6() {
        let keys = dissect(ethernet.ipv6(src: host6, dst: server6).icmpv6(type: 135, code: 0))
        #expect((keys.icmpType, keys.icmpCode) == (135, 0))
    }

    @Test func icmpUnderTheOtherIPVersionIsNotParsed() {
        let icmpOverIPv6 = dissect(ethernet.ipv6(src: host6, dst: server6).icmp(type: 8, code: 0))
        #expect(icmpOverIPv6.ipProto == IPProtocolNumber.icmp)
        #expect(icmpOverIPv6.icmpType == nil)
        let icmpv6OverIPv4 = dissect(ethernet.ipv4(src: host4, dst: server4).icmpv6(type: 128, code: 0))
        #expect(icmpv6OverIPv4.ipProto == IPProtocolNumber.icmpv6)
        #expect(icmpv6OverIPv4.icmpType == nil)
    }

    @Test func tunnelsAreNotEntered() {
        let keys = dissect(ethernet.ipv4(src: host4, dst: server4).ipv4(src: server4, dst: host4).udp(src: 1, dst: 2))
        #expect(keys.ipProto == 4)
        #expect(keys.srcIP == .v4(host4))
        #expect(keys.srcPort == nil)
    }
}

import Packets
import Testing

private let dstMAC = MACAddress(rawValue: 0x0011_2233_4455)
private let srcMAC = MACAddress(rawValue: 0x6677_8899_aabb)
private let host4 = IPv4Address(rawValue: 0xc000_0201)  // 192.0.2.1
private let server4 = IPv4Address(rawValue: 0xc633_6402)  // 198.51.100.2
private let host6 = IPv6Address(rawValue: 0x2001_0db8 << 96 | 1)  // 2001:db8::1
private let server6 = IPv6Address(rawValue: 0x2001_0db8 << 96 | 2)
private let ethernet = FrameBuilder().ethernet(dst: dstMAC, src: srcMAC)

/// Frames with the same fields written by Scapy 2.8.0 (`bytes(Ether()/IP()/...)`), an
/// independent source of lengths and checksums.
private let scapyFrames: [(String, FrameBuilder, String)] = [
    ("IPv4 UDP", ethernet.ipv4(src: host4, dst: server4, tos: 0x28).udp(src: 40000, dst: 53)
        .payload(Array("hello".utf8)),
     "00112233445566778899aabb0800452800210000000040118e6dc0000201c63364029c400035000d335568656c6c6f"),
    ("VLAN IPv4 TCP", ethernet.vlan(id: 100, priority: 3).ipv4(src: host4, dst: server4)
        .tcp(src: 12345, dst: 443, flags: TCPFlag.syn | TCPFlag.ack, seq: 1, ack: 2).payload(Array("xyz".utf8)),
     "00112233445566778899aabb8100606408004500002b0000000040068e96c0000201c6336402303901bb00000001000000025012ffff9f27000078797a"),
    ("IPv4 ICMP echo", ethernet.ipv4(src: host4, dst: server4).icmp(type: 8, code: 0, rest: 0x1234_0001)
        .payload(Array("ping".utf8)),
     "00112233445566778899aabb0800450000200000000040018ea6c0000201c6336402080006fa1234000170696e67"),
    ("IPv4 options", ethernet.ipv4(src: host4, dst: server4, options: [0x94, 0x04, 0x00, 0x00]).udp(src: 1, dst: 2),
     "00112233445566778899aabb080046000020000000004011f991c0000201c63364029404000000010002000813a4"),
    ("IPv6 TCP", ethernet.ipv6(src: host6, dst: server6, trafficClass: 0xb8).tcp(src: 5555, dst: 80),
     "00112233445566778899aabb86dd6b8000000014064020010db800000000000000000000000120010db80000000000000000000000021"
        + "5b3005000000000000000005002ffff3e6b0000"),
    ("IPv6 hop-by-hop, fragment, UDP",
     ethernet.ipv6(src: host6, dst: server6,
                   extensionHeaders: [.hopByHop(), .fragment(offset: 0, moreFragments: true, identification: 7)])
        .udp(src: 546, dst: 547).payload(Array("dhcp".utf8)),
     "00112233445566778899aabb86dd60000000001c004020010db800000000000000000000000120010db800000000000000000000000"
        + "22c00010400000000110000010000000702220223000cd84364686370"),
    ("IPv6 ICMPv6 echo", ethernet.ipv6(src: host6, dst: server6).icmpv6(type: 128, code: 0, rest: 0x0001_0002)
        .payload(Array("abc".utf8)),
     "00112233445566778899aabb86dd60000000000b3a4020010db800000000000000000000000120010db800000000000000000000000"
        + "280005fdf00010002616263"),
    ("SCTP DATA chunk", ethernet.ipv4(src: host4, dst: server4).sctp(src: 2905, dst: 2905, verificationTag: 0xdead_beef)
        .payload(bytes(hex: "00000014 00000001 0000 0000 00000000 64617461")),
     "00112233445566778899aabb0800450000340000000040848e0fc0000201c63364020b590b59deadbeef0329a30b00000014000000010"
        + "00000000000000064617461"),
    ("ARP request", ethernet.arp(op: 1, sha: srcMAC, spa: host4, tha: MACAddress(rawValue: 0), tpa: server4),
     "00112233445566778899aabb0806000108000604000166778899aabbc0000201000000000000c6336402"),
]

@Suite struct FrameBuilderTests {
    @Test(arguments: scapyFrames.map { ($0.0, $0.1, $0.2) })
    func matchesScapy(name: String, frame: FrameBuilder, expected: String) {
        #expect(frame.bytes.hex == expected, "\(name)")
    }

    @Test func nextProtocolFieldsDefaultToTheNextLayer() {
        let qinq = ethernet.vlan(id: 1, tpid: EtherType.qinq).vlan(id: 2).ipv6(src: host6, dst: server6).bytes
        #expect(qinq[12 ..< 14].hex == "88a8")
        #expect(qinq[16 ..< 18].hex == "8100")
        #expect(qinq[20 ..< 22].hex == "86dd")
        #expect(qinq[22 + 6] == 253)  // nothing after IPv6: protocol for experimentation
        #expect(ethernet.bytes[12 ..< 14].hex == "88b5")
        #expect(ethernet.ipv4(src: host4, dst: server4).ipv6(src: host6, dst: server6).bytes[14 + 9] == 41)
    }

    @Test func explicitFieldsWin() {
        let frame = FrameBuilder().ethernet(dst: dstMAC, src: srcMAC, type: EtherType.rarp)
            .arp(op: 3, sha: srcMAC, spa: host4, tha: srcMAC, tpa: host4).bytes
        #expect(frame[12 ..< 14].hex == "8035")
        let udpAsTCP = ethernet.ipv4(src: host4, dst: server4, proto: IPProtocolNumber.tcp).udp(src: 1, dst: 2).bytes
        #expect(udpAsTCP[14 + 9] == IPProtocolNumber.tcp)
    }

    @Test func paddingReachesTheMinimumAndNoMore() {
        let short = ethernet.arp(op: 1, sha: srcMAC, spa: host4, tha: dstMAC, tpa: server4)
        #expect(short.bytes.count == 42)
        #expect(short.padded().bytes == short.bytes + [UInt8](repeating: 0, count: 18))
        let long = ethernet.ipv4(src: host4, dst: server4).udp(src: 1, dst: 2).payload([UInt8](repeating: 7, count: 40))
        #expect(long.padded().bytes == long.bytes)
    }

    @Test func truncationCutsAfterPadding() {
        let frame = ethernet.ipv4(src: host4, dst: server4).udp(src: 1, dst: 2)
        #expect(frame.truncated(to: 20).bytes == Array(frame.bytes.prefix(20)))
        #expect(frame.padded().truncated(to: 55).bytes == Array(frame.padded().bytes.prefix(55)))
        #expect(frame.truncated(to: 1000).bytes == frame.bytes)
        #expect(frame.truncated(to: -1).bytes == [])
    }

    /// A wrong IHL is written as given, and the checksum covers it.
    @Test func badIHLIsWrittenAsGiven() {
        let frame = ethernet.ipv4(src: host4, dst: server4, ihl: 3).udp(src: 1, dst: 2).bytes
        #expect(frame[14] == 0x43)
        #expect(InternetChecksum.of(frame[14 ..< 34]) == 0)
        #expect(frame.count == 14 + 20 + 8)
    }

    @Test func badTCPDataOffsetIsWrittenAsGiven() {
        let frame = ethernet.ipv4(src: host4, dst: server4).tcp(src: 1, dst: 2, flags: 0x0fff, dataOffset: 2).bytes
        #expect(frame[34 + 12 ..< 34 + 14].hex == "2fff")
    }

    @Test func ipv4OptionsArePaddedToAWord() {
        let frame = ethernet.ipv4(src: host4, dst: server4, options: [7, 3, 4]).bytes
        #expect(frame[14] == 0x46)
        #expect(frame[34 ..< 38].hex == "07030400")
    }

    @Test func fragmentFields() {
        let frame = ethernet.ipv4(src: host4, dst: server4, identification: 0xbeef, dontFragment: false,
                                  fragmentOffset: 0x1abc, moreFragments: true).bytes
        #expect(frame[18 ..< 22].hex == "beef3abc")
        let v6 = ethernet.ipv6(src: host6, dst: server6,
                               extensionHeaders: [.fragment(offset: 0x1abc, moreFragments: true, identification: 9)]).bytes
        #expect(v6[54 ..< 62].hex == "fd00d5e100000009")
    }

    /// L4 checksums verify to zero with their pseudo-header over random frames, and
    /// IPv4 header checksums over the header alone.
    @Test(arguments: 0 ..< 50)
    func checksumsVerify(seed: Int) {
        var rng = SplitMix(seed: UInt64(seed))
        let spec = FrameSpec.random(using: &rng)
        let frame = spec.bytes
        var offset = 14 + 4 * spec.vlans.count
        switch spec.network {
        case .ipv4(let ip, let transport):
            let headerLength = 20 + ip.optionsLength
            #expect(InternetChecksum.of(frame[offset ..< offset + headerLength]) == 0, "\(spec)")
            offset += headerLength
            let segment = frame[offset...]
            switch transport {
            case .tcp, .udp:
                var sum = InternetChecksum()
                sum.add(ip.src.rawValue)
                sum.add(ip.dst.rawValue)
                sum.add(UInt16(transport.proto))
                sum.add(UInt16(segment.count))
                sum.add(segment)
                #expect(sum.value == 0, "\(spec)")
            case .icmp:
                #expect(InternetChecksum.of(segment) == 0, "\(spec)")
            case .sctp:
                var zeroed = Array(segment)
                zeroed.replaceSubrange(8 ..< 12, with: [0, 0, 0, 0])
                let crc = CRC32C.of(zeroed)
                #expect(Array(segment.dropFirst(8).prefix(4)) == [0, 8, 16, 24].map { UInt8(truncatingIfNeeded: crc >> $0) })
            case .icmpv6, .opaque:
                break
            }
        case .ipv6(let ip, let transport):
            offset += 40 + ip.extensionHeaders.map(\.length).reduce(0, +)
            let segment = frame[offset...]
            switch transport {
            case .tcp, .udp, .icmpv6:
                var sum = InternetChecksum()
                sum.add(ip.src.rawValue.bytes)
                sum.add(ip.dst.rawValue.bytes)
                sum.add(UInt32(segment.count))
                sum.add(UInt32(transport.proto))
                sum.add(segment)
                #expect(sum.value == 0, "\(spec)")
            default:
                break
            }
        case .arp, .other:
            break
        }
    }
}

extension UInt128 {
    fileprivate var bytes: [UInt8] {
        (0 ..< 16).reversed().map { UInt8(truncatingIfNeeded: self >> ($0 * 8)) }
    }
}

/// A seeded generator so a failing argument names a reproducible frame.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ z >> 30) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ z >> 27) &* 0x94d0_49bb_1331_11eb
        return z ^ z >> 31
    }
}

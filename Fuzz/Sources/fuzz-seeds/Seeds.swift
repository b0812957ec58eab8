#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Packets

/// Writes the binary seeds of the pcap and frame corpora into Corpus/ (the grammar's are
/// text, written by hand). Seeds are where libFuzzer starts: one valid input per shape
/// the readers know, and truncated ones, so that the first seconds already reach deep.
///
///     swift run --package-path Fuzz --scratch-path Fuzz/.build/seeds fuzz-seeds Fuzz/Corpus
@main
enum Seeds {
    static func main() {
        guard CommandLine.arguments.count == 2 else {
            print("usage: fuzz-seeds CORPUS-DIRECTORY")
            exit(2)
        }
        let corpus = CommandLine.arguments[1]
        for (name, frame) in frames {
            store(frame, at: "\(corpus)/frame/\(name)")
        }
        for (name, bytes) in captures {
            store(bytes, at: "\(corpus)/pcap/\(name)")
        }
    }

    static let a = MACAddress(rawValue: 0x02_00_00_00_00_01), b = MACAddress(rawValue: 0x02_00_00_00_00_02)
    static let v4a = IPv4Address(rawValue: 0x0a00_0001), v4b = IPv4Address(rawValue: 0xc000_0201)
    static let v6a = IPv6Address(rawValue: 0x2001_0db8 << 96 | 1), v6b = IPv6Address(rawValue: 0xfe80 << 112 | 2)

    static let frames: [(String, [UInt8])] = [
        ("ipv4-tcp", FrameBuilder().ethernet(dst: a, src: b).ipv4(src: v4a, dst: v4b).tcp(src: 1024, dst: 80)),
        ("ipv4-udp-first-fragment", FrameBuilder().ethernet(dst: a, src: b)
            .ipv4(src: v4a, dst: v4b, moreFragments: true).udp(src: 53, dst: 5353)),
        ("ipv4-later-fragment", FrameBuilder().ethernet(dst: a, src: b)
            .ipv4(src: v4a, dst: v4b, proto: IPProtocolNumber.udp, fragmentOffset: 10).payload([1, 2, 3, 4])),
        ("ipv4-options-icmp", FrameBuilder().ethernet(dst: a, src: b)
            .ipv4(src: v4a, dst: v4b, tos: 0x10, options: [1, 1, 1, 1]).icmp(type: 8, code: 0)),
        ("ipv4-bad-ihl", FrameBuilder().ethernet(dst: a, src: b).ipv4(src: v4a, dst: v4b, ihl: 4).tcp(src: 1, dst: 2)),
        ("ipv4-tcp-bad-offset", FrameBuilder().ethernet(dst: a, src: b).ipv4(src: v4a, dst: v4b)
            .tcp(src: 1, dst: 2, dataOffset: 3)),
        ("ipv4-tcp-truncated", FrameBuilder().ethernet(dst: a, src: b).ipv4(src: v4a, dst: v4b)
            .tcp(src: 1, dst: 2).truncated(to: 40)),
        ("vlan-ipv4-sctp", FrameBuilder().ethernet(dst: a, src: b).vlan(id: 5, priority: 3).ipv4(src: v4a, dst: v4b)
            .sctp(src: 9, dst: 10)),
        ("qinq-ipv6-udp", FrameBuilder().ethernet(dst: a, src: b).vlan(id: 10, tpid: EtherType.qinq).vlan(id: 20)
            .ipv6(src: v6a, dst: v6b).udp(src: 1, dst: 2)),
        ("three-tags", FrameBuilder().ethernet(dst: a, src: b).vlan(id: 1, tpid: EtherType.qinq).vlan(id: 2)
            .vlan(id: 3).ipv4(src: v4a, dst: v4b).udp(src: 1, dst: 2)),
        ("ipv6-extensions-tcp", FrameBuilder().ethernet(dst: a, src: b).ipv6(src: v6a, dst: v6b, extensionHeaders: [
            .hopByHop(), .routing(lengthUnits: 1), .destinationOptions(), .fragment(offset: 0, moreFragments: true),
        ]).tcp(src: 1, dst: 443, flags: TCPFlag.syn | TCPFlag.ack)),
        ("ipv6-later-fragment", FrameBuilder().ethernet(dst: a, src: b).ipv6(src: v6a, dst: v6b, extensionHeaders: [
            .fragment(offset: 3, moreFragments: false),
        ], nextHeader: IPProtocolNumber.udp).payload([0, 1, 2, 3, 4, 5, 6, 7])),
        ("ipv6-icmpv6", FrameBuilder().ethernet(dst: a, src: b).ipv6(src: v6a, dst: v6b).icmpv6(type: 128, code: 0)),
        ("arp-request", FrameBuilder().ethernet(dst: MACAddress(rawValue: 0xffff_ffff_ffff), src: b)
            .arp(op: 1, sha: b, spa: v4a, tha: MACAddress(rawValue: 0), tpa: v4b)),
        ("rarp-reply", FrameBuilder().ethernet(dst: a, src: b, type: EtherType.rarp)
            .arp(op: 2, sha: b, spa: v4a, tha: a, tpa: v4b)),
    ].map { ($0.0, $0.1.padded().bytes) }

    static let captures: [(String, [UInt8])] = {
        let records = [
            PcapRecord(seconds: 1_700_000_000, nanoseconds: 123_456_000, data: frames[0].1),
            PcapRecord(seconds: 1_700_000_001, nanoseconds: 999_999_000, originalLength: 1514,
                       data: Array(frames[8].1.prefix(48))),
        ]
        let classic = PcapFile(records: records, snapLength: 65535).serialized()
        return [
            ("classic.pcap", classic),
            ("classic-empty.pcap", PcapFile().serialized()),
            ("classic-cut-in-record-header.pcap", Array(classic.prefix(24 + 10))),
            ("classic-cut-in-record-data.pcap", Array(classic.prefix(24 + 16 + 20))),
            // The big-endian nanosecond and pcapng files of Tests/PacketsTests/PcapTests.swift,
            // which came from another writer than this package's.
            ("classic-big-nanoseconds.pcap", hex("a1b23c4d0002000400000000000000000000ffff000000016553f1003ade68b10000001400000014000102030405060708090a0b0c0d0e0f101112136553f1013b9ac9ff00000010000005ea6465666768696a6b6c6d6e6f70717273")),
            ("little.pcapng", pcapngLittle),
            ("little-cut-in-block.pcapng", Array(pcapngLittle.prefix(100))),
            ("big.pcapng", hex("0a0d0d0a000000281a2b3c4d00010000ffffffffffffffff000300047465737400000000000000280000000100000014000100000000000000000014000000010000002800010000000000100002000465746831000900010900000000000000000000280000000400000010000000000000001000000006000000340000000000060a24182022400000001400000014000102030405060708090a0b0c0d0e0f101112130000003400000006000000300000000117979cfead5f93ff00000010000005ea6465666768696a6b6c6d6e6f7071727300000030000000030000001400000003aabbcc0000000014")),
        ]
    }()

    /// Section header, two interfaces (the second with if_tsresol 9), a name resolution
    /// block, enhanced packet blocks on each, a simple packet block.
    static let pcapngLittle = hex("0a0d0d0a280000004d3c2b1a01000000ffffffffffffffff0300040074657374000000002800000001000000140000000100000000000000140000000100000028000000010000001000000002000400657468310900010009000000000000002800000004000000100000000000000010000000060000003400000000000000240a0600402220181400000014000000000102030405060708090a0b0c0d0e0f1011121334000000060000003000000001000000fe9c9717ff935fad10000000ea0500006465666768696a6b6c6d6e6f7071727330000000030000001400000003000000aabbcc0014000000")

    static func hex(_ text: String) -> [UInt8] {
        let digits = Array(text.utf8)
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(decoding: digits[$0 ..< $0 + 2], as: UTF8.self), radix: 16)! }
    }
}

/// Writes `bytes` as they are, a capture or not (`PcapFile.write` takes captures only).
func store(_ bytes: [UInt8], at path: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0, bytes.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == bytes.count, close(fd) == 0 else {
        perror(path)
        exit(1)
    }
}

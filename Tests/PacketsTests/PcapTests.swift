#if canImport(Glibc)
import Glibc
#endif
import Packets
import PropertyBased
import Testing

/// Files written by Python's struct module (independently of this package): two records,
/// one frame captured whole, one 1514-byte frame captured to its first 16 bytes.
private enum Files {
    static let littleMicro = "d4c3b2a1020004000000000000000000ffff00000100000000f1536540e201001400000014000000000102030405060708090a0b0c0d0e0f1011121301f153653f420f0010000000ea0500006465666768696a6b6c6d6e6f70717273"
    static let bigMicro = "a1b2c3d40002000400000000000000000000ffff000000016553f1000001e2400000001400000014000102030405060708090a0b0c0d0e0f101112136553f101000f423f00000010000005ea6465666768696a6b6c6d6e6f70717273"
    static let littleNano = "4d3cb2a1020004000000000000000000ffff00000100000000f15365b168de3a1400000014000000000102030405060708090a0b0c0d0e0f1011121301f15365ffc99a3b10000000ea0500006465666768696a6b6c6d6e6f70717273"
    static let bigNano = "a1b23c4d0002000400000000000000000000ffff000000016553f1003ade68b10000001400000014000102030405060708090a0b0c0d0e0f101112136553f1013b9ac9ff00000010000005ea6465666768696a6b6c6d6e6f70717273"
    /// Section header, interface 0 (microseconds), interface 1 (if_tsresol 9:
    /// nanoseconds, snaplen 16), a name resolution block to skip, an enhanced packet block
    /// on each interface, and a simple packet block.
    static let ngLittle = "0a0d0d0a280000004d3c2b1a01000000ffffffffffffffff0300040074657374000000002800000001000000140000000100000000000000140000000100000028000000010000001000000002000400657468310900010009000000000000002800000004000000100000000000000010000000060000003400000000000000240a0600402220181400000014000000000102030405060708090a0b0c0d0e0f1011121334000000060000003000000001000000fe9c9717ff935fad10000000ea0500006465666768696a6b6c6d6e6f7071727330000000030000001400000003000000aabbcc0014000000"
    static let ngBig = "0a0d0d0a000000281a2b3c4d00010000ffffffffffffffff000300047465737400000000000000280000000100000014000100000000000000000014000000010000002800010000000000100002000465746831000900010900000000000000000000280000000400000010000000000000001000000006000000340000000000060a24182022400000001400000014000102030405060708090a0b0c0d0e0f101112130000003400000006000000300000000117979cfead5f93ff00000010000005ea6465666768696a6b6c6d6e6f7071727300000030000000030000001400000003aabbcc0000000014"
}

private let wholeFrame = (0 ..< 20).map { UInt8($0) }
private let cutFrame = (100 ..< 116).map { UInt8($0) }

private func expectedRecords(nanoseconds: Bool) -> [PcapRecord] {
    [
        PcapRecord(seconds: 1_700_000_000, nanoseconds: nanoseconds ? 987_654_321 : 123_456_000, data: wholeFrame),
        PcapRecord(seconds: 1_700_000_001, nanoseconds: nanoseconds ? 999_999_999 : 999_999_000,
                   originalLength: 1514, data: cutFrame),
    ]
}

@Suite struct PcapTests {
    @Test(arguments: [(Files.littleMicro, false), (Files.bigMicro, false), (Files.littleNano, true), (Files.bigNano, true)])
    func readsClassicFilesInBothByteOrders(file: String, nanoseconds: Bool) throws {
        let capture = try PcapFile(parsing: bytes(hex: file))
        #expect(capture.linkType == PcapFile.ethernet)
        #expect(capture.snapLength == 65535)
        #expect(capture.records == expectedRecords(nanoseconds: nanoseconds))
    }

    @Test func writesLittleEndianMicrosecondsLikeLibpcap() {
        let capture = PcapFile(records: expectedRecords(nanoseconds: false), snapLength: 65535)
        #expect(capture.serialized().hex == Files.littleMicro)
    }

    /// Writing keeps microseconds: a nanosecond file comes back with its fractions cut.
    @Test func nanosecondFilesRoundTripToMicroseconds() throws {
        let capture = try PcapFile(parsing: bytes(hex: Files.bigNano))
        let reread = try PcapFile(parsing: capture.serialized())
        #expect(reread.records.map(\.nanoseconds) == [987_654_000, 999_999_000])
        #expect(reread.records.map(\.data) == capture.records.map(\.data))
        #expect(reread.records.map(\.originalLength) == [20, 1514])
    }

    @Test func roundTripOfRandomRecords() async throws {
        let record = zip(Gen.uint32(), Gen.uint32(in: 0 ... 999_999), Gen.int(in: 0 ... 100), Gen.uint8().array(of: 0 ... 80))
            .map { seconds, microseconds, extra, data in
                PcapRecord(seconds: UInt64(seconds), nanoseconds: microseconds * 1000,
                           originalLength: data.count + extra, data: data)
            }
        await propertyCheck(count: 100, input: record.array(of: 0 ... 8)) { records in
            let capture = PcapFile(records: records)
            let reread = try PcapFile(parsing: capture.serialized())
            #expect(reread == capture)
        }
    }

    @Test(arguments: [Files.ngLittle, Files.ngBig])
    func readsPcapng(file: String) throws {
        let capture = try PcapFile(parsing: bytes(hex: file))
        #expect(capture.linkType == PcapFile.ethernet)
        #expect(capture.records == [
            PcapRecord(seconds: 1_700_000_000, nanoseconds: 123_456_000, data: wholeFrame),
            PcapRecord(seconds: 1_700_000_001, nanoseconds: 999_999_999, originalLength: 1514, data: cutFrame),
            PcapRecord(data: [0xaa, 0xbb, 0xcc]),
        ])
    }

    @Test func capturedFramesDissect() throws {
        let frame = FrameBuilder().ethernet(dst: MACAddress(rawValue: 1), src: MACAddress(rawValue: 2))
            .ipv4(src: IPv4Address(rawValue: 1), dst: IPv4Address(rawValue: 2)).udp(src: 53, dst: 5353).bytes
        let capture = try PcapFile(parsing: PcapFile(records: [PcapRecord(data: frame)]).serialized())
        #expect(capture.records.map { FlowKeys(dissecting: $0.data).dstPort } == [5353])
    }

    @Test func filesOnDisk() throws {
        let path = "/tmp/xdpflow-packets-test-\(getpid()).pcap"
        defer { unlink(path) }
        let capture = PcapFile(records: expectedRecords(nanoseconds: false))
        try capture.write(path: path)
        #expect(try PcapFile.read(path: path) == capture)
        #expect(throws: PcapError.io(path: "/nonexistent/x.pcap", operation: "open", errno: ENOENT)) {
            try PcapFile.read(path: "/nonexistent/x.pcap")
        }
    }

    // MARK: Bad files

    @Test(arguments: [
        ("", PcapError.truncatedFileHeader(length: 0)),
        ("d4c3b2a1 0200", .truncatedFileHeader(length: 6)),
        ("00000000 02000400 00000000 00000000 ffff0000 01000000", .unknownMagic(0)),
        ("d4c3b2a1 01000000 00000000 00000000 ffff0000 01000000", .unsupportedVersion(major: 1, minor: 0)),
    ])
    func badFileHeaders(file: String, error: PcapError) {
        #expect(throws: error) { try PcapFile(parsing: bytes(hex: file)) }
    }

    @Test func truncatedRecordHeaderNamesItsOffset() {
        let file = bytes(hex: Files.littleMicro)
        let secondRecord = 24 + 16 + 20
        #expect(throws: PcapError.truncatedRecordHeader(offset: secondRecord, available: 10)) {
            try PcapFile(parsing: Array(file.prefix(secondRecord + 10)))
        }
    }

    @Test func truncatedRecordDataNamesItsOffset() {
        let file = bytes(hex: Files.bigNano)
        #expect(throws: PcapError.truncatedRecordData(offset: 24, capturedLength: 20, available: 19)) {
            try PcapFile(parsing: Array(file.prefix(24 + 16 + 19)))
        }
    }

    @Test func impossibleCapturedLengthIsRefused() {
        var file = bytes(hex: Files.littleMicro)
        file.replaceSubrange(24 + 8 ..< 24 + 12, with: [0, 0, 0, 0x10])  // 256 MiB
        #expect(throws: PcapError.recordTooLong(offset: 24, capturedLength: 0x1000_0000, limit: PcapFile.maximumSnapLength)) {
            try PcapFile(parsing: file)
        }
    }

    @Test func microsecondFieldOfASecondIsRefused() {
        var file = bytes(hex: Files.littleMicro)
        file.replaceSubrange(24 + 4 ..< 24 + 8, with: [0x40, 0x42, 0x0f, 0])  // 1_000_000
        #expect(throws: PcapError.badTimestamp(offset: 24)) { try PcapFile(parsing: file) }
    }

    @Test func pcapngWrittenAsAStreamReadsBackWithCommentsAndNanoseconds() throws {
        let frames: [(data: [UInt8], comment: String?)] = [
            (Array(0 ..< 60), "prio 1 handle 0x1 mark 0x5"), (Array(0 ..< 61), nil), ([0xff], "odd: \u{e9}"),
        ]
        var file = PcapNGWriter.header(interfaceName: "xf0")
        for (index, frame) in frames.enumerated() {
            frame.data.withUnsafeBytes {
                PcapNGWriter.appendPacket($0, nanoseconds: 1_700_000_000_123_456_789 + UInt64(index),
                                          originalLength: index == 2 ? 1500 : nil,
                                          comment: frame.comment.map(PcapNGWriter.Comment.init), to: &file)
            }
        }
        #expect(file.count % 4 == 0)
        let read = try PcapFile(parsing: file)
        #expect(read.linkType == PcapFile.ethernet)
        #expect(read.records.map(\.data) == frames.map(\.data))
        #expect(read.records.map(\.comment) == frames.map(\.comment))
        #expect(read.records.map(\.originalLength) == [60, 61, 1500])
        #expect(read.records[1].seconds == 1_700_000_000 && read.records[1].nanoseconds == 123_456_790)
    }

    @Test func pcapngBlockLengthsAreChecked() {
        let file = bytes(hex: Files.ngLittle)
        let firstInterface = 40
        var badTrailer = file
        badTrailer[firstInterface + 16] = 0x24
        #expect(throws: PcapError.badBlock(offset: firstInterface, reason: "trailing block length differs from 20")) {
            try PcapFile(parsing: badTrailer)
        }
        var oddLength = file
        oddLength[firstInterface + 4] = 0x15
        #expect(throws: PcapError.badBlock(offset: firstInterface, reason: "block length 21 is below 12 or not a multiple of 4")) {
            try PcapFile(parsing: oddLength)
        }
        #expect(throws: PcapError.badBlock(offset: firstInterface, reason: "block length 20 runs past the end of the file")) {
            try PcapFile(parsing: Array(file.prefix(firstInterface + 19)))
        }
    }

    @Test func pcapngPacketOnAnUndescribedInterface() {
        var file = bytes(hex: Files.ngLittle)
        let firstPacket = 40 + 20 + 40 + 16
        file[firstPacket + 8] = 7
        #expect(throws: PcapError.unknownInterface(offset: firstPacket, interface: 7)) { try PcapFile(parsing: file) }
    }

    @Test func pcapngWithoutInterfacesIsRefused() {
        let sectionOnly = Array(bytes(hex: Files.ngBig).prefix(40))
        #expect(throws: PcapError.badBlock(offset: 0, reason: "no interface description block in the file")) {
            try PcapFile(parsing: sectionOnly)
        }
    }

    @Test func errorsReadAsSentences() {
        #expect(PcapError.truncatedRecordData(offset: 24, capturedLength: 20, available: 19).description
            == "record at offset 24 is truncated: captured length 20, 19 bytes left")
        #expect(PcapError.io(path: "/x", operation: "open", errno: ENOENT).description
            == "/x: open failed: No such file or directory")
    }

    @Test func arbitraryBytesNeverCrash() async {
        let headers = [Files.littleMicro, Files.ngBig].map { Array(bytes(hex: $0).prefix(24)) }
        await propertyCheck(count: 1000, input: zip(Gen.int(in: 0 ... 1), Gen.uint8().array(of: 0 ... 200))) { header, tail in
            _ = try? PcapFile(parsing: headers[header] + tail)
        }
    }
}

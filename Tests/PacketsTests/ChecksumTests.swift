import Packets
import Testing

@Suite struct ChecksumTests {
    /// RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    @Test func rfc1071Example() {
        #expect(InternetChecksum.of([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]) == ~UInt16(0xddf2))
    }

    /// A captured IPv4 header (192.168.0.1 -> 192.168.0.199, UDP) whose checksum is b861.
    @Test func knownIPv4Header() {
        let header = bytes(hex: "4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7")
        #expect(InternetChecksum.of(header) == 0xb861)
        #expect(InternetChecksum.of(bytes(hex: "4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7")) == 0)
    }

    @Test func anOddByteIsPaddedWithZero() {
        #expect(InternetChecksum.of([0xab]) == ~UInt16(0xab00))
        #expect(InternetChecksum.of([0x12, 0x34, 0x56]) == ~UInt16(0x1234 + 0x5600))
    }

    /// Sums carry around: ffff + 0001 is 0001 in ones' complement.
    @Test func carriesWrapAround() {
        #expect(InternetChecksum.of([0xff, 0xff, 0x00, 0x01]) == ~UInt16(0x0001))
    }

    @Test func addingInPiecesEqualsAddingAtOnce() {
        let data: [UInt8] = (0 ..< 99).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        for split in [0, 1, 2, 3, 50, 98, 99] {
            var pieces = InternetChecksum()
            pieces.add(data[..<split])
            pieces.add(data[split...])
            #expect(pieces.value == InternetChecksum.of(data), "split at \(split)")
        }
    }

    /// The check value of CRC-32C and the iSCSI test vectors of RFC 3720 appendix B.4.
    @Test func crc32cKnownValues() {
        #expect(CRC32C.of(Array("123456789".utf8)) == 0xe306_9283)
        #expect(CRC32C.of([UInt8](repeating: 0, count: 32)) == 0x8a91_36aa)
        #expect(CRC32C.of([UInt8](repeating: 0xff, count: 32)) == 0x62a8_ab43)
        #expect(CRC32C.of((0 ..< 32).map { UInt8($0) }) == 0x46dd_794e)
    }
}

/// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of
/// 16-bit big-endian words, an odd last byte padded with zero.
public struct InternetChecksum: Sendable {
    private var sum: UInt64 = 0
    /// Whether an odd byte is waiting for its partner from the next `add`.
    private var pendingHighByte: UInt8?

    public init() {}

    public mutating func add(_ bytes: some Sequence<UInt8>) {
        for byte in bytes {
            if let high = pendingHighByte {
                sum += UInt64(high) << 8 | UInt64(byte)
                pendingHighByte = nil
            } else {
                pendingHighByte = byte
            }
        }
    }

    public mutating func add(_ value: UInt16) {
        add([UInt8(value >> 8), UInt8(truncatingIfNeeded: value)])
    }

    public mutating func add(_ value: UInt32) {
        add(UInt16(value >> 16))
        add(UInt16(truncatingIfNeeded: value))
    }

    /// The value for the checksum field (the field itself summed as zero).
    public var value: UInt16 {
        var total = sum + (pendingHighByte.map { UInt64($0) << 8 } ?? 0)
        while total > 0xffff {
            total = (total & 0xffff) + (total >> 16)
        }
        return ~UInt16(truncatingIfNeeded: total)
    }

    public static func of(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var checksum = InternetChecksum()
        checksum.add(bytes)
        return checksum.value
    }
}

/// CRC32c (Castagnoli, reflected polynomial 0x82f63b78), the SCTP checksum (RFC 9260
/// appendix A).
public enum CRC32C {
    private static let table: [UInt32] = (0 ..< 256).map { index in
        var crc = UInt32(index)
        for _ in 0 ..< 8 {
            crc = crc & 1 == 1 ? crc >> 1 ^ 0x82f6_3b78 : crc >> 1
        }
        return crc
    }

    public static func of(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xffff_ffff
        for byte in bytes {
            crc = table[Int((crc ^ UInt32(byte)) & 0xff)] ^ crc >> 8
        }
        return ~crc
    }
}

/// A read position in a byte buffer, in the manner of xdp-tools' `struct hdr_cursor` and
/// swift-nio's `ByteBuffer`: every read checks the bounds first and returns nil, without
/// moving, when the bytes it needs are not all there. Nothing it is given can make it trap.
public struct ByteCursor: Sendable {
    public enum ByteOrder: Sendable {
        case bigEndian, littleEndian
    }

    /// The bytes not yet read.
    private var unread: ArraySlice<UInt8>
    /// Index of the first byte the cursor was made with.
    private let start: Int

    public init(_ bytes: [UInt8]) {
        self.init(bytes[...])
    }

    public init(_ bytes: ArraySlice<UInt8>) {
        unread = bytes
        start = bytes.startIndex
    }

    /// Bytes read (or skipped) so far.
    public var offset: Int { unread.startIndex - start }

    public var remaining: Int { unread.count }

    /// Reads an unsigned integer of `T`'s width, network byte order by default.
    public mutating func read<T: FixedWidthInteger & UnsignedInteger>(
        _: T.Type = T.self, byteOrder: ByteOrder = .bigEndian
    ) -> T? {
        let width = T.bitWidth / 8
        guard unread.count >= width else { return nil }
        var value: T = 0
        for byte in unread.prefix(width) {
            value = value << 8 | T(byte)
        }
        unread.removeFirst(width)
        return byteOrder == .bigEndian ? value : value.byteSwapped
    }

    /// The next `count` bytes, or nil when fewer remain.
    public mutating func readBytes(_ count: Int) -> ArraySlice<UInt8>? {
        guard count >= 0, unread.count >= count else { return nil }
        defer { unread.removeFirst(count) }
        return unread.prefix(count)
    }

    /// A cursor over exactly the next `count` bytes, which this cursor moves past; nil
    /// when fewer remain. One bounds check for a whole header, as an XDP program does it.
    public mutating func take(_ count: Int) -> ByteCursor? {
        readBytes(count).map(ByteCursor.init)
    }

    /// Moves past `count` bytes; false (not moved) when fewer remain.
    public mutating func skip(_ count: Int) -> Bool {
        readBytes(count) != nil
    }
}

extension ByteCursor {
    /// Six bytes, first octet most significant.
    mutating func readMAC() -> MACAddress? {
        guard var bytes = take(6), let high = bytes.read(UInt16.self), let low = bytes.read(UInt32.self) else {
            return nil
        }
        return MACAddress(rawValue: UInt64(high) << 32 | UInt64(low))
    }

    mutating func readIPv4() -> IPv4Address? {
        read(UInt32.self).map(IPv4Address.init(rawValue:))
    }

    mutating func readIPv6() -> IPv6Address? {
        read(UInt128.self).map(IPv6Address.init(rawValue:))
    }
}

// Map keys and values are bytes in the layout the program reads: fixed-width fields end
// to end, in the host's byte order (little-endian on every machine this runs on). Every
// value that goes into a map says its layout once, here, instead of each caller
// shifting bytes by hand.

/// A value with a fixed-size byte layout: a BPF map key or value.
public protocol MapCodable {
    /// The size of every encoding: a map's key or value size.
    static var byteCount: Int { get }
    /// Writes exactly `byteCount` bytes.
    func encode(into writer: inout ByteWriter)
    /// Reads exactly `byteCount` bytes.
    init(from reader: inout ByteReader) throws(ByteDecodingError)
}

extension MapCodable {
    /// The value's bytes as a map holds them.
    public var encodedBytes: [UInt8] {
        var writer = ByteWriter(capacity: Self.byteCount)
        encode(into: &writer)
        assert(writer.bytes.count == Self.byteCount, "\(Self.self) wrote \(writer.bytes.count) bytes, not \(Self.byteCount)")
        return writer.bytes
    }

    /// The value whose bytes are exactly `bytes`.
    public init(decoding bytes: some Collection<UInt8>) throws(ByteDecodingError) {
        var reader = ByteReader(bytes)
        guard reader.remaining == Self.byteCount else {
            throw reader.remaining < Self.byteCount
                ? .truncated(type: "\(Self.self)", needed: Self.byteCount, available: reader.remaining)
                : .trailingBytes(type: "\(Self.self)", count: reader.remaining - Self.byteCount)
        }
        try self.init(from: &reader)
    }
}

/// Appends values end to end.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 0) {
        bytes.reserveCapacity(capacity)
    }

    public mutating func write(_ value: some MapCodable) {
        value.encode(into: &self)
    }

    /// Raw bytes, zero-padded to `width` when given (fields such as a 4-byte argument that
    /// holds a 2-byte port).
    public mutating func write(bytes raw: some Collection<UInt8>, paddedTo width: Int? = nil) {
        precondition(raw.count <= width ?? raw.count, "\(raw.count) bytes do not fit a field of \(width ?? 0)")
        bytes.append(contentsOf: raw)
        if let width { writeZeros(width - raw.count) }
    }

    public mutating func writeZeros(_ count: Int) {
        bytes.append(contentsOf: repeatElement(0, count: count))
    }

    /// Empties the writer for the next batch, keeping its storage.
    public mutating func removeAll() {
        bytes.removeAll(keepingCapacity: true)
    }

    mutating func writeInteger<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Reads values in the order a `ByteWriter` wrote them.
public struct ByteReader: Sendable {
    private let bytes: ArraySlice<UInt8>
    /// Bytes read so far.
    public private(set) var offset = 0

    public init(_ bytes: some Collection<UInt8>) {
        self.bytes = ArraySlice(bytes)
    }

    public var remaining: Int { bytes.count - offset }

    public mutating func read<T: MapCodable>(_ type: T.Type = T.self) throws(ByteDecodingError) -> T {
        try T(from: &self)
    }

    public mutating func read(byteCount count: Int) throws(ByteDecodingError) -> [UInt8] {
        try need(count, for: "\(count) bytes")
        defer { offset += count }
        return Array(bytes[bytes.startIndex + offset ..< bytes.startIndex + offset + count])
    }

    /// The next byte, left to be read.
    public func peekByte() throws(ByteDecodingError) -> UInt8 {
        try need(1, for: "UInt8")
        return bytes[bytes.startIndex + offset]
    }

    public mutating func skip(_ count: Int) throws(ByteDecodingError) {
        try need(count, for: "\(count) bytes")
        offset += count
    }

    mutating func readInteger<T: FixedWidthInteger>(_: T.Type = T.self) throws(ByteDecodingError) -> T {
        let width = T.bitWidth / 8
        try need(width, for: "\(T.self)")
        var value = T.zero
        let start = bytes.startIndex + offset
        for index in (start ..< start + width).reversed() { value = value << 8 | T(truncatingIfNeeded: bytes[index]) }
        offset += width
        return value
    }

    private func need(_ count: Int, for type: String) throws(ByteDecodingError) {
        guard count <= remaining else { throw .truncated(type: type, needed: count, available: remaining) }
    }
}

/// Why bytes are not a value of a `MapCodable` type.
public enum ByteDecodingError: Error, Hashable, Sendable, CustomStringConvertible {
    case truncated(type: String, needed: Int, available: Int)
    case trailingBytes(type: String, count: Int)
    /// A field holds a value its type does not have (an enum's raw value).
    case invalidField(type: String, offset: Int, value: UInt64)

    public var description: String {
        switch self {
        case .truncated(let type, let needed, let available):
            "\(type) needs \(needed) bytes, only \(available) left"
        case .trailingBytes(let type, let count):
            "\(count) bytes left over after \(type)"
        case .invalidField(let type, let offset, let value):
            "\(type) at byte \(offset): \(value) is not a valid value"
        }
    }
}

// MARK: - Integers and fixed arrays

extension MapCodable where Self: FixedWidthInteger {
    public static var byteCount: Int { bitWidth / 8 }

    public func encode(into writer: inout ByteWriter) {
        writer.writeInteger(self)
    }

    public init(from reader: inout ByteReader) throws(ByteDecodingError) {
        self = try reader.readInteger()
    }
}

extension UInt8: MapCodable {}
extension UInt16: MapCodable {}
extension UInt32: MapCodable {}
extension UInt64: MapCodable {}
extension Int8: MapCodable {}
extension Int16: MapCodable {}
extension Int32: MapCodable {}
extension Int64: MapCodable {}

/// Enums stored as their raw value: `extension Kind: MapCodable {}` is enough.
extension MapCodable where Self: RawRepresentable, RawValue: MapCodable & FixedWidthInteger {
    public static var byteCount: Int { RawValue.byteCount }

    public func encode(into writer: inout ByteWriter) {
        writer.write(rawValue)
    }

    public init(from reader: inout ByteReader) throws(ByteDecodingError) {
        let offset = reader.offset
        let raw: RawValue = try reader.read()
        guard let value = Self(rawValue: raw) else {
            throw .invalidField(type: "\(Self.self)", offset: offset, value: UInt64(truncatingIfNeeded: raw))
        }
        self = value
    }
}

#if compiler(>=6.2)
/// Fixed arrays, `InlineArray<6, UInt8>` for a MAC address: elements end to end.
extension InlineArray: MapCodable where Element: MapCodable {
    public static var byteCount: Int { count * Element.byteCount }

    public func encode(into writer: inout ByteWriter) {
        for index in indices { writer.write(self[index]) }
    }

    public init(from reader: inout ByteReader) throws(ByteDecodingError) {
        self = try InlineArray { (_: Int) throws(ByteDecodingError) in try reader.read() }
    }
}
#endif

import Packets

/// A field value that a rule compares bit by bit: the bits compared are those set in
/// `mask`. `value` is kept as written (it may have bits outside the mask, as tc keeps
/// `10.1.2.3/24`); `key` is what the kernel and the compiler hash on.
public struct Masked<Value: MaskableField>: Hashable, Sendable, Codable {
    public var value: Value
    public var mask: Value

    public init(_ value: Value, mask: Value = .allOnes) {
        self.value = value
        self.mask = mask
    }

    /// The high `length` bits of `value`, as an address prefix; nil when `length` is
    /// longer than the field.
    public init?(_ value: Value, prefixLength length: Int) {
        guard (0 ... Value.fieldWidth).contains(length) else { return nil }
        self.init(value, mask: Value.prefixMask(length))
    }

    /// `value & mask`: frames whose field has this key under `mask` match.
    public var key: Value { Value(fieldBits: value.fieldBits & mask.fieldBits) }

    public var isExact: Bool { mask == .allOnes }

    /// The number of leading one bits when `mask` is a prefix (ones, then only zeros).
    public var prefixLength: Int? {
        let alignedLeft = mask.fieldBits << (Value.FieldBits.bitWidth - Value.fieldWidth)
        let ones = min((~alignedLeft).leadingZeroBitCount, Value.fieldWidth)
        return Value.prefixMask(ones) == mask ? ones : nil
    }

    public func matches(_ candidate: Value) -> Bool {
        candidate.fieldBits & mask.fieldBits == key.fieldBits
    }

    /// The fewest prefix blocks whose union is exactly `low...high`, in order: a range
    /// as masked entries (flower's port ranges, nftables' address ranges).
    public static func covering(_ low: Value, through high: Value) -> [Masked] {
        let width = Value.fieldWidth
        let all = Value.FieldBits.max >> (Value.FieldBits.bitWidth - width)
        let end = high.fieldBits
        var blocks: [Masked] = []
        var start = low.fieldBits
        while true {
            // The host bits of the largest block aligned at `start` that ends by `end`.
            var size = start == 0 ? width : min(start.trailingZeroBitCount, width)
            while size > 0, size == width ? end != all : start | ((1 << size) &- 1) > end { size -= 1 }
            let last = size == width ? all : start | ((1 << size) &- 1)
            blocks.append(Masked(Value(fieldBits: start), mask: Value.prefixMask(width - size)))
            if last >= end { return blocks }
            start = last + 1
        }
    }
}

/// A fixed-width field a flower key can mask: its bits, right-aligned in `FieldBits`.
public protocol MaskableField: Hashable, Sendable, Codable {
    associatedtype FieldBits: FixedWidthInteger & UnsignedInteger & Sendable
    static var fieldWidth: Int { get }
    var fieldBits: FieldBits { get }
    init(fieldBits: FieldBits)
}

extension MaskableField {
    public static var allOnes: Self { prefixMask(fieldWidth) }

    /// `length` one bits from the top of the field, zeros below.
    public static func prefixMask(_ length: Int) -> Self {
        let all = FieldBits.max >> (FieldBits.bitWidth - fieldWidth)
        guard length > 0 else { return Self(fieldBits: 0) }
        return Self(fieldBits: all & ~(all >> length))
    }
}

extension UInt8: MaskableField {
    public static var fieldWidth: Int { 8 }
    public var fieldBits: UInt8 { self }
    public init(fieldBits: UInt8) { self = fieldBits }
}

extension UInt16: MaskableField {
    public static var fieldWidth: Int { 16 }
    public var fieldBits: UInt16 { self }
    public init(fieldBits: UInt16) { self = fieldBits }
}

extension UInt32: MaskableField {
    public static var fieldWidth: Int { 32 }
    public var fieldBits: UInt32 { self }
    public init(fieldBits: UInt32) { self = fieldBits }
}

extension MACAddress: MaskableField {
    public static var fieldWidth: Int { 48 }
    public var fieldBits: UInt64 { rawValue }
    public init(fieldBits: UInt64) { self.init(rawValue: fieldBits) }
}

extension IPv4Address: MaskableField {
    public static var fieldWidth: Int { 32 }
    public var fieldBits: UInt32 { rawValue }
    public init(fieldBits: UInt32) { self.init(rawValue: fieldBits) }
}

extension IPv6Address: MaskableField {
    public static var fieldWidth: Int { 128 }
    public var fieldBits: UInt128 { rawValue }
    public init(fieldBits: UInt128) { self.init(rawValue: fieldBits) }
}

import BPFAssembly

// The byte-level names FlowOffload and xdpflow used before the map values were
// MapCodable. Each is the codec under its old name; remove this file once those callers
// use `encodedBytes`, `byteCount` and the typed maps.

extension SubtableValue {
    public static var size: Int { byteCount }
    public var bytes: [UInt8] { encodedBytes }

    /// Appends the value's bytes (for fills that lay many values end to end).
    public func append(to bytes: inout [UInt8]) {
        bytes += encodedBytes
    }
}

extension ActionProgram {
    public static var size: Int { byteCount }
    public var bytes: [UInt8] { encodedBytes }
}

extension PolicerConfig {
    public static var size: Int { PolicerBucket.byteCount }
    public var bytes: [UInt8] { bucket.encodedBytes }
}

extension TraceLog {
    public static var size: Int { byteCount }
}

extension RuleCounters {
    public static var size: Int { byteCount }
}

extension FixedWidthInteger {
    /// As map keys and values hold it (host order, little-endian here).
    public var littleEndianBytes: [UInt8] {
        (0 ..< Self.bitWidth / 8).map { UInt8(truncatingIfNeeded: self >> ($0 * 8)) }
    }
}

/// FNV-1a, 64 bits: a short, stable name made from bytes (map names, a socket address).
/// Neither a secret nor a hash table's hash.
public struct FNV1a {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    public mutating func mix(_ byte: UInt8) { value = (value ^ UInt64(byte)) &* 0x100_0000_01b3 }

    public mutating func mix(_ bytes: some Sequence<UInt8>) { for byte in bytes { mix(byte) } }

    /// The 64 bits folded into 32, for a shorter name.
    public var folded: UInt32 { UInt32(truncatingIfNeeded: value ^ value >> 32) }
}

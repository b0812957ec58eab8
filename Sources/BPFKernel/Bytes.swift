// Kernel structures (netlink messages, map values) are in the host's byte order,
// little-endian on every machine this runs on. One reader and one writer serve them all.

extension Array where Element == UInt8 {
    public mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    /// The little-endian integer whose bytes start at `offset`; the caller has checked
    /// that they are all there.
    public func littleEndian<T: FixedWidthInteger>(at offset: Int) -> T {
        self[offset..<offset + T.bitWidth / 8].reversed().reduce(T.zero) { $0 << 8 | T($1) }
    }
}

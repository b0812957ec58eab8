// Byte helpers from before the map codec (BPFAssembly's MapCodable, ByteWriter,
// ByteReader). Nothing in BPFKernel uses them; they remain for FlowOffload until it
// reads and writes its maps through the typed views. Remove them then.

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

// The kernel's wire format (struct bpf_insn), little-endian as on every host
// this runs on: opcode, dst and src nibbles, 16-bit offset, 32-bit immediate.
// A 64-bit immediate load carries the high half in a second, otherwise zero slot.

extension Instruction {
    /// Appends the 8 or 16 bytes of this instruction.
    public func encode(into bytes: inout [UInt8]) {
        let low = UInt32(truncatingIfNeeded: constant)
        bytes.append(opcode.rawValue)
        bytes.append(dst.rawValue | src.rawValue << 4)
        bytes.append(littleEndian: UInt16(bitPattern: offset))
        bytes.append(littleEndian: low)
        if isDoubleWide {
            bytes.append(contentsOf: [0, 0, 0, 0])
            bytes.append(littleEndian: UInt32(truncatingIfNeeded: constant >> 32))
        }
    }
}

extension Array where Element == Instruction {
    /// The program as the kernel reads it (`bpf_prog_load`'s `insns`).
    public func encoded() -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(count * 8)
        for instruction in self { instruction.encode(into: &bytes) }
        return bytes
    }

    /// Number of 8-byte slots, the kernel's instruction count.
    public var slotCount: Int { reduce(0) { $0 + $1.slots } }

    /// Decodes the kernel's format; the inverse of `encoded()`.
    public init(decoding bytes: some Collection<UInt8>) throws(DecodingError) {
        let bytes = Array<UInt8>(bytes)
        guard bytes.count % 8 == 0 else { throw .truncated(byteCount: bytes.count) }
        self.init()
        var slot = 0
        while slot * 8 < bytes.count {
            let at = slot * 8
            let opcode = OpCode(rawValue: bytes[at])
            guard let dst = Register(rawValue: bytes[at + 1] & 0x0f),
                  let src = Register(rawValue: bytes[at + 1] >> 4)
            else { throw .badRegister(slot: slot) }
            let offset = Int16(bitPattern: bytes.littleEndian(at: at + 2))
            var constant = Int64(Int32(bitPattern: bytes.littleEndian(at: at + 4)))
            var instruction = Instruction(opcode: opcode, dst: dst, src: src, offset: offset)
            if instruction.isDoubleWide {
                guard at + 16 <= bytes.count else { throw .incompleteDoubleWide(slot: slot) }
                let high: UInt32 = bytes.littleEndian(at: at + 12)
                let low = UInt32(bitPattern: Int32(truncatingIfNeeded: constant))
                constant = Int64(bitPattern: UInt64(high) << 32 | UInt64(low))
            }
            instruction.constant = constant
            append(instruction)
            slot += instruction.slots
        }
    }
}

public enum DecodingError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The byte count is not a multiple of 8.
    case truncated(byteCount: Int)
    /// A 64-bit immediate load without its second slot.
    case incompleteDoubleWide(slot: Int)
    case badRegister(slot: Int)

    public var description: String {
        switch self {
        case .truncated(let count): "\(count) bytes is not a whole number of 8-byte instructions"
        case .incompleteDoubleWide(let slot): "instruction \(slot): 64-bit load lacks its second half"
        case .badRegister(let slot): "instruction \(slot): register number above r10"
        }
    }
}

extension Array where Element == UInt8 {
    fileprivate mutating func append<T: FixedWidthInteger>(littleEndian value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    fileprivate func littleEndian<T: FixedWidthInteger>(at offset: Int) -> T {
        var value = T.zero
        for index in (0..<T.bitWidth / 8).reversed() {
            value = value << 8 | T(self[offset + index])
        }
        return value
    }
}

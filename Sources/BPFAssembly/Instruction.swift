/// One eBPF instruction: 8 bytes, or 16 for a 64-bit immediate load.
///
/// Instructions are plain values. A jump, local call or function address may
/// name a `Label` instead of a distance, and a map load may name a map instead of
/// a file descriptor: `Assembler` resolves labels, the loader resolves maps.
public struct Instruction: Hashable, Sendable {
    public var opcode: OpCode
    public var dst: Register
    /// The source register, or for 64-bit immediate loads and calls the pseudo
    /// source (`pseudoSource`, `callKind`), which shares these four bits.
    public var src: Register
    public var offset: Int16
    /// The immediate: 32 bits sign-extended, or all 64 bits of a 64-bit load.
    public var constant: Int64
    /// A symbol still to be resolved into `offset`/`constant`.
    public var reference: Reference?

    public init(opcode: OpCode, dst: Register = .r0, src: Register = .r0,
                offset: Int16 = 0, constant: Int64 = 0, reference: Reference? = nil) {
        self.opcode = opcode
        self.dst = dst
        self.src = src
        self.offset = offset
        self.constant = constant
        self.reference = reference
    }

    /// A 64-bit immediate load (`lddw`) occupies two 8-byte slots.
    public var isDoubleWide: Bool { opcode == OpCode(.ld, .double, .imm) }
    /// Width in 8-byte slots, the unit of jump distances.
    public var slots: Int { isDoubleWide ? 2 : 1 }

    public var immediate: Int32 { Int32(truncatingIfNeeded: constant) }
    public var pseudoSource: PseudoSource? { isDoubleWide ? PseudoSource(rawValue: src.rawValue) : nil }
    public var callKind: CallKind? {
        opcode == OpCode(.jmp, JumpOp.call.rawValue) ? CallKind(rawValue: src.rawValue) : nil
    }
}

/// A name in the instruction stream: a jump target or a function.
public struct Label: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral,
    CustomStringConvertible
{
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ name: String) { rawValue = name }
    public init(stringLiteral name: String) { rawValue = name }
    public var description: String { rawValue }
}

public enum Reference: Hashable, Sendable {
    /// Jump to, call, or take the address of the instruction at this label.
    case label(Label)
    /// The map with this name: its fd (pseudo map fd) or its value (pseudo map value).
    case map(String)
}

/// 32- or 64-bit arithmetic and comparisons.
public enum Width: Sendable {
    case bits32, bits64

    var aluClass: InstructionClass { self == .bits64 ? .alu64 : .alu }
    var jumpClass: InstructionClass { self == .bits64 ? .jmp : .jmp32 }
}

public enum Endianness: Sendable {
    case little, big
}

// MARK: - Arithmetic

extension Instruction {
    /// `dst op= imm`, e.g. `r1 += 14`.
    public static func alu(_ op: ALUOp, _ dst: Register, _ value: Int32, _ width: Width = .bits64) -> Instruction {
        Instruction(opcode: OpCode(width.aluClass, op.rawValue), dst: dst, constant: Int64(value))
    }

    /// `dst op= src`, e.g. `r1 += r2`.
    public static func alu(_ op: ALUOp, _ dst: Register, _ src: Register, _ width: Width = .bits64) -> Instruction {
        Instruction(opcode: OpCode(width.aluClass, op.rawValue, .register), dst: dst, src: src)
    }

    public static func mov(_ dst: Register, _ value: Int32, _ width: Width = .bits64) -> Instruction {
        alu(.mov, dst, value, width)
    }

    public static func mov(_ dst: Register, _ src: Register, _ width: Width = .bits64) -> Instruction {
        alu(.mov, dst, src, width)
    }

    /// `dst = -dst`.
    public static func neg(_ dst: Register, _ width: Width = .bits64) -> Instruction {
        Instruction(opcode: OpCode(width.aluClass, ALUOp.neg.rawValue), dst: dst)
    }

    /// `dst s/= src` (cpu v4: division with offset 1).
    public static func signedDiv(_ dst: Register, _ src: Register, _ width: Width = .bits64) -> Instruction {
        var instruction = alu(.div, dst, src, width)
        instruction.offset = 1
        return instruction
    }

    /// `dst s%= src` (cpu v4: modulo with offset 1).
    public static func signedMod(_ dst: Register, _ src: Register, _ width: Width = .bits64) -> Instruction {
        var instruction = alu(.mod, dst, src, width)
        instruction.offset = 1
        return instruction
    }

    /// `dst = (s8|s16|s32) src` (cpu v4: move with offset 8, 16 or 32).
    public static func movSignExtend(_ dst: Register, _ src: Register, bits: Int16,
                                     _ width: Width = .bits64) -> Instruction {
        var instruction = mov(dst, src, width)
        instruction.offset = bits
        return instruction
    }

    /// Converts the low `bits` (16, 32, 64) of `dst` between host order and `order`.
    public static func endian(_ order: Endianness, _ dst: Register, bits: Int32) -> Instruction {
        Instruction(opcode: OpCode(.alu, ALUOp.end.rawValue, order == .big ? .register : .immediate),
                    dst: dst, constant: Int64(bits))
    }

    /// Reverses the low `bits` (16, 32, 64) bytes of `dst` whatever the host order (cpu v4).
    public static func byteSwap(_ dst: Register, bits: Int32) -> Instruction {
        Instruction(opcode: OpCode(.alu64, ALUOp.end.rawValue), dst: dst, constant: Int64(bits))
    }
}

// MARK: - Jumps and calls

extension Instruction {
    /// `goto target`.
    public static func jump(to target: Label) -> Instruction {
        Instruction(opcode: OpCode(.jmp, JumpOp.ja.rawValue), reference: .label(target))
    }

    /// `gotol target`: an unconditional jump with a 32-bit distance (cpu v4).
    public static func jumpLong(to target: Label) -> Instruction {
        Instruction(opcode: OpCode(.jmp32, JumpOp.ja.rawValue), reference: .label(target))
    }

    /// `if dst <condition> imm goto target`.
    public static func jump(_ condition: Condition, _ dst: Register, _ value: Int32, to target: Label,
                            _ width: Width = .bits64) -> Instruction {
        Instruction(opcode: OpCode(width.jumpClass, condition.jumpOp.rawValue), dst: dst,
                    constant: Int64(value), reference: .label(target))
    }

    /// `if dst <condition> src goto target`.
    public static func jump(_ condition: Condition, _ dst: Register, _ src: Register, to target: Label,
                            _ width: Width = .bits64) -> Instruction {
        Instruction(opcode: OpCode(width.jumpClass, condition.jumpOp.rawValue, .register), dst: dst, src: src,
                    reference: .label(target))
    }

    public static func call(_ helper: Helper) -> Instruction {
        Instruction(opcode: OpCode(.jmp, JumpOp.call.rawValue), constant: Int64(helper.rawValue))
    }

    /// A BPF-to-BPF call of the function at `function`.
    public static func call(_ function: Label) -> Instruction {
        Instruction(opcode: OpCode(.jmp, JumpOp.call.rawValue), src: Register(rawValue: CallKind.local.rawValue)!,
                    reference: .label(function))
    }

    public static let exit = Instruction(opcode: OpCode(.jmp, JumpOp.exit.rawValue))

    /// `may_goto target`: the way out of a loop the verifier checks once, not once per
    /// iteration (it looks for the loop's state to repeat). The kernel keeps a budget of
    /// iterations per program run and jumps when it is spent.
    public static func mayGoto(_ target: Label) -> Instruction {
        Instruction(opcode: OpCode(.jmp, JumpOp.jcond.rawValue), reference: .label(target))
    }

    /// `r0 = value; exit`.
    public static func `return`(_ value: Int32) -> [Instruction] {
        [.mov(.r0, value), .exit]
    }
}

// MARK: - Memory

extension Instruction {
    /// `dst = *(size *)(src + offset)`.
    public static func load(_ dst: Register, _ size: Size, from src: Register, _ offset: Int16) -> Instruction {
        Instruction(opcode: OpCode(.ldx, size, .mem), dst: dst, src: src, offset: offset)
    }

    /// `dst = *(s8|s16|s32 *)(src + offset)`, sign-extended (cpu v4).
    public static func loadSignExtend(_ dst: Register, _ size: Size, from src: Register,
                                      _ offset: Int16) -> Instruction {
        Instruction(opcode: OpCode(.ldx, size, .memsx), dst: dst, src: src, offset: offset)
    }

    /// `*(size *)(dst + offset) = src`.
    public static func store(_ size: Size, to dst: Register, _ offset: Int16, _ src: Register) -> Instruction {
        Instruction(opcode: OpCode(.stx, size, .mem), dst: dst, src: src, offset: offset)
    }

    /// `*(size *)(dst + offset) = imm`.
    public static func store(_ size: Size, to dst: Register, _ offset: Int16, _ value: Int32) -> Instruction {
        Instruction(opcode: OpCode(.st, size, .mem), dst: dst, offset: offset, constant: Int64(value))
    }

    /// An atomic read-modify-write of `*(size *)(dst + offset)` with `src` (word or double).
    /// With `fetch`, `src` receives the old value; `compareExchange` compares with r0 and
    /// `exchange`/`compareExchange` always fetch.
    public static func atomic(_ op: AtomicOp, _ size: Size, to dst: Register, _ offset: Int16,
                              _ src: Register, fetch: Bool = false) -> Instruction {
        let flag = fetch ? AtomicOp.fetchFlag : 0
        return Instruction(opcode: OpCode(.stx, size, .atomic), dst: dst, src: src, offset: offset,
                           constant: Int64(op.immediateOp | flag))
    }

    /// `dst = value` for any 64-bit value (`lddw`).
    public static func loadImmediate(_ dst: Register, _ value: Int64) -> Instruction {
        Instruction(opcode: OpCode(.ld, .double, .imm), dst: dst, constant: value)
    }

    /// `dst = &map`, for helpers that take a map.
    public static func loadMap(_ dst: Register, _ map: String) -> Instruction {
        Instruction(opcode: OpCode(.ld, .double, .imm), dst: dst,
                    src: Register(rawValue: PseudoSource.mapFD.rawValue)!, reference: .map(map))
    }

    /// `dst = &map.value[0] + offset`, a direct pointer into an array map's single value.
    public static func loadMapValue(_ dst: Register, _ map: String, offset: UInt32 = 0) -> Instruction {
        Instruction(opcode: OpCode(.ld, .double, .imm), dst: dst,
                    src: Register(rawValue: PseudoSource.mapValue.rawValue)!,
                    constant: Int64(offset) << 32, reference: .map(map))
    }

    /// `dst = &function`, for helpers that take a callback (`bpf_loop`).
    public static func loadFunction(_ dst: Register, _ function: Label) -> Instruction {
        Instruction(opcode: OpCode(.ld, .double, .imm), dst: dst,
                    src: Register(rawValue: PseudoSource.function.rawValue)!, reference: .label(function))
    }
}

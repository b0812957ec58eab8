/// The first byte of an instruction: class in the low three bits, the rest
/// depending on the class (operation and source for ALU and jumps, size and mode
/// for loads and stores).
public struct OpCode: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public var instructionClass: InstructionClass { InstructionClass(rawValue: rawValue & 0x07)! }

    // ALU, ALU64, JMP, JMP32: operation and operand source.
    public var aluOp: ALUOp? { instructionClass.isALU ? ALUOp(rawValue: rawValue & 0xf0) : nil }
    public var jumpOp: JumpOp? { instructionClass.isJump ? JumpOp(rawValue: rawValue & 0xf0) : nil }
    public var source: Source { Source(rawValue: rawValue & 0x08)! }

    // LD, LDX, ST, STX: access size and addressing mode.
    public var size: Size? { instructionClass.isMemory ? Size(rawValue: rawValue & 0x18)! : nil }
    public var mode: Mode? { instructionClass.isMemory ? Mode(rawValue: rawValue & 0xe0) : nil }

    init(_ instructionClass: InstructionClass, _ op: UInt8, _ source: Source = .immediate) {
        rawValue = instructionClass.rawValue | op | source.rawValue
    }

    init(_ instructionClass: InstructionClass, _ size: Size, _ mode: Mode) {
        rawValue = instructionClass.rawValue | size.rawValue | mode.rawValue
    }
}

public enum InstructionClass: UInt8, Sendable {
    case ld = 0x00, ldx = 0x01, st = 0x02, stx = 0x03
    case alu = 0x04, jmp = 0x05, jmp32 = 0x06, alu64 = 0x07

    public var isALU: Bool { self == .alu || self == .alu64 }
    public var isJump: Bool { self == .jmp || self == .jmp32 }
    public var isMemory: Bool { rawValue <= InstructionClass.stx.rawValue }
}

/// Where the second operand comes from.
public enum Source: UInt8, Sendable {
    /// The instruction's 32-bit immediate (BPF_K).
    case immediate = 0x00
    /// The source register (BPF_X).
    case register = 0x08
}

public enum ALUOp: UInt8, CaseIterable, Sendable {
    case add = 0x00, sub = 0x10, mul = 0x20, div = 0x30
    case or = 0x40, and = 0x50, lsh = 0x60, rsh = 0x70
    case neg = 0x80, mod = 0x90, xor = 0xa0, mov = 0xb0
    case arsh = 0xc0
    /// Byte swap; the source bit picks big-endian, ALU64 makes it an unconditional bswap.
    case end = 0xd0
}

public enum JumpOp: UInt8, CaseIterable, Sendable {
    case ja = 0x00, jeq = 0x10, jgt = 0x20, jge = 0x30
    case jset = 0x40, jne = 0x50, jsgt = 0x60, jsge = 0x70
    case call = 0x80, exit = 0x90
    case jlt = 0xa0, jle = 0xb0, jslt = 0xc0, jsle = 0xd0
    /// `may_goto` (BPF_JCOND, source 0): a loop's exit the kernel takes once the
    /// program has looped too often (a budget of BPF_MAX_LOOPS per run).
    case jcond = 0xe0
}

/// The comparisons of conditional jumps.
public enum Condition: Sendable, CaseIterable {
    case equal, notEqual, bitsSet
    case greater, greaterOrEqual, less, lessOrEqual
    case signedGreater, signedGreaterOrEqual, signedLess, signedLessOrEqual

    var jumpOp: JumpOp {
        switch self {
        case .equal: .jeq
        case .notEqual: .jne
        case .bitsSet: .jset
        case .greater: .jgt
        case .greaterOrEqual: .jge
        case .less: .jlt
        case .lessOrEqual: .jle
        case .signedGreater: .jsgt
        case .signedGreaterOrEqual: .jsge
        case .signedLess: .jslt
        case .signedLessOrEqual: .jsle
        }
    }

    init?(_ op: JumpOp) {
        guard let condition = Condition.allCases.first(where: { $0.jumpOp == op }) else { return nil }
        self = condition
    }
}

public enum Size: UInt8, CaseIterable, Sendable {
    case word = 0x00, half = 0x08, byte = 0x10, double = 0x18

    public var bytes: Int {
        switch self {
        case .byte: 1
        case .half: 2
        case .word: 4
        case .double: 8
        }
    }

    public init?(bytes: Int) {
        guard let size = Size.allCases.first(where: { $0.bytes == bytes }) else { return nil }
        self = size
    }
}

public enum Mode: UInt8, Sendable {
    case imm = 0x00, abs = 0x20, ind = 0x40, mem = 0x60
    /// Sign-extending load (cpu v4).
    case memsx = 0x80
    case atomic = 0xc0
}

/// The operation of an atomic instruction, carried in its immediate.
public enum AtomicOp: Hashable, Sendable {
    case add, or, and, xor
    case exchange, compareExchange

    static let fetchFlag: Int32 = 0x01

    var immediateOp: Int32 {
        switch self {
        case .add: Int32(ALUOp.add.rawValue)
        case .or: Int32(ALUOp.or.rawValue)
        case .and: Int32(ALUOp.and.rawValue)
        case .xor: Int32(ALUOp.xor.rawValue)
        case .exchange: 0xe0 | AtomicOp.fetchFlag
        case .compareExchange: 0xf0 | AtomicOp.fetchFlag
        }
    }
}

/// What the source field of a 64-bit immediate load asks the loader to put there.
public enum PseudoSource: UInt8, Sendable {
    case none = 0
    /// A map's address, from the map's file descriptor (BPF_PSEUDO_MAP_FD).
    case mapFD = 1
    /// An address inside a map's value, from fd and offset (BPF_PSEUDO_MAP_VALUE).
    case mapValue = 2
    case btfID = 3
    /// A BPF function's address (BPF_PSEUDO_FUNC).
    case function = 4
    case mapIndex = 5
    case mapIndexValue = 6
}

/// What kind of function a call instruction calls (its source field).
public enum CallKind: UInt8, Sendable {
    case helper = 0
    /// A BPF-to-BPF call; the immediate is the distance to the callee (BPF_PSEUDO_CALL).
    case local = 1
    case kfunc = 2
}

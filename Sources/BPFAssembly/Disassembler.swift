// Text in the style of the kernel's verifier log and `bpftool prog dump xlated`
// (kernel/bpf/disasm.c), so a generated program reads like what the kernel shows.

extension Instruction: CustomStringConvertible {
    /// `(07) r1 += 14`: the opcode in hex, then the operation.
    public var description: String {
        "(" + hex2(opcode.rawValue) + ") " + operation
    }

    private var operation: String {
        switch opcode.instructionClass {
        case .alu, .alu64: aluText
        case .jmp, .jmp32: jumpText
        case .ld: loadText
        case .ldx:
            opcode.mode == .memsx
                ? "\(dst) = *(s\(opcode.size!.bytes * 8) *)(\(src) \(signed(offset)))"
                : "\(dst) = *(\(sizeName) *)(\(src) \(signed(offset)))"
        case .st: "*(\(sizeName) *)(\(dst) \(signed(offset))) = \(immediate)"
        case .stx: opcode.mode == .atomic ? atomicText : "*(\(sizeName) *)(\(dst) \(signed(offset))) = \(src)"
        }
    }

    private var sizeName: String { "u\(opcode.size!.bytes * 8)" }
    private var is64: Bool { opcode.instructionClass == .alu64 || opcode.instructionClass == .jmp }
    private var dstName: String { (is64 ? "r" : "w") + "\(dst.rawValue)" }
    private var srcName: String { (is64 ? "r" : "w") + "\(src.rawValue)" }

    private var aluText: String {
        guard let op = opcode.aluOp else { return "invalid alu opcode" }
        let operand = opcode.source == .register ? srcName : "\(immediate)"
        switch op {
        case .neg: return "\(dstName) = -\(dstName)"
        case .end:
            let bits = immediate
            if opcode.instructionClass == .alu64 { return "\(dst) = bswap\(bits) \(dst)" }
            return "\(dst) = \(opcode.source == .register ? "be" : "le")\(bits) \(dst)"
        case .mov where offset != 0 && opcode.source == .register:
            return "\(dstName) = (s\(offset))\(srcName)"
        case .div where offset == 1: return "\(dstName) s/= \(operand)"
        case .mod where offset == 1: return "\(dstName) s%= \(operand)"
        default: return "\(dstName) \(op.symbol) \(operand)"
        }
    }

    private var jumpText: String {
        guard let op = opcode.jumpOp else { return "invalid jump opcode" }
        switch op {
        case .exit: return "exit"
        case .call:
            switch callKind {
            case .local: return "call pc\(signed(immediate))"
            case .kfunc: return "call kernel-function#\(immediate)"
            default: return "call \(Helper(rawValue: immediate).name)#\(immediate)"
            }
        case .jcond:
            return "may_goto pc\(signed(offset))"
        case .ja:
            return opcode.instructionClass == .jmp32 ? "gotol pc\(signed(immediate))" : "goto pc\(signed(offset))"
        default:
            let operand = opcode.source == .register ? srcName : "0x" + String(UInt32(bitPattern: immediate), radix: 16)
            return "if \(dstName) \(Condition(op)!.symbol) \(operand) goto pc\(signed(offset))"
        }
    }

    private var loadText: String {
        switch opcode.mode {
        case .imm where isDoubleWide:
            let low = UInt32(truncatingIfNeeded: constant), high = UInt32(truncatingIfNeeded: constant >> 32)
            switch pseudoSource {
            case .mapFD, .mapIndex: return "\(dst) = map[\(mapName(low))]"
            case .mapValue, .mapIndexValue: return "\(dst) = map[\(mapName(low))][0]+\(high)"
            case .function: return "\(dst) = func pc\(signed(immediate))"
            default: return "\(dst) = 0x" + String(UInt64(bitPattern: constant), radix: 16)
            }
        case .abs: return "r0 = *(\(sizeName) *)skb[\(immediate)]"
        case .ind: return "r0 = *(\(sizeName) *)skb[\(src) + \(immediate)]"
        default: return "invalid ld opcode"
        }
    }

    private func mapName(_ fd: UInt32) -> String {
        if case .map(let name)? = reference { return name }
        return pseudoSource == .mapIndex || pseudoSource == .mapIndexValue ? "idx:\(fd)" : "fd:\(fd)"
    }

    private var atomicText: String {
        let ptr = "(\(sizeName) *)(\(dst) \(signed(offset)))"
        let bits = opcode.size == .double ? "64" : ""
        let op = immediate & ~AtomicOp.fetchFlag
        let fetch = immediate & AtomicOp.fetchFlag != 0
        switch op {
        case 0xe0: return "\(src) = atomic\(bits)_xchg(\(ptr), \(src))"
        case 0xf0: return "r0 = atomic\(bits)_cmpxchg(\(ptr), r0, \(src))"
        default:
            guard let alu = ALUOp(rawValue: UInt8(truncatingIfNeeded: op)) else { return "invalid atomic op" }
            return fetch
                ? "\(src) = atomic\(bits)_fetch_\(alu.name)(\(ptr), \(src))"
                : "lock *\(ptr) \(alu.symbol) \(src)"
        }
    }
}

extension Array where Element == Instruction {
    /// One line per instruction, numbered by slot like `bpftool prog dump xlated`:
    ///
    ///        0: (b7) r0 = 2
    ///        1: (95) exit
    ///
    /// With `labels` (from `Assembler.labels`), each labelled instruction is preceded by `name:`.
    public func disassembly(labels: [Label: Int] = [:]) -> String {
        var names = [Int: [String]]()
        for (label, index) in labels { names[index, default: []].append(label.rawValue) }
        var lines = [String]()
        var slot = 0
        for (index, instruction) in enumerated() {
            for name in (names[index] ?? []).sorted() { lines.append("\(name):") }
            let number = String(slot)
            lines.append(String(repeating: " ", count: Swift.max(0, 4 - number.count)) + number + ": " + instruction.description)
            slot += instruction.slots
        }
        return lines.joined(separator: "\n")
    }
}

extension ALUOp {
    var symbol: String {
        switch self {
        case .add: "+="
        case .sub: "-="
        case .mul: "*="
        case .div: "/="
        case .or: "|="
        case .and: "&="
        case .lsh: "<<="
        case .rsh: ">>="
        case .neg: "neg"
        case .mod: "%="
        case .xor: "^="
        case .mov: "="
        case .arsh: "s>>="
        case .end: "endian"
        }
    }

    var name: String { String(describing: self) }
}

extension Condition {
    var symbol: String {
        switch self {
        case .equal: "=="
        case .notEqual: "!="
        case .bitsSet: "&"
        case .greater: ">"
        case .greaterOrEqual: ">="
        case .less: "<"
        case .lessOrEqual: "<="
        case .signedGreater: "s>"
        case .signedGreaterOrEqual: "s>="
        case .signedLess: "s<"
        case .signedLessOrEqual: "s<="
        }
    }
}

private func hex2(_ byte: UInt8) -> String {
    let digits = String(byte, radix: 16)
    return digits.count == 1 ? "0" + digits : digits
}

/// `+4`, `-8`: offsets always carry their sign, as in the kernel's `%+d`.
private func signed<T: BinaryInteger>(_ value: T) -> String {
    value < 0 ? "\(value)" : "+\(value)"
}

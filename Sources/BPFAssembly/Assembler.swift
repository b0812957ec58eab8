/// Builds an instruction stream with symbolic labels.
///
///     var asm = Assembler()
///     asm.emit(.load(.r2, .word, from: .r1, 0))          // r2 = ctx->data
///     asm.emit(.jump(.equal, .r2, 0, to: "pass"))
///     asm.emit(Instruction.return(XDPAction.drop))
///     asm.label("pass")
///     asm.emit(Instruction.return(XDPAction.pass))
///     let program = try asm.assemble()
///
/// A label marks the next instruction emitted. Jumps may go forwards or backwards;
/// `assemble()` turns each label reference into a distance in 8-byte slots.
public struct Assembler: Sendable {
    public private(set) var instructions: [Instruction] = []
    /// Label -> index in `instructions` of the instruction it marks.
    public private(set) var labels: [Label: Int] = [:]
    private var duplicates: [Label] = []

    public init() {}

    public mutating func emit(_ instruction: Instruction) {
        instructions.append(instruction)
    }

    public mutating func emit(_ sequence: [Instruction]) {
        instructions.append(contentsOf: sequence)
    }

    /// Marks the next instruction emitted.
    public mutating func label(_ label: Label) {
        if labels.updateValue(instructions.count, forKey: label) != nil {
            duplicates.append(label)
        }
    }

    /// Resolves every label into a jump distance. Map references stay for the loader.
    public func assemble() throws(AssemblyError) -> [Instruction] {
        if let label = duplicates.first { throw .duplicateLabel(label) }
        if let (label, _) = labels.first(where: { $0.value == instructions.count }) {
            throw .danglingLabel(label)
        }
        var slot = [Int]()
        slot.reserveCapacity(instructions.count)
        var next = 0
        for instruction in instructions {
            slot.append(next)
            next += instruction.slots
        }

        var resolved = instructions
        for index in resolved.indices {
            guard case .label(let label)? = resolved[index].reference else { continue }
            guard let target = labels[label] else { throw .undefinedLabel(label, instruction: index) }
            let distance = slot[target] - (slot[index] + 1)
            try resolved[index].setDistance(distance, to: label, at: index)
        }
        return resolved
    }
}

extension Instruction {
    /// Stores a resolved distance where this kind of instruction keeps it.
    fileprivate mutating func setDistance(_ distance: Int, to label: Label, at index: Int) throws(AssemblyError) {
        let usesImmediate = callKind == .local || pseudoSource == .function
            || opcode == OpCode(.jmp32, JumpOp.ja.rawValue)
        if usesImmediate {
            guard let value = Int32(exactly: distance) else {
                throw .jumpOutOfRange(label, instruction: index, distance: distance)
            }
            constant = Int64(value)
        } else if opcode.jumpOp != nil {
            guard let value = Int16(exactly: distance) else {
                throw .jumpOutOfRange(label, instruction: index, distance: distance)
            }
            offset = value
        } else {
            throw .labelNotAllowed(label, instruction: index)
        }
    }
}

public enum AssemblyError: Error, Hashable, Sendable, CustomStringConvertible {
    case undefinedLabel(Label, instruction: Int)
    case duplicateLabel(Label)
    /// A label after the last instruction: it marks nothing.
    case danglingLabel(Label)
    /// A jump whose distance does not fit its field (16 bits, or 32 for calls and `gotol`).
    case jumpOutOfRange(Label, instruction: Int, distance: Int)
    /// A label on an instruction that has no distance to resolve.
    case labelNotAllowed(Label, instruction: Int)

    public var description: String {
        switch self {
        case .undefinedLabel(let label, let index):
            "instruction \(index) refers to label '\(label)', which is not defined"
        case .duplicateLabel(let label):
            "label '\(label)' is defined more than once"
        case .danglingLabel(let label):
            "label '\(label)' marks no instruction (it is after the last one)"
        case .jumpOutOfRange(let label, let index, let distance):
            "instruction \(index) jumps to label '\(label)', \(distance) slots away: too far for its offset field"
        case .labelNotAllowed(let label, let index):
            "instruction \(index) names label '\(label)' but is not a jump, call or function load"
        }
    }
}

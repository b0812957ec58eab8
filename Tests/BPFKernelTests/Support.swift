import BPFAssembly
import BPFKernel
import KernelTestSupport
import Testing

/// Kernel suites run only where BPF is usable, and always under CI=true.
let kernelAvailable = Kernel.isAvailable
let kernelUnavailable = Comment(rawValue: Kernel.unavailableReason ?? "")

/// An XDP program whose body sees the packet's first `window` bytes through r7
/// (already bounds-checked) and the context in r6, and returns XDP_PASS. BPF-to-BPF
/// functions go in `functions`, after the main program's exit, since jumps may not
/// cross into them.
func packetProgram(window: Int16 = 64, _ body: (inout Assembler) -> Void,
                   functions: (inout Assembler) -> Void = { _ in }) throws -> [Instruction] {
    var asm = Assembler()
    asm.emit(.mov(.r6, .r1))
    asm.emit(.load(.r7, .word, from: .r6, XDPContext.data))
    asm.emit(.load(.r3, .word, from: .r6, XDPContext.dataEnd))
    asm.emit(.mov(.r4, .r7))
    asm.emit(.alu(.add, .r4, Int32(window)))
    asm.emit(.jump(.greater, .r4, .r3, to: "out"))
    body(&asm)
    asm.label("out")
    asm.emit(Instruction.return(XDPAction.pass))
    functions(&asm)
    return try asm.assemble()
}

/// Loads `instructions` and runs them once over `packet`.
func run(_ instructions: [Instruction], packet: [UInt8] = [UInt8](repeating: 0, count: 64),
         maps: [String: Map] = [:]) throws -> TestRunResult {
    let program = try Program.loadXDP(name: "test", instructions: instructions, maps: maps)
    return try program.testRun(TestRun(packet: packet))
}

extension Array where Element == UInt8 {
    /// The little-endian 64-bit word at byte `offset`.
    func word(at offset: Int) -> UInt64 {
        self[offset..<offset + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}

func bytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian, Array.init)
}

/// Counts every frame in `counters[0]` (an array or per-CPU array of u64), then returns `verdict`.
func countingProgram(_ verdict: XDPAction) throws -> [Instruction] {
    var asm = Assembler()
    asm.emit(.store(.word, to: .fp, -4, 0))
    asm.emit(.loadMap(.r1, "counters"))
    asm.emit(.mov(.r2, .fp))
    asm.emit(.alu(.add, .r2, -4))
    asm.emit(.call(.mapLookupElem))
    asm.emit(.jump(.equal, .r0, 0, to: "out"))
    asm.emit(.mov(.r1, 1))
    asm.emit(.atomic(.add, .double, to: .r0, 0, .r1))
    asm.label("out")
    asm.emit(Instruction.return(verdict))
    return try asm.assemble()
}

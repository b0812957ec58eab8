import ArgumentParser
import BPFAssembly
import BPFKernel

/// `xdpflow probe`: can this kernel run XDPFlow? Assembles a small XDP program,
/// has the verifier check it, and runs it on a frame with BPF_PROG_TEST_RUN.
struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that this kernel can load and run XDPFlow's programs.",
        discussion: """
            Mounts bpffs if needed, assembles a program that counts frames by EtherType and \
            drops IPv6, loads it through the kernel verifier, runs it on an IPv4 and an IPv6 \
            frame with BPF_PROG_TEST_RUN and prints the verdicts, the counters and the \
            program's disassembly. Needs root (or CAP_BPF and CAP_NET_ADMIN).
            """
    )

    @Flag(name: .customLong("dump"), help: "Print the program's disassembly.")
    var dump = false

    func run() throws {
        try BPFFS.mountIfNeeded()
        print("bpffs: mounted at \(BPFFS.defaultMountPoint)")
        let counters = try PerCPUArray<UInt64>(name: "probe_counts", maxEntries: 2)
        let instructions = try Self.program()
        let program = try Program.loadXDP(name: "xdpflow_probe", instructions: instructions, maps: ["probe_counts": counters.map])
        print("verifier: accepted \(program.name) (\(program.slotCount) instructions, id \(program.id))")
        if dump { print(instructions.disassembly()) }
        for (name, etherType) in [("IPv4", UInt16(0x0800)), ("IPv6", UInt16(0x86dd))] {
            var frame = [UInt8](repeating: 0, count: 60)
            frame[12] = UInt8(etherType >> 8)
            frame[13] = UInt8(etherType & 0xff)
            let result = try program.testRun(TestRun(packet: frame, repeatCount: 1000))
            print("test run: \(name) frame -> \(result.action.map(String.init(describing:)) ?? "\(result.returnValue)")"
                + " (\(result.duration) ns per run over 1000 runs)")
        }
        for (index, name) in ["other", "IPv6"].enumerated() {
            let total = try counters.get(UInt32(index))?.reduce(0, &+) ?? 0
            print("counter \(name): \(total)")
        }
    }

    /// Counts each frame in slot 1 if it is IPv6 (and drops it), else slot 0 (and passes it).
    static func program() throws -> [Instruction] {
        var asm = Assembler()
        asm.emit(.load(.r2, .word, from: .r1, XDPContext.data))
        asm.emit(.load(.r3, .word, from: .r1, XDPContext.dataEnd))
        asm.emit(.mov(.r4, .r2))
        asm.emit(.alu(.add, .r4, 14))
        asm.emit(.mov(.r6, Int32(XDPAction.pass.rawValue)))
        asm.emit(.store(.word, to: .fp, -4, 0))
        asm.emit(.jump(.greater, .r4, .r3, to: "count"))
        asm.emit(.load(.r5, .half, from: .r2, 12))
        asm.emit(.endian(.big, .r5, bits: 16))
        asm.emit(.jump(.notEqual, .r5, 0x86dd, to: "count"))
        asm.emit(.store(.word, to: .fp, -4, 1))
        asm.emit(.mov(.r6, Int32(XDPAction.drop.rawValue)))
        asm.label("count")
        asm.emit(.loadMap(.r1, "probe_counts"))
        asm.emit(.mov(.r2, .fp))
        asm.emit(.alu(.add, .r2, -4))
        asm.emit(.call(.mapLookupElem))
        asm.emit(.jump(.equal, .r0, 0, to: "out"))
        asm.emit(.mov(.r1, 1))
        asm.emit(.atomic(.add, .double, to: .r0, 0, .r1))
        asm.label("out")
        asm.emit(.mov(.r0, .r6))
        asm.emit(.exit)
        return try asm.assemble()
    }
}


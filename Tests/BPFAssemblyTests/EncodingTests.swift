import Testing
@testable import BPFAssembly

/// One row per instruction form: the instruction, its bytes as the kernel reads
/// them, and the text the kernel's disassembler prints for it.
struct Form: Sendable, CustomTestStringConvertible {
    let instruction: Instruction
    let hex: String
    let text: String
    var testDescription: String { text }
}

let forms: [Form] = [
    // ALU64, immediate and register.
    Form(instruction: .mov(.r0, 2), hex: "b700000002000000", text: "(b7) r0 = 2"),
    Form(instruction: .mov(.r6, .r1), hex: "bf16000000000000", text: "(bf) r6 = r1"),
    Form(instruction: .alu(.add, .r1, 14), hex: "070100000e000000", text: "(07) r1 += 14"),
    Form(instruction: .alu(.add, .r1, .r2), hex: "0f21000000000000", text: "(0f) r1 += r2"),
    Form(instruction: .alu(.sub, .r3, -8), hex: "17030000f8ffffff", text: "(17) r3 -= -8"),
    Form(instruction: .alu(.mul, .r1, .r2), hex: "2f21000000000000", text: "(2f) r1 *= r2"),
    Form(instruction: .alu(.div, .r1, 3), hex: "3701000003000000", text: "(37) r1 /= 3"),
    Form(instruction: .alu(.or, .r1, 0x40), hex: "4701000040000000", text: "(47) r1 |= 64"),
    Form(instruction: .alu(.and, .r1, 0xff), hex: "57010000ff000000", text: "(57) r1 &= 255"),
    Form(instruction: .alu(.lsh, .r1, 8), hex: "6701000008000000", text: "(67) r1 <<= 8"),
    Form(instruction: .alu(.rsh, .r1, .r3), hex: "7f31000000000000", text: "(7f) r1 >>= r3"),
    Form(instruction: .neg(.r2), hex: "8702000000000000", text: "(87) r2 = -r2"),
    Form(instruction: .alu(.mod, .r1, 7), hex: "9701000007000000", text: "(97) r1 %= 7"),
    Form(instruction: .alu(.xor, .r1, .r1), hex: "af11000000000000", text: "(af) r1 ^= r1"),
    Form(instruction: .alu(.arsh, .r1, 4), hex: "c701000004000000", text: "(c7) r1 s>>= 4"),
    // ALU (32-bit).
    Form(instruction: .mov(.r0, 1, .bits32), hex: "b400000001000000", text: "(b4) w0 = 1"),
    Form(instruction: .mov(.r1, .r2, .bits32), hex: "bc21000000000000", text: "(bc) w1 = w2"),
    Form(instruction: .alu(.add, .r1, .r2, .bits32), hex: "0c21000000000000", text: "(0c) w1 += w2"),
    Form(instruction: .alu(.and, .r3, 0xfff, .bits32), hex: "54030000ff0f0000", text: "(54) w3 &= 4095"),
    Form(instruction: .neg(.r4, .bits32), hex: "8404000000000000", text: "(84) w4 = -w4"),
    // cpu v4 arithmetic.
    Form(instruction: .signedDiv(.r1, .r2), hex: "3f21010000000000", text: "(3f) r1 s/= r2"),
    Form(instruction: .signedMod(.r1, .r2, .bits32), hex: "9c21010000000000", text: "(9c) w1 s%= w2"),
    Form(instruction: .movSignExtend(.r1, .r2, bits: 8), hex: "bf21080000000000", text: "(bf) r1 = (s8)r2"),
    // Byte order.
    Form(instruction: .endian(.big, .r1, bits: 16), hex: "dc01000010000000", text: "(dc) r1 = be16 r1"),
    Form(instruction: .endian(.little, .r1, bits: 32), hex: "d401000020000000", text: "(d4) r1 = le32 r1"),
    Form(instruction: .byteSwap(.r2, bits: 64), hex: "d702000040000000", text: "(d7) r2 = bswap64 r2"),
    // Jumps (already resolved: offsets given).
    Form(instruction: .resolved(.jump(to: "x"), offset: 3), hex: "0500030000000000", text: "(05) goto pc+3"),
    Form(instruction: .resolved(.jump(.equal, .r1, 0, to: "x"), offset: 2), hex: "1501020000000000",
         text: "(15) if r1 == 0x0 goto pc+2"),
    Form(instruction: .resolved(.jump(.greater, .r3, .r2, to: "x"), offset: 5), hex: "2d23050000000000",
         text: "(2d) if r3 > r2 goto pc+5"),
    Form(instruction: .resolved(.jump(.notEqual, .r1, 0x800, to: "x"), offset: -4), hex: "5501fcff00080000",
         text: "(55) if r1 != 0x800 goto pc-4"),
    Form(instruction: .resolved(.jump(.bitsSet, .r1, 1, to: "x"), offset: 1), hex: "4501010001000000",
         text: "(45) if r1 & 0x1 goto pc+1"),
    Form(instruction: .resolved(.jump(.signedLess, .r1, -1, to: "x"), offset: 1), hex: "c5010100ffffffff",
         text: "(c5) if r1 s< 0xffffffff goto pc+1"),
    Form(instruction: .resolved(.jump(.lessOrEqual, .r1, .r2, to: "x", .bits32), offset: 7), hex: "be21070000000000",
         text: "(be) if w1 <= w2 goto pc+7"),
    Form(instruction: .resolved(.jump(.greaterOrEqual, .r1, 9, to: "x", .bits32), offset: 1), hex: "3601010009000000",
         text: "(36) if w1 >= 0x9 goto pc+1"),
    Form(instruction: .resolved(.jumpLong(to: "x"), immediate: 70000), hex: "0600000070110100",
         text: "(06) gotol pc+70000"),
    // Calls and exit.
    Form(instruction: .call(.mapLookupElem), hex: "8500000001000000", text: "(85) call bpf_map_lookup_elem#1"),
    Form(instruction: .call(.redirectMap), hex: "8500000033000000", text: "(85) call bpf_redirect_map#51"),
    Form(instruction: .resolved(.call(Label("f")), immediate: 4), hex: "8510000004000000", text: "(85) call pc+4"),
    Form(instruction: .exit, hex: "9500000000000000", text: "(95) exit"),
    // Loads and stores of every size.
    Form(instruction: .load(.r2, .word, from: .r1, 4), hex: "6112040000000000", text: "(61) r2 = *(u32 *)(r1 +4)"),
    Form(instruction: .load(.r3, .half, from: .r2, 12), hex: "69230c0000000000", text: "(69) r3 = *(u16 *)(r2 +12)"),
    Form(instruction: .load(.r3, .byte, from: .r2, 23), hex: "7123170000000000", text: "(71) r3 = *(u8 *)(r2 +23)"),
    Form(instruction: .load(.r0, .double, from: .r10, -8), hex: "79a0f8ff00000000", text: "(79) r0 = *(u64 *)(r10 -8)"),
    Form(instruction: .loadSignExtend(.r1, .half, from: .r2, 0), hex: "8921000000000000", text: "(89) r1 = *(s16 *)(r2 +0)"),
    Form(instruction: .store(.word, to: .r10, -4, .r1), hex: "631afcff00000000", text: "(63) *(u32 *)(r10 -4) = r1"),
    Form(instruction: .store(.double, to: .r10, -16, .r2), hex: "7b2af0ff00000000", text: "(7b) *(u64 *)(r10 -16) = r2"),
    Form(instruction: .store(.byte, to: .r1, 0, .r2), hex: "7321000000000000", text: "(73) *(u8 *)(r1 +0) = r2"),
    Form(instruction: .store(.half, to: .r1, 2, .r2), hex: "6b21020000000000", text: "(6b) *(u16 *)(r1 +2) = r2"),
    Form(instruction: .store(.word, to: .r10, -8, 0), hex: "620af8ff00000000", text: "(62) *(u32 *)(r10 -8) = 0"),
    Form(instruction: .store(.double, to: .r10, -8, -1), hex: "7a0af8ffffffffff", text: "(7a) *(u64 *)(r10 -8) = -1"),
    Form(instruction: .store(.half, to: .r1, 12, 0x81), hex: "6a010c0081000000", text: "(6a) *(u16 *)(r1 +12) = 129"),
    Form(instruction: .store(.byte, to: .r1, 0, 7), hex: "7201000007000000", text: "(72) *(u8 *)(r1 +0) = 7"),
    // Atomics.
    Form(instruction: .atomic(.add, .double, to: .r1, 0, .r2), hex: "db21000000000000", text: "(db) lock *(u64 *)(r1 +0) += r2"),
    Form(instruction: .atomic(.add, .word, to: .r1, 8, .r2), hex: "c321080000000000", text: "(c3) lock *(u32 *)(r1 +8) += r2"),
    Form(instruction: .atomic(.or, .double, to: .r1, 0, .r2), hex: "db21000040000000", text: "(db) lock *(u64 *)(r1 +0) |= r2"),
    Form(instruction: .atomic(.add, .double, to: .r1, 0, .r2, fetch: true), hex: "db21000001000000",
         text: "(db) r2 = atomic64_fetch_add((u64 *)(r1 +0), r2)"),
    Form(instruction: .atomic(.exchange, .double, to: .r1, 0, .r2), hex: "db210000e1000000",
         text: "(db) r2 = atomic64_xchg((u64 *)(r1 +0), r2)"),
    Form(instruction: .atomic(.compareExchange, .word, to: .r1, 4, .r2), hex: "c3210400f1000000",
         text: "(c3) r0 = atomic_cmpxchg((u32 *)(r1 +4), r0, r2)"),
    // 64-bit immediates.
    Form(instruction: .loadImmediate(.r1, 0x1234_5678_9abc_def0), hex: "18010000f0debc9a0000000078563412",
         text: "(18) r1 = 0x123456789abcdef0"),
    Form(instruction: .resolvedMap(.loadMap(.r1, "flows"), fd: 5), hex: "1811000005000000" + "0000000000000000",
         text: "(18) r1 = map[fd:5]"),
    Form(instruction: .resolvedMap(.loadMapValue(.r2, "config", offset: 8), fd: 6),
         hex: "1822000006000000" + "0000000008000000", text: "(18) r2 = map[fd:6][0]+8"),
]

extension Instruction {
    /// The instruction with its label resolved into `offset`, as the assembler leaves it.
    static func resolved(_ instruction: Instruction, offset: Int16) -> Instruction {
        var copy = instruction
        copy.offset = offset
        copy.reference = nil
        return copy
    }

    static func resolved(_ instruction: Instruction, immediate: Int32) -> Instruction {
        var copy = instruction
        copy.constant = Int64(immediate)
        copy.reference = nil
        return copy
    }

    /// A map load with the map's fd filled in, as the loader leaves it.
    static func resolvedMap(_ instruction: Instruction, fd: Int32) -> Instruction {
        var copy = instruction
        copy.constant = (copy.constant & ~0xffff_ffff) | Int64(fd)
        copy.reference = nil
        return copy
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

@Suite struct EncodingTests {
    @Test(arguments: forms)
    func encodesToTheKernelsBytes(_ form: Form) {
        #expect(hex([form.instruction].encoded()) == form.hex)
    }

    @Test(arguments: forms)
    func disassemblesLikeTheKernel(_ form: Form) {
        #expect(form.instruction.description == form.text)
    }

    @Test(arguments: forms)
    func decodesBackToTheSameInstruction(_ form: Form) throws {
        let decoded = try [Instruction](decoding: [form.instruction].encoded())
        #expect(decoded == [form.instruction])
    }

    @Test func roundTripsAWholeProgramWithMixedWidths() throws {
        let program = forms.map(\.instruction)
        let bytes = program.encoded()
        #expect(bytes.count == program.slotCount * 8)
        #expect(try [Instruction](decoding: bytes) == program)
    }

    @Test func refusesBytesThatAreNotWholeInstructions() {
        #expect(throws: DecodingError.truncated(byteCount: 12)) {
            try [Instruction](decoding: [UInt8](repeating: 0, count: 12))
        }
    }

    @Test func refusesAHalfOf64BitLoad() {
        let half = Array([Instruction.loadImmediate(.r1, 1)].encoded().prefix(8))
        #expect(throws: DecodingError.incompleteDoubleWide(slot: 0)) { try [Instruction](decoding: half) }
    }

    @Test func refusesRegistersAboveR10() {
        #expect(throws: DecodingError.badRegister(slot: 0)) {
            try [Instruction](decoding: [0xbf, 0x0b, 0, 0, 0, 0, 0, 0])
        }
    }

    @Test func namesHelpersBothWays() {
        #expect(Helper(name: "bpf_redirect_map") == .redirectMap)
        #expect(Helper(name: "xdp_adjust_head") == .xdpAdjustHead)
        #expect(Helper.ktimeGetNs.name == "bpf_ktime_get_ns")
        #expect(Helper(name: "no_such_helper") == nil)
        #expect(Helper(rawValue: 9999).name == "bpf_helper_9999")
    }
}

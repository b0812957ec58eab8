import BPFAssembly
import BPFKernel
import Testing

/// Programs assembled in Swift, checked by the real verifier and run by the kernel:
/// each instruction class computes values that are compared with Swift's own.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct InstructionTests {
    static let a: Int64 = -1_234_567_890_123
    static let b: Int64 = 37

    /// What the kernel computes for `a op b`, in Swift (the ISA document's semantics).
    static func expected(_ op: ALUOp, _ a: Int64, _ b: Int64, _ width: Width) -> UInt64 {
        let bits: UInt64 = width == .bits64 ? 64 : 32
        let mask: UInt64 = width == .bits64 ? .max : 0xffff_ffff
        let x = UInt64(bitPattern: a) & mask, y = UInt64(bitPattern: b) & mask
        let signedX = width == .bits64 ? a : Int64(Int32(truncatingIfNeeded: a))
        let result: UInt64 = switch op {
        case .add: x &+ y
        case .sub: x &- y
        case .mul: x &* y
        case .div: y == 0 ? 0 : x / y
        case .mod: y == 0 ? x : x % y
        case .or: x | y
        case .and: x & y
        case .xor: x ^ y
        case .lsh: x << (y & (bits - 1))
        case .rsh: x >> (y & (bits - 1))
        case .arsh: UInt64(bitPattern: signedX >> Int64(y & (bits - 1)))
        case .mov: y
        case .neg: 0 &- x
        case .end: 0
        }
        return result & mask
    }

    /// The verifier refuses a constant division by zero and a shift by the width or more.
    func refusedImmediate(_ op: ALUOp, _ b: Int64, _ width: Width) -> Bool {
        (b == 0 && (op == .div || op == .mod))
            || ([.lsh, .rsh, .arsh].contains(op) && b >= (width == .bits64 ? 64 : 32))
    }

    static let aluCases: [(ALUOp, Width)] = [ALUOp.add, .sub, .mul, .div, .mod, .or, .and, .xor, .lsh, .rsh, .arsh, .mov]
        .flatMap { op in [(op, Width.bits64), (op, .bits32)] }

    @Test(arguments: aluCases)
    func arithmeticMatchesSwift(_ op: ALUOp, _ width: Width) throws {
        for (a, b) in [(Self.a, Self.b), (Self.a, 0), (Int64(0x7fff_ffff), 5)] {
            let instructions = try packetProgram { asm in
                asm.emit(.loadImmediate(.r1, a))
                asm.emit(.loadImmediate(.r3, a))
                asm.emit(.mov(.r2, Int32(b)))
                asm.emit(.alu(op, .r1, .r2, width))             // register form
                // The verifier refuses constant division by zero and over-wide shifts.
                asm.emit(.alu(op, .r3, Int32(refusedImmediate(op, b, width) ? 1 : b), width))  // immediate form
                asm.emit(.store(.double, to: .r7, 0, .r1))
                asm.emit(.store(.double, to: .r7, 8, .r3))
            }
            let out = try run(instructions).packet
            let want = Self.expected(op, a, b, width)
            #expect(out.word(at: 0) == want, "\(op) \(width) reg a=\(a) b=\(b)")
            let immediate = refusedImmediate(op, b, width) ? Self.expected(op, a, 1, width) : want
            #expect(out.word(at: 8) == immediate, "\(op) \(width) imm a=\(a) b=\(b)")
        }
    }

    @Test func negationSignedDivisionAndSignExtension() throws {
        let instructions = try packetProgram { asm in
            asm.emit(.loadImmediate(.r1, -100))
            asm.emit(.neg(.r1))                               // 100
            asm.emit(.store(.double, to: .r7, 0, .r1))
            asm.emit(.mov(.r1, -100))
            asm.emit(.mov(.r2, 7))
            asm.emit(.signedDiv(.r1, .r2))                    // -14
            asm.emit(.store(.double, to: .r7, 8, .r1))
            asm.emit(.mov(.r1, -100))
            asm.emit(.signedMod(.r1, .r2))                    // -2
            asm.emit(.store(.double, to: .r7, 16, .r1))
            asm.emit(.mov(.r1, 0x80))
            asm.emit(.movSignExtend(.r3, .r1, bits: 8))       // (s8)0x80 = -128
            asm.emit(.store(.double, to: .r7, 24, .r3))
        }
        let out = try run(instructions).packet
        #expect(out.word(at: 0) == 100)
        #expect(Int64(bitPattern: out.word(at: 8)) == -14)
        #expect(Int64(bitPattern: out.word(at: 16)) == -2)
        #expect(Int64(bitPattern: out.word(at: 24)) == -128)
    }

    @Test func byteOrderConversions() throws {
        var packet = [UInt8](repeating: 0, count: 64)
        packet[0...3] = [0x12, 0x34, 0x56, 0x78]
        let instructions = try packetProgram { asm in
            asm.emit(.load(.r1, .half, from: .r7, 0))
            asm.emit(.endian(.big, .r1, bits: 16))            // network order -> 0x1234
            asm.emit(.store(.double, to: .r7, 8, .r1))
            asm.emit(.load(.r1, .word, from: .r7, 0))
            asm.emit(.byteSwap(.r1, bits: 32))                // 0x12345678
            asm.emit(.store(.double, to: .r7, 16, .r1))
            asm.emit(.load(.r1, .word, from: .r7, 0))
            asm.emit(.endian(.little, .r1, bits: 16))         // truncates to the low 16 bits
            asm.emit(.store(.double, to: .r7, 24, .r1))
        }
        let out = try run(instructions, packet: packet).packet
        #expect(out.word(at: 8) == 0x1234)
        #expect(out.word(at: 16) == 0x1234_5678)
        #expect(out.word(at: 24) == 0x3412)
    }

    static let conditions = Condition.allCases.flatMap { condition in [(condition, Width.bits64), (condition, .bits32)] }

    static func holds(_ condition: Condition, _ a: Int64, _ b: Int64, _ width: Width) -> Bool {
        let (x, y): (UInt64, UInt64) = width == .bits64
            ? (UInt64(bitPattern: a), UInt64(bitPattern: b))
            : (UInt64(UInt32(truncatingIfNeeded: a)), UInt64(UInt32(truncatingIfNeeded: b)))
        let (sx, sy): (Int64, Int64) = width == .bits64
            ? (a, b) : (Int64(Int32(truncatingIfNeeded: a)), Int64(Int32(truncatingIfNeeded: b)))
        return switch condition {
        case .equal: x == y
        case .notEqual: x != y
        case .bitsSet: x & y != 0
        case .greater: x > y
        case .greaterOrEqual: x >= y
        case .less: x < y
        case .lessOrEqual: x <= y
        case .signedGreater: sx > sy
        case .signedGreaterOrEqual: sx >= sy
        case .signedLess: sx < sy
        case .signedLessOrEqual: sx <= sy
        }
    }

    @Test(arguments: conditions)
    func conditionalJumpsMatchSwift(_ condition: Condition, _ width: Width) throws {
        // The last pair differs only above bit 31: 32-bit jumps must not see it.
        let pairs: [(Int64, Int64)] = [(5, 5), (5, 7), (-3, 2), (0x1_0000_0005, 5), (6, 3)]
        let instructions = try packetProgram { asm in
            for (index, (a, b)) in pairs.enumerated() {
                let taken = Label("taken\(index)"), next = Label("next\(index)")
                asm.emit(.loadImmediate(.r1, a))
                asm.emit(.mov(.r2, Int32(b)))
                asm.emit(.jump(condition, .r1, .r2, to: taken, width))
                asm.emit(.store(.byte, to: .r7, Int16(index), 1))
                asm.emit(.jump(to: next))
                asm.label(taken)
                asm.emit(.store(.byte, to: .r7, Int16(index), 2))
                asm.label(next)
                asm.emit(.jump(condition, .r1, Int32(b), to: Label("immTaken\(index)"), width))
                asm.emit(.store(.byte, to: .r7, Int16(32 + index), 1))
                asm.emit(.jumpLong(to: Label("immNext\(index)")))
                asm.label(Label("immTaken\(index)"))
                asm.emit(.store(.byte, to: .r7, Int16(32 + index), 2))
                asm.label(Label("immNext\(index)"))
            }
        }
        let out = try run(instructions).packet
        for (index, (a, b)) in pairs.enumerated() {
            let want: UInt8 = Self.holds(condition, a, b, width) ? 2 : 1
            #expect(out[index] == want, "if \(a) \(condition) \(b) (\(width), register)")
            #expect(out[32 + index] == want, "if \(a) \(condition) \(b) (\(width), immediate)")
        }
    }

    @Test func loadsAndStoresOfEverySize() throws {
        let instructions = try packetProgram { asm in
            asm.emit(.store(.double, to: .fp, -8, -2))                 // ST imm, sign-extended
            asm.emit(.load(.r1, .double, from: .fp, -8))
            asm.emit(.store(.double, to: .r7, 0, .r1))
            asm.emit(.store(.word, to: .fp, -16, 0x1122_3344))
            asm.emit(.load(.r1, .word, from: .fp, -16))
            asm.emit(.store(.word, to: .r7, 8, .r1))
            asm.emit(.store(.half, to: .fp, -18, 0x5566))
            asm.emit(.load(.r1, .half, from: .fp, -18))
            asm.emit(.store(.half, to: .r7, 12, .r1))
            asm.emit(.store(.byte, to: .fp, -19, 0x77))
            asm.emit(.load(.r1, .byte, from: .fp, -19))
            asm.emit(.store(.byte, to: .r7, 14, .r1))
            asm.emit(.store(.byte, to: .r7, 15, 0x88))
            asm.emit(.store(.byte, to: .fp, -20, 0xf0))                // -16 as s8
            asm.emit(.loadSignExtend(.r1, .byte, from: .fp, -20))
            asm.emit(.store(.double, to: .r7, 16, .r1))
        }
        let out = try run(instructions).packet
        #expect(Int64(bitPattern: out.word(at: 0)) == -2)
        #expect(Array(out[8..<16]) == [0x44, 0x33, 0x22, 0x11, 0x66, 0x55, 0x77, 0x88])
        #expect(Int64(bitPattern: out.word(at: 16)) == -16)
    }

    @Test func helperCallsAndLocalFunctions() throws {
        let counters = try ArrayMap<UInt64>(name: "counters", maxEntries: 4)
        let instructions = try packetProgram { asm in
            asm.emit(.call(.ktimeGetNs))
            asm.emit(.store(.double, to: .r7, 0, .r0))
            asm.emit(.mov(.r1, 20))
            asm.emit(.call(Label("twice_plus_one")))
            asm.emit(.store(.double, to: .r7, 8, .r0))
            // counters[2] += 5, through bpf_map_lookup_elem and an atomic add.
            asm.emit(.store(.word, to: .fp, -4, 2))
            asm.emit(.loadMap(.r1, "counters"))
            asm.emit(.mov(.r2, .fp))
            asm.emit(.alu(.add, .r2, -4))
            asm.emit(.call(.mapLookupElem))
            asm.emit(.jump(.equal, .r0, 0, to: "out"))
            asm.emit(.mov(.r1, 5))
            asm.emit(.atomic(.add, .double, to: .r0, 0, .r1))
        } functions: { asm in
            asm.label("twice_plus_one")
            asm.emit(.mov(.r0, .r1))
            asm.emit(.alu(.lsh, .r0, 1))
            asm.emit(.alu(.add, .r0, 1))
            asm.emit(.exit)
        }
        let program = try Program.loadXDP(name: "calls", instructions: instructions, maps: ["counters": counters.map])
        let first = try program.testRun(TestRun(packet: [UInt8](repeating: 0, count: 64)))
        _ = try program.testRun(TestRun(packet: [UInt8](repeating: 0, count: 64)))
        #expect(first.action == .pass)
        #expect(first.packet.word(at: 0) > 0)
        #expect(first.packet.word(at: 8) == 41)
        #expect(try counters.get(2) == 10)
    }

    @Test func atomicsOnADirectMapValue() throws {
        let cell = try ArrayMap<InlineArray<2, UInt64>>(name: "cell", maxEntries: 1)
        try cell.set(0, [100, 7])
        let instructions = try packetProgram { asm in
            asm.emit(.loadMapValue(.r1, "cell"))
            asm.emit(.mov(.r2, 5))
            asm.emit(.atomic(.add, .double, to: .r1, 0, .r2, fetch: true))   // r2 = 100, cell = 105
            asm.emit(.store(.double, to: .r7, 0, .r2))
            asm.emit(.mov(.r2, 0xff))
            asm.emit(.atomic(.and, .double, to: .r1, 8, .r2))                // 7 & 0xff = 7
            asm.emit(.mov(.r2, 9))
            asm.emit(.atomic(.exchange, .double, to: .r1, 8, .r2))           // r2 = 7, cell[1] = 9
            asm.emit(.store(.double, to: .r7, 8, .r2))
            asm.emit(.mov(.r0, 9))
            asm.emit(.mov(.r2, 11))
            asm.emit(.atomic(.compareExchange, .double, to: .r1, 8, .r2))    // 9 == r0: cell[1] = 11
            asm.emit(.store(.double, to: .r7, 16, .r0))
        }
        let out = try run(instructions, maps: ["cell": cell.map]).packet
        #expect(out.word(at: 0) == 100)
        #expect(out.word(at: 8) == 7)
        #expect(out.word(at: 16) == 9)
        let after = try #require(try cell.get(0))
        #expect([after[0], after[1]] == [105, 11])
    }

    @Test func growsThePacketWithAdjustHead() throws {
        // Push four bytes in front, as a VLAN push does, and write them.
        var asm = Assembler()
        asm.emit(.mov(.r6, .r1))
        asm.emit(.mov(.r2, -4))
        asm.emit(.call(.xdpAdjustHead))
        asm.emit(.jump(.notEqual, .r0, 0, to: "out"))
        asm.emit(.load(.r2, .word, from: .r6, XDPContext.data))
        asm.emit(.load(.r3, .word, from: .r6, XDPContext.dataEnd))
        asm.emit(.mov(.r4, .r2))
        asm.emit(.alu(.add, .r4, 4))
        asm.emit(.jump(.greater, .r4, .r3, to: "out"))
        asm.emit(.store(.word, to: .r2, 0, 0x0d0c_0b0a))
        asm.label("out")
        asm.emit(Instruction.return(XDPAction.pass))
        let out = try run(try asm.assemble(), packet: [1, 2, 3, 4] + [UInt8](repeating: 0, count: 60)).packet
        #expect(out.count == 68)
        #expect(Array(out.prefix(8)) == [0x0a, 0x0b, 0x0c, 0x0d, 1, 2, 3, 4])
    }

    @Test func returnsEachVerdict() throws {
        for action in XDPAction.allCases where action != .redirect {
            var asm = Assembler()
            asm.emit(Instruction.return(action))
            #expect(try run(try asm.assemble()).action == action)
        }
    }
}

@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct VerifierTests {
    @Test func refusesAnUncheckedPacketReadAndShowsWhy() throws {
        var asm = Assembler()
        asm.emit(.load(.r2, .word, from: .r1, XDPContext.data))
        asm.emit(.load(.r0, .byte, from: .r2, 20))   // no comparison with data_end
        asm.emit(Instruction.return(XDPAction.pass))
        let error = #expect(throws: BPFError.self) {
            try Program.loadXDP(name: "unchecked", instructions: try asm.assemble())
        }
        guard case .verifierRejected(let name, _, let log)? = error else {
            Issue.record("expected a verifier rejection, got \(String(describing: error))")
            return
        }
        #expect(name == "unchecked")
        #expect(log.contains("invalid access to packet"))
        #expect(error!.description.contains("invalid access to packet"))
        #expect(error!.description.hasPrefix("the kernel verifier rejected program 'unchecked'"))
    }

    @Test func refusesAProgramWithoutExit() throws {
        var asm = Assembler()
        asm.emit(.mov(.r0, 2))
        let error = #expect(throws: BPFError.self) {
            try Program.loadXDP(name: "noexit", instructions: try asm.assemble())
        }
        guard case .verifierRejected(_, _, let log)? = error else {
            Issue.record("expected a verifier rejection, got \(String(describing: error))")
            return
        }
        #expect(log.contains("last insn is not an exit or jmp") || log.contains("jump out of range"))
    }

    @Test func namesAMissingMap() throws {
        var asm = Assembler()
        asm.emit(.loadMap(.r1, "absent"))
        asm.emit(Instruction.return(XDPAction.pass))
        #expect(throws: BPFError.self) {
            try Program.loadXDP(name: "nomap", instructions: try asm.assemble())
        }
    }
}

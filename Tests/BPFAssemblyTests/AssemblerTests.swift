import PropertyBased
import Testing
@testable import BPFAssembly

@Suite struct AssemblerTests {
    @Test func resolvesForwardAndBackwardJumpsInSlots() throws {
        var asm = Assembler()
        asm.label("top")
        asm.emit(.mov(.r0, 0))                          // slot 0
        asm.emit(.jump(.equal, .r1, 0, to: "out"))      // slot 1 -> slot 5: +3
        asm.emit(.loadImmediate(.r2, 1 << 40))          // slots 2-3
        asm.emit(.jump(to: "top"))                      // slot 4 -> slot 0: -5
        asm.label("out")
        asm.emit(.exit)                                 // slot 5
        let program = try asm.assemble()
        #expect(program[1].offset == 3)
        #expect(program[3].offset == -5)
        #expect(program.slotCount == 6)
        #expect(program.disassembly(labels: asm.labels) == """
            top:
               0: (b7) r0 = 0
               1: (15) if r1 == 0x0 goto pc+3
               2: (18) r2 = 0x10000000000
               4: (05) goto pc-5
            out:
               5: (95) exit
            """)
    }

    @Test func resolvesLocalCallsAndFunctionAddressesIntoTheImmediate() throws {
        var asm = Assembler()
        asm.emit(.loadFunction(.r2, "callback"))
        asm.emit(.call(Label("callback")))
        asm.emit(.exit)
        asm.label("callback")
        asm.emit(Instruction.return(0))
        let program = try asm.assemble()
        #expect(program[0].immediate == 3)   // slot 0 -> slot 4, counted from slot 1 as the verifier does
        #expect(program[1].immediate == 1)
        #expect(program[0].offset == 0 && program[1].offset == 0)
    }

    @Test func namesAnUndefinedLabel() {
        var asm = Assembler()
        asm.emit(.jump(.equal, .r1, 0, to: "nowhere"))
        asm.emit(.exit)
        #expect(throws: AssemblyError.undefinedLabel("nowhere", instruction: 0)) { try asm.assemble() }
        #expect(AssemblyError.undefinedLabel("nowhere", instruction: 0).description
            == "instruction 0 refers to label 'nowhere', which is not defined")
    }

    @Test func namesADuplicateLabel() {
        var asm = Assembler()
        asm.label("twice")
        asm.emit(.exit)
        asm.label("twice")
        asm.emit(.exit)
        #expect(throws: AssemblyError.duplicateLabel("twice")) { try asm.assemble() }
    }

    @Test func namesALabelThatMarksNothing() {
        var asm = Assembler()
        asm.emit(.exit)
        asm.label("end")
        #expect(throws: AssemblyError.danglingLabel("end")) { try asm.assemble() }
    }

    @Test func refusesAJumpBeyondSixteenBitsAndNamesIt() {
        var asm = Assembler()
        asm.emit(.jump(to: "far"))
        for _ in 0..<40_000 { asm.emit(.mov(.r0, 0)) }
        asm.label("far")
        asm.emit(.exit)
        #expect(throws: AssemblyError.jumpOutOfRange("far", instruction: 0, distance: 40_000)) { try asm.assemble() }
    }

    @Test func reachesTheSameDistanceWithALongJump() throws {
        var asm = Assembler()
        asm.emit(.jumpLong(to: "far"))
        for _ in 0..<40_000 { asm.emit(.mov(.r0, 0)) }
        asm.label("far")
        asm.emit(.exit)
        #expect(try asm.assemble()[0].immediate == 40_000)
    }

    @Test func refusesALabelOnAnInstructionWithoutADistance() {
        var asm = Assembler()
        asm.label("here")
        asm.emit(Instruction(opcode: Instruction.mov(.r0, 0).opcode, reference: .label("here")))
        #expect(throws: AssemblyError.labelNotAllowed("here", instruction: 0)) { try asm.assemble() }
    }

    @Test func leavesMapReferencesForTheLoader() throws {
        var asm = Assembler()
        asm.emit(.loadMap(.r1, "flows"))
        asm.emit(.exit)
        let program = try asm.assemble()
        #expect(program[0].reference == .map("flows"))
        #expect(program[0].pseudoSource == .mapFD)
        #expect(program[0].description == "(18) r1 = map[flows]")
    }
}

/// Every form of the table with its fields varied: registers, offsets and
/// immediates across their whole range must survive encode and decode.
@Suite struct RoundTripTests {
    @Test func survivesVariedOperands() async {
        await propertyCheck(
            count: 2000, input: Gen.element(of: forms), Gen<UInt8>.value(in: 0...10), Gen<UInt8>.value(in: 0...10),
            Gen<Int16>.value(), Gen<Int64>.value()
        ) { form, dst, src, offset, constant in
            var instruction = form!.instruction
            instruction.dst = Register(rawValue: dst)!
            if instruction.pseudoSource == nil && instruction.callKind == nil {
                instruction.src = Register(rawValue: src)!
            }
            if instruction.opcode.jumpOp != nil || instruction.opcode.instructionClass.isMemory {
                instruction.offset = offset
            }
            instruction.constant = instruction.isDoubleWide ? constant : Int64(Int32(truncatingIfNeeded: constant))
            #expect((try? [Instruction](decoding: [instruction].encoded())) == [instruction])
        }
    }
}

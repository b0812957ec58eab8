import BPFAssembly
import BPFKernel
import FlowCompiler
import Testing

/// The mark companion's instructions. BPF_PROG_TEST_RUN cannot hand an skb program
/// metadata (the kernel refuses a context with data or data_meta set), so what it does
/// with a marked frame is tested live (FlowOffloadTests' MarkTests); here, that it reads
/// the area FlowMetadata's layouts describe and that the verifier takes it as a tc program.
struct MarkCompanionTests {
    @Test func itChecksTheTrailerAndTheMarksOffsetAndCopiesTheMark() throws {
        for layout in FlowMetadata.Layout.allCases {
            let text = try MarkCompanion.instructions(for: layout).disassembly()
            #expect(text.contains("r2 = *(u32 *)(r1 +140)") && text.contains("r3 = *(u32 *)(r1 +76)"), "\(text)")
            #expect(text.contains("r4 += \(layout.length)") && text.contains("if r4 != r3 goto"), "exactly the area: \(text)")
            // The trailer: 'x' 'f' version length, little-endian.
            #expect(text.contains("r4 = *(u32 *)(r2 +\(layout.length - 4))"), "\(text)")
            #expect(text.contains("if w4 != 0x\(String(layout.trailerWord, radix: 16)) goto"), "\(text)")
            #expect(text.contains("r4 = *(u8 *)(r2 +0)") && text.contains("if r4 == 0x0 goto"), "a mark at all: \(text)")
            #expect(text.contains("r4 = *(u32 *)(r2 +4)") && text.contains("*(u32 *)(r1 +8) = r4"), "\(text)")
            #expect(text.contains("r0 = -1"), "TCX_NEXT: \(text)")
        }
    }

    @Test(.enabled(if: kernelAvailable, kernelUnavailable))
    func theVerifierTakesItAsATCProgram() throws {
        for layout in FlowMetadata.Layout.allCases {
            let program = try Program.load(.schedCLS, attachType: .tcxIngress, name: MarkCompanion.name,
                                           instructions: MarkCompanion.instructions(for: layout))
            #expect(program.slotCount == 14)
        }
    }
}

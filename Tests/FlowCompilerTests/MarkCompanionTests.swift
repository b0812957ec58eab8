import BPFAssembly
import BPFKernel
import FlowCompiler
import Testing

/// The mark companion's instructions. BPF_PROG_TEST_RUN cannot hand an skb program
/// metadata (the kernel refuses a context with data or data_meta set), so what it does
/// with a marked frame is tested live (FlowOffloadTests' MarkTests); here, that it reads
/// the header FlowMetadata writes and that the verifier takes it as a tc program.
struct MarkCompanionTests {
    @Test func itComparesBothHeaderWordsAndCopiesTheMarkFromItsOffset() throws {
        let text = try MarkCompanion.instructions().disassembly()
        #expect(text.contains("r2 = *(u32 *)(r1 +140)") && text.contains("r3 = *(u32 *)(r1 +76)"), "\(text)")
        #expect(text.contains("r4 += 12"), "\(text)")
        // 'x' 'f' version length, little-endian; then the mark's offset, 8.
        #expect(text.contains("if w4 != 0xc016678 goto") && text.contains("if w4 != 0x8 goto"), "\(text)")
        #expect(text.contains("r4 = *(u32 *)(r2 +8)") && text.contains("*(u32 *)(r1 +8) = r4"), "\(text)")
        #expect(text.hasSuffix("r0 = -1\nexit") || text.contains("r0 = -1"), "TCX_NEXT: \(text)")
        #expect(FlowMetadata.header.count == 8 && FlowMetadata.markOffset == 8 && FlowMetadata.length == 12)
    }

    @Test(.enabled(if: kernelAvailable, kernelUnavailable))
    func theVerifierTakesItAsATCProgram() throws {
        let program = try Program.load(.schedCLS, attachType: .tcxIngress, name: MarkCompanion.name,
                                       instructions: MarkCompanion.instructions())
        #expect(program.slotCount == 13)
    }
}

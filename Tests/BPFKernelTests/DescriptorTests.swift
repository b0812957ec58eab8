import BPFAssembly
import BPFKernel
import Foundation
import Testing

@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct DescriptorTests {
    static func openDescriptors() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
    }

    @Test func kernelObjectsCloseTheirDescriptorsWhenDropped() throws {
        func churn() throws {
            for _ in 0..<50 {
                let map = try Map(MapSpec(name: "churn", type: .hash, keySize: 4, valueSize: 4, maxEntries: 4))
                var asm = Assembler()
                asm.emit(.loadMap(.r1, "churn"))
                asm.emit(Instruction.return(XDPAction.pass))
                let program = try Program.loadXDP(name: "churn", instructions: try asm.assemble(), maps: ["churn": map])
                _ = try program.testRun(TestRun(packet: [UInt8](repeating: 0, count: 64)))
                _ = try? Program.loadXDP(name: "refused", instructions: [.exit])   // a refusal leaks nothing either
            }
        }
        try churn()   // warm up whatever the runtime opens once
        let before = try Self.openDescriptors()
        try churn()
        // 100 objects were made: a leak shows as 100 more. Other suites run meanwhile
        // in this process and hold a few descriptors for a moment, hence the margin.
        let after = try Self.openDescriptors()
        #expect(after < before + 20, "\(before) descriptors open before, \(after) after")
    }
}

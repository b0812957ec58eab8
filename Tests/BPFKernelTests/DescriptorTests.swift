import BPFAssembly
import BPFKernel
import Foundation
import Testing

@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct DescriptorTests {
    @Test func kernelObjectsCloseTheirDescriptorsWhenDropped() throws {
        // Only this test's objects are counted (other suites run in this process
        // meanwhile): maps with 7 entries, and programs with the churn program's tag.
        func churn() throws -> String {
            var tag = ""
            for _ in 0..<50 {
                let map = try Map(MapSpec(name: "churn", type: .hash, keySize: 4, valueSize: 4, maxEntries: 7))
                var asm = Assembler()
                asm.emit(.loadMap(.r1, "churn"))
                asm.emit(Instruction.return(XDPAction.pass))
                let program = try Program.loadXDP(name: "churn", instructions: try asm.assemble(), maps: ["churn": map])
                _ = try program.testRun(TestRun(packet: [UInt8](repeating: 0, count: 64)))
                tag = Self.fdinfo(program.descriptor.rawValue).first { $0.hasPrefix("prog_tag:") } ?? ""
                _ = try? Program.loadXDP(name: "refused", instructions: [.exit])   // a refusal leaks nothing either
            }
            return tag
        }
        let tag = try churn()
        #expect(tag.hasPrefix("prog_tag:"))
        let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").filter { fd in
            let info = Self.fdinfo(Int32(fd) ?? -1)
            return info.contains(tag) || (info.contains("map_type:\t1") && info.contains("max_entries:\t7"))
        }
        #expect(open.isEmpty, "\(open.count) of the 100 maps and programs are still open")
    }

    static func fdinfo(_ fd: Int32) -> [String] {
        ((try? String(contentsOfFile: "/proc/self/fdinfo/\(fd)", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }
}

import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import KernelTestSupport
import PropertyBased
import Testing

/// The metadata area as a contract: the reader takes back what the layouts write, finds
/// the area from its end, and refuses what is malformed without trapping; the program
/// writes what the reader reads.
struct FlowMetadataTests {
    @Test func whatTheLayoutsWriteReadsBackFromTheEnd() {
        let marked = FlowMetadata(mark: 0x1234)
        #expect(marked.area(.mark) == [4, 0, 0, 0, 0x34, 0x12, 0, 0, 0x78, 0x66, 2, 12])
        #expect(FlowMetadata(endingAt: marked.area(.mark)) == marked)
        let named = FlowMetadata(mark: nil, rule: (prio: 7, handle: 0x10))
        let area = named.area(.rule)
        #expect(area.count == 20 && Array(area[0 ..< 4]) == [0, 0, 8, 0])
        // Whatever lies before the area (the rest of a umem chunk) is not read.
        let read = FlowMetadata(endingAt: [0xff, 0xee, 0xdd, 0xcc] + area)
        #expect(read?.mark == nil && read?.rule?.prio == 7 && read?.rule?.handle == 0x10)
        #expect(FlowMetadata(endingAt: FlowMetadata(mark: 5, rule: (1, 2)).area(.rule))?.mark == 5)
    }

    @Test func malformedAreasAreRefused() {
        let good = FlowMetadata(mark: 9, rule: (3, 4)).area(.rule)
        func with(_ index: Int, _ byte: UInt8) -> [UInt8] {
            var bytes = good
            bytes[index] = byte
            return bytes
        }
        #expect(FlowMetadata(endingAt: [UInt8]()) == nil)
        #expect(FlowMetadata(endingAt: Array(good.prefix(19))) == nil, "no trailer at the end")
        #expect(FlowMetadata(endingAt: with(16, 0x79)) == nil, "magic")
        #expect(FlowMetadata(endingAt: with(18, 1)) == nil, "the undocumented version 1")
        #expect(FlowMetadata(endingAt: with(19, 24)) == nil, "longer than the bytes")
        #expect(FlowMetadata(endingAt: with(19, 18)) == nil, "not a multiple of 4")
        #expect(FlowMetadata(endingAt: with(0, 6)) == nil, "a value not aligned")
        #expect(FlowMetadata(endingAt: with(2, 12)) == nil, "the rule over the trailer")
        #expect(FlowMetadata(endingAt: with(0, 2)) == nil, "a value over the offsets")
        #expect(FlowMetadata(endingAt: with(3, 4))?.mark == 9, "key 3 is reserved: skipped")
    }

    /// Any bytes: no trap, and what is accepted names values inside the area.
    @Test func anyBytesAreReadWithoutATrap() async {
        await propertyCheck(count: 2_000, input: Gen.uint8().array(of: 0 ... 64)) { bytes in
            guard let read = FlowMetadata(endingAt: bytes) else { return }
            let length = Int(bytes[bytes.count - 1])
            #expect(length >= 8 && length <= bytes.count && Array(bytes.suffix(4).prefix(3)) == [0x78, 0x66, 2])
            _ = read.mark
        }
    }

    /// Valid areas with one byte changed: refused, or read with the same trailer.
    @Test func everyOneByteChangeIsReadOrRefused() async {
        await propertyCheck(count: 2_000, input: Gen<UInt32>.value(), Gen.int(in: 0 ... 19), Gen<UInt8>.value()) {
            mark, index, byte in
            var area = FlowMetadata(mark: mark, rule: (mark >> 16, mark & 0xffff)).area(.rule)
            area[index] = byte
            if let read = FlowMetadata(endingAt: area), index >= 4, index < 16 {
                #expect(read.rule != nil || read.mark != nil || area[0] == 0 && area[2] == 0)
            }
        }
    }
}

/// The program writes the layout it was compiled for (BPF_PROG_TEST_RUN hands the area
/// back in front of the frame).
@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct MetadataProgramTests {
    let rules = [
        "filter add dev xft0 protocol ip prio 3 handle 5 flower ip_proto udp dst_port 53 action skbedit mark 0x30/0xf0",
        "filter add dev xft0 protocol ip prio 3 handle 6 flower ip_proto udp dst_port 54 action pass",
        "filter add dev xft0 protocol ip prio 9 handle 0x10 flower ip_proto udp action skbedit mark 7 pipe action continue",
        "filter add dev xft0 protocol ip prio 10 handle 2 flower ip_proto udp dst_port 55 action pass",
    ]

    @Test(arguments: [Plan.defaultInlineLimit, 0])
    func theRuleLayoutNamesTheDecidingRule(inlineLimit: Int) throws {
        let plan = try Plan(ruleSet(rules), device: testDevice, inlineLimit: inlineLimit)
        let datapath = try Datapath(plan: plan, options: CompileOptions(recordMatches: true, metadata: .rule), targetIndex: { _ in 1 })
        func read(_ port: UInt16) throws -> FlowMetadata? {
            FlowMetadata(endingAt: try datapath.trace(udp4(dst: port).padded().bytes).metadata)
        }
        let marked = try read(53)
        #expect(marked?.rule?.prio == 3 && marked?.rule?.handle == 5 && marked?.mark == 0x30)
        let passed = try read(54)
        #expect(passed?.rule?.prio == 3 && passed?.rule?.handle == 6 && passed?.mark == nil)
        // Rules that continue: the last rule to decide is named, the marks add up.
        let continued = try read(55)
        #expect(continued?.rule?.prio == 10 && continued?.rule?.handle == 2 && continued?.mark == 7)
        #expect(try read(56).map { $0.rule?.prio == 9 && $0.mark == 7 } == true, "prio 9 continues into a miss")
        // A frame no rule decides has no area.
        #expect(try datapath.trace(ether(type: 0x88b5).padded().bytes).metadata.isEmpty)
    }

    @Test func theMarkLayoutWritesOnlyMarks() throws {
        let datapath = try Datapath(plan: Plan(ruleSet(rules), device: testDevice), options: CompileOptions(recordMatches: true),
                                    targetIndex: { _ in 1 })
        #expect(try datapath.trace(udp4(dst: 54).padded().bytes).metadata.isEmpty)
        let area = try datapath.trace(udp4(dst: 53).padded().bytes).metadata
        #expect(area.count == 12 && FlowMetadata(endingAt: area)?.mark == 0x30)
    }
}

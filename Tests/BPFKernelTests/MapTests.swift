import BPFAssembly
import BPFKernel
import KernelTestSupport
import SystemPackage
import Testing

@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct MapTests {
    @Test func hashMapElementsAndIteration() throws {
        let map = try Map(MapSpec(name: "flows", type: .hash, keySize: 4, valueSize: 8, maxEntries: 16))
        #expect(try map.lookup(bytes(UInt32(1))) == nil)
        try map.update(bytes(UInt32(1)), bytes(UInt64(10)))
        try map.update(bytes(UInt32(2)), bytes(UInt64(20)), .noExist)
        #expect(try map.lookup(bytes(UInt32(1))) == bytes(UInt64(10)))
        try map.update(bytes(UInt32(1)), bytes(UInt64(11)), .exist)
        #expect(try map.lookup(bytes(UInt32(1))) == bytes(UInt64(11)))
        #expect(Set(try map.keys()) == [bytes(UInt32(1)), bytes(UInt32(2))])
        #expect(try map.delete(bytes(UInt32(1))))
        #expect(try !map.delete(bytes(UInt32(1))))
        #expect(try map.keys() == [bytes(UInt32(2))])
    }

    @Test func updatePoliciesAreTheKernelsFlags() throws {
        let map = try Map(MapSpec(name: "policy", type: .hash, keySize: 4, valueSize: 4, maxEntries: 4))
        try map.update(bytes(UInt32(1)), bytes(UInt32(1)))
        let exists = #expect(throws: BPFError.self) { try map.update(bytes(UInt32(1)), bytes(UInt32(2)), .noExist) }
        #expect(exists?.description == "bpf_map_update_elem(policy) failed: EEXIST (File exists): it already exists")
        #expect(throws: BPFError.self) { try map.update(bytes(UInt32(9)), bytes(UInt32(2)), .exist) }
    }

    @Test func refusesKeysAndValuesOfTheWrongSize() throws {
        let map = try Map(MapSpec(name: "sizes", type: .hash, keySize: 4, valueSize: 8, maxEntries: 4))
        let error = #expect(throws: BPFError.self) { try map.update([1, 2], bytes(UInt64(1))) }
        #expect(error?.description == "map sizes: key of 2 bytes, expected 4")
    }

    @Test func aFullMapSaysSo() throws {
        let map = try Map(MapSpec(name: "small", type: .hash, keySize: 4, valueSize: 4, maxEntries: 2))
        try map.update(bytes(UInt32(1)), bytes(UInt32(1)))
        try map.update(bytes(UInt32(2)), bytes(UInt32(1)))
        let error = #expect(throws: BPFError.self) { try map.update(bytes(UInt32(3)), bytes(UInt32(1))) }
        #expect(error?.description.hasSuffix("E2BIG (Argument list too long)") == true
            || error?.description.contains("the map is full") == true)
    }

    @Test func arrayMapHasEveryIndex() throws {
        let map = try Map(MapSpec(name: "array", type: .array, keySize: 4, valueSize: 4, maxEntries: 3))
        #expect(try map.lookup(bytes(UInt32(2))) == bytes(UInt32(0)))
        try map.update(bytes(UInt32(2)), bytes(UInt32(7)))
        #expect(try map.lookup(bytes(UInt32(2))) == bytes(UInt32(7)))
        #expect(try map.lookup(bytes(UInt32(3))) == nil)
        #expect(try map.keys().count == 3)
    }

    @Test(arguments: [MapType.perCPUHash, .perCPUArray])
    func perCPUValuesOnePerCPUAndSummed(_ type: MapType) throws {
        let map = try Map(MapSpec(name: "percpu", type: type, keySize: 4, valueSize: 16, maxEntries: 4))
        let key = bytes(UInt32(1))
        try map.updateAllCPUs(key, bytes(UInt64(3)) + bytes(UInt64(100)))
        let values = try #require(try map.lookupPerCPU(key))
        #expect(values.count == Map.possibleCPUs)
        #expect(values.allSatisfy { $0 == bytes(UInt64(3)) + bytes(UInt64(100)) })
        #expect(values.summedWords() == [3 * UInt64(Map.possibleCPUs), 100 * UInt64(Map.possibleCPUs)])
    }

    @Test func perCPUCountersWrittenByAProgram() throws {
        let counters = try Map(MapSpec(name: "counters", type: .perCPUArray, keySize: 4, valueSize: 8, maxEntries: 1))
        let program = try Program.loadXDP(name: "count", instructions: try countingProgram(.drop), maps: ["counters": counters])
        let result = try program.testRun(TestRun(packet: [UInt8](repeating: 0, count: 64), repeatCount: 50))
        #expect(result.action == .drop)
        #expect(try counters.lookupPerCPU(bytes(UInt32(0)))?.summedWords() == [50])
    }

    @Test func lpmTrieFindsTheLongestPrefix() throws {
        // Key: 32-bit prefix length, then the address in network order.
        let trie = try Map(MapSpec(name: "routes", type: .lpmTrie, keySize: 8, valueSize: 4, maxEntries: 8))
        func key(_ length: UInt32, _ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> [UInt8] {
            bytes(length) + [a, b, c, d]
        }
        try trie.update(key(8, 10, 0, 0, 0), bytes(UInt32(8)))
        try trie.update(key(24, 10, 1, 2, 0), bytes(UInt32(24)))
        #expect(try trie.lookup(key(32, 10, 1, 2, 3)) == bytes(UInt32(24)))
        #expect(try trie.lookup(key(32, 10, 9, 9, 9)) == bytes(UInt32(8)))
        #expect(try trie.lookup(key(32, 11, 0, 0, 1)) == nil)
    }

    @Test(arguments: [MapType.devmap, .devmapHash])
    func deviceMapsHoldDevices(_ type: MapType) throws {
        let lab = try VethLab()
        let map = try Map(MapSpec(name: "ports", type: type, keySize: 4, valueSize: 4, maxEntries: 8))
        try map.update(bytes(UInt32(5)), bytes(lab.device.index))
        #expect(try map.lookup(bytes(UInt32(5))) == bytes(lab.device.index))
        #expect(throws: BPFError.self) { try map.update(bytes(UInt32(6)), bytes(UInt32.max)) }
    }

    @Test func batchesWriteReadAndDelete() throws {
        let map = try Map(MapSpec(name: "batch", type: .hash, keySize: 4, valueSize: 8, maxEntries: 2048))
        let entries = (0..<1000 as Range<UInt32>).map { (key: bytes($0), value: bytes(UInt64($0) * 3)) }
        try map.updateBatch(entries)
        let read = try map.lookupBatch(batchSize: 64)
        #expect(read.count == 1000)
        #expect(Dictionary(uniqueKeysWithValues: read.map { ($0.key, $0.value) })
            == Dictionary(uniqueKeysWithValues: entries.map { ($0.key, $0.value) }))
        try map.deleteBatch(entries.prefix(600).map(\.key))
        #expect(try map.keys().count == 400)
    }

    @Test func ringBufferDeliversRecords() throws {
        let ring = try Map(MapSpec(name: "events", type: .ringBuffer, keySize: 0, valueSize: 0, maxEntries: 4096))
        var asm = Assembler()
        asm.emit(.store(.double, to: .fp, -8, 0x0102_0304))
        asm.emit(.loadMap(.r1, "events"))
        asm.emit(.mov(.r2, .fp))
        asm.emit(.alu(.add, .r2, -8))
        asm.emit(.mov(.r3, 8))
        asm.emit(.mov(.r4, 0))
        asm.emit(.call(.ringbufOutput))
        asm.emit(Instruction.return(XDPAction.pass))
        let program = try Program.loadXDP(name: "events", instructions: try asm.assemble(), maps: ["events": ring])
        _ = try program.testRun(TestRun(packet: [UInt8](repeating: 0, count: 64), repeatCount: 3))
        var records = [[UInt8]]()
        let reader = try RingBufferReader(ring) { records.append($0) }
        #expect(try reader.poll(timeout: 100) == 3)
        #expect(records == Array(repeating: bytes(UInt64(0x0102_0304)), count: 3))
    }

    @Test func pinsAndReopens() throws {
        try BPFFS.mountIfNeeded()
        let path = FilePath("/sys/fs/bpf/\(VethLab.prefix)-map-\(UInt32.random(in: 0...UInt32.max))")
        let map = try Map(MapSpec(name: "pinned", type: .hash, keySize: 4, valueSize: 4, maxEntries: 4))
        try map.update(bytes(UInt32(1)), bytes(UInt32(42)))
        try map.pin(at: path)
        defer { try? unpin(path) }
        let reopened = try Map(pinnedAt: path)
        #expect(reopened.spec == map.spec)
        #expect(reopened.id == map.id)
        #expect(try reopened.lookup(bytes(UInt32(1))) == bytes(UInt32(42)))
        let missing = #expect(throws: BPFError.self) { try Map(pinnedAt: "/sys/fs/bpf/xft-no-such-pin") }
        #expect(missing?.description.contains("ENOENT") == true)
    }
}

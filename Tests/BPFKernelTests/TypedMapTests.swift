import BPFAssembly
import BPFKernel
import KernelTestSupport
import SystemPackage
import Testing

@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct TypedMapTests {
    @Test func hashMapGetsInsertsRemovesAndIterates() throws {
        let map = try HashMap<UInt32, Flow>(name: "flows", maxEntries: 16)
        #expect(try map.get(1) == nil)
        try map.insert(1, Flow(packets: 10, port: 80))
        try map.insert(2, Flow(packets: 20, port: 443), .noExist)
        #expect(try map.get(1) == Flow(packets: 10, port: 80))
        #expect(throws: BPFError.self) { try map.insert(2, Flow(packets: 0, port: 0), .noExist) }
        #expect(Set(try map.keys()) == [1, 2])
        #expect(try map.remove(1))
        #expect(try !map.remove(1))
        #expect(try map.keys() == [2])
        // The raw layer sees the codec's bytes.
        #expect(try map.map.lookup(bytes(UInt32(2))) == bytes(UInt64(20)) + bytes(UInt16(443)) + [0, 0, 0, 0, 0, 0])
    }

    @Test func keysAndValuesOfTheWrongSizeAreRefusedAtOpen() throws {
        let raw = try Map(MapSpec(name: "sizes", type: .hash, keySize: 4, valueSize: 8, maxEntries: 4))
        let key = #expect(throws: BPFError.self) { try HashMap<UInt64, UInt64>(raw) }
        #expect(key?.description == "map sizes: key of 8 bytes, expected 4")
        guard case .keySizeMismatch(map: "sizes", expected: 4, actual: 8)? = key else {
            Issue.record("expected keySizeMismatch, got \(String(describing: key))")
            return
        }
        let value = #expect(throws: BPFError.self) { try HashMap<UInt32, UInt32>(raw) }
        guard case .valueSizeMismatch(map: "sizes", expected: 8, actual: 4)? = value else {
            Issue.record("expected valueSizeMismatch, got \(String(describing: value))")
            return
        }
        _ = try HashMap<UInt32, UInt64>(raw)
    }

    @Test func aMapOfAnotherTypeIsRefusedAtOpen() throws {
        let array = try Map(MapSpec(name: "cells", type: .array, keySize: 4, valueSize: 8, maxEntries: 4))
        let error = #expect(throws: BPFError.self) { try HashMap<UInt32, UInt64>(array) }
        #expect(error?.description == "map cells is of type array, expected hash or devmap_hash")
        #expect(throws: BPFError.self) { try PerCPUArray<UInt64>(array) }
        _ = try ArrayMap<UInt64>(array)
    }

    @Test func aPinnedMapIsCheckedWhenOpened() throws {
        try BPFFS.mountIfNeeded()
        let path = FilePath("/sys/fs/bpf/\(VethLab.prefix)-typed-\(UInt32.random(in: 0...UInt32.max))")
        let map = try ArrayMap<Flow>(name: "pinned", maxEntries: 4)
        try map.set(3, Flow(packets: 7, port: 53))
        try map.map.pin(at: path)
        defer { try? unpin(path) }
        #expect(try ArrayMap<Flow>(pinnedAt: path).get(3) == Flow(packets: 7, port: 53))
        #expect(throws: BPFError.self) { try ArrayMap<UInt64>(pinnedAt: path) }
    }

    @Test func arraysHaveEveryIndex() throws {
        let array = try ArrayMap<UInt64>(name: "array", maxEntries: 3)
        #expect(try array.get(2) == 0)
        try array.set(2, 7)
        #expect(try array.get(2) == 7)
        #expect(try array.get(3) == nil)
        #expect(try array.indexes() == [0, 1, 2])
    }

    @Test func perCPUArraysReadOneValuePerCPU() throws {
        let counters = try PerCPUArray<Counter>(name: "percpu", maxEntries: 2)
        try counters.set(1, allCPUs: Counter(packets: 3, bytes: 100))
        let values = try #require(try counters.get(1))
        #expect(values == Array(repeating: Counter(packets: 3, bytes: 100), count: Map.possibleCPUs))
        let distinct = (0 ..< Map.possibleCPUs).map { Counter(packets: UInt64($0), bytes: UInt64($0) * 10) }
        try counters.set(0, perCPU: distinct)
        #expect(try counters.get(0) == distinct)
        #expect(try counters.get(2) == nil)
        #expect(throws: BPFError.self) { try counters.set(0, perCPU: [Counter(packets: 1, bytes: 1)] + distinct) }
    }

    @Test func perCPUArraysSetManyIndexesInOneBatch() throws {
        let counters = try PerCPUArray<UInt32>(name: "percpu", maxEntries: 4)
        for index in UInt32(0) ..< 4 { try counters.set(index, allCPUs: 9) }
        try counters.set([1, 3], allCPUs: 0)
        #expect(try (0 ..< 4).map { try counters.get($0) } == [9, 0, 9, 0].map { Array(repeating: $0, count: Map.possibleCPUs) })
    }

    @Test func perCPUCountersWrittenByAProgram() throws {
        let counters = try PerCPUArray<UInt64>(name: "counters", maxEntries: 1)
        let program = try Program.loadXDP(name: "count", instructions: try countingProgram(.drop),
                                          maps: ["counters": counters.map])
        _ = try program.testRun(TestRun(packet: [UInt8](repeating: 0, count: 64), repeatCount: 50))
        let perCPU = try #require(try counters.get(0))
        #expect(perCPU.count == Map.possibleCPUs)
        #expect(perCPU.reduce(0, +) == 50)
    }

    @Test func perCPUHashMapsInsertAndRemove() throws {
        let map = try PerCPUHashMap<UInt16, UInt32>(name: "percpu_hash", maxEntries: 4)
        try map.insert(9, allCPUs: 5)
        #expect(try map.get(9) == Array(repeating: 5, count: Map.possibleCPUs))
        #expect(try map.keys() == [9])
        #expect(try map.remove(9))
        #expect(try map.get(9) == nil)
    }

    @Test func batchesFillAHashMapInOneCall() throws {
        let map = try HashMap<UInt32, UInt64>(name: "batch", maxEntries: 2048)
        let entries = (0 ..< 1000 as Range<UInt32>).map { (key: $0, value: UInt64($0) * 3) }
        try map.insert(contentsOf: entries)
        #expect(try map.keys().count == 1000)
        #expect(try map.get(999) == 2997)
        let read = try map.map.lookupBatch(batchSize: 64)
        #expect(Dictionary(uniqueKeysWithValues: try read.map { (try UInt32(decoding: $0.key), try UInt64(decoding: $0.value)) })
            == Dictionary(uniqueKeysWithValues: entries.map { ($0.key, $0.value) }))
    }

    @Test(arguments: [MapType.array, .devmap])
    func batchesFillArraysAndDevmapsOneAtATimeWhereTheyMust(_ type: MapType) throws {
        let lab = try VethLab()
        let map = try ArrayMap<UInt32>(name: "ports", type: type, maxEntries: 8)
        try map.set(contentsOf: [(index: 1, value: lab.device.index), (index: 5, value: lab.device.index)])
        #expect(try map.get(1) == lab.device.index)
        #expect(try map.get(5) == lab.device.index)
    }

    @Test func aValueTheTypeCannotReadSaysWhichMap() throws {
        let raw = try Map(MapSpec(name: "colours", type: .array, keySize: 4, valueSize: 1, maxEntries: 1))
        try raw.update(bytes(UInt32(0)), [9])
        let error = #expect(throws: BPFError.self) { try ArrayMap<Colour>(raw).get(0) }
        #expect(error?.description == "map colours holds a value xdpflow cannot read: Colour at byte 0: 9 is not a valid value")
    }

    @Test func specsAreBuiltFromTheTypes() {
        let spec = MapSpec(name: "s", type: .lpmTrie, key: UInt64.self, value: Flow.self, maxEntries: 8)
        #expect(spec.keySize == 8 && spec.valueSize == Flow.byteCount)
        #expect(spec.flags == .noPrealloc, "LPM tries need BPF_F_NO_PREALLOC")
        #expect(MapFlags.readOnlyProgram.union(.noPrealloc).rawValue == 1 << 7 | 1)
    }
}

/// A value with padding, as a C struct { u64 packets; u16 port; } lays it out.
private struct Flow: MapCodable, Hashable {
    var packets: UInt64
    var port: UInt16

    init(packets: UInt64, port: UInt16) {
        self.packets = packets
        self.port = port
    }

    static let byteCount = 16

    func encode(into writer: inout ByteWriter) {
        writer.write(packets)
        writer.write(port)
        writer.writeZeros(6)
    }

    init(from reader: inout ByteReader) throws(ByteDecodingError) {
        packets = try reader.read()
        port = try reader.read()
        try reader.skip(6)
    }
}

private struct Counter: MapCodable, Hashable {
    var packets: UInt64
    var bytes: UInt64

    init(packets: UInt64, bytes: UInt64) {
        self.packets = packets
        self.bytes = bytes
    }

    static let byteCount = 16

    func encode(into writer: inout ByteWriter) {
        writer.write(packets)
        writer.write(bytes)
    }

    init(from reader: inout ByteReader) throws(ByteDecodingError) {
        packets = try reader.read()
        bytes = try reader.read()
    }
}

private enum Colour: UInt8, MapCodable {
    case red = 1, green, blue
}

import BPFAssembly
import CLibBPF
import SystemPackage

public enum MapType: Hashable, Sendable, CaseIterable {
    case hash, perCPUHash, array, perCPUArray, lpmTrie, devmap, devmapHash, ringBuffer
    /// Programs, by index, for `bpf_tail_call`; a value is a program's fd.
    case progArray
    /// AF_XDP sockets, by receive queue, for `bpf_redirect_map`; a value is a socket's fd.
    case xskmap

    var kernelType: bpf_map_type {
        switch self {
        case .hash: BPF_MAP_TYPE_HASH
        case .perCPUHash: BPF_MAP_TYPE_PERCPU_HASH
        case .array: BPF_MAP_TYPE_ARRAY
        case .perCPUArray: BPF_MAP_TYPE_PERCPU_ARRAY
        case .lpmTrie: BPF_MAP_TYPE_LPM_TRIE
        case .devmap: BPF_MAP_TYPE_DEVMAP
        case .devmapHash: BPF_MAP_TYPE_DEVMAP_HASH
        case .ringBuffer: BPF_MAP_TYPE_RINGBUF
        case .progArray: BPF_MAP_TYPE_PROG_ARRAY
        case .xskmap: BPF_MAP_TYPE_XSKMAP
        }
    }

    init?(kernelType: UInt32) {
        guard let type = MapType.allCases.first(where: { $0.kernelType.rawValue == kernelType }) else { return nil }
        self = type
    }

    /// Each CPU has its own copy of every value.
    public var isPerCPU: Bool { self == .perCPUHash || self == .perCPUArray }

    /// The kernel has no BPF_MAP_*_BATCH for these: entries go one at a time.
    public var hasBatchOperations: Bool { ![.devmap, .devmapHash, .progArray, .ringBuffer, .xskmap].contains(self) }

    /// The type as bpftool names it.
    public var name: String {
        switch self {
        case .hash: "hash"
        case .perCPUHash: "percpu_hash"
        case .array: "array"
        case .perCPUArray: "percpu_array"
        case .lpmTrie: "lpm_trie"
        case .devmap: "devmap"
        case .devmapHash: "devmap_hash"
        case .ringBuffer: "ringbuf"
        case .progArray: "prog_array"
        case .xskmap: "xskmap"
        }
    }
}

/// BPF_F_* map creation flags.
public struct MapFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Entries are allocated when inserted (required for LPM tries).
    public static let noPrealloc = MapFlags(BPF_F_NO_PREALLOC)
    /// An LRU list per CPU instead of one shared.
    public static let noCommonLRU = MapFlags(BPF_F_NO_COMMON_LRU)
    public static let numaNode = MapFlags(BPF_F_NUMA_NODE)
    /// The syscall side may only read, or only write.
    public static let readOnly = MapFlags(BPF_F_RDONLY)
    public static let writeOnly = MapFlags(BPF_F_WRONLY)
    /// Hash maps seed their hash with zero (tests that need a fixed iteration order).
    public static let zeroSeed = MapFlags(BPF_F_ZERO_SEED)
    /// Programs may only read, or only write.
    public static let readOnlyProgram = MapFlags(BPF_F_RDONLY_PROG)
    public static let writeOnlyProgram = MapFlags(BPF_F_WRONLY_PROG)
    /// An array the process may mmap.
    public static let mmapable = MapFlags(BPF_F_MMAPABLE)
    public static let innerMap = MapFlags(BPF_F_INNER_MAP)

    private init(_ flag: some BinaryInteger) { rawValue = UInt32(flag) }
}

/// What a map is: the arguments of BPF_MAP_CREATE.
public struct MapSpec: Hashable, Sendable {
    public var name: String
    public var type: MapType
    public var keySize: Int
    public var valueSize: Int
    public var maxEntries: Int
    /// `.noPrealloc` is added for LPM tries, which require it.
    public var flags: MapFlags

    public init(name: String, type: MapType, keySize: Int, valueSize: Int, maxEntries: Int, flags: MapFlags = []) {
        self.name = name
        self.type = type
        self.keySize = keySize
        self.valueSize = valueSize
        self.maxEntries = maxEntries
        self.flags = type == .lpmTrie ? flags.union(.noPrealloc) : flags
    }
}

/// How an update treats an existing entry (BPF_ANY, BPF_NOEXIST, BPF_EXIST).
public enum UpdatePolicy: UInt64, Sendable {
    case any = 0
    case noExist = 1
    case exist = 2
}

/// A BPF map, owned: the kernel object lives at least as long as this value or a pin.
///
/// Keys and values are bytes in the layout the program reads. A per-CPU map's value,
/// as read or written here, is one value per possible CPU, each padded to 8 bytes.
public final class Map: Pinnable, Sendable {
    public let descriptor: Descriptor
    public let spec: MapSpec
    public var name: String { spec.name }
    /// The pin this map was opened from (`init(pinnedAt:)`); nil for one made here.
    public let pinPath: FilePath?

    public init(_ spec: MapSpec) throws(BPFError) {
        var opts = bpf_map_create_opts()
        opts.sz = MemoryLayout<bpf_map_create_opts>.size
        opts.map_flags = spec.flags.rawValue
        let fd = bpf_map_create(spec.type.kernelType, String(spec.name.prefix(Int(BPF_OBJ_NAME_LEN) - 1)),
                                UInt32(spec.keySize), UInt32(spec.valueSize), UInt32(spec.maxEntries), &opts)
        descriptor = Descriptor(try check("bpf_map_create", spec.name, fd))
        self.spec = spec
        pinPath = nil
    }

    /// Opens the map pinned at `path`; its spec is read back from the kernel.
    public init(pinnedAt path: FilePath) throws(BPFError) {
        descriptor = try openPinned(path)
        var info = bpf_map_info()
        var length = UInt32(MemoryLayout<bpf_map_info>.size)
        try check("bpf_obj_get_info_by_fd", path.string, bpf_obj_get_info_by_fd(descriptor.rawValue, &info, &length))
        guard let type = MapType(kernelType: info.type) else {
            throw .unsupportedMapType(path: path.string, kernelType: info.type)
        }
        let name = withUnsafeBytes(of: info.name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        spec = MapSpec(name: name, type: type, keySize: Int(info.key_size), valueSize: Int(info.value_size),
                       maxEntries: Int(info.max_entries), flags: MapFlags(rawValue: info.map_flags))
        pinPath = path
    }

    /// The kernel's id of this map (as `bpftool map show` lists it).
    public var id: UInt32 {
        var info = bpf_map_info()
        var length = UInt32(MemoryLayout<bpf_map_info>.size)
        return bpf_obj_get_info_by_fd(descriptor.rawValue, &info, &length) == 0 ? info.id : 0
    }

    /// Bytes of one value as the syscalls read and write it.
    public var valueLength: Int { spec.type.isPerCPU ? perCPUStride * Map.possibleCPUs : spec.valueSize }
    var perCPUStride: Int { (spec.valueSize + 7) & ~7 }

    /// The number of possible CPUs, which sizes per-CPU values.
    public static let possibleCPUs = Int(libbpf_num_possible_cpus())

    // MARK: Elements

    /// The value stored under `key`, or nil when there is none.
    public func lookup(_ key: [UInt8]) throws(BPFError) -> [UInt8]? {
        try checkKey(key)
        var value = [UInt8](repeating: 0, count: valueLength)
        let result = bpf_map_lookup_elem(descriptor.rawValue, key, &value)
        if result == -ENOENT { return nil }
        try check("bpf_map_lookup_elem", name, result)
        return value
    }

    public func update(_ key: [UInt8], _ value: [UInt8], _ policy: UpdatePolicy = .any) throws(BPFError) {
        try checkKey(key)
        try checkValue(value)
        try check("bpf_map_update_elem", name, bpf_map_update_elem(descriptor.rawValue, key, value, policy.rawValue))
    }

    /// Deletes the entry under `key`; false when there was none.
    @discardableResult
    public func delete(_ key: [UInt8]) throws(BPFError) -> Bool {
        try checkKey(key)
        let result = bpf_map_delete_elem(descriptor.rawValue, key)
        if result == -ENOENT { return false }
        try check("bpf_map_delete_elem", name, result)
        return true
    }

    /// Every key, in the kernel's iteration order.
    public func keys() throws(BPFError) -> [[UInt8]] {
        var keys = [[UInt8]]()
        var next = [UInt8](repeating: 0, count: spec.keySize)
        var result = bpf_map_get_next_key(descriptor.rawValue, nil, &next)
        while result == 0 {
            keys.append(next)
            result = bpf_map_get_next_key(descriptor.rawValue, keys[keys.count - 1], &next)
        }
        guard result == -ENOENT else { throw .call("bpf_map_get_next_key", subject: name, errno: Errno(rawValue: -result)) }
        return keys
    }

    // MARK: Per-CPU values

    /// The per-CPU values under `key`, one per possible CPU, each `spec.valueSize` bytes.
    public func lookupPerCPU(_ key: [UInt8]) throws(BPFError) -> [[UInt8]]? {
        try expectPerCPU()
        return try lookup(key).map(splitPerCPU)
    }

    /// Sets every CPU's value under `key` to `value`.
    public func updateAllCPUs(_ key: [UInt8], _ value: [UInt8], _ policy: UpdatePolicy = .any) throws(BPFError) {
        try updatePerCPU(key, Array(repeating: value, count: Map.possibleCPUs), policy)
    }

    /// Sets each CPU's value under `key`: `values[cpu]`, one per possible CPU.
    public func updatePerCPU(_ key: [UInt8], _ values: [[UInt8]], _ policy: UpdatePolicy = .any) throws(BPFError) {
        try expectPerCPU()
        guard values.count == Map.possibleCPUs else {
            throw .valueSizeMismatch(map: name, expected: valueLength, actual: values.count * perCPUStride)
        }
        var joined: [UInt8] = []
        joined.reserveCapacity(valueLength)
        for value in values {
            guard value.count == spec.valueSize else {
                throw .valueSizeMismatch(map: name, expected: spec.valueSize, actual: value.count)
            }
            joined += value
            joined += repeatElement(0, count: perCPUStride - value.count)
        }
        try update(key, joined, policy)
    }

    private func expectPerCPU() throws(BPFError) {
        guard spec.type.isPerCPU else {
            throw .mapTypeMismatch(map: name, expected: MapType.allCases.filter(\.isPerCPU), actual: spec.type)
        }
    }

    func splitPerCPU(_ bytes: [UInt8]) -> [[UInt8]] {
        stride(from: 0, to: bytes.count, by: perCPUStride).map { Array(bytes[$0..<$0 + spec.valueSize]) }
    }

    // MARK: Batches

    /// Every entry, read with BPF_MAP_LOOKUP_BATCH, `batchSize` entries a call.
    public func lookupBatch(batchSize: Int = 256) throws(BPFError) -> [(key: [UInt8], value: [UInt8])] {
        var entries = [(key: [UInt8], value: [UInt8])]()
        // The batch cursor is opaque; hash maps use a bucket index, arrays a key.
        var cursor = [UInt8](repeating: 0, count: max(spec.keySize, 8))
        var next = cursor
        var first = true
        while true {
            var keys = [UInt8](repeating: 0, count: spec.keySize * batchSize)
            var values = [UInt8](repeating: 0, count: valueLength * batchSize)
            var count = UInt32(batchSize)
            var opts = bpf_map_batch_opts()
            opts.sz = MemoryLayout<bpf_map_batch_opts>.size
            let result = cursor.withUnsafeMutableBytes { cursor in
                bpf_map_lookup_batch(descriptor.rawValue, first ? nil : cursor.baseAddress, &next,
                                     &keys, &values, &count, &opts)
            }
            if result < 0 && result != -ENOENT {
                throw .call("bpf_map_lookup_batch", subject: name, errno: Errno(rawValue: -result))
            }
            for index in 0..<Int(count) {
                entries.append((Array(keys[index * spec.keySize..<(index + 1) * spec.keySize]),
                                Array(values[index * valueLength..<(index + 1) * valueLength])))
            }
            if result == -ENOENT { return entries }
            cursor = next
            first = false
        }
    }

    /// Writes all entries in one BPF_MAP_UPDATE_BATCH call (the kernel may apply a prefix
    /// before it fails; the error says so).
    public func updateBatch(_ entries: [(key: [UInt8], value: [UInt8])], _ policy: UpdatePolicy = .any) throws(BPFError) {
        guard !entries.isEmpty else { return }
        for entry in entries {
            try checkKey(entry.key)
            try checkValue(entry.value)
        }
        try updateBatch(keys: entries.flatMap(\.key), values: entries.flatMap(\.value), policy)
    }

    /// Writes entries whose keys and values lie end to end in `keys` and `values`, in one
    /// BPF_MAP_UPDATE_BATCH call: a large fill without an array per entry.
    public func updateBatch(keys: [UInt8], values: [UInt8], _ policy: UpdatePolicy = .any) throws(BPFError) {
        let total = keys.count / spec.keySize
        guard keys.count % spec.keySize == 0, values.count == total * valueLength else {
            throw .partialBatchEntry(map: name, keyBytes: keys.count, valueBytes: values.count,
                                     keySize: spec.keySize, valueSize: valueLength)
        }
        guard total > 0 else { return }
        var count = UInt32(total)
        var opts = bpf_map_batch_opts()
        opts.sz = MemoryLayout<bpf_map_batch_opts>.size
        opts.elem_flags = policy.rawValue
        let result = bpf_map_update_batch(descriptor.rawValue, keys, values, &count, &opts)
        if result < 0 {
            throw .call("bpf_map_update_batch", subject: "\(name), \(count) of \(total) written",
                        errno: Errno(rawValue: -result))
        }
    }

    /// Deletes all `keys` in one BPF_MAP_DELETE_BATCH call; every key must exist.
    public func deleteBatch(_ keys: [[UInt8]]) throws(BPFError) {
        guard !keys.isEmpty else { return }
        for key in keys { try checkKey(key) }
        var count = UInt32(keys.count)
        var opts = bpf_map_batch_opts()
        opts.sz = MemoryLayout<bpf_map_batch_opts>.size
        let result = bpf_map_delete_batch(descriptor.rawValue, keys.flatMap { $0 }, &count, &opts)
        if result < 0 {
            throw .call("bpf_map_delete_batch", subject: "\(name), \(count) of \(keys.count) deleted",
                        errno: Errno(rawValue: -result))
        }
    }

    // MARK: Sizes

    private func checkKey(_ key: [UInt8]) throws(BPFError) {
        guard key.count == spec.keySize else { throw .keySizeMismatch(map: name, expected: spec.keySize, actual: key.count) }
    }

    private func checkValue(_ value: [UInt8]) throws(BPFError) {
        guard value.count == valueLength else {
            throw .valueSizeMismatch(map: name, expected: valueLength, actual: value.count)
        }
    }
}

extension Array where Element == [UInt8] {
    /// Per-CPU values read as little-endian 64-bit words, summed word by word:
    /// the total of per-CPU counters.
    public func summedWords() -> [UInt64] {
        guard let width = first?.count else { return [] }
        var sums = [UInt64](repeating: 0, count: width / 8)
        for value in self {
            var reader = ByteReader(value)
            for word in sums.indices {
                sums[word] &+= (try? reader.read(UInt64.self)) ?? 0
            }
        }
        return sums
    }
}

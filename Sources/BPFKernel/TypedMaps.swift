import BPFAssembly
import SystemPackage

// Typed views of a `Map` (as aya's HashMap<K, V> over its MapData): the key and value
// types are checked against the map once, when the view is made, so every operation
// after that encodes and decodes without a size to get wrong. `Map` stays the raw
// layer, bytes in and out, for maps whose key size is only known at run time.

/// A hash map (or a devmap_hash) with keys `Key` and values `Value`.
public struct HashMap<Key: MapCodable, Value: MapCodable>: Sendable {
    public static var mapTypes: [MapType] { [.hash, .devmapHash] }
    public let map: Map

    /// Views `map`; refused unless its type is one of `mapTypes` and its key and value
    /// sizes are those of `Key` and `Value`.
    public init(_ map: Map) throws(BPFError) {
        try map.expect(Self.mapTypes, key: Key.self, value: Value.self)
        self.map = map
    }

    public init(name: String, type: MapType = .hash, maxEntries: Int, flags: MapFlags = []) throws(BPFError) {
        try self.init(Map(MapSpec(name: name, type: type, key: Key.self, value: Value.self,
                                  maxEntries: maxEntries, flags: flags)))
    }

    public init(pinnedAt path: FilePath) throws(BPFError) {
        try self.init(Map(pinnedAt: path))
    }

    public func get(_ key: Key) throws(BPFError) -> Value? {
        try map.lookup(key.encodedBytes).map { bytes throws(BPFError) in try map.decode(bytes) }
    }

    public func insert(_ key: Key, _ value: Value, _ policy: UpdatePolicy = .any) throws(BPFError) {
        try map.update(key.encodedBytes, value.encodedBytes, policy)
    }

    /// Deletes the entry under `key`; false when there was none.
    @discardableResult
    public func remove(_ key: Key) throws(BPFError) -> Bool {
        try map.delete(key.encodedBytes)
    }

    /// Every key, in the kernel's iteration order.
    public func keys() throws(BPFError) -> [Key] {
        try map.typedKeys()
    }

    /// Writes all entries, in one BPF_MAP_UPDATE_BATCH call where the map type has one.
    public func insert(contentsOf entries: [(key: Key, value: Value)], _ policy: UpdatePolicy = .any)
        throws(BPFError) {
        try map.updateBatch(entries, policy)
    }
}

/// An array (or a devmap) of `Value`, indexed from 0 to `maxEntries - 1`.
public struct ArrayMap<Value: MapCodable>: Sendable {
    public static var mapTypes: [MapType] { [.array, .devmap] }
    public let map: Map

    public init(_ map: Map) throws(BPFError) {
        try map.expect(Self.mapTypes, key: UInt32.self, value: Value.self)
        self.map = map
    }

    public init(name: String, type: MapType = .array, maxEntries: Int, flags: MapFlags = []) throws(BPFError) {
        try self.init(Map(MapSpec(name: name, type: type, key: UInt32.self, value: Value.self,
                                  maxEntries: maxEntries, flags: flags)))
    }

    public init(pinnedAt path: FilePath) throws(BPFError) {
        try self.init(Map(pinnedAt: path))
    }

    public var maxEntries: Int { map.spec.maxEntries }

    /// The value at `index`; nil past the end (and, in a devmap, where no device is set).
    public func get(_ index: UInt32) throws(BPFError) -> Value? {
        try map.lookup(index.encodedBytes).map { bytes throws(BPFError) in try map.decode(bytes) }
    }

    public func set(_ index: UInt32, _ value: Value, _ policy: UpdatePolicy = .any) throws(BPFError) {
        try map.update(index.encodedBytes, value.encodedBytes, policy)
    }

    /// Writes all entries, in one BPF_MAP_UPDATE_BATCH call where the map type has one
    /// (devmaps have none: one update each). Inlinable, with the batch writer, so that a
    /// caller's `Value` is known: unspecialised, each entry's tuple asked the runtime for
    /// its type (0.4 us an entry, most of the prefilter's fill when a second subtable
    /// brings it).
    @inlinable
    public func set(contentsOf entries: [(index: UInt32, value: Value)], _ policy: UpdatePolicy = .any)
        throws(BPFError) {
        try map.updateBatch(entries.map { (key: $0.index, value: $0.value) }, policy)
    }

    /// The indexes the kernel iterates: all of them for an array, the set ones for a devmap.
    public func indexes() throws(BPFError) -> [UInt32] {
        try map.typedKeys()
    }
}

/// A per-CPU array: each possible CPU has its own `Value` at every index.
public struct PerCPUArray<Value: MapCodable>: Sendable {
    public static var mapTypes: [MapType] { [.perCPUArray] }
    public let map: Map

    public init(_ map: Map) throws(BPFError) {
        try map.expect(Self.mapTypes, key: UInt32.self, value: Value.self)
        self.map = map
    }

    public init(name: String, maxEntries: Int, flags: MapFlags = []) throws(BPFError) {
        try self.init(Map(MapSpec(name: name, type: .perCPUArray, key: UInt32.self, value: Value.self,
                                  maxEntries: maxEntries, flags: flags)))
    }

    public init(pinnedAt path: FilePath) throws(BPFError) {
        try self.init(Map(pinnedAt: path))
    }

    public var maxEntries: Int { map.spec.maxEntries }

    /// The values at `index`, one per possible CPU (`Map.possibleCPUs`); nil past the end.
    public func get(_ index: UInt32) throws(BPFError) -> [Value]? {
        try map.typedLookupPerCPU(index)
    }

    /// Sets each CPU's value at `index`: `values[cpu]`, one per possible CPU.
    public func set(_ index: UInt32, perCPU values: [Value], _ policy: UpdatePolicy = .any) throws(BPFError) {
        try map.updatePerCPU(index.encodedBytes, values.map(\.encodedBytes), policy)
    }

    /// Sets every CPU's value at `index` to `value` (zero to reset a counter).
    public func set(_ index: UInt32, allCPUs value: Value, _ policy: UpdatePolicy = .any) throws(BPFError) {
        try map.updateAllCPUs(index.encodedBytes, value.encodedBytes, policy)
    }

    /// Sets every CPU's value at each of `indexes` to `value`, in one BPF_MAP_UPDATE_BATCH
    /// call (a counter slot each for 10,000 new rules: one call, not 10,000).
    public func set(_ indexes: [UInt32], allCPUs value: Value, _ policy: UpdatePolicy = .any) throws(BPFError) {
        let one = value.encodedBytes + repeatElement(0, count: map.perCPUStride - Value.byteCount)
        let values = [UInt8](repeatElement(one, count: indexes.count * Map.possibleCPUs).joined())
        try map.updateBatch(keys: indexes.flatMap(\.encodedBytes), values: values, policy)
    }
}

/// A per-CPU hash map: each possible CPU has its own `Value` under every key.
public struct PerCPUHashMap<Key: MapCodable, Value: MapCodable>: Sendable {
    public static var mapTypes: [MapType] { [.perCPUHash] }
    public let map: Map

    public init(_ map: Map) throws(BPFError) {
        try map.expect(Self.mapTypes, key: Key.self, value: Value.self)
        self.map = map
    }

    public init(name: String, maxEntries: Int, flags: MapFlags = []) throws(BPFError) {
        try self.init(Map(MapSpec(name: name, type: .perCPUHash, key: Key.self, value: Value.self,
                                  maxEntries: maxEntries, flags: flags)))
    }

    public init(pinnedAt path: FilePath) throws(BPFError) {
        try self.init(Map(pinnedAt: path))
    }

    /// The values under `key`, one per possible CPU; nil when there is no entry.
    public func get(_ key: Key) throws(BPFError) -> [Value]? {
        try map.typedLookupPerCPU(key)
    }

    public func insert(_ key: Key, perCPU values: [Value], _ policy: UpdatePolicy = .any) throws(BPFError) {
        try map.updatePerCPU(key.encodedBytes, values.map(\.encodedBytes), policy)
    }

    public func insert(_ key: Key, allCPUs value: Value, _ policy: UpdatePolicy = .any) throws(BPFError) {
        try map.updateAllCPUs(key.encodedBytes, value.encodedBytes, policy)
    }

    @discardableResult
    public func remove(_ key: Key) throws(BPFError) -> Bool {
        try map.delete(key.encodedBytes)
    }

    public func keys() throws(BPFError) -> [Key] {
        try map.typedKeys()
    }
}

extension MapSpec {
    /// The spec of a map whose keys are `Key` and values `Value` (a per-CPU map's value
    /// size is one CPU's value).
    public init<Key: MapCodable, Value: MapCodable>(name: String, type: MapType, key: Key.Type, value: Value.Type,
                                                    maxEntries: Int, flags: MapFlags = []) {
        self.init(name: name, type: type, keySize: Key.byteCount, valueSize: Value.byteCount,
                  maxEntries: maxEntries, flags: flags)
    }
}

// The typed operations, written once for every view.
extension Map {
    func expect<Key: MapCodable, Value: MapCodable>(_ types: [MapType], key: Key.Type, value: Value.Type)
        throws(BPFError) {
        guard types.contains(spec.type) else { throw .mapTypeMismatch(map: name, expected: types, actual: spec.type) }
        guard Key.byteCount == spec.keySize else {
            throw .keySizeMismatch(map: name, expected: spec.keySize, actual: Key.byteCount)
        }
        guard Value.byteCount == spec.valueSize else {
            throw .valueSizeMismatch(map: name, expected: spec.valueSize, actual: Value.byteCount)
        }
    }

    func decode<Value: MapCodable>(_ bytes: some Collection<UInt8>) throws(BPFError) -> Value {
        do {
            return try Value(decoding: bytes)
        } catch {
            throw .undecodable(map: name, error)
        }
    }

    func typedKeys<Key: MapCodable>() throws(BPFError) -> [Key] {
        var decoded: [Key] = []
        for bytes in try keys() { decoded.append(try decode(bytes)) }
        return decoded
    }

    func typedLookupPerCPU<Key: MapCodable, Value: MapCodable>(_ key: Key) throws(BPFError) -> [Value]? {
        guard let values = try lookupPerCPU(key.encodedBytes) else { return nil }
        var decoded: [Value] = []
        decoded.reserveCapacity(values.count)
        for value in values { decoded.append(try decode(value)) }
        return decoded
    }

    /// Keys and values end to end in one batch call; one update each for map types
    /// without batches.
    @inlinable
    func updateBatch<Key: MapCodable, Value: MapCodable>(_ entries: [(key: Key, value: Value)],
                                                         _ policy: UpdatePolicy) throws(BPFError) {
        guard spec.type.hasBatchOperations else {
            for entry in entries { try update(entry.key.encodedBytes, entry.value.encodedBytes, policy) }
            return
        }
        var keys = ByteWriter(capacity: entries.count * Key.byteCount)
        var values = ByteWriter(capacity: entries.count * Value.byteCount)
        for entry in entries {
            keys.write(entry.key)
            values.write(entry.value)
        }
        try updateBatch(keys: keys.bytes, values: values.bytes, policy)
    }
}

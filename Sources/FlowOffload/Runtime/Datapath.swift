import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowRules

/// A plan in the kernel: its maps created (or reused) and filled, and its program
/// loaded through the verifier. Attaching it is the runtime's business; a datapath can
/// also run frames through BPF_PROG_TEST_RUN without any device.
public final class Datapath {
    /// Changed in place by `LiveRuleSet`, which writes what the change needs.
    public internal(set) var plan: Plan
    public let options: CompileOptions
    /// The program's instructions; for an adopted datapath, generated when first asked.
    public private(set) lazy var instructions: [Instruction] = (try? CodeGenerator.generate(plan, options: options)) ?? []
    /// Nil for a datapath adopted from pinned maps (its program runs behind a link).
    public let program: Program?
    /// By name: the shared maps (FlowMaps) and one per subtable.
    public let maps: [String: BPFKernel.Map]
    /// The shared maps as their typed views, opened once.
    let views: DatapathMaps

    /// `targetIndex` gives the ifindex a redirect target device has. To replace a
    /// running datapath, pass it as `replacing`: maps with the same name and spec are
    /// kept with their entries (counters, buckets, subtables), and only the differences
    /// from its plan are written. `sharing` limits the maps kept to those named.
    /// `beforeLive` runs once the program is verified, before the kept maps change.
    public convenience init(plan: Plan, options: CompileOptions = CompileOptions(),
                            targetIndex: (String) throws(BPFError) -> UInt32,
                            replacing previous: Datapath? = nil, sharing shared: Set<String>? = nil,
                            beforeLive: () throws(OffloadError) -> Void = {}) throws(OffloadError) {
        try self.init(plan: plan, options: options, targetIndex: targetIndex, replacing: previous,
                      writes: previous.map { plan.writes(since: $0.plan) } ?? MapWrites(), sharing: shared,
                      beforeLive: beforeLive)
    }

    /// `writes` is what the kept maps of `previous` need to hold `plan`.
    init(plan: Plan, options: CompileOptions, targetIndex: (String) throws(BPFError) -> UInt32,
         replacing previous: Datapath?, writes: MapWrites, sharing shared: Set<String>? = nil,
         beforeLive: () throws(OffloadError) -> Void = {}) throws(OffloadError) {
        let reuse = (previous?.maps ?? [:]).filter {
            (shared?.contains($0.key) ?? true) && !writes.droppedMaps.contains($0.key)
        }
        self.plan = plan
        self.options = options
        let instructions: [Instruction]
        do {
            instructions = try CodeGenerator.generate(plan, options: options)
        } catch {
            throw .assembly(error)
        }
        var maps: [String: BPFKernel.Map] = [:]
        let kept: Set<String>
        do {
            var specs = Self.mapSpecs(for: plan)
            if options.recordMatches {
                specs.append(MapSpec(name: FlowMaps.trace, type: .array, key: UInt32.self, value: TraceLog.self,
                                     maxEntries: 1))
            }
            for spec in specs {
                if let kept = reuse[spec.name], kept.spec == spec {
                    maps[spec.name] = kept
                } else {
                    maps[spec.name] = try BPFKernel.Map(spec)
                }
            }
            self.maps = maps
            let views = try DatapathMaps(maps, plan: plan)
            self.views = views
            // New maps are filled before the program loads; the kept ones, which the
            // running program reads, only once the verifier has accepted the new one.
            kept = Set(maps.filter { reuse[$0.key] === $0.value }.keys)
            try Self.write(plan, writes, keptMaps: kept, only: Set(maps.keys).subtracting(kept), views: views,
                           maps: maps, targetIndex: targetIndex)
            if let old = reuse[FlowMaps.counters], let new = maps[FlowMaps.counters], old !== new {
                // The rules outgrew the counters: they move to the larger map, per-CPU
                // values as they are.
                let room = new.spec.maxEntries
                try Self.updateInBatches(new, try old.lookupBatch(batchSize: Self.batchSize).filter {
                    guard let slot = try? UInt32(decoding: $0.key) else { return false }
                    return Int(slot) < room
                })
                try Self.write(plan, writes, keptMaps: [FlowMaps.counters], only: [FlowMaps.counters], views: views,
                               maps: maps, targetIndex: targetIndex)
            }
            program = try Program.loadXDP(name: "xdpflow", instructions: instructions, maps: maps)
            self.instructions = instructions
        } catch {
            throw .kernel(error)
        }
        try beforeLive()
        do {
            try Self.write(plan, writes, keptMaps: kept, only: kept, views: views, maps: maps,
                           targetIndex: targetIndex)
        } catch {
            throw .kernel(error)
        }
    }

    /// The datapath whose maps are `maps` (opened from pins) and whose plan is `plan`;
    /// refused when a map does not have the type and sizes the plan gives it.
    public init(adopting plan: Plan, options: CompileOptions, maps: [String: BPFKernel.Map]) throws(OffloadError) {
        self.plan = plan
        self.options = options
        self.maps = maps
        do {
            views = try DatapathMaps(maps, plan: plan)
        } catch {
            throw .kernel(error)
        }
        program = nil
    }

    /// The maps a plan's program uses.
    public static func mapSpecs(for plan: Plan) -> [MapSpec] {
        var specs = [MapSpec(name: FlowMaps.counters, type: .perCPUArray, key: UInt32.self, value: RuleCounters.self,
                             maxEntries: plan.ruleCapacity + Int(RuleSlots.firstRule))]
        guard plan.classifies else { return specs }
        specs.append(MapSpec(name: FlowMaps.actions, type: .array, key: UInt32.self, value: ActionProgram.self,
                             maxEntries: plan.ruleCapacity))
        if plan.stepKinds.contains(.redirect) {
            specs.append(MapSpec(name: FlowMaps.redirect, type: .devmap, key: UInt32.self, value: UInt32.self,
                                 maxEntries: Plan.maxRedirectTargets))
        }
        for group in plan.broadcastIndex.indexes.values.sorted() {
            specs.append(MapSpec(name: FlowMaps.broadcast(group), type: .devmap, key: UInt32.self, value: UInt32.self,
                                 maxEntries: Plan.maxRedirectTargets))
        }
        if plan.stepKinds.contains(.police) {
            specs.append(MapSpec(name: FlowMaps.policers, type: .array, key: UInt32.self, value: PolicerBucket.self,
                                 maxEntries: plan.policerCapacity))
        }
        if plan.stepKinds.contains(.xsk) {
            specs.append(MapSpec(name: FlowMaps.xsks, type: .xskmap, key: UInt32.self, value: UInt32.self,
                                 maxEntries: FlowMaps.xskQueues))
            specs.append(MapSpec(name: FlowMaps.xskUnbound, type: .perCPUArray, key: UInt32.self,
                                 value: RuleCounters.self, maxEntries: 1))
        }
        if let prefilter = plan.prefilter {
            specs.append(MapSpec(name: prefilter.mapName, type: .array, key: UInt32.self, value: UInt64.self,
                                 maxEntries: Prefilter.entries))
        }
        if let tables = plan.tables {
            let words = tables.words.count
            specs += [
                MapSpec(name: FlowMaps.tables, type: .array, keySize: 4, valueSize: TableEntry.byteCount(words: words),
                        maxEntries: TableEntry.mapEntries(tableCapacity: tables.tableCapacity)),
                MapSpec(name: FlowMaps.buckets, type: .array, key: UInt32.self, value: UInt32.self,
                        maxEntries: tables.bucketCapacity),
                MapSpec(name: FlowMaps.rules, type: .array, keySize: 4, valueSize: RuleCheck.byteCount(words: words),
                        maxEntries: plan.ruleCapacity + Int(RuleSlots.firstRule)),
                MapSpec(name: FlowMaps.tableFilter, type: .array, keySize: 4, valueSize: 8 * tables.filterWords,
                        maxEntries: TableFilter.dimensions.count * TableFilter.entries),
            ]
        }
        for subtable in plan.subtables {
            switch subtable.storage {
            case .direct:
                specs.append(MapSpec(name: subtable.mapName, type: .array, key: UInt32.self, value: SubtableValue.self,
                                     maxEntries: 1 << (8 * subtable.keySize)))
            case .hash(let capacity):
                specs.append(MapSpec(name: subtable.mapName, type: .hash, keySize: subtable.keySize,
                                     valueSize: SubtableValue.byteCount, maxEntries: capacity, flags: .noPrealloc))
            }
        }
        return specs
    }

    /// Writes into every map what `plan` (already changed, keeping the program) needs.
    /// Returns the number of map writes.
    func write(_ writes: MapWrites, targetIndex: (String) throws(BPFError) -> UInt32) throws(OffloadError) -> Int {
        do {
            return try Self.write(plan, writes, keptMaps: Set(maps.keys), only: Set(maps.keys), views: views, maps: maps,
                                  targetIndex: targetIndex)
        } catch {
            throw .kernel(error)
        }
    }

    /// Entries per BPF_MAP_UPDATE_BATCH call when maps are filled.
    static let batchSize = 65536

    /// Fills the maps named in `names` for `plan`: those in `keptMaps` hold an earlier
    /// plan and take `writes`; the others are new and take everything. The shared maps
    /// are written through their views, the subtables through `maps`. Returns the
    /// number of map operations.
    @discardableResult
    static func write(_ plan: Plan, _ writes: MapWrites, keptMaps: Set<String>, only names: Set<String>,
                      views: DatapathMaps, maps: [String: BPFKernel.Map],
                      targetIndex: (String) throws(BPFError) -> UInt32) throws(BPFError) -> Int {
        var count = 0
        func put<Source, Value: MapCodable>(_ name: String, _ map: ArrayMap<Value>?,
                                            _ all: @autoclosure () -> [UInt32: Source], _ changed: [UInt32: Source],
                                            _ value: (Source) throws(BPFError) -> Value) throws(BPFError) {
            guard let map, names.contains(name) else { return }
            var entries: [(index: UInt32, value: Value)] = []
            for (index, source) in (keptMaps.contains(name) ? changed : all()).sorted(by: { $0.key < $1.key }) {
                entries.append((index, try value(source)))
            }
            // Devmaps have no batch operations: the view writes them one at a time.
            try inBatches(entries) { batch throws(BPFError) in try map.set(contentsOf: batch) }
            count += entries.count
        }
        if let counters = views.counters, names.contains(FlowMaps.counters), keptMaps.contains(FlowMaps.counters) {
            // A slot that changed hands (or is new) starts from zero; a new map is zero.
            try inBatches(writes.counters.sorted()) { batch throws(BPFError) in
                try counters.set(batch, allCPUs: RuleCounters())
            }
            count += writes.counters.count
        }
        try put(FlowMaps.actions, views.actions, plan.actions, writes.actions) { $0 }
        try put(FlowMaps.redirect, views.redirect, plan.redirectTargets, writes.redirectTargets, targetIndex)
        try put(FlowMaps.policers, views.policers, plan.policers, writes.policers) { $0.bucket }
        // A group's devices never change (they name it): a new group's map gets them all.
        for (devices, group) in plan.broadcastIndex.indexes {
            let name = FlowMaps.broadcast(group)
            guard !keptMaps.contains(name), names.contains(name), let map = views.broadcast[name] else { continue }
            for (index, device) in devices.enumerated() {
                try map.set(UInt32(index), try targetIndex(device))
                count += 1
            }
        }
        if let prefilter = plan.prefilter {
            func byIndex(_ table: [UInt16: UInt64]) -> [UInt32: UInt64] {
                Dictionary(uniqueKeysWithValues: table.map { (UInt32($0.key), $0.value) })
            }
            try put(prefilter.mapName, views.prefilters[prefilter.mapName], byIndex(prefilter.table),
                    byIndex(writes.prefilter)) { $0 }
        }
        for subtable in plan.subtables {
            let name = subtable.mapName
            guard names.contains(name), let map = maps[name], !keptMaps.contains(name) else { continue }
            count += try writeEntries(subtable.entries, removing: [], into: map)
        }
        for name in Set(writes.entries.keys).union(writes.removedEntries.keys)
        where keptMaps.contains(name) && names.contains(name) {
            guard let map = maps[name] else { continue }
            count += try writeEntries(writes.entries[name] ?? [:], removing: writes.removedEntries[name] ?? [], into: map)
        }
        if let tables = plan.tables {
            count += try writeTables(tables, writes.tables, keptMaps: keptMaps, maps: maps.filter { names.contains($0.key) })
        }
        return count
    }

    /// The table classifier's maps among `maps`, in the order that keeps every search
    /// sound: first what is present (a rule's check before the link that leads to it, a
    /// filtered table's entry before the bits that lead to it: checks, entries, buckets,
    /// filter, list), then the vacant places of what went (entries, checks). A new map
    /// takes everything; a kept one what `writes` names.
    private static func writeTables(_ tables: TupleTables, _ writes: TableWrites, keptMaps: Set<String>,
                                    maps: [String: BPFKernel.Map]) throws(BPFError) -> Int {
        let words = tables.words
        var count = 0
        func kept(_ name: String) -> Bool { keptMaps.contains(name) }
        let slots = kept(FlowMaps.rules) ? writes.rules : Set(tables.rules.keys)
        let indexes = kept(FlowMaps.tables) ? writes.entries : Set(tables.later.keys)
        // Of the filtered tables, those whose entries are written (a change writes its own,
        // and those whose later-bits it moved): copying and sorting every table for them
        // was a fifth of a change's time.
        lazy var filteredByIndex = Dictionary(uniqueKeysWithValues: tables.tables.values.lazy
            .filter { $0.isFiltered && indexes.contains($0.index) }.map { ($0.index, $0) })
        func entryKey(_ index: UInt32) -> [UInt8] {
            TableEntry.key(filtered: index, tableCapacity: tables.tableCapacity).encodedBytes
        }
        let rules = maps[FlowMaps.rules], list = maps[FlowMaps.tables]
        if let rules {
            let present = slots.filter { tables.rules[$0] != nil }.sorted()
            try updateInBatches(rules, present.map { slot in
                (slot.encodedBytes, tables.rules[slot]!.check(next: tables.next(after: slot), words: words).encodedBytes)
            })
            count += present.count
        }
        if let list {
            let present = indexes.compactMap { filteredByIndex[$0] }.sorted { $0.index < $1.index }
            try updateInBatches(list, present.map { table in
                (entryKey(table.index), TableEntry.encoded(table, words: words, later: tables.later[table.index]!))
            })
            count += present.count
        }
        if let map = maps[FlowMaps.buckets] {
            // A new array holds zeros (no chain) at every place.
            let places = kept(FlowMaps.buckets) ? writes.buckets : Set(tables.chains.keys)
            try updateInBatches(map, places.sorted().map { ($0.encodedBytes, tables.head(at: $0).encodedBytes) })
            count += places.count
        }
        if let map = maps[FlowMaps.tableFilter] {
            let keys = kept(FlowMaps.tableFilter) ? writes.filter : tables.filter.indexes
            try updateInBatches(map, keys.sorted().map { key in
                (key.encodedBytes, tables.filter.value(at: key, words: tables.filterWords))
            })
            count += keys.count
        }
        if let list {
            if writes.list || !kept(FlowMaps.tables) {
                count += try writeList(tables, into: list, kept: kept(FlowMaps.tables))
            } else if !writes.entries.isEmpty {
                // Only which filtered tables a dimension leaves unfiltered can have changed.
                var head = try readHead(tables, from: list)
                head.unfiltered = TableFilter.unfiltered(tables.tables.values)
                try put(head, tables, into: list)
                count += 1
            }
            let vacant = TableEntry.vacant(words: words.count)
            for index in indexes where filteredByIndex[index] == nil {
                try list.update(entryKey(index), vacant)
                count += 1
            }
        }
        if let rules, kept(FlowMaps.rules) {
            let vacant = RuleCheck.vacant(words: words.count).encodedBytes
            for slot in slots where tables.rules[slot] == nil {
                try rules.update(slot.encodedBytes, vacant)
                count += 1
            }
        }
        return count
    }

    /// Writes the tables list into the half the program does not read, then the head with
    /// that half's length, then the head with the generation that makes it current: a
    /// frame reads one whole list, the old or the new. A new map starts with half 0.
    private static func writeList(_ tables: TupleTables, into map: BPFKernel.Map, kept: Bool)
        throws(BPFError) -> Int {
        let capacity = UInt32(tables.tableCapacity), words = tables.words
        var head = kept ? try readHead(tables, from: map) : .empty
        let half: UInt32 = kept ? (head.generation &+ 1) & 1 : 0
        let order = tables.list
        try updateInBatches(map, order.enumerated().map { position, table in
            ((half * capacity + UInt32(position)).encodedBytes, TableEntry.encoded(table, words: words))
        })
        if half == 0 { head.counts.0 = UInt32(order.count) } else { head.counts.1 = UInt32(order.count) }
        head.unfiltered = TableFilter.unfiltered(tables.tables.values)
        try put(head, tables, into: map)
        guard kept else { return order.count + 1 }
        head.generation &+= 1
        try put(head, tables, into: map)
        return order.count + 2
    }

    private static func put(_ head: TableListHead, _ tables: TupleTables, into map: BPFKernel.Map) throws(BPFError) {
        let padding = [UInt8](repeating: 0, count: map.spec.valueSize - TableListHead.byteCount)
        try map.update(TableEntry.headKey(tableCapacity: tables.tableCapacity).encodedBytes, head.encodedBytes + padding)
    }

    private static func readHead(_ tables: TupleTables, from map: BPFKernel.Map) throws(BPFError) -> TableListHead {
        let key = TableEntry.headKey(tableCapacity: tables.tableCapacity).encodedBytes
        guard let bytes = try map.lookup(key) else { return .empty }
        do {
            return try TableListHead(decoding: Array(bytes.prefix(TableListHead.byteCount)))
        } catch {
            throw .undecodable(map: map.spec.name, error)
        }
    }

    /// Every subtable entry the kernel gets goes through here. A direct subtable is an
    /// array: its key is the index the key bytes spell, and a removed entry is zeroed.
    private static func writeEntries(_ entries: [[UInt8]: SubtableValue], removing gone: Set<[UInt8]>,
                                     into map: BPFKernel.Map) throws(BPFError) -> Int {
        let direct = map.spec.type == .array
        func mapKey(_ key: [UInt8]) -> [UInt8] { Self.mapKey(key, direct: direct) }
        if entries.count == 1, let (key, value) = entries.first {
            try map.update(mapKey(key), value.encodedBytes)
        } else if !entries.isEmpty {
            // Keys and values end to end, a batch at a time: no array per entry.
            let keySize = map.spec.keySize
            var keys = ByteWriter(capacity: min(entries.count, batchSize) * keySize)
            var values = ByteWriter(capacity: min(entries.count, batchSize) * SubtableValue.byteCount)
            for (key, value) in entries {
                keys.write(bytes: mapKey(key))
                values.write(value)
                if keys.bytes.count == batchSize * keySize {
                    try map.updateBatch(keys: keys.bytes, values: values.bytes)
                    keys.removeAll()
                    values.removeAll()
                }
            }
            try map.updateBatch(keys: keys.bytes, values: values.bytes)
        }
        for key in gone {
            if direct {
                try map.update(mapKey(key), SubtableValue.empty.encodedBytes)
            } else {
                _ = try map.delete(mapKey(key))
            }
        }
        return entries.count + gone.count
    }

    private static func updateInBatches(_ map: BPFKernel.Map, _ entries: [(key: [UInt8], value: [UInt8])])
        throws(BPFError) {
        try inBatches(entries) { batch throws(BPFError) in try map.updateBatch(batch) }
    }

    /// `items` in runs of at most `batchSize`, each handed to `write` (one batch call).
    private static func inBatches<T>(_ items: [T], _ write: ([T]) throws(BPFError) -> Void) throws(BPFError) {
        for start in stride(from: 0, to: items.count, by: batchSize) {
            try write(Array(items[start ..< min(start + batchSize, items.count)]))
        }
    }

    /// The map key of a subtable entry: the key bytes, or for a direct subtable the
    /// array index they spell (big-endian).
    static func mapKey(_ key: [UInt8], direct: Bool) -> [UInt8] {
        direct ? key.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }.encodedBytes : key
    }

    /// Per-rule counters summed over CPUs, by slot.
    public func counters() throws(BPFError) -> [UInt32: RuleStatistics] {
        guard let map = views.counters else { return [:] }
        var result: [UInt32: RuleStatistics] = [:]
        let slots = [RuleSlots.miss, RuleSlots.unparsed] + plan.slots.indexes.values
        for slot in slots {
            guard let perCPU = try map.get(slot) else { continue }
            result[slot] = RuleStatistics(perCPU: perCPU)
        }
        return result
    }
}

/// A rule's counters, summed over CPUs; `lastHit` is the latest CPU's.
public struct RuleStatistics: Hashable, Sendable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    /// Jiffies (see `KernelClock`); 0 if never hit.
    public var lastHit: UInt64 = 0
    /// Frames the rule's actions dropped.
    public var dropped: UInt64 = 0

    public init() {}

    init(perCPU: [RuleCounters]) {
        for value in perCPU {
            packets &+= value.packets
            bytes &+= value.bytes
            lastHit = max(lastHit, value.lastHit)
            dropped &+= value.dropped
        }
    }
}

extension SubtableValue {
    /// What a direct subtable holds where no rule has an entry: no slot, no action.
    static let empty = SubtableValue(slot: 0, handle: 0, action: 0)
}

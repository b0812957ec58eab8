import BPFAssembly
import BPFKernel
import CLibBPF
import FlowCompiler
import FlowRules

/// A plan in the kernel: its maps created (or reused) and filled, and its program
/// loaded through the verifier. Attaching it is the runtime's business; a datapath can
/// also run frames through BPF_PROG_TEST_RUN without any device.
public final class Datapath {
    public private(set) var plan: Plan
    public let options: CompileOptions
    public let instructions: [Instruction]
    /// Nil for a datapath adopted from pinned maps (its program runs behind a link).
    public let program: Program?
    /// By name: the shared maps (FlowMaps) and one per subtable.
    public let maps: [String: BPFKernel.Map]

    /// `targetIndex` gives the ifindex a redirect target device has. To replace a
    /// running datapath, pass it as `replacing`: maps with the same name and spec are
    /// kept with their entries (counters, buckets, subtables), and only the differences
    /// from its plan are written. `sharing` limits the maps kept to those named.
    public init(plan: Plan, options: CompileOptions = CompileOptions(),
                targetIndex: (String) throws(BPFError) -> UInt32,
                replacing previous: Datapath? = nil, sharing shared: Set<String>? = nil) throws(OffloadError) {
        let reuse = (previous?.maps ?? [:]).filter { shared?.contains($0.key) ?? true }
        self.plan = plan
        self.options = options
        do {
            instructions = try CodeGenerator.generate(plan, options: options)
        } catch {
            throw .assembly(error)
        }
        var maps: [String: BPFKernel.Map] = [:]
        do {
            var specs = Self.mapSpecs(for: plan)
            if options.recordMatches {
                specs.append(MapSpec(name: FlowMaps.trace, type: .array, keySize: 4, valueSize: TraceLog.size, maxEntries: 1))
            }
            for spec in specs {
                if let kept = reuse[spec.name], kept.spec == spec {
                    maps[spec.name] = kept
                } else {
                    maps[spec.name] = try BPFKernel.Map(spec)
                }
            }
            self.maps = maps
            let kept = Set(maps.filter { reuse[$0.key] === $0.value }.keys)
            try Self.write(plan, over: previous?.plan, keptMaps: kept, into: maps, targetIndex: targetIndex)
            program = try Program.loadXDP(name: "xdpflow", instructions: instructions, maps: maps)
        } catch {
            throw .kernel(error)
        }
    }

    /// The datapath whose maps are `maps` (opened from pins) and whose plan is `plan`.
    public init(adopting plan: Plan, options: CompileOptions, maps: [String: BPFKernel.Map]) throws(OffloadError) {
        self.plan = plan
        self.options = options
        do {
            instructions = try CodeGenerator.generate(plan, options: options)
        } catch {
            throw .assembly(error)
        }
        self.maps = maps
        program = nil
    }

    /// The maps a plan's program uses.
    public static func mapSpecs(for plan: Plan) -> [MapSpec] {
        var specs = [MapSpec(name: FlowMaps.counters, type: .perCPUArray, keySize: 4, valueSize: RuleCounters.size,
                             maxEntries: plan.ruleCapacity + Int(RuleSlots.firstRule))]
        guard !plan.subtables.isEmpty else { return specs }
        specs.append(MapSpec(name: FlowMaps.actions, type: .array, keySize: 4, valueSize: ActionProgram.size,
                             maxEntries: plan.ruleCapacity))
        if plan.stepKinds.contains(.redirect) {
            specs.append(MapSpec(name: FlowMaps.redirect, type: .devmap, keySize: 4, valueSize: 4,
                                 maxEntries: Plan.maxRedirectTargets))
        }
        for group in plan.broadcastIndex.indexes.values.sorted() {
            specs.append(MapSpec(name: FlowMaps.broadcast(group), type: .devmap, keySize: 4, valueSize: 4,
                                 maxEntries: Plan.maxRedirectTargets))
        }
        if plan.stepKinds.contains(.police) {
            specs.append(MapSpec(name: FlowMaps.policers, type: .array, keySize: 4, valueSize: PolicerConfig.size,
                                 maxEntries: max(plan.policers.count, 1024)))
        }
        if plan.prefilter != nil {
            specs.append(MapSpec(name: plan.prefilter!.mapName, type: .array, keySize: 4, valueSize: 8,
                                 maxEntries: Prefilter.entries))
        }
        for subtable in plan.subtables {
            switch subtable.storage {
            case .direct:
                specs.append(MapSpec(name: subtable.mapName, type: .array, keySize: 4, valueSize: SubtableValue.size,
                                     maxEntries: 1 << (8 * subtable.keySize)))
            case .hash(let capacity):
                specs.append(MapSpec(name: subtable.mapName, type: .hash, keySize: subtable.keySize,
                                     valueSize: SubtableValue.size, maxEntries: capacity,
                                     flags: UInt32(BPF_F_NO_PREALLOC)))
            }
        }
        return specs
    }

    /// Moves this datapath's maps to `plan` when its program would be the same (same
    /// shape: subtables, parsed layers, action kinds); returns the number of map writes,
    /// or nil when the plan needs a new program (build one with `replacing: self`).
    public func update(to plan: Plan, targetIndex: (String) throws(BPFError) -> UInt32) throws(OffloadError) -> Int? {
        guard Self.mapSpecs(for: plan) == Self.mapSpecs(for: self.plan),
              (try? CodeGenerator.generate(plan, options: options)) == instructions
        else { return nil }
        do {
            let writes = try Self.write(plan, over: self.plan, keptMaps: Set(maps.keys), into: maps,
                                        targetIndex: targetIndex)
            self.plan = plan
            return writes
        } catch {
            throw .kernel(error)
        }
    }

    /// Writes what `plan` holds that `previous` did not into `maps`; maps not in
    /// `keptMaps` are new and get everything. New rule slots start from zero counters.
    /// Returns the number of map operations.
    @discardableResult
    static func write(_ plan: Plan, over previous: Plan?, keptMaps: Set<String>, into maps: [String: BPFKernel.Map],
                      targetIndex: (String) throws(BPFError) -> UInt32) throws(BPFError) -> Int {
        var writes = 0
        let old = { (name: String) in keptMaps.contains(name) ? previous : nil }
        func put<Value: Equatable>(_ map: BPFKernel.Map?, _ new: [UInt32: Value], _ previous: [UInt32: Value],
                                   _ bytes: (Value) throws(BPFError) -> [UInt8]) throws(BPFError) {
            guard let map else { return }
            let changed = new.filter { previous[$0.key] != $0.value }.sorted { $0.key < $1.key }
            guard !changed.isEmpty else { return }
            var entries: [(key: [UInt8], value: [UInt8])] = []
            for (index, value) in changed { entries.append((index.littleEndianBytes, try bytes(value))) }
            if map.spec.type == .devmap {
                // Devmaps have no batch operations.
                for entry in entries { try map.update(entry.key, entry.value) }
            } else {
                try map.updateBatch(entries)
            }
            writes += changed.count
        }
        try put(maps[FlowMaps.actions], plan.actions, old(FlowMaps.actions)?.actions ?? [:]) { $0.bytes }
        try put(maps[FlowMaps.redirect], plan.redirectTargets, old(FlowMaps.redirect)?.redirectTargets ?? [:]) {
            (name: String) throws(BPFError) in try targetIndex(name).littleEndianBytes
        }
        try put(maps[FlowMaps.policers], plan.policers, old(FlowMaps.policers)?.policers ?? [:]) { $0.bytes }
        // A group's devices never change (they name it): a new group's map gets them all.
        for (devices, group) in plan.broadcastIndex.indexes where !keptMaps.contains(FlowMaps.broadcast(group)) {
            guard let map = maps[FlowMaps.broadcast(group)] else { continue }
            for (index, name) in devices.enumerated() {
                try map.update(UInt32(index).littleEndianBytes, try targetIndex(name).littleEndianBytes)
                writes += 1
            }
        }
        if let counters = maps[FlowMaps.counters], keptMaps.contains(FlowMaps.counters) {
            // A slot that changed hands (or is new) starts from zero.
            let zero = [UInt8](repeating: 0, count: RuleCounters.size)
            for (rule, slot) in plan.slots.indexes where previous?.slots[rule] != slot {
                try counters.updateAllCPUs(slot.littleEndianBytes, zero)
                writes += 1
            }
        }
        if let prefilter = plan.prefilter {
            // Bits a plan no longer sets are cleared.
            let held = old(prefilter.mapName)?.prefilter?.table ?? [:]
            var table = prefilter.table
            for index in held.keys where table[index] == nil { table[index] = 0 }
            func byIndex(_ table: [UInt16: UInt64]) -> [UInt32: UInt64] {
                Dictionary(uniqueKeysWithValues: table.map { (UInt32($0.key), $0.value) })
            }
            try put(maps[prefilter.mapName], byIndex(table), byIndex(held)) { $0.littleEndianBytes }
        }
        let before = Dictionary((previous?.subtables ?? []).map { ($0.mapName, $0) }, uniquingKeysWith: { a, _ in a })
        for subtable in plan.subtables {
            guard let map = maps[subtable.mapName] else { continue }
            let held = keptMaps.contains(subtable.mapName) ? before[subtable.mapName]?.entries ?? [:] : [:]
            let changed = subtable.entries.filter { held[$0.key] != $0.value }
            let gone = held.keys.filter { subtable.entries[$0] == nil }
            if !changed.isEmpty {
                try map.updateBatch(changed.map { (Self.mapKey($0.key, in: subtable), $0.value.bytes) })
            }
            for key in gone {
                if case .direct = subtable.storage {
                    try map.update(Self.mapKey(key, in: subtable), [UInt8](repeating: 0, count: SubtableValue.size))
                } else {
                    _ = try map.delete(Self.mapKey(key, in: subtable))
                }
            }
            writes += changed.count + gone.count
        }
        return writes
    }

    /// The map key of a subtable entry: the key bytes, or for a direct subtable the
    /// array index they spell (big-endian).
    public static func mapKey(_ key: [UInt8], in subtable: Subtable) -> [UInt8] {
        switch subtable.storage {
        case .hash: key
        case .direct: key.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }.littleEndianBytes
        }
    }

    /// Per-rule counters summed over CPUs, by slot.
    public func counters() throws(BPFError) -> [UInt32: RuleStatistics] {
        guard let map = maps[FlowMaps.counters] else { return [:] }
        var result: [UInt32: RuleStatistics] = [:]
        let slots = [RuleSlots.miss, RuleSlots.unparsed] + plan.slots.indexes.values
        for slot in slots {
            guard let perCPU = try map.lookupPerCPU(slot.littleEndianBytes) else { continue }
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

    public init() {}

    init(perCPU: [[UInt8]]) {
        for value in perCPU {
            packets &+= value.littleEndian(at: Int(RuleCounters.packetsOffset))
            bytes &+= value.littleEndian(at: Int(RuleCounters.bytesOffset))
            lastHit = max(lastHit, value.littleEndian(at: Int(RuleCounters.lastHitOffset)))
        }
    }
}

public enum OffloadError: Error, CustomStringConvertible {
    case compile(CompileError)
    case assembly(AssemblyError)
    case kernel(BPFError)

    public var description: String {
        switch self {
        case .compile(let error): "\(error)"
        case .assembly(let error): "internal error: the generated program does not assemble: \(error)"
        case .kernel(let error): "\(error)"
        }
    }
}

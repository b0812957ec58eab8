import FlowRules
import Packets

/// A rule's place in the program's per-rule maps (counters). Slots are stable across
/// compilations of one device so that counters survive program swaps.
public struct RuleID: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public var prio: UInt16
    public var handle: UInt32

    public init(prio: UInt16, handle: UInt32) {
        self.prio = prio
        self.handle = handle
    }

    public static func < (a: Self, b: Self) -> Bool { (a.prio, a.handle) < (b.prio, b.handle) }

    /// As tc names a rule: `prio 1 handle 0x2`.
    public var description: String { "prio \(prio) handle 0x\(String(handle, radix: 16))" }
}

/// Indexes into a program's array maps that stay put across plans of one device: a key
/// that is still used keeps its index, a new key takes the lowest free one. Counters
/// (by rule slot) and policer buckets thereby survive rule changes and program swaps,
/// and an unchanged rule's map entries are not rewritten.
public struct StableIndex<Key: Hashable & Sendable & Codable>: Hashable, Sendable, Codable {
    public private(set) var indexes: [Key: UInt32] = [:]
    public let first: UInt32

    public init(first: UInt32 = 0) { self.first = first }

    /// Keeps the indexes of `keys` that have one, frees those of keys that are gone and
    /// gives the others the lowest free indexes, in order.
    mutating func assign(_ keys: [Key]) {
        let live = Set(keys)
        indexes = indexes.filter { live.contains($0.key) }
        var used = Set(indexes.values)
        var next = first
        for key in keys where indexes[key] == nil {
            while used.contains(next) { next += 1 }
            indexes[key] = next
            used.insert(next)
        }
    }

    public subscript(key: Key) -> UInt32? { indexes[key] }
    public var count: Int { indexes.count }
}

/// Counter slots: 0 and 1 count misses and unparsed frames, rules follow.
public enum RuleSlots {
    public static let miss: UInt32 = 0
    public static let unparsed: UInt32 = 1
    public static let firstRule: UInt32 = 2
}

/// A police action: the rule and the action's position in it.
public struct PolicerKey: Hashable, Sendable, Codable {
    public var rule: RuleID
    public var action: Int
}

/// The mask shared by a subtable's entries: which fields, under which bit masks. A
/// field with an all-zero mask is still required to be present.
public struct SubtableMask: Hashable, Sendable {
    public var fields: [KeyField: [UInt8]]

    /// Headers that must be present for the subtable to be looked up.
    public var presence: Presence { fields.keys.reduce(into: []) { $0.formUnion($1.presence) } }

    /// The key record bytes the key is made of, in key order, with their masks: only the
    /// bytes the mask uses.
    public var keyBytes: [(offset: Int, mask: UInt8)] {
        fields.keys.sorted().flatMap { field in
            fields[field]!.enumerated().compactMap { index, mask in
                mask == 0 ? nil : (field.offset + index, mask)
            }
        }
    }

    /// The key of an entry whose fields have `values`.
    func key(_ values: [KeyField: MaskedBytes]) -> [UInt8] {
        fields.keys.sorted().flatMap { field in
            zip(values[field]!.value, fields[field]!).compactMap { value, mask in mask == 0 ? nil : value }
        }
    }
}

/// One (prio, mask): a map from masked key to rule.
public struct Subtable: Hashable, Sendable {
    public enum Storage: Hashable, Sendable {
        /// An array indexed by the key itself (keys of up to 2 bytes): no hashing.
        case direct
        case hash(capacity: Int)
    }

    public var prio: UInt16
    public var mask: SubtableMask
    /// Protocol fields every entry has the same exact value in, compared with
    /// immediates before the lookup instead of being hashed: a `dst_port` subtable under
    /// `protocol ip` and `ip_proto udp` keys on the port alone, and fits a direct array.
    public var guards: [KeyField: [UInt8]] = [:]
    public var entries: [[UInt8]: SubtableValue]
    public var storage: Storage

    public var keySize: Int { mask.keyBytes.count }

    /// Headers that must be present for the subtable to be looked up.
    public var presence: Presence { guards.keys.reduce(into: mask.presence) { $0.formUnion($1.presence) } }

    /// The fields whose values the planner moves into guards: they take few values, so
    /// a new value (a new subtable) is rare, and they are always exact.
    public static let guardFields: Set<KeyField> = [.outerType, .etherType, .vlanTPID, .cvlanTPID, .ipProto]

    /// A stable name for the subtable's map, from its prio and mask.
    public var mapName: String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a
        func mix(_ byte: UInt8) { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        mix(UInt8(prio >> 8)); mix(UInt8(prio & 0xff))
        for field in mask.fields.keys.sorted() {
            mix(UInt8(field.rawValue))
            mask.fields[field]!.forEach(mix)
        }
        for field in guards.keys.sorted() {
            mix(0x80 | UInt8(field.rawValue))
            guards[field]!.forEach(mix)
        }
        mix(mask.keyBytes.count <= 2 ? 0 : 1)
        let hex = String(UInt32(truncatingIfNeeded: hash ^ hash >> 32), radix: 16)
        return "xf_st_" + String(repeating: "0", count: 8 - hex.count) + hex
    }
}

/// What a subtable entry holds: the rule's counter slot, its handle (the tie-break
/// within a prio) and its action program's index. 12 bytes.
public struct SubtableValue: Hashable, Sendable {
    public var slot: UInt32
    public var handle: UInt32
    public var action: UInt32

    public static let size = 12
    public static let slotOffset = 0, handleOffset = 4, actionOffset = 8

    public var bytes: [UInt8] { slot.littleEndianBytes + handle.littleEndianBytes + action.littleEndianBytes }
}

/// A police action's bucket: `burst` bytes at `rate`, in byte-nanoseconds.
public struct PolicerConfig: Hashable, Sendable {
    public var rule: RuleID
    public var action: Int
    public var capacity: UInt64
    public var rate: UInt64
    /// Nanoseconds to fill an empty bucket: past it, the bucket is full.
    public var fillTime: UInt64

    /// credit, last, capacity, rate, fill time: 5 x u64.
    public static let size = 40
    public static let creditOffset = 0, lastOffset = 8, capacityOffset = 16, rateOffset = 24, fillTimeOffset = 32

    public var bytes: [UInt8] {
        ([0, 0, capacity, rate, fillTime] as [UInt64]).flatMap { value in
            (0 ..< 8).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
        }
    }
}

/// The compiler's view of one device's rule set: subtables in lookup order, and
/// everything the program and its maps need.
public struct Plan: Sendable {
    /// The most subtables one program looks up (each is a map and a lookup per packet).
    /// A program may use at most 64 maps (the kernel's MAX_USED_MAPS); the counters,
    /// actions, redirect, policer and trace maps leave 59 for subtables (58 and the
    /// prefilter's map, below the limit).
    public static let maxSubtables = 59
    public static let maxRedirectTargets = 64
    public static let defaultRuleCapacity = 65536

    public var device: String
    /// Lookup order: by prio; within a prio, all are looked up and the lowest handle wins.
    public var subtables: [Subtable]
    public var rules: [FlowRule]
    /// Rule -> counter slot.
    public var slots: StableIndex<RuleID>
    /// Action program -> index in the actions map (deduplicated: rules share programs).
    public var actionIndex: StableIndex<ActionProgram>
    /// Redirect target device -> devmap key.
    public var targetIndex: StableIndex<String>
    public var policerIndex: StableIndex<PolicerKey>
    /// Device list -> broadcast group (a devmap per group: `FlowMaps.broadcast(index)`).
    public var broadcastIndex: StableIndex<[String]>
    /// By index.
    public var policers: [UInt32: PolicerConfig]

    public var actions: [UInt32: ActionProgram] {
        Dictionary(uniqueKeysWithValues: actionIndex.indexes.map { ($0.value, $0.key) })
    }
    public var redirectTargets: [UInt32: String] {
        Dictionary(uniqueKeysWithValues: targetIndex.indexes.map { ($0.value, $0.key) })
    }
    public var keyLayers: KeyLayers
    /// Every field some subtable reads.
    public var fields: Set<KeyField>
    /// Skips hash subtables that cannot hit; nil when too few share a key field, or when
    /// the subtables leave no map for it.
    public var prefilter: Prefilter?
    public var ruleCapacity: Int

    /// Whether some rule goes on classifying (`continue`, also as police's control).
    public var usesContinue: Bool {
        actionIndex.indexes.keys.contains { $0.steps.contains { $0.control == .continue || $0.exceed == .continue } }
    }

    public var stepKinds: Set<ActionStep.Kind> { Set(actionIndex.indexes.keys.flatMap { $0.steps.map(\.kind) }) }
    public var maxSteps: Int { actionIndex.indexes.keys.map(\.steps.count).max() ?? 0 }
    /// Entries over all subtables (a port range counts once per block).
    public var entryCount: Int { subtables.reduce(0) { $0 + $1.entries.count } }

    /// Subtables grouped by prio, in lookup order.
    public var prioGroups: [[Subtable]] {
        var groups: [[Subtable]] = []
        for subtable in subtables {
            if let last = groups.last?.last, last.prio == subtable.prio {
                groups[groups.count - 1].append(subtable)
            } else {
                groups.append([subtable])
            }
        }
        return groups
    }

    /// Plans chain 0 of `ruleSet` for `device`, keeping the indexes and map sizes of the
    /// device's `previous` plan.
    public init(_ ruleSet: RuleSet, device: String, after previous: Plan?,
                ruleCapacity: Int = Plan.defaultRuleCapacity) throws(CompileError) {
        try self.init(ruleSet, device: device, memory: previous?.memory, ruleCapacity: ruleCapacity)
    }

    /// What a plan passes on to the next plan of its device (and what the runtime keeps
    /// on disk): its indexes and the sizes of its hash maps.
    public struct Memory: Hashable, Sendable, Codable {
        public var slots: StableIndex<RuleID>
        public var actionIndex: StableIndex<ActionProgram>
        public var targetIndex: StableIndex<String>
        public var policerIndex: StableIndex<PolicerKey>
        public var broadcastIndex: StableIndex<[String]>
        /// Subtable map name -> hash capacity.
        public var capacities: [String: Int]
    }

    public var memory: Memory {
        var capacities: [String: Int] = [:]
        for subtable in subtables {
            if case .hash(let capacity) = subtable.storage { capacities[subtable.mapName] = capacity }
        }
        return Memory(slots: slots, actionIndex: actionIndex, targetIndex: targetIndex, policerIndex: policerIndex,
                      broadcastIndex: broadcastIndex, capacities: capacities)
    }

    /// Plans chain 0 of `ruleSet` for `device`, keeping the indexes and map sizes in
    /// `memory` (see `StableIndex`).
    public init(_ ruleSet: RuleSet, device: String, memory previous: Memory? = nil,
                ruleCapacity: Int = Plan.defaultRuleCapacity) throws(CompileError) {
        let rules = ruleSet.rules.filter { $0.chain == 0 }
        for rule in ruleSet.rules where !rule.xdpLimitations.isEmpty {
            throw .unsupported(UnsupportedRule(rule: rule, limitations: rule.xdpLimitations))
        }
        guard rules.count <= ruleCapacity else { throw .tooManyRules(count: rules.count, capacity: ruleCapacity) }
        self.device = device
        self.rules = rules
        self.ruleCapacity = ruleCapacity
        keyLayers = ruleSet.keyLayers

        // Targets and police actions first: the action programs name their indexes.
        var targetIndex = previous?.targetIndex ?? StableIndex()
        targetIndex.assign(rules.flatMap { rule in
            rule.actions.compactMap { action -> String? in
                guard case .mirred(let mirred) = action.kind, mirred.mode == .redirect, mirred.device != device,
                      rule.broadcastGroup == nil
                else { return nil }
                return mirred.device
            }
        })
        var broadcastIndex = previous?.broadcastIndex ?? StableIndex()
        broadcastIndex.assign(rules.compactMap(\.broadcastGroup))
        var policerIndex = previous?.policerIndex ?? StableIndex()
        policerIndex.assign(rules.flatMap { rule in
            rule.actions.indices.compactMap { index -> PolicerKey? in
                guard case .police = rule.actions[index].kind else { return nil }
                return PolicerKey(rule: RuleID(prio: rule.prio, handle: rule.handle), action: index)
            }
        })
        var programs: [ActionProgram] = []
        for rule in rules {
            let id = RuleID(prio: rule.prio, handle: rule.handle)
            programs.append(try ActionProgram(rule, device: device, target: { targetIndex[$0]! },
                                              policer: { policerIndex[PolicerKey(rule: id, action: $0)]! },
                                              broadcast: { broadcastIndex[$0]! }))
        }
        var actionIndex = previous?.actionIndex ?? StableIndex()
        actionIndex.assign(programs)
        var slots = previous?.slots ?? StableIndex(first: RuleSlots.firstRule)
        slots.assign(rules.map { RuleID(prio: $0.prio, handle: $0.handle) })

        var policers: [UInt32: PolicerConfig] = [:]
        var tables: [SubtableKey: [[UInt8]: SubtableValue]] = [:]
        var fields = Set<KeyField>()
        for (rule, program) in zip(rules, programs) {
            let id = RuleID(prio: rule.prio, handle: rule.handle)
            for (index, action) in rule.actions.enumerated() {
                guard case .police(let police) = action.kind else { continue }
                let capacity = UInt64(police.burstBytes) * 1_000_000_000
                policers[policerIndex[PolicerKey(rule: id, action: index)]!] = PolicerConfig(
                    rule: id, action: index, capacity: capacity, rate: police.bytesPerSecond,
                    fillTime: police.bytesPerSecond == 0 ? .max : capacity / police.bytesPerSecond)
            }
            let value = SubtableValue(slot: slots[id]!, handle: rule.handle, action: actionIndex[program]!)
            for alternative in RuleKey(rule, device: device).alternatives {
                let guards = alternative.filter { Subtable.guardFields.contains($0.key) && $0.value.mask.allSatisfy { $0 == 0xff } }
                let keyed = alternative.filter { guards[$0.key] == nil }
                let mask = SubtableMask(fields: keyed.mapValues(\.mask))
                fields.formUnion(alternative.keys)
                let key = mask.key(keyed)
                let table = SubtableKey(prio: rule.prio, mask: mask, guards: guards.mapValues(\.value))
                // Rules are in handle order within a prio: an earlier entry wins a collision.
                if tables[table, default: [:]][key] == nil { tables[table, default: [:]][key] = value }
            }
        }
        guard targetIndex.count <= Self.maxRedirectTargets else {
            throw .tooManyRedirectTargets(count: targetIndex.count)
        }
        // Broadcast groups take maps from the same budget.
        guard tables.count + broadcastIndex.count <= Self.maxSubtables else {
            throw .tooManySubtables(count: tables.count + broadcastIndex.count)
        }
        let previousCapacity = previous?.capacities ?? [:]
        subtables = tables.map { table, entries in
            var subtable = Subtable(prio: table.prio, mask: table.mask, guards: table.guards, entries: entries,
                                    storage: .direct)
            if subtable.keySize > 2 {
                // Keep the map while it has room, so that a rule change stays a map update.
                var capacity = Self.capacity(for: entries.count)
                if let kept = previousCapacity[subtable.mapName], kept >= entries.count {
                    capacity = kept
                }
                subtable.storage = .hash(capacity: capacity)
            }
            return subtable
        }.sorted { ($0.prio, $0.mapName) < ($1.prio, $1.mapName) }
        // The prefilter takes a map from the subtables' budget: at the limit, none.
        prefilter = tables.count + broadcastIndex.count < Self.maxSubtables ? Prefilter(subtables) : nil
        self.fields = fields
        self.slots = slots
        self.actionIndex = actionIndex
        self.targetIndex = targetIndex
        self.policerIndex = policerIndex
        self.broadcastIndex = broadcastIndex
        self.policers = policers
    }

    /// Room for twice the entries, at least 1024: a subtable grows by a new map.
    static func capacity(for entries: Int) -> Int {
        var capacity = 1024
        while capacity < 2 * entries { capacity *= 2 }
        return capacity
    }

    private struct SubtableKey: Hashable {
        var prio: UInt16
        var mask: SubtableMask
        var guards: [KeyField: [UInt8]]
    }
}

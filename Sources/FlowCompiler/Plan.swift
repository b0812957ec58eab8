import BPFAssembly
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

    public init(_ rule: FlowRule) { self.init(prio: rule.prio, handle: rule.handle) }

    public static func < (a: Self, b: Self) -> Bool { (a.prio, a.handle) < (b.prio, b.handle) }

    /// As tc names a rule: `prio 1 handle 0x2`.
    public var description: String { "prio \(prio) handle 0x\(String(handle, radix: 16))" }

    // In the state on disk, one number, `prio << 32 | handle`: a device's slots hold one
    // per rule, and 100,000 objects of two fields took a quarter of a second to write.
    // An object `{"prio", "handle"}` (state of an earlier version) is read too.
    private enum CodingKeys: String, CodingKey { case prio, handle }

    public init(from decoder: any Decoder) throws {
        if let packed = try? decoder.singleValueContainer().decode(UInt64.self) {
            guard packed >> 48 == 0 else {
                throw Swift.DecodingError.dataCorrupted(Swift.DecodingError.Context(codingPath: decoder.codingPath, debugDescription: "rule \(packed)"))
            }
            self.init(prio: UInt16(packed >> 32), handle: UInt32(truncatingIfNeeded: packed))
            return
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(prio: try container.decode(UInt16.self, forKey: .prio),
                  handle: try container.decode(UInt32.self, forKey: .handle))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(UInt64(prio) << 32 | UInt64(handle))
    }
}

/// Indexes into a program's array maps that stay put across plans of one device: a key
/// that is still used keeps its index, a new key takes the lowest free one. Counters
/// (by rule slot) and policer buckets thereby survive rule changes and program swaps,
/// and an unchanged rule's map entries are not rewritten.
public struct StableIndex<Key: Hashable & Sendable & Codable>: Hashable, Sendable, Codable {
    public private(set) var indexes: [Key: UInt32] = [:]
    public let first: UInt32
    /// Free indexes below `end`, ascending; every index from `end` on is free.
    private var holes: [UInt32] = []
    private var end: UInt32

    public init(first: UInt32 = 0) {
        self.first = first
        end = first
    }

    /// Keeps the indexes of `keys` that have one, frees those of keys that are gone and
    /// gives the others the lowest free indexes, in order.
    /// Returns the index of each key.
    @discardableResult
    mutating func assign(_ keys: [Key]) -> [UInt32] {
        if !indexes.isEmpty {
            let live = Set(keys)
            indexes = indexes.filter { live.contains($0.key) }
            findHoles()
        }
        indexes.reserveCapacity(keys.count)
        return keys.map { insert($0).index }
    }

    /// The key's index, given the lowest free one when it has none.
    @discardableResult
    mutating func insert(_ key: Key) -> (index: UInt32, isNew: Bool) {
        if let index = indexes[key] { return (index, false) }
        let index = takeLowestFree()
        indexes[key] = index
        return (index, true)
    }

    /// Frees the key's index.
    mutating func remove(_ key: Key) {
        guard let index = indexes.removeValue(forKey: key) else { return }
        guard index == end - 1 else {
            holes.insert(index, at: holes.firstIndex { $0 > index } ?? holes.endIndex)
            return
        }
        end -= 1
        while let last = holes.last, last == end - 1 {
            holes.removeLast()
            end -= 1
        }
    }

    public subscript(key: Key) -> UInt32? { indexes[key] }
    /// The index `insert` would give a new key.
    var lowestFree: UInt32 { holes.first ?? end }
    public var count: Int { indexes.count }
    /// One past the highest index in use (`first` when none is).
    public var upperBound: UInt32 { end }

    private mutating func takeLowestFree() -> UInt32 {
        guard holes.isEmpty else { return holes.removeFirst() }
        end += 1
        return end - 1
    }

    private mutating func findHoles() {
        end = indexes.values.max().map { $0 + 1 } ?? first
        var used = [Bool](repeating: false, count: Int(end - first))
        for index in indexes.values { used[Int(index - first)] = true }
        holes = used.indices.filter { !used[$0] }.map { first + UInt32($0) }
    }

    // On disk: the indexes; the free list follows from them.
    enum CodingKeys: String, CodingKey { case indexes, first }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        first = try container.decode(UInt32.self, forKey: .first)
        end = first
        indexes = try container.decode([Key: UInt32].self, forKey: .indexes)
        findHoles()
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(indexes, forKey: .indexes)
        try container.encode(first, forKey: .first)
    }
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

    public init(rule: RuleID, action: Int) {
        self.rule = rule
        self.action = action
    }
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
}

/// One (prio, mask): a map from masked key to rule.
public struct Subtable: Hashable, Sendable {
    public enum Storage: Hashable, Sendable {
        /// An array indexed by the key itself (keys of up to 2 bytes): no hashing.
        case direct
        case hash(capacity: Int)
    }

    public let prio: UInt16
    public let mask: SubtableMask
    /// Protocol fields every entry has the same exact value in, compared with
    /// immediates before the lookup instead of being hashed: a `dst_port` subtable under
    /// `protocol ip` and `ip_proto udp` keys on the port alone, and fits a direct array.
    public let guards: [KeyField: [UInt8]]
    public var entries: [[UInt8]: SubtableValue]
    public var storage: Storage
    /// The entries of rules whose key a lower handle of the prio holds, lowest handle
    /// first: when the holder goes, the next in line takes the key.
    public internal(set) var outvoted: [[UInt8]: [SubtableValue]] = [:]

    public var keySize: Int { mask.keyBytes.count }

    /// Headers that must be present for the subtable to be looked up.
    public var presence: Presence { guards.keys.reduce(into: mask.presence) { $0.formUnion($1.presence) } }

    /// The fields whose values the planner moves into guards: they take few values, so
    /// a new value (a new subtable) is rare, and they are always exact.
    public static let guardFields: Set<KeyField> = [.outerType, .etherType, .vlanTPID, .cvlanTPID, .ipProto]

    /// A stable name for the subtable's map, from its prio and mask; worked out once
    /// (every rule change that adds a subtable indexes them all by name).
    public let mapName: String

    public init(prio: UInt16, mask: SubtableMask, guards: [KeyField: [UInt8]] = [:], entries: [[UInt8]: SubtableValue],
                storage: Storage) {
        self.prio = prio
        self.mask = mask
        self.guards = guards
        self.entries = entries
        self.storage = storage
        mapName = Self.mapName(prio: prio, mask: mask, guards: guards)
    }

    static func mapName(prio: UInt16, mask: SubtableMask, guards: [KeyField: [UInt8]]) -> String {
        var hash = FNV1a()
        hash.mix(UInt8(prio >> 8)); hash.mix(UInt8(prio & 0xff))
        for field in mask.fields.keys.sorted() {
            hash.mix(UInt8(field.rawValue))
            hash.mix(mask.fields[field]!)
        }
        for field in guards.keys.sorted() {
            hash.mix(0x80 | UInt8(field.rawValue))
            hash.mix(guards[field]!)
        }
        hash.mix(mask.keyBytes.count <= 2 ? 0 : 1)
        return "xf_st_" + String(hash.folded, radix: 16).leftPadded(to: 8)
    }

    /// The entries a hash subtable has room for; nil for a direct one.
    public var capacity: Int? {
        if case .hash(let capacity) = storage { capacity } else { nil }
    }
}

/// What a subtable entry holds: the rule's counter slot, its handle (the tie-break
/// within a prio) and its action program's index. 12 bytes.
public struct SubtableValue: Hashable, Sendable, MapCodable {
    public var slot: UInt32
    public var handle: UInt32
    public var action: UInt32

    public init(slot: UInt32, handle: UInt32, action: UInt32) {
        self.slot = slot
        self.handle = handle
        self.action = action
    }

    public static let byteCount = 12
    public static let slotOffset = 0, handleOffset = 4, actionOffset = 8

    public func encode(into writer: inout ByteWriter) {
        writer.write(slot)
        writer.write(handle)
        writer.write(action)
    }

    public init(from reader: inout ByteReader) throws(ByteDecodingError) {
        slot = try reader.read()
        handle = try reader.read()
        action = try reader.read()
    }
}

/// A police action's bucket: `burst` bytes at `rate`, in byte-nanoseconds.
public struct PolicerConfig: Hashable, Sendable {
    public var rule: RuleID
    public var action: Int
    public var capacity: UInt64
    public var rate: UInt64
    /// Nanoseconds to fill an empty bucket: past it, the bucket is full.
    public var fillTime: UInt64

    /// The bucket the policers map starts the action with.
    public var bucket: PolicerBucket {
        PolicerBucket(credit: 0, last: 0, capacity: capacity, rate: rate, fillTime: fillTime)
    }

    init(rule: RuleID, action: Int, police: Police) {
        self.rule = rule
        self.action = action
        capacity = UInt64(police.burstBytes) * 1_000_000_000
        rate = police.bytesPerSecond
        fillTime = police.bytesPerSecond == 0 ? .max : capacity / police.bytesPerSecond
    }
}

/// A policer as the program keeps it in the policers map: its configuration, the
/// bucket's state (credit, and when it was last filled) and tc's police statistics,
/// 7 x u64.
public struct PolicerBucket: Hashable, Sendable, MapCodable {
    /// Byte-nanoseconds in the bucket at `last`.
    public var credit: UInt64
    /// The time (ns) the credit was last brought up to date; 0 before the first frame.
    public var last: UInt64
    public var capacity: UInt64
    public var rate: UInt64
    public var fillTime: UInt64
    /// Frames that exceeded the rate.
    public var overlimits: UInt64
    /// Frames whose control (conform or exceed) was drop.
    public var dropped: UInt64

    public init(credit: UInt64, last: UInt64, capacity: UInt64, rate: UInt64, fillTime: UInt64,
                overlimits: UInt64 = 0, dropped: UInt64 = 0) {
        self.credit = credit
        self.last = last
        self.capacity = capacity
        self.rate = rate
        self.fillTime = fillTime
        self.overlimits = overlimits
        self.dropped = dropped
    }

    public static let byteCount = 56
    public static let creditOffset = 0, lastOffset = 8, capacityOffset = 16, rateOffset = 24, fillTimeOffset = 32
    public static let overlimitsOffset = 40, droppedOffset = 48

    public func encode(into writer: inout ByteWriter) {
        for word in [credit, last, capacity, rate, fillTime, overlimits, dropped] { writer.write(word) }
    }

    public init(from reader: inout ByteReader) throws(ByteDecodingError) {
        credit = try reader.read()
        last = try reader.read()
        capacity = try reader.read()
        rate = try reader.read()
        fillTime = try reader.read()
        overlimits = try reader.read()
        dropped = try reader.read()
    }
}

/// The compiler's view of one device's rule set: subtables in lookup order, and
/// everything the program and its maps need.
///
/// A plan is built from a rule set (`init`), or changed a rule at a time (`add`,
/// `remove`), which touches only what the rule touches and says which map writes carry
/// the change into the kernel. Either way the plan is the same: a plan changed rule by
/// rule equals the plan built from its rules with its memory.
public struct Plan: Equatable, Sendable {
    /// The most subtables one program looks up inline (each is a map and a lookup per
    /// packet): a program may use at most 64 maps (the kernel's MAX_USED_MAPS), and the
    /// counters, actions, redirect, policer, trace, xsks and xsk-unbound maps leave 57 for
    /// subtables, broadcast groups and the prefilter. Rules that need more are classified
    /// by `TupleTables`, whose maps do not grow in number with the rules.
    public static let maxSubtables = 57
    /// The most broadcast groups of a plan classified by tables (four maps of its own).
    public static let maxBroadcastGroups = 53
    public static let maxRedirectTargets = 64
    /// The rule capacity a device starts with; it doubles when the rules outgrow it.
    /// Small, since the kernel allocates a per-CPU array element by element: the
    /// counters of 65,536 rules took 80 ms to create, on every attach and trace.
    public static let defaultRuleCapacity = 4096
    /// The most rules a plan grows to (the per-CPU counters take 24 bytes per CPU each).
    public static let maxRuleCapacity = 1 << 24

    public var device: String
    /// Lookup order: by prio; within a prio, all are looked up and the lowest handle wins.
    /// Empty when the rules are classified by `tables`.
    public var subtables: [Subtable]
    /// The table classifier, when the rules need more inline subtables than one program
    /// looks up (`fitsInline`); nil while they fit.
    public var tables: TupleTables?
    public var rules: PlannedRules { PlannedRules(list: rulesBySlot.list, slots: slots) }
    var rulesBySlot: RulesBySlot
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
    /// Counter slots (past the miss and unparsed slots) and action programs the maps
    /// hold: kept while the rules fit, doubled when they outgrow it (a new program).
    public var ruleCapacity: Int
    /// What `add` and `remove` need that the plan does not otherwise say.
    var usage = Usage()

    /// Whether some rule goes on classifying (`continue`, also as police's control).
    public var usesContinue: Bool { usage.traits.keys.contains(where: \.continues) }
    public var stepKinds: Set<ActionStep.Kind> { usage.traits.keys.reduce(into: []) { $0.formUnion($1.kinds) } }
    public var maxSteps: Int { usage.traits.keys.map(\.steps).max() ?? 0 }
    /// Entries over all subtables (a port range counts once per block); with tables, the
    /// rules they hold.
    public var entryCount: Int { tables?.rules.count ?? subtables.reduce(0) { $0 + $1.entries.count } }
    /// Whether some rule can match: the program has lookups and actions.
    public var classifies: Bool { tables != nil || !subtables.isEmpty }

    /// The most inline subtables (broadcast groups included) a plan looks up before it
    /// turns to tables; by default as many as fit one program with the prefilter.
    public let inlineLimit: Int
    public static let defaultInlineLimit = maxSubtables - 1

    /// Whether `subtables` inline subtables and `groups` broadcast groups stay inline.
    func fitsInline(subtables: Int, groups: Int) -> Bool { subtables + groups <= inlineLimit }
    /// Room in the policers map: it holds at least 1024.
    public var policerCapacity: Int { max(policers.count, 1024) }

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
        try self.init(ruleSet, device: device, memory: previous?.memory, ruleCapacity: ruleCapacity,
                      inlineLimit: previous?.inlineLimit ?? Plan.defaultInlineLimit)
    }

    /// What a plan passes on to the next plan of its device (and what the runtime keeps
    /// on disk): its indexes and the sizes of its maps.
    public struct Memory: Hashable, Sendable, Codable {
        public var slots: StableIndex<RuleID>
        public var actionIndex: StableIndex<ActionProgram>
        public var targetIndex: StableIndex<String>
        public var policerIndex: StableIndex<PolicerKey>
        public var broadcastIndex: StableIndex<[String]>
        /// Subtable map name -> hash capacity.
        public var capacities: [String: Int]
        /// Nil in state written before rule capacities grew.
        public var ruleCapacity: Int?
        /// The table classifier's indexes and sizes, while it classifies.
        public var tables: TableMemory?
    }

    public var memory: Memory {
        var capacities: [String: Int] = [:]
        for subtable in subtables {
            if let capacity = subtable.capacity { capacities[subtable.mapName] = capacity }
        }
        return Memory(slots: slots, actionIndex: actionIndex, targetIndex: targetIndex, policerIndex: policerIndex,
                      broadcastIndex: broadcastIndex, capacities: capacities, ruleCapacity: ruleCapacity,
                      tables: tables?.memory)
    }

    /// Plans chain 0 of `ruleSet` for `device`, keeping the indexes and map sizes in
    /// `memory` (see `StableIndex`); a device without memory starts with `ruleCapacity`.
    /// `inlineLimit` 0 classifies every rule set by tables (for tests and benchmarks).
    public init(_ ruleSet: RuleSet, device: String, memory previous: Memory? = nil,
                ruleCapacity: Int = Plan.defaultRuleCapacity, inlineLimit: Int = Plan.defaultInlineLimit)
        throws(CompileError) {
        self.inlineLimit = inlineLimit
        // Rules of other chains have a limitation (only chain 0 runs): all are of chain 0.
        let rules = ruleSet.rules
        for rule in rules where !rule.xdpLimitations.isEmpty {
            throw .unsupported(UnsupportedRule(rule: rule, limitations: rule.xdpLimitations))
        }
        self.device = device
        rulesBySlot = RulesBySlot([], slots: [], first: 0)
        subtables = []
        tables = nil
        fields = []
        keyLayers = []
        policers = [:]
        targetIndex = previous?.targetIndex ?? StableIndex()
        broadcastIndex = previous?.broadcastIndex ?? StableIndex()
        policerIndex = previous?.policerIndex ?? StableIndex()
        actionIndex = previous?.actionIndex ?? StableIndex()
        slots = previous?.slots ?? StableIndex(first: RuleSlots.firstRule)
        self.ruleCapacity = previous?.ruleCapacity ?? ruleCapacity

        // Each index space takes its keys in rule order (as `add` one by one would).
        // Targets and police actions first: the action programs name their indexes.
        var targets: [String] = [], groups: [[String]] = [], policerKeys: [PolicerKey] = []
        for rule in rules {
            usage.layers.add(rule.keyLayers)
            for target in rule.redirectTargets(device: device) where usage.targets.add(target) == 1 {
                targets.append(target)
            }
            if let group = rule.broadcastGroup, usage.broadcasts.add(group) == 1 { groups.append(group) }
            policerKeys += rule.policerKeys
        }
        keyLayers = usage.layers.union
        targetIndex.assign(targets)
        broadcastIndex.assign(groups)
        policerIndex.assign(policerKeys)
        let ruleSlots = slots.assign(rules.map(RuleID.init))
        rulesBySlot = RulesBySlot(rules, slots: ruleSlots, first: slots.first)

        // Rules without police actions share a program when their actions are the same:
        // it is built once per distinct action list.
        var programs: [ActionProgram] = [], programNumbers: [ActionProgram: Int] = [:]
        var byActions: [[FlowAction]: Int] = [:], ruleProgram: [Int] = []
        ruleProgram.reserveCapacity(rules.count)
        for rule in rules {
            let shared = rule.policerKeys.isEmpty
            if shared, let number = byActions[rule.actions] {
                ruleProgram.append(number)
                continue
            }
            let program = try program(for: rule)
            let number = programNumbers[program] ?? programs.count
            if number == programs.count {
                programs.append(program)
                programNumbers[program] = number
            }
            if shared { byActions[rule.actions] = number }
            ruleProgram.append(number)
        }
        actionIndex.assign(programs)
        let programIndexes = programs.map { actionIndex[$0]! }
        for number in ruleProgram { usage.programs[programs[number], default: 0] += 1 }
        for program in programs { usage.traits.add(ProgramTraits(program)) }

        var values: [SubtableValue] = []
        values.reserveCapacity(rules.count)
        for (position, rule) in rules.enumerated() {
            let id = RuleID(rule)
            for (index, action) in rule.actions.enumerated() {
                guard case .police(let police) = action.kind else { continue }
                policers[policerIndex[PolicerKey(rule: id, action: index)]!] = PolicerConfig(
                    rule: id, action: index, police: police)
            }
            values.append(SubtableValue(slot: ruleSlots[position], handle: rule.handle,
                                        action: programIndexes[ruleProgram[position]]))
        }
        guard targetIndex.count <= Self.maxRedirectTargets else {
            throw .tooManyRedirectTargets(count: targetIndex.count)
        }
        try planClassifier(rules, values: values, memory: previous)
        try fitRuleCapacity()
    }

    /// Plans the lookups of `rules` (in rule order, with their entries' values): inline
    /// subtables while they fit one program, tables past that.
    mutating func planClassifier(_ rules: [FlowRule], values: [SubtableValue], memory: Memory?) throws(CompileError) {
        var builders: [SubtableBuilder] = [], numbers: [SubtableKey: Int] = [:], counts: [SubtableKey: Int] = [:]
        usage.prios = UseCounts()
        for rule in rules { usage.prios.add(rule.prio) }
        let counted = usage.prios.keys.count <= inlineLimit
        // Entries are collected only while the subtables fit; past that only counted.
        var inline = counted
        // Rules come in runs of one shape: comparing with the last key spares the hashing.
        var last: (key: SubtableKey, number: Int)?
        for (rule, value) in zip(rules, values) where counted {
            for pattern in RuleKey(rule, device: device).alternatives {
                let table = SubtableKey(prio: rule.prio, pattern: pattern)
                if last?.key == table {
                    counts[table]! += 1
                } else {
                    counts[table, default: 0] += 1
                    inline = inline && fitsInline(subtables: counts.count, groups: broadcastIndex.count)
                    if inline, counts[table] == 1 {
                        numbers[table] = builders.count
                        builders.append(SubtableBuilder(table))
                    }
                    last = (table, inline ? numbers[table]! : 0)
                }
                if inline { builders[last!.number].collect(pattern, value) }
            }
        }
        usage.subtableKeys = counted ? counts : nil
        if inline {
            tables = nil
            let kept = memory?.capacities ?? [:]
            subtables = builders.map { builder in
                var subtable = builder.built()
                if let capacity = kept[subtable.mapName], capacity >= subtable.entries.count {
                    // Keep the map while it has room, so that a rule change stays a map update.
                    subtable.storage = .hash(capacity: capacity)
                }
                return subtable
            }.sorted { ($0.prio, $0.mapName) < ($1.prio, $1.mapName) }
            indexSubtables(keys: Dictionary(uniqueKeysWithValues: builders.map { ($0.subtable.mapName, $0.key) }))
        } else {
            guard broadcastIndex.count <= Self.maxBroadcastGroups else {
                throw .tooManyBroadcastGroups(count: broadcastIndex.count)
            }
            builders = []
            subtables = []
            let device = device
            tables = TupleTables(zip(rules, values).lazy.compactMap { rule, value in
                TableRule(rule, key: RuleKey(rule, device: device), action: value.action).map { (value.slot, $0) }
            }, count: values.count, memory: memory?.tables)
            indexSubtables(keys: [:])
        }
    }

    /// Plans the lookups again from the rules held, after a change that moved the plan
    /// from inline subtables to tables or back.
    mutating func replanClassifier() throws(CompileError) {
        let held = rulesBySlot.list.filter { $0.prio != 0 }.sorted { RuleID($0) < RuleID($1) }
        var byActions: [[FlowAction]: UInt32] = [:]
        var values: [SubtableValue] = []
        for rule in held {
            let action: UInt32
            if rule.policerKeys.isEmpty, let shared = byActions[rule.actions] {
                action = shared
            } else {
                action = actionIndex[try program(for: rule)]!
                if rule.policerKeys.isEmpty { byActions[rule.actions] = action }
            }
            values.append(SubtableValue(slot: slots[RuleID(rule)]!, handle: rule.handle, action: action))
        }
        try planClassifier(held, values: values, memory: memory)
    }

    /// Room for twice the entries, at least 1024: a subtable grows by a new map.
    static func capacity(for entries: Int) -> Int {
        var capacity = 1024
        while capacity < 2 * entries { capacity *= 2 }
        return capacity
    }

    /// The steps of `rule`'s actions with the plan's indexes.
    func program(for rule: FlowRule) throws(CompileError) -> ActionProgram {
        let id = RuleID(rule)
        return try ActionProgram(rule, device: device, target: { targetIndex[$0]! },
                                 policer: { policerIndex[PolicerKey(rule: id, action: $0)]! },
                                 broadcast: { broadcastIndex[$0]! })
    }

    /// After the subtables (or broadcast groups) changed: their fields, where each
    /// subtable's key is, and the prefilter over them.
    mutating func indexSubtables(keys: [String: SubtableKey]) {
        fields = tables?.fields ?? []
        usage.subtables = [:]
        usage.layouts = []
        for (position, subtable) in subtables.enumerated() {
            fields.formUnion(subtable.mask.fields.keys)
            fields.formUnion(subtable.guards.keys)
            usage.subtables[keys[subtable.mapName]!] = position
            usage.layouts.append(SubtableLayout(mapName: subtable.mapName, keyOffsets: subtable.mask.keyBytes.map(\.offset)))
        }
        prefilter = tables == nil ? Prefilter(subtables, reusing: prefilter) : nil
    }

    /// Doubles the rule capacity until every slot and action index fits.
    mutating func fitRuleCapacity() throws(CompileError) {
        let needed = max(Int(slots.upperBound - slots.first), Int(actionIndex.upperBound))
        while ruleCapacity < needed { ruleCapacity = max(2 * ruleCapacity, 1) }
        guard ruleCapacity <= Self.maxRuleCapacity else {
            throw .tooManyRules(count: rules.count, capacity: Self.maxRuleCapacity)
        }
    }
}

/// The rules of a plan, by id.
public struct PlannedRules: Equatable, Sendable {
    let list: [FlowRule]
    let slots: StableIndex<RuleID>

    public var count: Int { slots.count }
    public var isEmpty: Bool { slots.count == 0 }
    public subscript(id: RuleID) -> FlowRule? { slots[id].map { list[Int($0 - slots.first)] } }
}

/// A plan's rules, each at its counter slot (less the first rule slot): a plan built
/// with fresh slots holds its rule set's list as it is, without a copy.
struct RulesBySlot: Equatable, Sendable {
    /// A free slot holds a rule with prio 0, which no placed rule has.
    private(set) var list: [FlowRule]
    private static let free = FlowRule()

    /// `slots[i]` is the slot of `rules[i]`.
    init(_ rules: [FlowRule], slots: [UInt32], first: UInt32) {
        if slots.enumerated().allSatisfy({ $0.element == first + UInt32($0.offset) }) {
            list = rules
        } else {
            list = Array(repeating: Self.free, count: slots.max().map { Int($0 - first) + 1 } ?? 0)
            for (rule, slot) in zip(rules, slots) { list[Int(slot - first)] = rule }
        }
    }

    mutating func insert(_ rule: FlowRule, at position: Int) {
        if position == list.count { list.append(rule) } else { list[position] = rule }
    }

    /// Frees the position; the list ends with the last rule.
    mutating func remove(at position: Int) {
        list[position] = Self.free
        while list.last?.prio == 0 { list.removeLast() }
    }
}

/// Where a rule's key pattern goes: the prio, the fields hashed under their masks, and
/// the guard fields with their values.
struct SubtableKey: Hashable, Sendable {
    var prio: UInt16
    var fields: FieldSet
    var mask: RecordBytes
    var guardFields: FieldSet
    var guardValues: RecordBytes

    init(prio: UInt16, pattern: KeyPattern) {
        var guards = FieldSet()
        pattern.fields.intersection(.guards).forEach { field in
            if (field.offset ..< field.offset + field.width).allSatisfy({ pattern.mask[$0] == 0xff }) {
                guards.insert(FieldSet(field))
            }
        }
        self.prio = prio
        fields = pattern.fields.subtracting(guards)
        mask = pattern.mask.clearing(guards)
        guardFields = guards
        guardValues = pattern.value.keeping(guards)
    }
}

/// A subtable while a plan is built from a whole rule set.
struct SubtableBuilder {
    let key: SubtableKey
    var subtable: Subtable
    /// `subtable.mask.keyBytes`, worked out once.
    let keyBytes: [(offset: Int, mask: UInt8)]

    init(_ key: SubtableKey) {
        self.key = key
        let fields = key.fields.fields, guards = key.guardFields.fields
        let mask = SubtableMask(fields: Dictionary(uniqueKeysWithValues: fields.map { ($0, key.mask.field($0)) }))
        keyBytes = mask.keyBytes
        subtable = Subtable(prio: key.prio, mask: mask,
                            guards: Dictionary(uniqueKeysWithValues: guards.map { ($0, key.guardValues.field($0)) }),
                            entries: [:], storage: keyBytes.count <= 2 ? .direct : .hash(capacity: 0))
    }

    /// The entries in rule order, collected before the dictionary is built at its size.
    private var collected: [(key: [UInt8], value: SubtableValue)] = []

    mutating func collect(_ pattern: KeyPattern, _ value: SubtableValue) {
        collected.append((keyBytes.map { pattern.value[$0.offset] }, value))
    }

    /// The subtable with its entries, a hash one sized for them. Rules come in handle
    /// order within a prio: the first entry of a key holds it, later ones are outvoted.
    func built() -> Subtable {
        var subtable = self.subtable
        subtable.entries.reserveCapacity(collected.count)
        for (key, value) in collected {
            if let holder = subtable.entries.updateValue(value, forKey: key) {
                subtable.entries[key] = holder
                subtable.outvoted[key, default: []].append(value)
            }
        }
        if case .hash = subtable.storage { subtable.storage = .hash(capacity: Plan.capacity(for: subtable.entries.count)) }
        return subtable
    }
}

/// How many rules (or programs) use each of some things: `add` and `remove` learn from
/// it when the first user comes and the last one goes.
struct UseCounts<Thing: Hashable & Sendable>: Equatable, Sendable {
    private(set) var counts: [Thing: Int] = [:]

    /// The users after this one.
    @discardableResult
    mutating func add(_ thing: Thing) -> Int {
        counts[thing, default: 0] += 1
        return counts[thing]!
    }

    /// The users left.
    @discardableResult
    mutating func remove(_ thing: Thing) -> Int {
        let left = counts[thing]! - 1
        counts[thing] = left == 0 ? nil : left
        return left
    }

    var keys: Dictionary<Thing, Int>.Keys { counts.keys }

    func contains(_ thing: Thing) -> Bool { counts[thing] != nil }
}

/// What of an action program the generated code depends on.
struct ProgramTraits: Hashable, Sendable {
    var kinds: Set<ActionStep.Kind>
    var steps: Int
    var continues: Bool

    init(_ program: ActionProgram) {
        kinds = Set(program.steps.map(\.kind))
        steps = program.steps.count
        continues = program.steps.contains { $0.control == .continue || $0.exceed == .continue }
    }
}

/// How many rules read each key layer.
struct LayerCounts: Equatable, Sendable {
    private var counts = [Int](repeating: 0, count: 8)

    mutating func add(_ layers: KeyLayers) {
        for bit in 0 ..< 8 where layers.rawValue & 1 << bit != 0 { counts[bit] += 1 }
    }

    mutating func remove(_ layers: KeyLayers) {
        for bit in 0 ..< 8 where layers.rawValue & 1 << bit != 0 { counts[bit] -= 1 }
    }

    var union: KeyLayers {
        KeyLayers(rawValue: (0 ..< 8).reduce(0) { $0 | (counts[$1] > 0 ? 1 << $1 : 0) })
    }
}

extension Plan {
    /// The plan's bookkeeping for rule-by-rule changes: who uses each target, group,
    /// program and layer, and where each subtable sits.
    struct Usage: Equatable, Sendable {
        var layers = LayerCounts()
        var targets = UseCounts<String>()
        var broadcasts = UseCounts<[String]>()
        /// Rules per program.
        var programs: [ActionProgram: Int] = [:]
        /// Programs per traits.
        var traits = UseCounts<ProgramTraits>()
        /// Subtable key -> position in `subtables`.
        var subtables: [SubtableKey: Int] = [:]
        /// Rules per prio. Each prio needs a subtable at least, so more prios than
        /// `inlineLimit` never fit inline.
        var prios = UseCounts<UInt16>()
        /// Subtable key -> its entries: how many inline subtables the rules need, in
        /// either classifier. Counted only while the prios are few enough to fit inline
        /// (nil past that): counting every rule's ranges expanded into blocks was a fifth
        /// of planning 100,000 rules.
        var subtableKeys: [SubtableKey: Int]? = [:]
        /// By position in `subtables`.
        var layouts: [SubtableLayout] = []
    }
}

/// What a rule change needs of a subtable at hand, worked out when it is created.
struct SubtableLayout: Equatable, Sendable {
    var mapName: String
    /// The record bytes an entry's key is made of (`SubtableMask.keyBytes`).
    var keyOffsets: [Int]

    func key(_ pattern: KeyPattern) -> [UInt8] { keyOffsets.map { pattern.value[$0] } }
}

extension FlowRule {
    /// The devices the rule redirects to through the redirect map (a broadcast names its
    /// devices in its own map; a redirect to the device itself is XDP_TX), without repeats.
    func redirectTargets(device: String) -> [String] {
        guard broadcastGroup == nil else { return [] }
        var targets: [String] = []
        for action in actions {
            guard case .mirred(let mirred) = action.kind, mirred.mode == .redirect, mirred.device != device,
                  !targets.contains(mirred.device)
            else { continue }
            targets.append(mirred.device)
        }
        return targets
    }

    var policerKeys: [PolicerKey] {
        actions.indices.compactMap { index in
            guard case .police = actions[index].kind else { return nil }
            return PolicerKey(rule: RuleID(self), action: index)
        }
    }
}

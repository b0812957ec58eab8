import FlowRules

/// What a device's maps need written when they are kept from one plan to the next: the
/// entries the later plan has that the earlier one did not.
public struct MapWrites: Equatable, Sendable {
    /// Counter slots that start from zero: new rules, or slots that changed hands.
    public var counters: Set<UInt32> = []
    public var actions: [UInt32: ActionProgram] = [:]
    public var redirectTargets: [UInt32: String] = [:]
    public var policers: [UInt32: PolicerConfig] = [:]
    /// Subtable map name -> key -> value.
    public var entries: [String: [[UInt8]: SubtableValue]] = [:]
    /// Subtable map name -> keys that go.
    public var removedEntries: [String: Set<[UInt8]>] = [:]
    /// Prefilter index -> its bits (0: none left).
    public var prefilter: [UInt16: UInt64] = [:]
    /// Subtable maps whose subtable went: a map of that name in a later program is new,
    /// never the old one with its stale entries (a change may empty a subtable and start
    /// it again).
    public var droppedMaps: Set<String> = []
    /// The table classifier's rules, buckets and list.
    public var tables = TableWrites()

    public init() {}

    /// The writes of `later`, a change made after this one, on top of this one's.
    public mutating func merge(_ later: MapWrites) {
        counters.formUnion(later.counters)
        actions.merge(later.actions) { $1 }
        redirectTargets.merge(later.redirectTargets) { $1 }
        policers.merge(later.policers) { $1 }
        prefilter.merge(later.prefilter) { $1 }
        for name in later.droppedMaps {
            entries[name] = nil
            removedEntries[name] = nil
        }
        droppedMaps.formUnion(later.droppedMaps)
        for (name, gone) in later.removedEntries { for key in gone { removeEntry(key, in: name) } }
        for (name, set) in later.entries { for (key, value) in set { setEntry(key, value, in: name) } }
        tables.merge(later.tables)
    }

    public var count: Int {
        counters.count + actions.count + redirectTargets.count + policers.count + prefilter.count
            + entries.values.reduce(0) { $0 + $1.count } + removedEntries.values.reduce(0) { $0 + $1.count }
            + tables.count
    }

    mutating func setEntry(_ key: [UInt8], _ value: SubtableValue, in map: String) {
        entries[map, default: [:]][key] = value
        removedEntries[map]?.remove(key)
    }

    mutating func removeEntry(_ key: [UInt8], in map: String) {
        entries[map]?[key] = nil
        removedEntries[map, default: []].insert(key)
    }
}

/// One rule change to a plan: the map writes that carry it into the kernel, and whether
/// the running program can stay.
public struct PlanChange: Equatable, Sendable {
    public var writes = MapWrites()
    /// False when the program or a map's size changes: a subtable or broadcast group
    /// comes or goes, a map outgrows its capacity, or the actions or key layers need code
    /// the program lacks (or no longer need code it has). The kept maps still take
    /// `writes`; a new program is loaded over them.
    public var keepsProgram = true

    public init() {}

    /// `later`, a change made after this one, on top of this one.
    public mutating func merge(_ later: PlanChange) {
        writes.merge(later.writes)
        keepsProgram = keepsProgram && later.keepsProgram
    }
}

extension Plan {
    /// The writes that turn maps holding `previous` into maps holding this plan.
    public func writes(since previous: Plan?) -> MapWrites {
        var writes = MapWrites()
        for (rule, slot) in slots.indexes where previous?.slots[rule] != slot { writes.counters.insert(slot) }
        let actions = previous?.actions ?? [:], targets = previous?.redirectTargets ?? [:]
        writes.actions = self.actions.filter { actions[$0.key] != $0.value }
        writes.redirectTargets = redirectTargets.filter { targets[$0.key] != $0.value }
        writes.policers = policers.filter { previous?.policers[$0.key] != $0.value }
        if let prefilter {
            // Bits a plan no longer sets are cleared; a new map gets them all.
            let held = previous?.prefilter?.mapName == prefilter.mapName ? previous!.prefilter!.table : [:]
            writes.prefilter = prefilter.table.filter { held[$0.key] != $0.value }
            for index in held.keys where prefilter.table[index] == nil { writes.prefilter[index] = 0 }
        }
        let before = Dictionary((previous?.subtables ?? []).map { ($0.mapName, $0.entries) }, uniquingKeysWith: { a, _ in a })
        let kept = Set(subtables.map(\.mapName))
        writes.droppedMaps = Set(before.keys.filter { !kept.contains($0) })
        for subtable in subtables {
            let held = before[subtable.mapName] ?? [:]
            let changed = subtable.entries.filter { held[$0.key] != $0.value }
            let gone = held.keys.filter { subtable.entries[$0] == nil }
            if !changed.isEmpty { writes.entries[subtable.mapName] = changed }
            if !gone.isEmpty { writes.removedEntries[subtable.mapName] = Set(gone) }
        }
        if let earlier = previous?.tables,
           tables.map({ TableShape($0).needsNewMaps(after: TableShape(earlier)) }) ?? true {
            writes.droppedMaps.formUnion(FlowMaps.tableMaps)
        }
        if let tables {
            // Everything, and what the earlier tables held that went: rewriting an entry
            // with what it holds is harmless.
            writes.tables = tables.everything
            if let earlier = previous?.tables?.everything {
                writes.tables.rules.formUnion(earlier.rules)
                writes.tables.buckets.formUnion(earlier.buckets)
            }
        }
        return writes
    }

    /// Carries a change of the rule set, already made to it, into the plan: every removal,
    /// then every addition, their writes merged. Throws what `add` throws; a refused
    /// change leaves the plan as it was.
    public mutating func apply(_ change: RuleChange) throws(CompileError) -> PlanChange {
        let sizes = self.sizes
        var planned = PlanChange()
        for rule in change.removed { planned.merge(remove(RuleID(rule))) }
        for (done, rule) in change.added.enumerated() {
            do {
                planned.merge(try add(rule))
            } catch {
                // Nothing reached the kernel: the writes of the way back are not needed.
                _ = try? apply(RuleChange(removed: Array(change.added.prefix(done)), added: change.removed))
                restore(sizes)
                throw error
            }
        }
        return planned
    }

    /// Adds `rule` as its rule set placed it (prio and handle allocated): what `init`
    /// would plan for the rule set with it, in time that does not grow with the rules.
    /// Throws what `init` would; a refused rule leaves the plan as it was.
    public mutating func add(_ rule: FlowRule) throws(CompileError) -> PlanChange {
        guard rule.xdpLimitations.isEmpty else {
            throw .unsupported(UnsupportedRule(rule: rule, limitations: rule.xdpLimitations))
        }
        let id = RuleID(rule)
        precondition(rules[id] == nil, "\(id) is planned already")
        // What can refuse the rule, in init's order, before anything changes.
        _ = try ActionProgram(rule, device: device, target: { _ in 0 }, policer: { _ in 0 }, broadcast: { _ in 0 })
        let targets = rule.redirectTargets(device: device)
        let targetCount = targetIndex.count + targets.filter { targetIndex[$0] == nil }.count
        guard targetCount <= Self.maxRedirectTargets else { throw .tooManyRedirectTargets(count: targetCount) }
        let group = rule.broadcastGroup
        let ruleKey = RuleKey(rule, device: device)
        let groups = broadcastIndex.count + (group.map { broadcastIndex[$0] == nil ? 1 : 0 } ?? 0)
        // Past the prios that can fit inline, the rule's subtables are not counted.
        let counted = usage.prios.keys.count + (usage.prios.contains(rule.prio) ? 0 : 1) <= inlineLimit
        let patterns = counted ? ruleKey.alternatives : []
        let tables = patterns.map { SubtableKey(prio: rule.prio, pattern: $0) }
        let newTables = Set(tables.filter { usage.subtables[$0] == nil })
        let inline = counted && fitsInline(subtables: usage.subtableKeys!.count
                                               + Set(tables).filter { usage.subtableKeys![$0] == nil }.count,
                                           groups: groups)
        guard inline || groups <= Self.maxBroadcastGroups else { throw .tooManyBroadcastGroups(count: groups) }
        guard Int(slots.lowestFree - slots.first) < Self.maxRuleCapacity else {
            throw .tooManyRules(count: rules.count + 1, capacity: Self.maxRuleCapacity)
        }

        var change = PlanChange()
        let shape = ProgramShape(self)
        usage.layers.add(rule.keyLayers)
        keyLayers = usage.layers.union
        for target in targets {
            usage.targets.add(target)
            let (index, isNew) = targetIndex.insert(target)
            if isNew { change.writes.redirectTargets[index] = target }
        }
        var groupsChanged = false
        if let group {
            usage.broadcasts.add(group)
            groupsChanged = broadcastIndex.insert(group).isNew
        }
        for (index, action) in rule.actions.enumerated() {
            guard case .police(let police) = action.kind else { continue }
            let policer = policerIndex.insert(PolicerKey(rule: id, action: index)).index
            policers[policer] = PolicerConfig(rule: id, action: index, police: police)
            change.writes.policers[policer] = policers[policer]
        }
        // Neither this nor `fitRuleCapacity` can throw now: the checks above passed.
        let program = try self.program(for: rule)
        usage.programs[program, default: 0] += 1
        let (action, isNewProgram) = actionIndex.insert(program)
        if isNewProgram {
            change.writes.actions[action] = program
            usage.traits.add(ProgramTraits(program))
        }
        let slot = slots.insert(id).index
        rulesBySlot.insert(rule, at: Int(slot - slots.first))
        change.writes.counters.insert(slot)
        try fitRuleCapacity()
        usage.prios.add(rule.prio)
        if counted {
            for table in tables { usage.subtableKeys![table, default: 0] += 1 }
        } else {
            usage.subtableKeys = nil
        }
        if inline != (self.tables == nil) {
            try switchClassifier(&change.writes)
            finish(&change, from: shape)
            return change
        }
        if self.tables != nil {
            // Broadcast groups cost tables nothing but their maps: no reindexing.
            if let entry = TableRule(rule, key: ruleKey, action: action) {
                self.tables!.add(entry, slot: slot, &change.writes.tables)
            }
            fields = self.tables!.fields
            finish(&change, from: shape)
            return change
        }
        if !newTables.isEmpty || groupsChanged {
            var keys = Dictionary(uniqueKeysWithValues: usage.subtables.map { (usage.layouts[$0.value].mapName, $0.key) })
            for table in newTables {
                let subtable = SubtableBuilder(table).subtable
                subtables.append(subtable)
                keys[subtable.mapName] = table
            }
            subtables.sort { ($0.prio, $0.mapName) < ($1.prio, $1.mapName) }
            indexSubtables(keys: keys)
        }
        let value = SubtableValue(slot: slot, handle: rule.handle, action: action)
        for (pattern, table) in zip(patterns, tables) {
            placeEntry(pattern, value, in: usage.subtables[table]!, &change.writes)
        }
        for table in Set(tables) {
            let position = usage.subtables[table]!
            guard case .hash(let capacity) = subtables[position].storage else { continue }
            let entries = subtables[position].entries.count
            // A new subtable is sized for its entries, as init sizes it; a full one grows.
            if newTables.contains(table) || entries > capacity {
                subtables[position].storage = .hash(capacity: Self.capacity(for: entries))
            }
        }
        finish(&change, from: shape)
        return change
    }

    /// Removes the rule `id` (which the plan must hold): what `init` would plan for the
    /// rule set without it, in time that does not grow with the rules.
    public mutating func remove(_ id: RuleID) -> PlanChange {
        guard let rule = rules[id], let program = try? program(for: rule) else {
            preconditionFailure("\(id) is not planned")
        }
        var change = PlanChange()
        let shape = ProgramShape(self)
        usage.layers.remove(rule.keyLayers)
        keyLayers = usage.layers.union
        for target in rule.redirectTargets(device: device) where usage.targets.remove(target) == 0 {
            targetIndex.remove(target)
        }
        var groupsChanged = false
        if let group = rule.broadcastGroup, usage.broadcasts.remove(group) == 0 {
            broadcastIndex.remove(group)
            groupsChanged = true
        }
        for key in rule.policerKeys {
            policers[policerIndex[key]!] = nil
            policerIndex.remove(key)
        }
        let users = usage.programs[program]! - 1
        usage.programs[program] = users == 0 ? nil : users
        if users == 0 {
            actionIndex.remove(program)
            usage.traits.remove(ProgramTraits(program))
        }
        let value = SubtableValue(slot: slots[id]!, handle: rule.handle, action: 0)
        rulesBySlot.remove(at: Int(value.slot - slots.first))
        slots.remove(id)
        usage.prios.remove(rule.prio)
        let counted = usage.prios.keys.count <= inlineLimit
        let patterns = counted ? RuleKey(rule, device: device).alternatives : []
        if counted, usage.subtableKeys != nil {
            for pattern in patterns {
                let key = SubtableKey(prio: rule.prio, pattern: pattern)
                let left = usage.subtableKeys![key]! - 1
                usage.subtableKeys![key] = left == 0 ? nil : left
            }
        } else if counted {
            // Few enough prios again: the rules left are counted afresh.
            var keys: [SubtableKey: Int] = [:]
            for held in rulesBySlot.list where held.prio != 0 {
                for pattern in RuleKey(held, device: device).alternatives {
                    keys[SubtableKey(prio: held.prio, pattern: pattern), default: 0] += 1
                }
            }
            usage.subtableKeys = keys
        }
        let inline = counted && fitsInline(subtables: usage.subtableKeys!.count, groups: broadcastIndex.count)
        if inline != (tables == nil) {
            // Cannot throw: every rule left was planned before.
            try! switchClassifier(&change.writes)
            finish(&change, from: shape)
            return change
        }
        if tables != nil {
            if tables!.rules[value.slot] != nil { tables!.remove(slot: value.slot, &change.writes.tables) }
            fields = tables!.fields
            finish(&change, from: shape)
            return change
        }

        for pattern in patterns {
            takeEntry(pattern, of: value.handle, from: usage.subtables[SubtableKey(prio: rule.prio, pattern: pattern)]!,
                      &change.writes)
        }
        if subtables.contains(where: \.entries.isEmpty) || groupsChanged {
            var keys = Dictionary(uniqueKeysWithValues: usage.subtables.map { (usage.layouts[$0.value].mapName, $0.key) })
            for subtable in subtables where subtable.entries.isEmpty {
                // Its map goes with the program: nothing to write.
                keys[subtable.mapName] = nil
                change.writes.entries[subtable.mapName] = nil
                change.writes.removedEntries[subtable.mapName] = nil
                change.writes.droppedMaps.insert(subtable.mapName)
            }
            subtables.removeAll(where: \.entries.isEmpty)
            indexSubtables(keys: keys)
        }
        finish(&change, from: shape)
        return change
    }

    /// After a change that moves the rules from inline subtables to tables or back: the
    /// maps of the classifier left go (a new program; the new classifier's maps are new
    /// and take everything).
    private mutating func switchClassifier(_ writes: inout MapWrites) throws(CompileError) {
        let left = tables == nil ? Set(subtables.map(\.mapName)) : FlowMaps.tableMaps
        try replanClassifier()
        for name in left {
            writes.entries[name] = nil
            writes.removedEntries[name] = nil
        }
        writes.droppedMaps.formUnion(left)
        writes.tables = TableWrites()
        writes.prefilter = prefilter?.table ?? [:]
    }

    /// Whether the program stays; a new prefilter map gets its whole table.
    private func finish(_ change: inout PlanChange, from shape: ProgramShape) {
        let now = ProgramShape(self)
        change.keepsProgram = now == shape
        if let before = shape.tables, let after = now.tables, after.needsNewMaps(after: before) {
            change.writes.droppedMaps.formUnion(FlowMaps.tableMaps)
        }
        if now.layouts != shape.layouts || now.broadcastGroups != shape.broadcastGroups,
           prefilter?.offset != shape.prefilter?.offset || prefilter?.bits != shape.prefilter?.bits {
            change.writes.prefilter = prefilter?.table ?? [:]
        }
    }

    // The two places where a rule change writes subtable entries.

    /// Puts a rule's entry for `pattern` into subtable `position`: the lowest handle holds
    /// a key, the others wait in `outvoted`, lowest first.
    private mutating func placeEntry(_ pattern: KeyPattern, _ value: SubtableValue, in position: Int,
                                     _ writes: inout MapWrites) {
        let key = usage.layouts[position].key(pattern), name = usage.layouts[position].mapName
        guard let holder = subtables[position].entries[key] else {
            subtables[position].entries[key] = value
            writes.setEntry(key, value, in: name)
            if let (index, bits) = prefilter?.count(key, in: name) { writes.prefilter[index] = bits }
            return
        }
        var waiting = subtables[position].outvoted[key] ?? []
        if holder.handle < value.handle {
            waiting.insert(value, at: waiting.firstIndex { $0.handle > value.handle } ?? waiting.endIndex)
        } else {
            waiting.insert(holder, at: 0)
            subtables[position].entries[key] = value
            writes.setEntry(key, value, in: name)
        }
        subtables[position].outvoted[key] = waiting
    }

    /// Takes the entry of the rule with `handle` for `pattern` out of subtable
    /// `position`: the next in line takes the key, or it goes.
    private mutating func takeEntry(_ pattern: KeyPattern, of handle: UInt32, from position: Int,
                                    _ writes: inout MapWrites) {
        let key = usage.layouts[position].key(pattern), name = usage.layouts[position].mapName
        var waiting = subtables[position].outvoted[key] ?? []
        if subtables[position].entries[key]?.handle == handle {
            if waiting.isEmpty {
                subtables[position].entries[key] = nil
                writes.removeEntry(key, in: name)
                if let (index, bits) = prefilter?.uncount(key, in: name) { writes.prefilter[index] = bits }
            } else {
                subtables[position].entries[key] = waiting.removeFirst()
                writes.setEntry(key, subtables[position].entries[key]!, in: name)
            }
        } else {
            waiting.removeAll { $0.handle == handle }
        }
        subtables[position].outvoted[key] = waiting.isEmpty ? nil : waiting
    }
}

/// What of a plan the program and the maps' sizes follow (see `CodeGenerator` and
/// `Datapath.mapSpecs`): equal shapes, same program over the same maps. Cheap to take:
/// a rule change takes two.
struct ProgramShape: Equatable {
    /// The subtables, in lookup order (the same array while they stay the same).
    var layouts: [SubtableLayout]
    var storages: [Subtable.Storage]
    var keyLayers: KeyLayers
    /// With the subtables, they decide the prefilter.
    var broadcastGroups: Int
    var stepKinds: Set<ActionStep.Kind>
    var maxSteps: Int
    var usesContinue: Bool
    var ruleCapacity: Int
    var policerCapacity: Int
    var tables: TableShape?
    /// Not compared: it follows from the above; kept to tell a new prefilter map (what
    /// names it, without the table a change writes to).
    var prefilter: (offset: Int, bits: [String: Int])?

    init(_ plan: Plan) {
        layouts = plan.usage.layouts
        storages = plan.subtables.map(\.storage)
        keyLayers = plan.keyLayers
        broadcastGroups = plan.broadcastIndex.count
        stepKinds = plan.stepKinds
        maxSteps = plan.maxSteps
        usesContinue = plan.usesContinue
        ruleCapacity = plan.ruleCapacity
        policerCapacity = plan.policerCapacity
        tables = plan.tables.map(TableShape.init)
        prefilter = plan.prefilter.map { ($0.offset, $0.bits) }
    }

    static func == (a: Self, b: Self) -> Bool {
        a.layouts == b.layouts && a.storages == b.storages && a.keyLayers == b.keyLayers
            && a.broadcastGroups == b.broadcastGroups && a.stepKinds == b.stepKinds && a.maxSteps == b.maxSteps
            && a.usesContinue == b.usesContinue && a.ruleCapacity == b.ruleCapacity
            && a.policerCapacity == b.policerCapacity && a.tables == b.tables
    }
}

/// What of the table classifier the program and its maps' sizes follow.
struct TableShape: Equatable {
    /// The parser extracts these.
    var fields: Set<KeyField>
    /// The layout of every check and list entry.
    var words: [Int]
    var usesRanges: Bool
    var tableCapacity: Int
    var bucketCapacity: Int

    init(_ tables: TupleTables) {
        fields = tables.fields
        words = tables.words
        usesRanges = tables.usesRanges
        tableCapacity = tables.tableCapacity
        bucketCapacity = tables.bucketCapacity
    }

    /// Whether the four table maps must be made afresh, all together, after `earlier`'s.
    /// Every check and list entry is laid out by the words, and the buckets lead into the
    /// checks (a kept bucket would lead the running program to a slot its own map holds
    /// no check for); more places move every chain, and with it the checks' links.
    func needsNewMaps(after earlier: TableShape) -> Bool {
        words != earlier.words || bucketCapacity != earlier.bucketCapacity
    }
}

extension Plan {
    /// The sizes of the plan's maps: what a change the kernel refused puts back.
    public struct Sizes: Equatable, Sendable {
        var ruleCapacity: Int
        /// By subtable position.
        var storages: [Subtable.Storage]
        var tables: TableMemory?
    }

    public var sizes: Sizes {
        Sizes(ruleCapacity: ruleCapacity, storages: subtables.map(\.storage), tables: tables?.memory)
    }

    /// Puts back `sizes`, taken before a change that was then undone (the same
    /// subtables): the plan describes the maps that are still running.
    public mutating func restore(_ sizes: Sizes) {
        precondition(sizes.storages.count == subtables.count, "sizes of other subtables")
        ruleCapacity = sizes.ruleCapacity
        for position in subtables.indices { subtables[position].storage = sizes.storages[position] }
        if let memory = sizes.tables { tables?.restore(memory) }
    }
}

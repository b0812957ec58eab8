import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import Packets
import RuleSetWorkloads
import Testing

/// `PlanChangeTests`' property for the table classifier: a plan changed rule by rule
/// (`Plan.add`, `Plan.remove`, `Plan.apply` of several rules at once) equals the plan
/// built from its rules with its memory, whether it classifies by tables from the start
/// (`inlineLimit` 0) or crosses the default inline limit one way and the other. After
/// each step the change's writes, put into the maps a new program would keep (a model
/// of each: subtables, prefilter, actions, the four table maps), must leave them as
/// maps filled afresh for the plan after; a change that says the program stays must
/// keep it (same instructions, same map specs); and a rule between table plans of the
/// same words, capacities, layers and action code must say so: a new mask or a new prio
/// is map writes. Pure:
/// no kernel.
@Suite struct TablePlanChangeTests {
    static let seeds: [UInt64] = (0 ..< UInt64(FuzzSettings.cases(4))).map { 0x7ab1e5 + $0 &* 0x9e37_79b9 }

    /// Random rules of every kind (`RuleGenerator`) and ACL-shaped ones (`ACLGenerator`),
    /// at the generator's prios and new ones, in tables from the first rule.
    @Test(arguments: seeds) func ruleByRuleEqualsTheWholeRuleSetInTables(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let generator = RuleGenerator(pool: ValuePool(&rng), &rng)
        let acl = ACLGenerator(ruleCount: 300, rulesPerPrio: 1 ... 3, ipv6Share: 0.3, device: testDevice)
            .workload(seed: seed).rules.rules
        var walk = try ChangeWalk(seed: seed, inlineLimit: 0, ruleCapacity: rng.pick([4, 64, Plan.defaultRuleCapacity]))
        for step in 0 ..< 160 {
            try walk.step(step, &rng, grow: rng.chance(0.6)) { rules, rng in
                if rng.chance(0.5) {
                    var rule = rng.pick(acl)
                    rule.handle = rng.chance(0.7) ? 0 : UInt32(rng.int(1 ... 40))
                    if rng.chance(0.5) { rule.prio = UInt16(rng.int(1 ... 400)) }
                    return rule
                }
                let prio = rng.chance(0.5) ? rng.pick(generator.prios) : UInt16(rng.int(1 ... 400))
                let held = rules.rules.first { $0.prio == prio }?.filterProtocol
                var rule = generator.rule(prio: prio, filterProtocol: held ?? rng.pick([.ip, .ipv6, .all, .vlan]), &rng)
                if rng.chance(0.3) { rule.handle = UInt32(rng.int(1 ... 40)) }
                return rule
            }
            #expect(walk.plan.tables != nil || walk.plan.subtables.isEmpty,
                    "seed \(seed) step \(step): inlineLimit 0 plans tables for any rule that can match")
        }
        let stats = walk.stats
        #expect(stats.adds > 40 && stats.removes > 20 && stats.batches > 10, "\(stats)")
        #expect(stats.newTablesKept > 0 && stats.newPriosKept > 0 && stats.tablesGoneKept > 0,
                "new masks and prios came and went as map writes: \(stats)")
    }

    /// ACL-shaped rules (one or two at a prio) added until the plan needs more subtables
    /// than the default inline limit (tables) and removed until it fits again (inline),
    /// three times over.
    @Test(arguments: seeds.prefix(max(1, seeds.count / 2)))
    func crossingTheInlineLimitBothWaysEqualsTheWholeRuleSet(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let pool = ACLGenerator(ruleCount: 400, rulesPerPrio: 1 ... 2, ipv6Share: 0.3, device: testDevice)
            .workload(seed: seed).rules.rules
        var walk = try ChangeWalk(seed: seed, inlineLimit: Plan.defaultInlineLimit, ruleCapacity: Plan.defaultRuleCapacity)
        var step = 0, growing = true, past = 0
        while walk.stats.crossedDown < 3, step < 2000 {
            let inTables = walk.plan.tables != nil
            if growing == inTables {
                past += 1
                if past > 6 {
                    growing.toggle()
                    past = 0
                }
            }
            // Mostly the way the phase goes: the walk also steps back now and then.
            try walk.step(step, &rng, grow: growing == rng.chance(0.85)) { rules, rng in
                let unused = pool.filter { rules.rule(prio: $0.prio, handle: $0.handle) == nil }
                return rng.pick(unused.isEmpty ? pool : unused)
            }
            step += 1
        }
        let stats = walk.stats
        #expect(stats.crossedUp >= 3 && stats.crossedDown >= 3, "\(stats)")
        #expect(stats.newTablesKept > 0, "\(stats)")
    }

    /// A rule with a new mask (a new table) or a new prio added to a table plan of the
    /// ClassBench set acl1_1000, in the words the plan reads and within its capacities,
    /// keeps the program: its check, its bucket and the list are map writes.
    @Test func aNewMaskOrPrioInTablesKeepsTheProgram() throws {
        let base = try ClassBench.load("acl1_1000", device: testDevice).rules
        var walk = try ChangeWalk(rules: base, inlineLimit: Plan.defaultInlineLimit)
        let tables = try #require(walk.plan.tables)
        #expect(tables.tables.count < tables.tableCapacity, "room for new tables")

        /// Adds the rule of `line` and returns the change.
        func add(_ line: String, _ note: String) throws -> PlanChange {
            var rule = try #require(ruleSet([line]).rules.first)
            rule.handle = 0
            return try walk.add(rule, note)
        }
        func tableCount() -> Int { walk.plan.tables?.tables.count ?? 0 }
        let words = tables.words

        // A new prio, below every rule, with the mask of rule 500: its table's bucket.
        let existing = try #require(base.rules.first { $0.prio == 500 })
        var copy = existing
        copy.prio = 2000
        copy.handle = 0
        var count = tableCount()
        var change = try walk.add(copy, "new prio, existing mask")
        #expect(change.keepsProgram && tableCount() == count)
        #expect(!change.writes.tables.list, "a worse rank than its table's best: the list stays")

        // A new mask of fields the tables read: protocol and a /16 destination alone.
        let fields = walk.plan.fields
        count = tableCount()
        change = try add("filter add dev xft0 protocol ip prio 2001 flower dst_ip 10.1.0.0/16 action drop",
                         "new prio, new mask")
        #expect(change.keepsProgram && tableCount() == count + 1 && change.changesTables)

        // A new mask at the best prio: a new table second in the list, after prio 1 handle 1's.
        count = tableCount()
        change = try add("filter add dev xft0 protocol ip prio 1 flower src_ip 10.1.2.0/24 ip_proto udp dst_port 53 action pass",
                         "existing prio, new mask, best rank")
        #expect(change.keepsProgram && tableCount() == count + 1 && change.changesTables)
        let added = try #require(walk.rules.rules.first { $0.prio == 1 && $0.handle != 1 })
        #expect(walk.plan.tables?.lookupOrder.first?.rank == UInt64(1) << 32 | 1)
        #expect(walk.plan.tables?.lookupOrder.dropFirst().first?.rank == UInt64(1) << 32 | UInt64(added.handle))
        #expect(walk.plan.tables?.words == words && walk.plan.fields == fields)

        // Both go again, and their tables with them, as map writes.
        for rule in [added, try #require(walk.rules.rules.first { $0.prio == 2001 })] {
            count = tableCount()
            change = try walk.remove(rule, "a new mask's only rule goes")
            #expect(change.keepsProgram && tableCount() == count - 1 && change.changesTables)
        }

        // Words the plan does not read need a new program.
        change = try add("filter add dev xft0 protocol ip prio 2002 flower src_mac 02:00:00:00:00:01 action drop",
                         "a field in a new word")
        #expect(!change.keepsProgram && walk.plan.tables?.words != words)
        #expect(walk.stats.newTablesKept >= 2 && walk.stats.newPriosKept >= 2 && walk.stats.tablesGoneKept >= 2,
                "\(walk.stats)")
    }

    /// The program finds a filtered table's entry at its bit's de Bruijn index: each of
    /// the 64 bits must have a place of its own, past the head and inside the map.
    @Test func everyFilteredTableHasAnEntryOfItsOwn() {
        for capacity in [TupleTables.minimumTableCapacity, 4 * TupleTables.minimumTableCapacity] {
            let keys = (0 ..< UInt32(64)).map { TableEntry.key(filtered: $0, tableCapacity: capacity) }
            let places = TableEntry.filteredBase(tableCapacity: capacity) ..< UInt32(TableEntry.mapEntries(tableCapacity: capacity))
            #expect(Set(keys).count == 64)
            #expect(keys.allSatisfy(places.contains))
        }
    }

    /// Past half of its places taken, the heads array grows and every chain moves: the
    /// change makes the four table maps afresh (a new program), and the plan equals the
    /// one built from its rules at every step before and after, removals included.
    @Test func theHeadsArrayGrowsRuleByRule() throws {
        let acl = ACLGenerator(ruleCount: 700, rulesPerPrio: 1 ... 1, ipv6Share: 0.2, device: testDevice)
            .workload(seed: 0x9a0e).rules.rules
        // The first 480 at once (their buckets take fewer than half the places), the
        // rest one by one.
        var walk = try ChangeWalk(rules: RuleSet(Array(acl.prefix(480))), inlineLimit: 0)
        let first = try #require(walk.plan.tables?.bucketCapacity)
        var grew: PlanChange?
        for (step, rule) in acl.enumerated().dropFirst(480) where grew == nil {
            let change = try walk.add(rule, "add \(step)")
            if let places = walk.plan.tables?.bucketCapacity, places > first { grew = change }
        }
        let growth = try #require(grew, "\(walk.plan.tables?.bucketCount ?? 0) buckets in \(first) places")
        #expect(!growth.keepsProgram && growth.writes.droppedMaps.isSuperset(of: FlowMaps.tableMaps))
        for (step, rule) in walk.rules.rules.suffix(10).enumerated() { try walk.remove(rule, "remove \(step)") }
    }

    /// An address filters its table in the one dimension that reads as many of its first
    /// bytes as the table's mask holds whole, or fewer (a /32 of IPv4 by the hash of 32
    /// bits, not of 24, which would let every host of its /24 through; an IPv6 /128 by
    /// the hash of 64).
    @Test func anAddressFiltersItsTableByTheBytesItsMaskHoldsWhole() throws {
        func filteringBytes(_ match: String, protocol proto: String = "ip") throws -> [Int] {
            let rules = try ruleSet(["filter add dev xft0 protocol \(proto) prio 1 flower \(match) action drop"])
            let tables = try #require(try Plan(rules, device: testDevice, inlineLimit: 0).tables)
            let table = try #require(tables.tables.values.first)
            return TableFilter.dimensions.indices.compactMap { position in
                table.filterFields[position] == nil ? nil : TableFilter.dimensions[position].bytes
            }
        }
        #expect(try filteringBytes("src_ip 10.0.0.0/8") == [2])
        #expect(try filteringBytes("src_ip 10.1.0.0/23") == [2])
        #expect(try filteringBytes("src_ip 10.1.2.0/24") == [3])
        #expect(try filteringBytes("src_ip 10.1.2.0/31") == [3])
        #expect(try filteringBytes("src_ip 10.1.2.3/32 dst_ip 10.1.0.0/16") == [2, 4])
        #expect(try filteringBytes("src_ip 2001:db8::/32", protocol: "ipv6") == [4])
        #expect(try filteringBytes("src_ip 2001:db8:1::/48", protocol: "ipv6") == [4])
        #expect(try filteringBytes("src_ip 2001:db8:1:2::/64", protocol: "ipv6") == [8])
        #expect(try filteringBytes("dst_ip 2001:db8::1/128", protocol: "ipv6") == [8])
        #expect(try filteringBytes("ip_proto tcp dst_port 53") == [2])
        #expect(try filteringBytes("ip_proto tcp dst_port 50-53") == [])
    }

    /// A rule with a field no rule of the tables reads, in a word they read (ip_tos beside
    /// ip_proto), needs a program that extracts it: either the change says so, or the
    /// program is the same (`TableShape` holds the fields; `LiveTableTests` has the frames).
    @Test func aNewFieldInAWordTheTablesReadIsInTheProgram() throws {
        var plan = try Plan(ruleSet(["filter add dev xft0 protocol ip prio 2 handle 1 flower ip_proto udp action drop"]),
                            device: testDevice, inlineLimit: 0)
        let before = plan
        let change = try plan.add(#require(ruleSet(
            ["filter add dev xft0 protocol ip prio 1 handle 1 flower ip_proto udp ip_tos 0x28/0xfc action pass"]).rules.first))
        #expect(plan.tables?.words == before.tables?.words, "ip_tos is in ip_proto's word")
        let sameProgram = try CodeGenerator.generate(plan) == CodeGenerator.generate(before)
        #expect(!change.keepsProgram || sameProgram, "the change keeps a program that does not read ip_tos")
    }
}

/// A plan and its rule set changed together, a step at a time, each step checked
/// against the plan built from the rules (`check`).
struct ChangeWalk {
    var rules: RuleSet
    var plan: Plan
    let context: String

    struct Stats: CustomStringConvertible {
        var adds = 0, removes = 0, batches = 0, refused = 0, newPrograms = 0
        /// Changes that kept the program and brought a new table, a new prio, or took a table.
        var newTablesKept = 0, newPriosKept = 0, tablesGoneKept = 0
        /// Crossings of the inline limit: into tables, out of them.
        var crossedUp = 0, crossedDown = 0

        var description: String {
            "\(adds) adds, \(removes) removes, \(batches) batches, \(refused) refused, \(newPrograms) new programs; "
                + "kept with a new table \(newTablesKept), a new prio \(newPriosKept), a table gone \(tablesGoneKept); "
                + "crossed into tables \(crossedUp), out \(crossedDown)"
        }
    }

    var stats = Stats()

    init(seed: UInt64, inlineLimit: Int, ruleCapacity: Int) throws {
        rules = RuleSet()
        plan = try Plan(rules, device: testDevice, ruleCapacity: ruleCapacity, inlineLimit: inlineLimit)
        context = "seed 0x\(String(seed, radix: 16))"
    }

    init(rules: RuleSet, inlineLimit: Int) throws {
        self.rules = rules
        plan = try Plan(rules, device: testDevice, inlineLimit: inlineLimit)
        context = "\(rules.count) rules"
    }

    /// One random step: an add (`grow`) or a remove, alone or with up to two more in one
    /// `RuleChange` through `Plan.apply`; `draw` gives rules to add (the set may refuse them).
    mutating func step(_ step: Int, _ rng: inout SeededRandom, grow: Bool,
                       _ draw: (RuleSet, inout SeededRandom) -> FlowRule) throws {
        let note = "step \(step)"
        if rng.chance(0.25) {
            // Several rules in one change, as a batch records them.
            var next = rules, change = RuleChange(), removed: [FlowRule] = [], added: [FlowRule] = []
            for _ in 0 ..< rng.int(0 ... 2) where !next.rules.isEmpty {
                let rule = rng.pick(next.rules)
                guard (try? next.delete(RuleSelector(chain: 0, prio: rule.prio, handle: rule.handle))) != nil else { continue }
                removed.append(rule)
            }
            for _ in 0 ..< rng.int(grow ? 1 ... 3 : 0 ... 1) {
                if let stored = try? next.add(draw(next, &rng)) { added.append(stored) }
            }
            change = RuleChange(removed: removed, added: added)
            guard !change.isEmpty else { return }
            try apply(change, to: next, "\(note) (batch of \(removed.count) removed, \(added.count) added)")
        } else if grow || rules.rules.isEmpty {
            var next = rules
            guard let stored = try? next.add(draw(next, &rng)) else { return }
            _ = try add(stored, note, placed: next)
        } else {
            _ = try remove(rng.pick(rules.rules), note)
        }
    }

    /// Adds `rule` to the rules and the plan; a rule the plan refuses leaves both as they
    /// were, and throws.
    @discardableResult
    mutating func add(_ rule: FlowRule, _ note: String) throws -> PlanChange {
        var next = rules
        let stored = try next.add(rule)
        guard let change = try add(stored, note, placed: next) else {
            throw DifferentialFailure(text: "\(context) \(note): the plan refused \(RuleID(stored))")
        }
        return change
    }

    /// Nil when the plan refuses the rule (as the whole rule set's plan must).
    private mutating func add(_ stored: FlowRule, _ note: String, placed next: RuleSet) throws -> PlanChange? {
        let before = plan
        let change: PlanChange
        do {
            change = try plan.add(stored)
        } catch {
            stats.refused += 1
            #expect(plan == before, "\(context) \(note): a refused rule leaves the plan as it was")
            #expect(throws: error, "\(context) \(note): the same refusal as the whole rule set's") {
                try Plan(next, device: testDevice, memory: before.memory, inlineLimit: before.inlineLimit)
            }
            return nil
        }
        rules = next
        stats.adds += 1
        try check(after: before, change, added: [stored], single: true, "\(context) \(note): add \(RuleID(stored))")
        return change
    }

    @discardableResult
    mutating func remove(_ rule: FlowRule, _ note: String) throws -> PlanChange {
        try rules.delete(RuleSelector(chain: 0, prio: rule.prio, handle: rule.handle))
        let before = plan
        let change = plan.remove(RuleID(rule))
        stats.removes += 1
        try check(after: before, change, added: [], single: true, "\(context) \(note): remove \(RuleID(rule))")
        return change
    }

    /// `change`, already made to `next` (the rules after it), through `Plan.apply`.
    private mutating func apply(_ change: RuleChange, to next: RuleSet, _ note: String) throws {
        let before = plan
        let planned: PlanChange
        do {
            planned = try plan.apply(change)
        } catch {
            stats.refused += 1
            #expect(plan == before, "\(context) \(note): a refused change leaves the plan as it was (\(error))")
            return
        }
        rules = next
        stats.batches += 1
        try check(after: before, planned, added: change.added, single: false, "\(context) \(note)")
    }

    /// The plan after `change` against the plan built from the rules; its writes, put into
    /// the maps a new program keeps, against what maps filled afresh hold; the program it
    /// says stays. `added` are the rules the change brought; `single` says it is one rule.
    private mutating func check(after before: Plan, _ change: PlanChange, added: [FlowRule], single: Bool,
                                _ context: String) throws {
        let whole = try Plan(rules, device: testDevice, memory: plan.memory, inlineLimit: plan.inlineLimit)
        #expect(plan == whole, "\(context): the plan differs from the rule set's")
        let switched = (before.tables == nil) != (plan.tables == nil)
        switch (before.tables != nil, plan.tables != nil) {
        case (false, true): stats.crossedUp += 1
        case (true, false): stats.crossedDown += 1
        default: break
        }

        // The maps a program loaded for the plan keeps: same name and spec, and not
        // dropped (a batch that empties a subtable and fills it again, or goes through
        // the other classifier and back, gets new maps, which are filled whole).
        let specs = Dictionary(Datapath.mapSpecs(for: before).map { ($0.name, $0) }) { a, _ in a }
        let kept = Set(Datapath.mapSpecs(for: plan).filter { specs[$0.name] == $0 }.map(\.name))
            .subtracting(change.writes.droppedMaps)
        let writes = change.writes, expected = plan.writes(since: before)
        #expect(expected.droppedMaps.isSubset(of: writes.droppedMaps),
                "\(context): maps whose subtable went are not dropped: \(expected.droppedMaps.subtracting(writes.droppedMaps))")
        // Counters start from zero for every rule that is new or moved; a rule a batch
        // took away and brought back (same prio and handle) also starts again.
        let addedSlots = Set(added.compactMap { plan.slots[RuleID($0)] })
        #expect(expected.counters.isSubset(of: writes.counters) && writes.counters.subtracting(expected.counters).isSubset(of: addedSlots),
                "\(context): counters reset \(writes.counters.sorted()), the difference is \(expected.counters.sorted())")
        if kept.contains(FlowMaps.actions) {
            let model = before.actions.merging(writes.actions) { $1 }
            #expect(plan.actions.allSatisfy { model[$0.key] == $0.value }, "\(context): the actions map after the writes is not the plan's")
        }
        if kept.contains(FlowMaps.redirect) {
            let model = before.redirectTargets.merging(writes.redirectTargets) { $1 }
            #expect(plan.redirectTargets.allSatisfy { model[$0.key] == $0.value }, "\(context): the redirect map is not the plan's")
        }
        if kept.contains(FlowMaps.policers) {
            let model = before.policers.merging(writes.policers) { $1 }
            #expect(plan.policers.allSatisfy { model[$0.key] == $0.value }, "\(context): the policers map is not the plan's")
        }
        let held = Dictionary(before.subtables.map { ($0.mapName, $0.entries) }) { a, _ in a }
        for subtable in plan.subtables where kept.contains(subtable.mapName) {
            var model = held[subtable.mapName] ?? [:]
            for key in writes.removedEntries[subtable.mapName] ?? [] { model[key] = nil }
            model.merge(writes.entries[subtable.mapName] ?? [:]) { $1 }
            #expect(model == subtable.entries, "\(context): \(subtable.mapName) after the writes is not the plan's")
        }
        if let prefilter = plan.prefilter, kept.contains(prefilter.mapName) {
            var model = before.prefilter?.mapName == prefilter.mapName ? before.prefilter!.table : [:]
            model.merge(writes.prefilter) { $1 }
            #expect(model.filter { $0.value != 0 } == prefilter.table, "\(context): the prefilter after the writes is not the plan's")
        }
        if let after = plan.tables, let earlier = before.tables {
            var model = TableMapsModel(earlier)
            model.apply(writes.tables, of: after)
            let fresh = TableMapsModel(after)
            let expectations = {
                #expect(!kept.contains(FlowMaps.rules) || model.rules == fresh.rules,
                        "\(context): the rules map after the writes is not the plan's (words \(earlier.words) -> \(after.words))")
                #expect(!kept.contains(FlowMaps.buckets) || model.buckets == fresh.buckets,
                        "\(context): the buckets map after the writes is not the plan's (words \(earlier.words) -> \(after.words))")
                #expect(!kept.contains(FlowMaps.tables) || (model.list == fresh.list && model.entries == fresh.entries),
                        "\(context): the tables list after the writes is not the plan's (words \(earlier.words) -> \(after.words))")
                #expect(!kept.contains(FlowMaps.tableFilter) || model.filter == fresh.filter,
                        "\(context): the table filter after the writes is not the plan's")
            }
            expectations()
        }
        if single, !switched {
            // One rule within one classifier: outside the tables, exactly the difference
            // (as PlanChangeTests has it for inline plans).
            var got = writes, difference = expected
            got.tables = TableWrites()
            difference.tables = TableWrites()
            #expect(got == difference, "\(context): the writes are not the difference: \(got.differences(from: difference))")
        }

        let sameProgram = try CodeGenerator.generate(plan) == CodeGenerator.generate(before)
        let sameMaps = Datapath.mapSpecs(for: plan) == Datapath.mapSpecs(for: before)
        if change.keepsProgram {
            let message: Comment = "\(context): the program changed but the change says it stays (\(before.classifierText) -> \(plan.classifierText), fields \(before.fields.map(\.name).sorted()) -> \(plan.fields.map(\.name).sorted()))"
            #expect(sameProgram, message)
            #expect(sameMaps, "\(context): a map changed but the change says the program stays")
        } else {
            stats.newPrograms += 1
        }
        if single, before.tables != nil, plan.tables != nil, TableProgramShape(before) == TableProgramShape(plan) {
            #expect(change.keepsProgram, """
                \(context): between table plans of the same words, capacities, layers and actions \
                (\(TableProgramShape(plan))), a new program
                """)
        }
        if change.keepsProgram, let after = plan.tables, let earlier = before.tables {
            if after.tables.keys.contains(where: { earlier.tables[$0] == nil }) { stats.newTablesKept += 1 }
            if earlier.tables.keys.contains(where: { after.tables[$0] == nil }) { stats.tablesGoneKept += 1 }
            let prios = Set(earlier.rules.values.map(\.prio))
            if after.rules.values.contains(where: { !prios.contains($0.prio) }) { stats.newPriosKept += 1 }
        }
    }
}

/// What of a table plan its program and maps follow, as far as the plan shows it: equal
/// for two plans, a change between them is map writes.
struct TableProgramShape: Equatable, CustomStringConvertible {
    var fields: Set<KeyField>
    var words: [Int]
    var usesRanges: Bool
    var tableCapacity: Int
    var bucketCapacity: Int
    var ruleCapacity: Int
    var policerCapacity: Int
    var keyLayers: UInt8
    var stepKinds: Set<ActionStep.Kind>
    var maxSteps: Int
    var usesContinue: Bool
    var broadcastGroups: Int

    init(_ plan: Plan) {
        fields = plan.fields
        words = plan.tables?.words ?? []
        usesRanges = plan.tables?.usesRanges ?? false
        tableCapacity = plan.tables?.tableCapacity ?? 0
        bucketCapacity = plan.tables?.bucketCapacity ?? 0
        ruleCapacity = plan.ruleCapacity
        policerCapacity = plan.policerCapacity
        keyLayers = plan.keyLayers.rawValue
        stepKinds = plan.stepKinds
        maxSteps = plan.maxSteps
        usesContinue = plan.usesContinue
        broadcastGroups = plan.broadcastIndex.count
    }

    var description: String {
        "words \(words), ranges \(usesRanges), \(tableCapacity) tables, \(bucketCapacity) buckets, "
            + "\(ruleCapacity) rules, layers \(keyLayers), \(stepKinds.count) step kinds"
    }
}

/// What the table classifier's four maps hold, as `Datapath` writes them: checks by
/// slot (a slot without one holds the vacant check, here: nothing), chain heads by place
/// (a place without one holds 0, here: nothing), and the current list.
struct TableMapsModel: Equatable {
    var rules: [UInt32: [UInt8]] = [:]
    var buckets: [UInt32: UInt32] = [:]
    /// The current list, then the filtered tables' entries by index and the filter.
    var list: [[UInt8]] = []
    var entries: [UInt32: [UInt8]] = [:]
    var filter: [UInt32: [UInt64]] = [:]

    /// Maps filled afresh for `tables`.
    init(_ tables: TupleTables) {
        let words = tables.words
        for (slot, rule) in tables.rules { rules[slot] = rule.check(next: tables.next(after: slot), words: words).encodedBytes }
        for place in tables.chains.keys { buckets[place] = tables.head(at: place) }
        list = tables.list.map { TableEntry.encoded($0, words: words) }
        for table in tables.filtered {
            entries[table.index] = TableEntry.encoded(table, words: words, later: tables.later[table.index]!)
        }
        for key in tables.filter.indexes { filter[key] = tables.filter.bits(at: key, words: tables.filterWords) }
    }

    /// `writes` for `tables` (the plan after the change) into maps kept: the checks of
    /// the slots named (vacant where the rule went), the places named (0 where the chain
    /// went), the list when it changed.
    mutating func apply(_ writes: TableWrites, of tables: TupleTables) {
        let words = tables.words
        for slot in writes.rules {
            rules[slot] = tables.rules[slot].map { $0.check(next: tables.next(after: slot), words: words).encodedBytes }
        }
        for place in writes.buckets {
            let head = tables.head(at: place)
            buckets[place] = head == 0 ? nil : head
        }
        if writes.list { list = tables.list.map { TableEntry.encoded($0, words: words) } }
        let filtered = Dictionary(uniqueKeysWithValues: tables.filtered.map { ($0.index, $0) })
        for index in writes.entries {
            entries[index] = filtered[index].map { TableEntry.encoded($0, words: words, later: tables.later[$0.index]!) }
        }
        for key in writes.filter {
            let bits = tables.filter.bits(at: key, words: tables.filterWords)
            filter[key] = bits.allSatisfy { $0 == 0 } ? nil : bits
        }
    }
}

extension MapWrites {
    /// The fields in which `self` and `other` differ, named, with what each holds.
    func differences(from other: MapWrites) -> String {
        var found: [String] = []
        if counters != other.counters { found.append("counters \(counters.sorted()) vs \(other.counters.sorted())") }
        if actions != other.actions { found.append("actions \(actions.keys.sorted()) vs \(other.actions.keys.sorted())") }
        if redirectTargets != other.redirectTargets { found.append("redirectTargets \(redirectTargets) vs \(other.redirectTargets)") }
        if policers != other.policers { found.append("policers \(policers.keys.sorted()) vs \(other.policers.keys.sorted())") }
        if entries != other.entries { found.append("entries in \(entries.keys.sorted()) vs \(other.entries.keys.sorted())") }
        if removedEntries != other.removedEntries {
            found.append("removedEntries in \(removedEntries.keys.sorted()) vs \(other.removedEntries.keys.sorted())")
        }
        if prefilter != other.prefilter { found.append("prefilter \(prefilter.count) vs \(other.prefilter.count) indexes") }
        if droppedMaps != other.droppedMaps {
            found.append("droppedMaps: only here \(droppedMaps.subtracting(other.droppedMaps).sorted()), "
                + "only there \(other.droppedMaps.subtracting(droppedMaps).sorted())")
        }
        return found.joined(separator: "; ")
    }
}

extension PlanChange {
    /// The list or a filtered table's entry changed: a table came, went or moved.
    var changesTables: Bool { writes.tables.list || !writes.tables.entries.isEmpty }
}

extension Plan {
    var classifierText: String {
        tables.map { "tables: \($0.tables.count), words \($0.words)" } ?? "inline: \(subtables.count) subtables"
    }
}


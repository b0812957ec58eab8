import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import Packets
import Testing

/// A plan changed a rule at a time (`Plan.add`, `Plan.remove`) is the plan built from
/// its rules: random rules of every kind (`RuleGenerator`) are added and removed, and
/// after each step the plan must equal `Plan(rules, memory:)` (subtables, entries, the
/// outvoted entries of key collisions, indexes, capacities), its map writes must be the
/// difference between the two plans, and a change that keeps the program must really
/// keep it (same instructions, same map specs). Pure: no kernel.
@Suite struct PlanChangeTests {
    static let seeds: [UInt64] = (0 ..< UInt64(FuzzSettings.cases(24))).map { 0x5ca1e + $0 &* 0x9e37_79b9 }

    @Test(arguments: seeds) func ruleByRuleEqualsTheWholeRuleSet(seed: UInt64) throws {
        _ = try walk(seed: seed, inlineLimit: Plan.defaultInlineLimit)
    }

    /// With room for two subtables inline, the generator's 1-4 prios take a plan past
    /// the inline limit and back by their number alone, where the plan stops counting
    /// its subtables and counts them afresh (`Plan.Usage.subtableKeys`).
    @Test func ruleByRuleEqualsTheWholeRuleSetAcrossTheInlineLimit() throws {
        var crossed = 0
        for seed in Self.seeds.prefix(8) where try walk(seed: seed, inlineLimit: 2) { crossed += 1 }
        #expect(crossed > 0, "no walk went past the inline limit and back")
    }

    /// A plan's memory reads back as written, and a rule's slot written by an earlier
    /// version (an object, not one number) reads too.
    @Test func memoryReadsBackAndReadsTheEarlierForm() throws {
        var rng = SeededRandom(seed: 7)
        let generator = RuleGenerator(pool: ValuePool(&rng), &rng)
        let memory = try Plan(generator.ruleSet(count: 40, &rng), device: testDevice, inlineLimit: 0).memory
        #expect(memory.slots.count > 10 && memory.tables != nil)
        #expect(try JSONDecoder().decode(Plan.Memory.self, from: JSONEncoder().encode(memory)) == memory)
        let earlier = #"[{"prio": 3, "handle": 2}, {"prio": 65535, "handle": 4294967295}]"#
        #expect(try JSONDecoder().decode([RuleID].self, from: Data(earlier.utf8))
            == [RuleID(prio: 3, handle: 2), RuleID(prio: 65535, handle: 0xffff_ffff)])
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([RuleID].self, from: Data("[281474976710656]".utf8)) }
    }

    /// Adds and removes random rules, checking the plan after each step; whether the
    /// plan was in tables, then inline again.
    private func walk(seed: UInt64, inlineLimit: Int) throws -> Bool {
        var rng = SeededRandom(seed: seed)
        let generator = RuleGenerator(pool: ValuePool(&rng), &rng)
        var rules = RuleSet()
        var plan = try Plan(rules, device: testDevice, ruleCapacity: rng.pick([4, 64, Plan.defaultRuleCapacity]),
                            inlineLimit: inlineLimit)
        var stats = (adds: 0, removes: 0, refused: 0, newPrograms: 0)
        var (wentPast, cameBack) = (false, false)
        for step in 0 ..< 160 {
            defer {
                wentPast = wentPast || plan.tables != nil
                cameBack = cameBack || wentPast && plan.tables == nil
            }
            let context = "seed \(seed) step \(step)"
            if rules.count == 0 || rng.chance(0.6) {
                let prio = rng.pick(generator.prios)
                let held = rules.rules.first { $0.prio == prio }?.filterProtocol
                var rule = generator.rule(prio: prio, filterProtocol: held ?? rng.pick([.ip, .ipv6, .all, .vlan]), &rng)
                if rng.chance(0.3) { rule.handle = UInt32(rng.int(1 ... 40)) }
                var next = rules
                guard let stored = try? next.add(rule) else { continue }
                let before = plan
                do {
                    let change = try plan.add(stored)
                    rules = next
                    stats.adds += 1
                    if !change.keepsProgram { stats.newPrograms += 1 }
                    try check(plan, after: before, change, rules, context)
                } catch let error as CompileError {
                    stats.refused += 1
                    #expect(plan == before, "\(context): a refused rule leaves the plan as it was")
                    #expect(throws: error, "\(context): the same refusal as the whole rule set's") {
                        try Plan(next, device: testDevice, memory: before.memory, inlineLimit: inlineLimit)
                    }
                }
            } else {
                let rule = rng.pick(rules.rules)
                try rules.delete(RuleSelector(chain: 0, prio: rule.prio, handle: rule.handle))
                let before = plan
                let change = plan.remove(RuleID(rule))
                stats.removes += 1
                if !change.keepsProgram { stats.newPrograms += 1 }
                try check(plan, after: before, change, rules, context)
            }
        }
        #expect(stats.adds > 40 && stats.removes > 20 && stats.newPrograms > 0, "\(stats)")
        return cameBack
    }

    private func check(_ plan: Plan, after before: Plan, _ change: PlanChange, _ rules: RuleSet,
                       _ context: String) throws {
        let whole = try Plan(rules, device: testDevice, memory: plan.memory, inlineLimit: plan.inlineLimit)
        #expect(plan == whole, "\(context): the plan differs from the rule set's")
        var writes = change.writes, expected = plan.writes(since: before)
        // What the runtime writes whole whatever the writes say is left out: a subtable
        // map that is new (Datapath fills a map it did not keep with all its plan holds),
        // and past the inline limit the tables, of which `writes(since:)` gives every write
        // and a change the exact ones (TablePlanChangeTests holds those to a model of the maps).
        let held = Set(before.subtables.map(\.mapName))
        for subtable in plan.subtables where !held.contains(subtable.mapName) {
            writes.entries[subtable.mapName] = nil
            expected.entries[subtable.mapName] = nil
        }
        if plan.tables != nil || before.tables != nil { (writes.tables, expected.tables) = (TableWrites(), TableWrites()) }
        #expect(writes == expected, "\(context): the writes are not the difference")
        if change.keepsProgram {
            #expect(try CodeGenerator.generate(plan) == CodeGenerator.generate(before),
                    "\(context): the program changed but the change says it stays")
            #expect(Datapath.mapSpecs(for: plan) == Datapath.mapSpecs(for: before),
                    "\(context): a map changed but the change says the program stays")
        }
    }

    @Test func aKeyHeldByALowerHandleGoesToTheNextInLine() throws {
        // One key for all three: a range, a mask that covers the same ports, and the range
        // again on this device (indev is not part of the key).
        let lines = ["filter add dev xft0 protocol ip prio 1 handle 3 flower ip_proto udp dst_port 8-9 action drop",
                     "filter add dev xft0 protocol ip prio 1 handle 1 flower ip_proto udp dst_port 8/0xfffe action pass",
                     "filter add dev xft0 protocol ip prio 1 handle 2 flower indev xft0 ip_proto udp dst_port 8-9 action pass"]
        let all = try ruleSet(lines).rules
        var rules = RuleSet()
        var plan = try Plan(rules, device: testDevice)
        for rule in all.sorted(by: { $0.handle > $1.handle }) {
            try rules.add(rule)
            _ = try plan.add(rule)
        }
        let subtable = try #require(plan.subtables.first)
        #expect(subtable.entries.values.map(\.handle) == [1])
        #expect(subtable.outvoted.values.map { $0.map(\.handle) } == [[2, 3]])
        let change = plan.remove(RuleID(prio: 1, handle: 1))
        #expect(plan.subtables.first?.entries.values.map(\.handle) == [2])
        #expect(change.writes.entries.values.flatMap(\.values).map(\.handle) == [2], "the key is rewritten for handle 2")
        #expect(change.keepsProgram)
    }
}

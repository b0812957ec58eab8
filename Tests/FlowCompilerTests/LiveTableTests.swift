import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Packets
import RuleSetWorkloads
import Testing

/// A live rule set classified by tables (ClassBench's acl1_1000: 902 prios, far past the
/// inline limit): rules with new masks and new prios come and go as map writes into the
/// running program, and after each change the program classifies as the reference
/// classifier does with the rules now held, and the table maps hold exactly what maps
/// filled afresh for the plan would.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct LiveTableTests {
    func rule(_ line: String) throws -> FlowRule {
        var rule = try #require(ruleSet([line]).rules.first)
        rule.handle = 0  // as written: the set allocates it
        return rule
    }

    @Test func newMasksAndPriosInTablesAreMapWritesAndClassifyAsTheReference() throws {
        let base = try ClassBench.load("acl1_1000", device: testDevice).rules
        let live = try LiveRuleSet(base, device: testDevice, options: CompileOptions(recordMatches: true),
                                   targetIndex: { _ in 1 })
        let startTables = try #require(live.datapath.plan.tables, "902 prios: tables").tables.count
        let program = try #require(live.datapath.program?.id)
        var draw = TraceGenerator(rules: RuleSet(), seed: 0x11fe)
        try agree(live, "as loaded")

        /// Carries one change and checks that it was map writes into the same program.
        func expectMapWrites(_ change: LiveRuleSet.Change, _ note: String) {
            guard case .mapWrites(let count) = change else {
                Issue.record("\(note): map writes expected, got \(change)")
                return
            }
            #expect(count > 0, "\(note)")
            #expect(live.datapath.program?.id == program, "\(note): the same program runs")
        }
        func tableCount() -> Int { live.datapath.plan.tables?.tables.count ?? 0 }

        // A new mask at the best prio (protocol, ip_proto and a /16 destination: fields
        // the tables read, a combination no table has): a new table, second in the list.
        var (added, change) = try live.add(rule(
            "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_ip 10.1.0.0/16 action pass"))
        expectMapWrites(change, "new mask at prio 1")
        #expect(tableCount() == startTables + 1)
        #expect(live.datapath.plan.tables?.lookupOrder.dropFirst().first?.rank == UInt64(1) << 32 | UInt64(added.handle))
        let best = added
        try agree(live, "new mask at prio 1", extra: (0 ..< 8).map { _ in draw.frame(matching: best) })

        // A new prio below every rule, with a new mask.
        (added, change) = try live.add(rule(
            "filter add dev xft0 protocol ip prio 2000 flower src_ip 10.9.8.0/24 action drop"))
        expectMapWrites(change, "new prio 2000, new mask")
        #expect(tableCount() == startTables + 2)
        let last = added
        try agree(live, "new prio 2000", extra: (0 ..< 8).map { _ in draw.frame(matching: last) })

        // A new prio with the mask of a rule the set has: a bucket of its table.
        var copy = try #require(base.rules.first { $0.prio == 400 })
        copy.prio = 950
        copy.handle = 0
        (added, change) = try live.add(copy)
        expectMapWrites(change, "new prio 950, existing mask")
        #expect(tableCount() == startTables + 2)
        let copied = added
        try agree(live, "new prio 950", extra: (0 ..< 8).map { _ in draw.frame(matching: copied) })

        // A prio emptied and taken again by a rule of another mask, in the middle of the set.
        let middle = try #require(base.rules.first { $0.prio == 300 })
        let wasHit = (0 ..< 8).map { _ in draw.frame(matching: middle) }
        (_, change) = try live.delete(RuleSelector(prio: 300, handle: middle.handle))
        expectMapWrites(change, "prio 300 deleted")
        try agree(live, "prio 300 deleted", extra: wasHit)
        (added, change) = try live.add(rule(
            "filter add dev xft0 protocol ip prio 300 flower dst_ip 192.0.2.0/24 action drop"))
        expectMapWrites(change, "prio 300 again, new mask")
        #expect(tableCount() == startTables + 3)
        let again = added
        try agree(live, "prio 300 again", extra: wasHit + (0 ..< 8).map { _ in draw.frame(matching: again) })

        // Two rules of new masks and prios in one change, as a batch carries them.
        let pair = try ruleSet([
            "filter add dev xft0 protocol ip prio 1500 handle 1 flower src_ip 198.51.100.0/24 ip_proto tcp dst_port 443 action drop",
            "filter add dev xft0 protocol ip prio 1501 handle 1 flower src_ip 203.0.113.0/24 ip_proto udp action pass",
        ]).rules
        expectMapWrites(try live.apply(RuleChange(removed: [], added: pair)), "a batch of two")
        #expect(tableCount() == startTables + 5)
        try agree(live, "a batch of two", extra: pair.flatMap { rule in (0 ..< 4).map { _ in draw.frame(matching: rule) } })

        // A table whose only rule goes goes with it (one of ClassBench's), and the new
        // rules go again, their tables with them.
        let tables = try #require(live.datapath.plan.tables)
        let loneRule = try #require(base.rules.first { rule in
            let rank = UInt64(rule.prio) << 32 | UInt64(rule.handle)
            return live.rules.rule(prio: rule.prio, handle: rule.handle) == rule
                && tables.lookupOrder.contains { $0.ruleCount == 1 && $0.rank == rank }
        }, "acl1_1000 has tables of one rule")
        let loneHit = (0 ..< 8).map { _ in draw.frame(matching: loneRule) }
        (_, change) = try live.delete(RuleSelector(prio: loneRule.prio, handle: loneRule.handle))
        expectMapWrites(change, "a table's only rule deleted")
        #expect(tableCount() == startTables + 4)
        try agree(live, "a table's only rule deleted", extra: loneHit)

        for gone in [best, last, copied, again] + pair {
            let hit = (0 ..< 4).map { _ in draw.frame(matching: gone) }
            (_, change) = try live.delete(RuleSelector(prio: gone.prio, handle: gone.handle))
            expectMapWrites(change, "\(RuleID(gone)) deleted")
            try agree(live, "\(RuleID(gone)) deleted", extra: hit)
        }
        #expect(tableCount() == startTables - 1)
        #expect(live.rules.count == base.count - 2)
    }

    /// A rule reading ip_tos, which the tables' rules do not, in the word ip_proto is in:
    /// the program must extract the TOS (a new program), or frames it matches find the
    /// rule below instead.
    @Test func aRuleWithANewFieldInAReadWordClassifiesAsTheReference() throws {
        let live = try adopted(["filter add dev xft0 protocol ip prio 2 handle 1 flower ip_proto udp action drop"])
        let tos = try ruleSet(["filter add dev xft0 protocol ip prio 1 handle 1 flower ip_proto udp ip_tos 0x28/0xfc action pass"]).rules
        try live.apply(RuleChange(removed: [], added: tos))
        var draw = TraceGenerator(rules: RuleSet(), seed: 1)
        try agree(live, "ip_tos added", extra: (0 ..< 4).map { _ in draw.frame(matching: tos[0]) })
    }

    /// Replacing the only rule that reads one word (dst_mac) by one that reads another
    /// (dst_port) keeps the number of words, and so the maps' sizes, but not their layout:
    /// the table maps are made afresh, or the new program misses the rule that did not
    /// change.
    @Test func aChangeThatTradesAWordClassifiesAsTheReference() throws {
        let kept = "filter add dev xft0 protocol ip prio 1 handle 1 flower ip_proto udp src_ip 10.0.0.1 action drop"
        let mac = "filter add dev xft0 protocol ip prio 2 handle 1 flower dst_mac 02:00:00:00:00:01 action pass"
        let port = "filter add dev xft0 protocol ip prio 2 handle 1 flower ip_proto tcp dst_port 80 action pass"
        let live = try adopted([kept, mac])
        let words = live.datapath.plan.tables?.words
        try live.apply(RuleChange(removed: ruleSet([mac]).rules, added: ruleSet([port]).rules))
        #expect(live.datapath.plan.tables?.words.count == words?.count && live.datapath.plan.tables?.words != words)
        var draw = TraceGenerator(rules: RuleSet(), seed: 2)
        let frames = try (0 ..< 4).map { _ in draw.frame(matching: try #require(live.rules.rule(prio: 1, handle: 1))) }
        try agree(live, "dst_mac traded for dst_port", extra: frames)
    }

    /// A live rule set of `lines` classified by tables however few they are: a datapath
    /// of their `inlineLimit` 0 plan, adopted.
    func adopted(_ lines: [String]) throws -> LiveRuleSet {
        let rules = try ruleSet(lines)
        let plan = try Plan(rules, device: testDevice, inlineLimit: 0)
        let datapath = try Datapath(plan: plan, options: CompileOptions(recordMatches: true), targetIndex: { _ in 1 })
        return LiveRuleSet(adopting: rules, datapath: datapath, slot: nil, targetIndex: { _ in 1 })
    }

    /// Frames drawn for the rules held (a fifth random) and `extra` get the reference's
    /// verdicts, and the table maps hold what the plan says.
    func agree(_ live: LiveRuleSet, _ note: String, extra: [[UInt8]] = []) throws {
        var trace = TraceGenerator(rules: live.rules, seed: UInt64(live.rules.count))
        let frames = extra + trace.frames(count: 100, missShare: 0.2)
        var reference = try ReferenceClassifier(rules: live.rules, device: testDevice)
        let result = try run(frames, through: live.datapath, reference: &reference)
        #expect(result.disagreements.isEmpty, """
            \(note): \(result.disagreements.count) of \(frames.count) frames differ from the reference; first:
            \(result.disagreements.prefix(3).joined(separator: "\n"))
            """)
        if let tables = live.datapath.plan.tables {
            for problem in try audit(tables, live.datapath.maps) { Issue.record("\(note): \(problem)") }
        }
    }

    /// The kernel's table maps against maps filled afresh for `tables`.
    func audit(_ tables: TupleTables, _ maps: [String: BPFKernel.Map]) throws -> [String] {
        let fresh = TableMapsModel(tables)
        var found: [String] = []
        let rulesMap = try #require(maps[FlowMaps.rules]), bucketsMap = try #require(maps[FlowMaps.buckets])
        let listMap = try #require(maps[FlowMaps.tables])
        let vacant = RuleCheck.vacant(words: tables.words.count).encodedBytes
        let zero = [UInt8](repeating: 0, count: vacant.count)
        for (key, value) in try rulesMap.lookupBatch(batchSize: 65536) {
            let slot = try UInt32(decoding: key)
            let expected = fresh.rules[slot]
            if expected == nil ? value != vacant && value != zero : value != expected {
                found.append("\(FlowMaps.rules) slot \(slot) holds \(hex(value)), the plan \(expected.map(hex) ?? "none")")
            }
        }
        var kernel: [UInt32: UInt32] = [:]
        for (key, value) in try bucketsMap.lookupBatch(batchSize: 65536) {
            let head = try UInt32(decoding: value)
            if head != 0 { kernel[try UInt32(decoding: key)] = head }
        }
        if kernel != fresh.buckets {
            let extra = kernel.keys.filter { fresh.buckets[$0] == nil }.count
            let missing = fresh.buckets.keys.filter { kernel[$0] == nil }.count
            let other = fresh.buckets.keys.filter { kernel[$0] != nil && kernel[$0] != fresh.buckets[$0] }.count
            found.append("\(FlowMaps.buckets): \(extra) buckets the plan lacks, \(missing) missing, \(other) with another head")
        }
        let capacity = UInt32(tables.tableCapacity)
        let head = try #require(try listMap.lookup((2 * capacity).encodedBytes))
        let listHead = try TableListHead(decoding: Array(head.prefix(TableListHead.byteCount)))
        let half = listHead.generation & 1
        let listed = Int(half == 0 ? listHead.counts.0 : listHead.counts.1)
        var list: [[UInt8]] = []
        for position in 0 ..< UInt32(listed) {
            list.append(try #require(try listMap.lookup((half * capacity + position).encodedBytes)))
        }
        if list != fresh.list { found.append("\(FlowMaps.tables): the current half lists \(listed) tables, not the plan's \(fresh.list.count)") }
        return found
    }
}

import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import KernelTestSupport
import Packets
import Testing

/// Rule changes through the library: a rule that fits the running program is map
/// writes and acts at once; one that needs a subtable is a new program; a change the
/// kernel refuses leaves rules, plan and traffic as they were.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct LiveRuleSetTests {
    let port53 = "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 53 action drop"
    let port54 = "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 54 action drop"
    let prefix = "filter add dev xft0 protocol ip prio 2 flower dst_ip 198.51.100.0/24 action drop"

    func live(_ lines: [String], targets: [String: UInt32] = ["xft1": 1],
              ruleCapacity: Int = Plan.defaultRuleCapacity) throws -> LiveRuleSet {
        try LiveRuleSet(ruleSet(lines), device: testDevice, options: CompileOptions(recordMatches: true),
                        ruleCapacity: ruleCapacity) {
            (name: String) throws(BPFError) in
            guard let index = targets[name] else { throw .noSuchDevice(name) }
            return index
        }
    }

    func rule(_ line: String) throws -> FlowRule { try #require(ruleSet([line]).rules.first.map { rule in
        var rule = rule
        rule.handle = 0  // as written: the set allocates it
        return rule
    }) }

    func packets(_ live: LiveRuleSet, _ rule: FlowRule) throws -> UInt64 {
        try live.datapath.counters()[try #require(live.datapath.plan.slots[RuleID(rule)])]?.packets ?? 0
    }

    @Test func aRuleInAnExistingSubtableActsAtOnceInTheSameProgram() throws {
        let live = try live([port53])
        let program = live.datapath.program?.id
        #expect(try live.datapath.trace(udp4(dst: 54).bytes).verdict == .pass)

        let (added, change) = try live.add(rule(port54))
        #expect(added.handle == 2)
        #expect(change == .mapWrites(2), "the subtable entry and the new rule's counters; 'drop' is shared")
        #expect(live.datapath.program?.id == program)
        let trace = try live.datapath.trace(udp4(dst: 54).bytes)
        #expect(trace.verdict == .drop)
        #expect(trace.matched == [RuleID(added)])
        #expect(try packets(live, added) == 1)

        let (removed, deleted) = try live.delete(RuleSelector(prio: 1, handle: added.handle))
        #expect(removed == [added])
        #expect(deleted == .mapWrites(1))
        #expect(live.datapath.program?.id == program)
        #expect(try live.datapath.trace(udp4(dst: 54).bytes).verdict == .pass)
        #expect(try live.datapath.trace(udp4(dst: 53).bytes).verdict == .drop)
        #expect(live.rules.rules.count == 1)
    }

    @Test func aRuleInANewSubtableIsANewProgramAndCountersStay() throws {
        let live = try live([port53])
        let first = live.datapath.program?.id
        _ = try live.datapath.trace(udp4(dst: 53).bytes)
        let kept = try #require(live.rules.rules.first)

        let (added, change) = try live.add(rule(prefix))
        guard case .newProgram(let id) = change else {
            Issue.record("a new subtable needs a new program, got \(change)")
            return
        }
        #expect(id != first && live.datapath.program?.id == id)
        #expect(try live.datapath.trace(udp4(dst: 80, to: IPv4Address("198.51.100.7")!).bytes).matched == [RuleID(added)])
        #expect(try packets(live, kept) == 1, "the counters map is kept")

        let (_, deleted) = try live.delete(RuleSelector(prio: 2, handle: added.handle))
        #expect(deleted != .mapWrites(1), "the subtable goes with its last rule: a new program")
        #expect(try live.datapath.trace(udp4(dst: 80, to: IPv4Address("198.51.100.7")!).bytes).verdict == .pass)
        #expect(try live.datapath.trace(udp4(dst: 53).bytes).verdict == .drop)
        #expect(try packets(live, kept) == 2)
    }

    @Test func aChangeTheKernelRefusesLeavesEverythingAsItWas() throws {
        // A redirect rule already there: a second one to another device fits the program,
        // but that device has no ifindex.
        let live = try live([port53, "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 7 action mirred egress redirect dev xft1"])
        let rules = live.rules, plan = live.datapath.plan, program = live.datapath.program?.id
        let bad = try rule("filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 54 action mirred egress redirect dev xft9")
        #expect(throws: OffloadError.self) { try live.add(bad) }
        #expect(live.rules == rules)
        #expect(live.datapath.plan == plan)
        #expect(live.datapath.program?.id == program)
        #expect(try live.datapath.trace(udp4(dst: 54).bytes).verdict == .pass)

        // The same where the rule needs a new program (a new subtable): the kernel's maps
        // are untouched until the new program is accepted.
        let badPrefix = try rule("filter add dev xft0 protocol ip prio 3 flower dst_ip 198.51.100.0/24 action mirred egress redirect dev xft9")
        #expect(throws: OffloadError.self) { try live.add(badPrefix) }
        #expect(live.rules == rules)
        #expect(live.datapath.plan == plan)
        #expect(live.datapath.program?.id == program)
        #expect(try live.datapath.trace(udp4(dst: 53).bytes).verdict == .drop)

        // And then a good change still goes through the fast path.
        #expect(try live.add(rule(port54)).change == .mapWrites(2))
    }

    @Test func aChangeLargerThanThePlanIsPlannedWholeAsRuleByRuleWouldPlanIt() throws {
        let police = "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 9 action police rate 8bit burst 1500 conform-exceed drop/pass"
        let live = try live([port53, police])
        _ = try live.datapath.trace(udp4(dst: 53).bytes)
        let kept = try #require(live.rules.rules.first)
        let program = live.datapath.program?.id
        let rules = live.rules, plan = live.datapath.plan, maps = live.datapath.maps
        // Past LiveRuleSet's threshold for a whole plan, and more than the plan holds.
        let lines = (0 ..< 1_500).map { index in
            "filter add dev xft0 protocol ip prio \(2 + index % 3) flower dst_ip 198.51.\(index / 250).\(index % 250) action drop"
        }

        // Refused whole (a redirect target without an ifindex): nothing changes.
        let refused = try ruleSet(lines.map { $0.replacingOccurrences(of: "action drop", with: "action mirred egress redirect dev xft9") }).rules
        #expect(throws: OffloadError.self) { try live.apply(RuleChange(removed: [], added: refused)) }
        #expect(live.rules == rules)
        #expect(live.datapath.plan == plan)
        #expect(live.datapath.program?.id == program)
        #expect(try live.datapath.trace(udp4(dst: 53).bytes).verdict == .drop)
        #expect(try packets(live, kept) == 2)

        let added = try ruleSet(lines).rules
        var ruleByRule = live.datapath.plan
        _ = try ruleByRule.apply(RuleChange(removed: [], added: added))
        let change = try live.apply(RuleChange(removed: [], added: added))
        guard case .newProgram(let id) = change else {
            Issue.record("a change larger than the plan is a new program, got \(change)")
            return
        }
        #expect(id != program)
        #expect(live.datapath.plan == ruleByRule)
        // The classifier's maps are new; the others are the running ones.
        for name in [FlowMaps.counters, FlowMaps.actions, FlowMaps.policers] {
            #expect(live.datapath.maps[name] === maps[name], "\(name) is kept")
        }
        #expect(try packets(live, kept) == 2, "the counters map is kept")
        let last = try #require(added.last)
        #expect(try live.datapath.trace(udp4(dst: 80, to: IPv4Address("198.51.5.249")!).bytes).matched == [RuleID(last)])
        #expect(try live.datapath.trace(udp4(dst: 53).bytes).verdict == .drop)
        #expect(try packets(live, kept) == 3)
    }

    /// What the store does before a change goes live (it waits for its journal's sync)
    /// can refuse it; the kernel then never saw the change, and nothing is written back.
    @Test func aChangeStoppedBeforeItGoesLiveLeavesTheKernelAlone() throws {
        let live = try live([port53, port54])
        _ = try live.datapath.trace(udp4(dst: 53).bytes)
        let first = try #require(live.rules.rules.first)
        let rules = live.rules, plan = live.datapath.plan
        #expect(throws: OffloadError.self) {
            try live.update({ rules, change in
                try FilterCommand(device: testDevice, operation: .delete(RuleSelector(prio: 1, handle: first.handle)))
                    .apply(to: &rules, recording: &change)
            }, beforeLive: { () throws(OffloadError) in throw .countersNeedRoot })
        }
        #expect(live.rules == rules)
        #expect(live.datapath.plan == plan)
        #expect(try packets(live, first) == 1, "its counter was not written back")
        #expect(try live.datapath.trace(udp4(dst: 53).bytes).matched == [RuleID(first)])
    }

    @Test func theRuleCapacityDoublesAndTheCountersMoveToTheLargerMap() throws {
        let live = try live([port53], ruleCapacity: 1)
        _ = try live.datapath.trace(udp4(dst: 53).bytes)
        let kept = try #require(live.rules.rules.first)
        let counters = try #require(live.datapath.maps[FlowMaps.counters])

        let (added, change) = try live.add(rule(port54))
        guard case .newProgram = change else {
            Issue.record("the counters outgrow their map: a new program, got \(change)")
            return
        }
        #expect(live.datapath.plan.ruleCapacity == 2)
        #expect(live.datapath.maps[FlowMaps.counters] !== counters)
        #expect(try packets(live, kept) == 1, "the first rule's count moved with it")
        #expect(try live.datapath.trace(udp4(dst: 54).bytes).matched == [RuleID(added)])
        #expect(try packets(live, added) == 1)
    }

    @Test func anAttachedRuleSetSwapsNewProgramsInWithoutTouchingTheLink() throws {
        let lab = try VethLab()
        let live = try LiveRuleSet(ruleSet([port53]), device: testDevice, attachingTo: lab.device, mode: .native,
                                   targetIndex: { _ in 1 })
        let slot = try #require(live.slot)
        let attached = XDPLink.attachedProgramID(lab.device)
        #expect(attached == slot.entry.id, "the entry program is what the device runs")
        func verdict(_ frame: FrameBuilder) throws -> XDPAction? { try slot.entry.testRun(TestRun(packet: frame.bytes)).action }
        #expect(try verdict(udp4(dst: 53)) == .drop)

        let first = live.datapath.program?.id
        let (added, change) = try live.add(rule(prefix))
        #expect(change != .mapWrites(1) && live.datapath.program?.id != first, "a new subtable: a new program")
        #expect(XDPLink.attachedProgramID(lab.device) == attached, "swapped in behind the same entry program")
        #expect(try verdict(udp4(dst: 80, to: IPv4Address("198.51.100.7")!)) == .drop)
        #expect(try verdict(udp4(dst: 53)) == .drop)

        try live.delete(RuleSelector(prio: added.prio, handle: added.handle))
        #expect(try verdict(udp4(dst: 80, to: IPv4Address("198.51.100.7")!)) == .pass)
    }
}

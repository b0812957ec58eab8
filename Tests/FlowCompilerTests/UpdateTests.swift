import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Packets
import Testing

/// Rule changes: a rule in an existing subtable is a map update, a new shape a new
/// program over the same maps, and counters stay with their rules.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct UpdateTests {
    let port53 = "filter add dev xft0 protocol ip prio 1 handle 1 flower ip_proto udp dst_port 53 action drop"
    let port54 = "filter add dev xft0 protocol ip prio 1 handle 2 flower ip_proto udp dst_port 54 action drop"
    let prefix = "filter add dev xft0 protocol ip prio 2 handle 1 flower dst_ip 198.51.100.0/24 action pass"

    func counted(_ datapath: Datapath, _ rule: RuleID) throws -> UInt64 {
        try datapath.counters()[datapath.plan.slots[rule]!]?.packets ?? 0
    }

    @Test func aRuleInAnExistingSubtableIsOneMapWrite() throws {
        let live = try LiveRuleSet(ruleSet([port53]), device: testDevice, options: CompileOptions(recordMatches: true),
                                   targetIndex: { _ in 1 })
        let program = live.datapath.program?.id
        #expect(try live.datapath.trace(udp4(dst: 54).bytes).verdict == .pass)

        #expect(try live.add(ruleSet([port54]).rules[0]).change == .mapWrites(2),
                "one subtable entry, and the new rule's counters set to zero; 'drop' is shared")
        #expect(live.datapath.program?.id == program)
        #expect(try live.datapath.trace(udp4(dst: 54).bytes).matched == [RuleID(prio: 1, handle: 2)])

        #expect(try live.delete(RuleSelector(prio: 1, handle: 1)).change == .mapWrites(1), "one entry removed")
        #expect(try live.datapath.trace(udp4(dst: 53).bytes).verdict == .pass)
    }

    @Test func aNewShapeIsANewProgramOverTheSameMapsAndCountersSurvive() throws {
        let first = try Plan(ruleSet([port53]), device: testDevice)
        let old = try Datapath(plan: first, options: CompileOptions(recordMatches: true), targetIndex: { _ in 1 })
        _ = try old.trace(udp4().bytes)
        _ = try old.trace(udp4().bytes)

        let second = try Plan(ruleSet([port53, prefix]), device: testDevice, after: first)
        let new = try Datapath(plan: second, options: CompileOptions(recordMatches: true), targetIndex: { _ in 1 },
                               replacing: old)
        #expect(new.program?.id != old.program?.id)
        let subtable = first.subtables[0].mapName
        #expect(new.maps[subtable] === old.maps[subtable], "the subtable map is shared, not copied")
        #expect(try counted(new, RuleID(prio: 1, handle: 1)) == 2)
        #expect(try new.trace(udp4(dst: 80).bytes).matched == [RuleID(prio: 2, handle: 1)])
        #expect(try new.trace(udp4().bytes).verdict == .drop)
        #expect(try counted(new, RuleID(prio: 1, handle: 1)) == 3)

        // The rule goes and another takes its slot: it starts from zero.
        let third = try Plan(ruleSet([prefix, port54]), device: testDevice, after: second)
        let newest = try Datapath(plan: third, options: CompileOptions(recordMatches: true), targetIndex: { _ in 1 },
                                  replacing: new)
        #expect(third.slots[RuleID(prio: 1, handle: 2)] == second.slots[RuleID(prio: 1, handle: 1)])
        #expect(try counted(newest, RuleID(prio: 1, handle: 2)) == 0)
    }

    /// The value types FlowCompiler declares fit the maps a datapath creates, and read
    /// back what the planner wrote and the program counted.
    @Test func theDatapathsMapsOpenAsTheirValueTypes() throws {
        let rules = ["filter add dev xft0 protocol ip prio 1 handle 1 flower ip_proto udp dst_port 53 "
                     + "action police rate 1mbit burst 10k conform-exceed drop/pass"]
        let plan = try Plan(ruleSet(rules), device: testDevice)
        let datapath = try Datapath(plan: plan, options: CompileOptions(recordMatches: true), targetIndex: { _ in 1 })
        let rule = RuleID(prio: 1, handle: 1)
        _ = try datapath.trace(udp4(dst: 53).bytes)

        let counters = try PerCPUArray<RuleCounters>(#require(datapath.maps[FlowMaps.counters]))
        let perCPU = try #require(try counters.get(datapath.plan.slots[rule]!))
        #expect(perCPU.map(\.packets).reduce(0, +) == 1)
        let policers = try ArrayMap<PolicerBucket>(#require(datapath.maps[FlowMaps.policers]))
        let (index, policer) = try #require(plan.policers.first)
        #expect(try policers.get(index)?.capacity == policer.capacity)
        let trace = try ArrayMap<TraceLog>(#require(datapath.maps[FlowMaps.trace]))
        #expect(try trace.get(0) == TraceLog(slots: [datapath.plan.slots[rule]!]))
        let subtable = try #require(plan.subtables.first)
        let entries = try ArrayMap<SubtableValue>(#require(datapath.maps[subtable.mapName]))
        let entry = try #require(try entries.get(53), "a direct subtable: the port is the index")
        #expect(entry == subtable.entries.values.first)
        let actions = try ArrayMap<ActionProgram>(#require(datapath.maps[FlowMaps.actions]))
        #expect(try actions.get(entry.action) == plan.actions[entry.action])
    }

    /// The prefilter's bits follow the entries: set for a new rule's /16, cleared when
    /// the last entry there goes, and the program's verdicts follow.
    @Test func prefilterBitsFollowTheEntries() throws {
        let base = ["filter add dev xft0 protocol ip prio 1 handle 1 flower dst_ip 10.1.0.1 action drop",
                    "filter add dev xft0 protocol ip prio 2 handle 1 flower dst_ip 10.2.0.0/24 action drop"]
        let added = "filter add dev xft0 protocol ip prio 2 handle 2 flower dst_ip 10.3.0.0/24 action drop"
        let live = try LiveRuleSet(ruleSet(base), device: testDevice, options: CompileOptions(recordMatches: true),
                                   targetIndex: { _ in 1 })
        let first = live.datapath.plan
        let frame = udp4(to: IPv4Address(rawValue: 0x0a03_0009)).bytes
        #expect(try live.datapath.trace(frame).verdict == .pass)

        #expect(try live.add(ruleSet([added]).rules[0]).change == .mapWrites(3),
                "the entry, its counters and its /16's bit")
        #expect(live.datapath.plan.prefilter?.mapName == first.prefilter?.mapName, "the same subtables: the same map")
        #expect(try live.datapath.trace(frame).matched == [RuleID(prio: 2, handle: 2)])

        #expect(try live.delete(RuleSelector(prio: 2, handle: 2)).change == .mapWrites(2), "the entry and the bit")
        let datapath = live.datapath
        let prefilter = try #require(datapath.plan.prefilter)
        let index = UInt32(0x030a)  // 10.3, as the program's half-word load reads it
        #expect(try ArrayMap<UInt64>(#require(datapath.maps[prefilter.mapName])).get(index) == 0)
        #expect(try datapath.trace(frame).verdict == .pass)
    }
}

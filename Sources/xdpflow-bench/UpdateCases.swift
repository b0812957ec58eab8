import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import Packets

/// Rule changes through the library (`LiveRuleSet`) on an attached datapath, one call at
/// a time; and a million exact flows loaded at once.
enum UpdateCases {
    static func sections(_ options: Options) throws -> [Section] {
        try [latency(options)] + scale(options)
    }

    /// How many changes a round makes, and how many rounds.
    struct Sizes {
        var baseRules = 10_000
        var existing: Int
        var newSubtable: Int
        var rounds: Int
        var flows: Int

        init(quick: Bool) {
            existing = quick ? 200 : 1_000
            newSubtable = quick ? 20 : 100
            rounds = quick ? 1 : 3
            flows = quick ? 100_000 : 1_000_000
        }
    }

    // MARK: - Latency

    /// One kind of change: its samples (microseconds) per round, and the changes it made.
    struct Latency {
        var name: String
        var rounds: [[Double]] = []
        var changes: Set<String> = []

        /// p50, p99 and max of each round, as samples over the rounds.
        func percentile(_ fraction: Double) -> Samples {
            Samples(rounds.map { round in
                let sorted = round.sorted()
                return sorted[min(sorted.count - 1, Int((fraction * Double(sorted.count)).rounded(.up)) - 1)]
            })
        }
    }

    static func latency(_ options: Options) throws -> Section {
        let sizes = Sizes(quick: options.quick)
        let groups = 16
        progress("loading \(sizes.baseRules.grouped) rules in \(groups) subtables and attaching them...")
        let veth = try AttachVeth()
        defer { veth.remove() }
        let live = try LiveRuleSet(RuleSet(RuleLines.rules(RuleLines.prefixes(sizes.baseRules, groups: groups))),
                                   device: RuleLines.device, attachingTo: veth.interface, mode: .native,
                                   targetIndex: { _ in 1 })
        // New /32s in prio 1 (the /32 subtable), past the base set's entries there.
        let firstNew = sizes.baseRules / groups + 1
        let hosts = try RuleLines.rules((0 ..< sizes.existing).map { index in
            "filter add dev \(RuleLines.device) prio 1 protocol ip flower dst_ip "
                + "\(RuleLines.prefix(group: 0, entry: firstNew + index)) action drop"
        })
        // A rule in a prio of its own: a new subtable, so a new program. Either of the
        // kind the set holds (a dst_ip prefix), or one that needs a key layer the program
        // does not parse yet (ports), which costs the verifier more.
        let prefixes = try RuleLines.rules((0 ..< sizes.newSubtable).map { index in
            "filter add dev \(RuleLines.device) prio 100 protocol ip flower dst_ip 192.0.\(index % 256).0/24 action drop"
        })
        let ports = try RuleLines.rules((0 ..< sizes.newSubtable).map { index in
            "filter add dev \(RuleLines.device) prio 100 protocol ip flower ip_proto udp dst_port \(1000 + index) "
                + "action drop"
        })
        var added = Latency(name: "add, existing subtable"), deleted = Latency(name: "delete, existing subtable")
        var newSubtable = [(Latency(name: "add, new subtable (a dst_ip prefix)"),
                            Latency(name: "delete, new subtable (a dst_ip prefix)"), prefixes),
                           (Latency(name: "add, new subtable and key layer (udp dst_port)"),
                            Latency(name: "delete, new subtable and key layer (udp dst_port)"), ports)]
        for round in 1 ... sizes.rounds {
            progress("round \(round): \(sizes.existing) adds and deletes in an existing subtable, "
                + "\(sizes.newSubtable) in a new one...")
            var times = ([Double](), [Double]())
            var stored: [FlowRule] = []
            for rule in hosts {
                let (result, time) = try timed { try live.add(rule) }
                try expect(result.change, keepsProgram: true, live, frame: frame(rule), verdict: .drop)
                times.0.append(time / 1e3)
                added.changes.insert(result.change.kind)
                stored.append(result.rule)
            }
            for rule in stored {
                let (result, time) = try timed { try live.delete(RuleSelector(prio: rule.prio, handle: rule.handle)) }
                try expect(result.change, keepsProgram: true, live, frame: frame(rule), verdict: .pass)
                times.1.append(time / 1e3)
                deleted.changes.insert(result.change.kind)
            }
            added.rounds.append(times.0)
            deleted.rounds.append(times.1)
            for index in newSubtable.indices {
                times = ([], [])
                for rule in newSubtable[index].2 {
                    let (result, time) = try timed { try live.add(rule) }
                    try expect(result.change, keepsProgram: false, live, frame: frame(rule), verdict: .drop)
                    times.0.append(time / 1e3)
                    newSubtable[index].0.changes.insert(result.change.kind)
                    let (removal, removalTime) = try timed {
                        try live.delete(RuleSelector(prio: result.rule.prio, handle: result.rule.handle))
                    }
                    try expect(removal.change, keepsProgram: false, live, frame: frame(rule), verdict: .pass)
                    times.1.append(removalTime / 1e3)
                    newSubtable[index].1.changes.insert(removal.change.kind)
                }
                newSubtable[index].0.rounds.append(times.0)
                newSubtable[index].1.rounds.append(times.1)
            }
        }

        var section = Section(
            slug: "update", title: "Rule update latency (library call, attached datapath)",
            method: """
                `LiveRuleSet.add` and `.delete` on a datapath attached in native mode to a veth (\(veth.name)), \
                holding \(sizes.baseRules.grouped) dst_ip prefixes in \(groups) subtables (with its prefilter). \
                Wall time of each call, one change at a time: RuleSet, plan and map writes, and for a new \
                subtable the new program through the verifier and swapped into the slot the attached entry \
                program tail-calls (`ProgramSlot`: a prog_array update, not bpf_link_update). Map writes and \
                the swap are synchronous, so the rule acts when the call returns; after each call (outside the \
                timed span) the frame the rule matches is run through the attached program with \
                BPF_PROG_TEST_RUN and must get the new verdict. *Existing subtable*: \(sizes.existing.grouped) new /32s added to the \
                /32 subtable one at a time, then deleted one at a time. *New subtable*: a rule in a prio of its \
                own, added then deleted, \(sizes.newSubtable) times: a dst_ip /24, like the set's rules, and \
                a udp dst_port, which also makes the program parse ports (a new key layer: the verifier's \
                work triples). Nearly all of a new subtable's time is the verifier's: it grows with the \
                subtables the program looks up. p50, p99 and max of each round; \
                \(sizes.rounds) round\(sizes.rounds == 1 ? "" : "s"), median (min-max) over the rounds. \
                Process start and the CLI are not included (the CLI comparison is the operator section's).
                """,
            columns: [Column("change", key: "change", .left), Column("samples", key: "samples"),
                      Column("p50 us", key: "p50_us"), Column("p99 us", key: "p99_us"),
                      Column("max us", key: "max_us"), Column("kernel side", key: "kernel_side", .left)])
        for latency in [added, deleted] + newSubtable.flatMap({ [$0.0, $0.1] }) {
            section.append([.text(latency.name), .count(latency.rounds.map(\.count).reduce(0, +)),
                            .samples(latency.percentile(0.5), digits: 1), .samples(latency.percentile(0.99), digits: 1),
                            .samples(latency.percentile(1), digits: 1), .text(latency.changes.sorted().joined(separator: ", "))])
        }
        section.targets = [
            Target("update, rule in an existing subtable (library): p50", measured: added.percentile(0.5).median,
                   .atMost, 50, unit: "us"),
        ] + newSubtable.map { latency, _, _ in
            Target("update, \(latency.name.dropFirst(5)) (library, new program): p50",
                   measured: latency.percentile(0.5).median / 1e3, .atMost, 5, unit: "ms")
        }
        return section
    }

    /// The frame a benchmark rule matches: UDP to its dst_ip or dst_port.
    static func frame(_ rule: FlowRule) -> [UInt8] {
        guard case .v4(let address)? = rule.match.dstIP else {
            guard case .masked(let port)? = rule.match.dstPort else { preconditionFailure("a dst_ip or dst_port rule") }
            return Frames.udp(dst: Frames.nowhere, dstPort: port.value)
        }
        return Frames.udp(dst: address.value, dstPort: 9)
    }

    /// Checks that a change took the path it claims and that the running program now
    /// gives the frame `verdict`: a sample of the wrong path measures nothing.
    static func expect(_ change: LiveRuleSet.Change, keepsProgram: Bool, _ live: LiveRuleSet, frame: [UInt8],
                       verdict: XDPAction) throws {
        guard case .mapWrites = change else {
            guard !keepsProgram else { throw BenchError("a rule in an existing subtable took a new program") }
            return try expect(live, frame, verdict)
        }
        guard keepsProgram else { throw BenchError("a rule in a new subtable kept the program") }
        try expect(live, frame, verdict)
    }

    static func expect(_ live: LiveRuleSet, _ frame: [UInt8], _ verdict: XDPAction) throws {
        // The program attached: it runs the datapath's through its slot.
        let result = try (live.slot?.entry ?? live.datapath.program!).testRun(TestRun(packet: frame))
        guard result.action == verdict else {
            throw BenchError("after the change the frame got \(result.action.map { "\($0)" } ?? "\(result.returnValue)"), "
                + "expected \(verdict)")
        }
    }

    // MARK: - A million flows

    /// The phases of loading exact 5-tuple flows from parsed rules: the rule set, the
    /// plan, the program, and the datapath (maps created and filled, program loaded).
    enum Phase: String, CaseIterable {
        case ruleSet = "RuleSet"
        case plan = "Plan"
        case codeGenerator = "CodeGenerator"
        case load = "Datapath load"
        case total = "total"
    }

    static func scale(_ options: Options) throws -> [Section] {
        let sizes = Sizes(quick: options.quick)
        progress("parsing \(sizes.flows.grouped) 5-tuple rules...")
        let rules = try RuleLines.rules(RuleLines.fiveTuples(sizes.flows))
        let last = LastDatapath()
        let benchmark = Benchmark("flows\(sizes.flows)", metrics: Phase.allCases.map(\.rawValue)) {
            last.datapath = nil  // the previous round's maps go before the next are made
            let (ruleSet, ruleSetTime) = try timed { try RuleSet(rules) }
            let (plan, planTime) = try timed { try Plan(ruleSet, device: RuleLines.device) }
            let (_, generateTime) = try timed { try CodeGenerator.generate(plan) }
            let (datapath, loadTime) = try timed { try Datapath(plan: plan, targetIndex: { _ in 1 }) }
            last.datapath = datapath
            let times = [ruleSetTime, planTime, generateTime, loadTime]
            return (times + [times.reduce(0, +)]).map { $0 / 1e6 }
        }
        let rounds = options.quick ? 1 : 3
        progress("loading them, \(rounds) round\(rounds == 1 ? "" : "s") after a warm-up...")
        let result = try Benchmark.alternate([benchmark], rounds: rounds)[0]
        let total = result[Phase.total.rawValue]

        var load = Section(
            slug: "flows", title: "\(sizes.flows.grouped) exact 5-tuple flows: from rules to the kernel",
            method: """
                \(sizes.flows.grouped) rules `src_ip A dst_ip B ip_proto udp src_port P dst_port Q action drop` \
                in one prio (one hash subtable), parsed beforehand (not timed). Wall time of each phase from \
                the parsed FlowRule values until every entry is in the kernel: RuleSet (add's checks), Plan, \
                CodeGenerator, and Datapath load (maps created, among them \(sizes.flows.grouped) per-CPU \
                counter slots; the subtable filled with BPF_MAP_UPDATE_BATCH, 64k entries a call; the program \
                through the verifier). \(rounds) round\(rounds == 1 ? "" : "s") after a warm-up round; median \
                (min-max).\(options.quick ? " Quick run: 100,000 flows (the goal is for 1,000,000)." : "")
                """,
            columns: [Column("phase", key: "phase", .left), Column("ms", key: "ms"), Column("share", key: "share")])
        for phase in Phase.allCases {
            let samples = result[phase.rawValue]
            load.append([.text(phase.rawValue), .samples(samples, digits: 1),
                         .text("\((100 * samples.median / total.median).formatted(0))%")])
        }
        load.append([.text("flows/s"), .number(Double(sizes.flows) / (total.median / 1e3), digits: 0), .text("")])
        if !options.quick {
            load.targets = [Target("\(sizes.flows.grouped) flows inserted (parsed rules to every entry in the kernel)",
                                   measured: total.median / 1e3, .atMost, 5, unit: "s")]
        }

        guard let datapath = last.datapath else { throw BenchError("no datapath loaded") }
        let cases = [try PacketCase.floor(),
                     PacketCase.xdpflow("\(sizes.flows.grouped) 5-tuples, hit", slug: "flows-hit", datapath,
                                        frame: Frames.udp(FiveTuple(sizes.flows / 2)), verdict: .drop),
                     PacketCase.xdpflow("\(sizes.flows.grouped) 5-tuples, miss", slug: "flows-miss", datapath,
                                        frame: Frames.udp(dst: Frames.nowhere, dstPort: 9), verdict: .pass)]
        for packetCase in cases { try packetCase.check() }
        progress("timing a hit among them, \(options.rounds) rounds of \(options.repeatCount.grouped) runs...")
        let costs = try Benchmark.alternate(cases.map { $0.benchmark(repeatCount: options.repeatCount) },
                                            rounds: options.rounds).map { $0[PacketCase.metric] }
        var packets = Section(
            slug: "flows_packets", title: "\(sizes.flows.grouped) exact 5-tuple flows: per-packet cost",
            method: """
                The datapath of the last round above: BPF_PROG_TEST_RUN with \(options.repeatCount.grouped) \
                repeats of one frame, the floor (XDP_DROP only) alternated with the hit (flow \
                \((sizes.flows / 2).grouped)) and a miss, \(options.rounds) rounds after a warm-up; median (min-max).
                """,
            columns: [Column("case", key: "case", .left), Column("ns/packet", key: "ns_per_packet"),
                      Column("x floor", key: "ratio_to_floor")])
        for (packetCase, cost) in zip(cases, costs) {
            packets.append([.text(packetCase.name), .samples(cost, digits: 1),
                            .number(cost.median / costs[0].median, digits: 2)])
        }
        last.datapath = nil
        return [load, packets]
    }

    /// The datapath a round loaded, kept for the packet cost.
    final class LastDatapath {
        var datapath: Datapath?
    }
}

extension LiveRuleSet.Change {
    var kind: String {
        switch self {
        case .mapWrites: "map writes"
        case .newProgram: "new program"
        }
    }
}

/// A veth pair in the root namespace to attach to (`xfbu` + the process id): new
/// programs are swapped in with bpf_link_update as on a real device.
struct AttachVeth {
    let name: String
    let interface: NetworkInterface

    init() throws {
        name = "xfbu\(getpid() % 100_000)"
        try Shell.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"])
        do {
            interface = try NetworkInterface(named: name)
        } catch {
            Shell.attempt(["ip", "link", "del", name])
            throw error
        }
    }

    /// Deleting one end deletes the pair.
    func remove() {
        Shell.attempt(["ip", "link", "del", name])
    }
}

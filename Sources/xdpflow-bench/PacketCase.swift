import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Packets
import SystemPackage

/// A loaded program and the frame it is timed on with BPF_PROG_TEST_RUN.
struct PacketCase {
    var name: String
    /// A short name for files (pins, JSON keys).
    var slug: String
    var rules: Int
    var subtables: Int
    var program: Program
    /// The maps and plan behind the program (none for the floor).
    var datapath: Datapath?
    var frame: [UInt8]
    /// What the program must answer, checked before timing: a benchmark of the wrong
    /// path measures nothing.
    var verdict: XDPAction
    /// The most the case may cost, as a multiple of the floor.
    var target: Double?
    /// The prio of the rule the frame must be counted by, when the case is about where
    /// it matches (the last of 16 subtables).
    var matchedPrio: UInt16?

    /// XDP_DROP and nothing else: the cost of the test-run loop itself.
    static func floor() throws -> PacketCase {
        let program = try Program.loadXDP(name: "bench_floor", instructions: Instruction.return(XDPAction.drop))
        return PacketCase(name: "floor: XDP_DROP only", slug: "floor", rules: 0, subtables: 0, program: program,
                          frame: Frames.udp(dst: Frames.nowhere, dstPort: 9), verdict: .drop)
    }

    /// The program of `datapath` (shared by the hit and miss cases of one rule set) on `frame`.
    static func xdpflow(_ name: String, slug: String, _ datapath: Datapath, frame: [UInt8],
                        verdict: XDPAction, target: Double? = nil, matchedPrio: UInt16? = nil) -> PacketCase {
        PacketCase(name: name, slug: slug, rules: datapath.plan.rules.count, subtables: datapath.plan.subtables.count,
                   program: datapath.program!, datapath: datapath, frame: frame, verdict: verdict, target: target,
                   matchedPrio: matchedPrio)
    }

    /// Runs the frame once: a case that takes another path than it claims measures nothing.
    func check() throws {
        // Counters only when the case names a prio: reading them is a syscall per rule.
        let before = matchedPrio == nil ? [:] : try datapath?.counters() ?? [:]
        let result = try program.testRun(TestRun(packet: frame))
        guard result.action == verdict else {
            throw BenchError("\(name): the frame got \(result.action.map(String.init(describing:)) ?? "\(result.returnValue)"), "
                + "expected \(verdict)")
        }
        guard let prio = matchedPrio, let datapath else { return }
        let counted = try datapath.counters().filter { $0.value.packets != before[$0.key]?.packets ?? 0 }.keys
        let prios = datapath.plan.slots.indexes.filter { counted.contains($0.value) }.map(\.key.prio)
        guard prios == [prio] else {
            throw BenchError("\(name): the frame was counted by rules of prio \(prios), expected one of prio \(prio)")
        }
    }

    static let metric = "ns/packet"

    /// One sample: the kernel's mean duration of `repeatCount` runs.
    func benchmark(repeatCount: Int) -> Benchmark {
        let run = TestRun(packet: frame, repeatCount: repeatCount)
        return Benchmark(slug, metrics: [Self.metric]) { [program] in
            [Double(try program.testRun(run).duration)]
        }
    }
}

extension Datapath {
    /// Compiles `lines`, which must plan into `subtables` subtables, and loads the program.
    static func load(_ lines: [String], subtables: Int) throws -> Datapath {
        let plan = try Plan(RuleSet(RuleLines.rules(lines)), device: RuleLines.device)
        guard plan.subtables.count == subtables else {
            throw BenchError("\(lines.count) rules: \(plan.subtables.count) subtables planned, the case needs \(subtables)")
        }
        return try Datapath(plan: plan, options: CompileOptions(), targetIndex: { _ in 1 })
    }
}

/// The packet cases the brief asks for, floor first.
enum PacketCases {
    static func all() throws -> [PacketCase] {
        let oneRule = try Datapath.load(RuleLines.dnsDrop, subtables: 1)
        let hostRoutes = try Datapath.load(RuleLines.hostRoutes(100), subtables: 1)
        let groups = 16
        let prefixes = try Datapath.load(RuleLines.prefixes(10_000, groups: groups), subtables: groups)
        let inLastGroup = RuleLines.prefix(group: groups - 1, entry: 300).rawValue | 0x1234
        let fiveTuples = try Datapath.load(RuleLines.fiveTuples(10_000), subtables: 1)
        let mixed = try Datapath.load(RuleLines.mixed(1_000), subtables: 4)
        let lastTagged = 1_000 / 4 - 1
        return [
            try .floor(),
            .xdpflow("1 rule (udp dst_port 53), hit", slug: "rule1-hit", oneRule,
                     frame: Frames.udp(dst: Frames.nowhere, dstPort: 53), verdict: .drop, target: 1.2),
            .xdpflow("1 rule (udp dst_port 53), miss", slug: "rule1-miss", oneRule,
                     frame: Frames.udp(dst: Frames.nowhere, dstPort: 54), verdict: .pass),
            .xdpflow("100 dst_ip /32, 1 subtable, hit", slug: "host100-hit", hostRoutes,
                     frame: Frames.udp(dst: RuleLines.hostRoute(49), dstPort: 9), verdict: .drop),
            .xdpflow("100 dst_ip /32, 1 subtable, miss", slug: "host100-miss", hostRoutes,
                     frame: Frames.udp(dst: Frames.nowhere, dstPort: 9), verdict: .pass),
            .xdpflow("10,000 dst_ip /17../32, 16 subtables, hit in the 16th", slug: "prefix10k-hit16", prefixes,
                     frame: Frames.udp(dst: IPv4Address(rawValue: inLastGroup), dstPort: 9), verdict: .drop,
                     target: 2.5, matchedPrio: UInt16(groups)),
            .xdpflow("10,000 dst_ip /17../32, 16 subtables, miss", slug: "prefix10k-miss", prefixes,
                     frame: Frames.udp(dst: Frames.nowhere, dstPort: 9), verdict: .pass, target: 2.5),
            .xdpflow("10,000 udp 5-tuples, 1 subtable, hit", slug: "tuple10k-hit", fiveTuples,
                     frame: Frames.udp(FiveTuple(4321)), verdict: .drop),
            .xdpflow("1,000 mixed IPv4/IPv6/VLAN rules, 4 prios, tagged IPv6 hit in the 4th", slug: "mixed1k-hit",
                     mixed, frame: Frames.taggedUDP6(vlan: RuleLines.mixedVLAN(lastTagged),
                                                     dstPort: RuleLines.mixedPort(lastTagged)),
                     verdict: .drop, matchedPrio: 4),
            .xdpflow("1,000 mixed IPv4/IPv6/VLAN rules, 4 prios, miss", slug: "mixed1k-miss", mixed,
                     frame: Frames.udp(dst: Frames.nowhere, dstPort: 443), verdict: .pass),
        ]
    }
}

extension PacketCases {
    /// Times every case against the floor, alternated round by round.
    static func sections(_ options: Options) throws -> [Section] {
        progress("loading the packet cases...")
        let cases = try all()
        for packetCase in cases { try packetCase.check() }
        if let directory = options.pinDirectory { try pin(cases, in: directory) }
        progress("timing \(cases.count) packet cases, \(options.rounds) rounds of \(options.repeatCount.grouped) runs...")
        let results = try Benchmark.alternate(cases.map { $0.benchmark(repeatCount: options.repeatCount) },
                                              rounds: options.rounds).map { $0[PacketCase.metric] }
        var section = Section(
            slug: "packets", title: "Per-packet cost (BPF_PROG_TEST_RUN)",
            method: """
                The kernel's mean time per run of \(options.repeatCount.grouped) runs of one 60-byte frame \
                (BPF_PROG_TEST_RUN with repeat), one sample per case per round, \(options.rounds) rounds \
                alternating the cases after a warm-up round; median (min-max) over the rounds. The floor is \
                a program that returns XDP_DROP and nothing else: the cost of the test-run loop itself. \
                Each case's verdict (and, where named, the prio that counted the frame) is checked before timing.
                """,
            columns: [Column("case", key: "case", .left), Column("rules", key: "rules"),
                      Column("subtables", key: "subtables"), Column("insns", key: "instructions"),
                      Column("verdict", key: "verdict", .left), Column("ns/packet", key: "ns_per_packet"),
                      Column("x floor", key: "ratio_to_floor")])
        let floor = results[0].median
        for (packetCase, result) in zip(cases, results) {
            let ratio = result.median / floor
            section.append([.text(packetCase.name), .count(packetCase.rules), .count(packetCase.subtables),
                            .count(packetCase.program.slotCount), .text("\(packetCase.verdict)"),
                            .samples(result, digits: 1), .number(ratio, digits: 2)])
            if let target = packetCase.target {
                section.targets.append(Target("\(packetCase.name): ns/packet", measured: ratio, .atMost, target,
                                              unit: "x floor"))
            }
        }
        return [section]
    }

    static func pin(_ cases: [PacketCase], in directory: String) throws {
        try BPFFS.mountIfNeeded()
        try BPFFS.makeDirectories(FilePath(directory))
        for packetCase in cases {
            try packetCase.program.pin(at: FilePath(directory).appending(packetCase.slug))
        }
        progress("pinned the programs in \(directory)")
    }
}

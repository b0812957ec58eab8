import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import Packets
import RuleSetWorkloads

/// Suite "acl" (issue 12): access control lists of the field's shape, classified by the
/// table classifier. The ClassBench sets' load time and cost per packet over a trace;
/// 100,000 generated ACL rules loaded from a file and classified; updates in a loaded
/// 10,000-rule ACL; and live rates on a veth against nftables with the same rules.
enum ACLCases {
    static func sections(_ options: Options) throws -> [Section] {
        let sizes = Sizes(quick: options.quick)
        return [try classBench(options, sizes), try large(options, sizes), try ACLUpdates.section(sizes)]
            + (try ACLLive.sections(options))
    }

    /// How big each trial is; quick runs (`make bench-quick`) take fewer frames, repeats,
    /// rules and updates.
    struct Sizes {
        /// Frames in each trace; test runs of each frame per sample: about a budget's
        /// worth, at most `repeatCount`.
        var frames: Int
        var repeatCount: Int
        var frameBudget: Double
        /// Plan + Datapath loads of each ClassBench set (the last one is timed per packet).
        var loadRounds: Int
        /// Rules of the generated ACL loaded from a file (the goal is for 100,000).
        var largeRules: Int
        var fileRounds: Int
        /// Adds (each deleted again) per kind of update.
        var updates: Int

        init(quick: Bool) {
            frames = quick ? 100 : 300
            repeatCount = quick ? 2_000 : 10_000
            frameBudget = quick ? 200_000 : 1_000_000
            loadRounds = quick ? 1 : 3
            largeRules = quick ? 20_000 : 100_000
            fileRounds = quick ? 1 : 2
            updates = quick ? 25 : 200
        }

        func timing(_ name: String, _ program: Program, _ trace: Trace) throws -> TraceTiming {
            try TraceTiming(name, program: program, trace: trace, maxRepeats: repeatCount, budgetNanoseconds: frameBudget)
        }

        /// How the runs per frame were chosen, for the methods.
        var repeatsText: String {
            "as many BPF_PROG_TEST_RUN repeats of each frame as take about \((frameBudget / 1e6).formatted(1)) ms "
                + "(from a calibration pass of \(TraceTiming.fewestRepeats) each), \(TraceTiming.fewestRepeats) to "
                + "\(repeatCount.grouped)"
        }
    }

    static let classBenchSets = ["acl1_1000", "fw1_1000", "ipc1_1000", "acl1_10000", "fw1_10000", "ipc1_10000"]

    /// Issue 12: at most 5x the floor with 1,000 rules, 8x with 10,000, the ACL 5x.
    static func limit(_ set: String) -> Double {
        set.hasSuffix("_10000") && !set.hasPrefix("acl") ? 8 : 5
    }

    // MARK: - ClassBench

    struct Loaded {
        var name: String
        var rules: Int
        var tables: Int?
        var subtables: Int
        var plan, load, total: Samples
        var datapath: Datapath
        var trace: Trace
    }

    static func classBench(_ options: Options, _ sizes: Sizes) throws -> Section {
        var sets: [Loaded] = []
        for (index, name) in classBenchSets.enumerated() {
            progress("acl: ClassBench \(name): \(sizes.loadRounds) load\(sizes.loadRounds == 1 ? "" : "s"), "
                + "a trace of \(sizes.frames) frames...")
            let workload = try ClassBench.load(name, device: RuleLines.device)
            let (datapath, plan, load, total) = try Datapath.timedLoad(workload.rules, device: RuleLines.device,
                                                                       rounds: sizes.loadRounds)
            let trace = try Trace(workload.rules, device: RuleLines.device, count: sizes.frames, seed: UInt64(index + 1))
            sets.append(Loaded(name: name, rules: workload.rules.rules.count, tables: datapath.plan.tables?.tables.count,
                               subtables: datapath.plan.subtables.count, plan: plan, load: load, total: total,
                               datapath: datapath, trace: trace))
        }
        let floor = try PacketCase.floor()
        let pins = try DispatcherPins([floor.program] + sets.map { $0.datapath.program! })
        defer { pins.remove() }
        for set in sets { try set.trace.check(set.datapath.program!, set.name) }
        let timings = try [sizes.timing("floor", floor.program, sets[0].trace)]
            + sets.map { try sizes.timing($0.name, $0.datapath.program!, $0.trace) }
        progress("acl: timing \(sets.count) traces and the floor, \(options.rounds) rounds of \(sizes.frames) frames "
            + "x \(timings.map { $0.repeatCount.grouped }.joined(separator: "/")) runs...")
        let results = try Benchmark.alternate(timings.map(\.benchmark), rounds: options.rounds)

        var section = Section(
            slug: "acl-classbench", title: "ClassBench sets: load time and cost per packet over a trace",
            method: """
                The ClassBench sets shipped with the project (workloads/classbench: acl1, fw1 and ipc1 \
                at 1,000 and 10,000 rules asked, 749 to 9,738 given), one prio per rule as their README converts \
                them, drop and pass alternating. All of them need more than the \(Plan.defaultInlineLimit) \
                inline subtables, so the table classifier runs them (tables: its tuple-space tables). Load: \
                wall time of `Plan` and `Datapath` (program generated, maps created and filled, the verifier) \
                from the parsed rule set, \(sizes.loadRounds) round\(sizes.loadRounds == 1 ? "" : "s"); \
                median (min-max). Trace: \(sizes.frames) frames from `TraceGenerator` (each hits a rule \
                drawn from the set, ~\(Int(Trace.missShare * 100))% random frames instead, which the sets' \
                final catch-all rules still match), each checked against the reference classifier, then each \
                timed with \(sizes.repeatsText) (runs/frame); a sample is the mean over the frames. The \
                floor (XDP_DROP only) runs the same frames the same way, alternated with the sets round by round, \(options.rounds) rounds after a warm-up; median (min-max), ratios \
                per round. Slowest frame: the frame with the highest median over the rounds. While timed, \
                each program is also attached to a veth of its own, which keeps it in the kernel's XDP \
                dispatcher: otherwise every test run waits for two RCU grace periods, adding it and taking \
                it out again (the time the kernel reports is the same either way).
                """,
            columns: [Column("set", key: "set", .left), Column("rules", key: "rules"), Column("tables", key: "tables"),
                      Column("load ms", key: "load_ms"), Column("plan ms", key: "plan_ms"),
                      Column("datapath ms", key: "datapath_ms"), Column("ns/packet", key: "ns_per_packet"),
                      Column("x floor", key: "ratio_to_floor"), Column("goal", key: "goal_ratio_to_floor"),
                      Column("runs/frame", key: "runs_per_frame"),
                      Column("slowest ns", key: "slowest_ns"), Column("slowest x floor", key: "slowest_ratio_to_floor"),
                      Column("slowest ends in", key: "slowest_prio", .left)])
        let floorMean = results[0][TraceTiming.mean]
        section.append([.text("floor: XDP_DROP only"), .count(0), .absent(""), .absent(""), .absent(""), .absent(""),
                        .samples(floorMean, digits: 1), .number(1, digits: 2), .absent(""),
                        .count(timings[0].repeatCount),
                        .samples(timings[0].slowestFrame.samples, digits: 0), .absent(""), .absent("")])
        for (index, set) in sets.enumerated() {
            let timing = timings[index + 1], result = results[index + 1]
            let ratio = ratios(result[TraceTiming.mean], floorMean)
            let slowest = timing.slowestFrame
            section.append([.text(set.name), .count(set.rules), set.tables.map(Cell.count) ?? .absent("inline"),
                            .samples(set.total, digits: 0), .samples(set.plan, digits: 0), .samples(set.load, digits: 0),
                            .samples(result[TraceTiming.mean], digits: 1), .samples(ratio, digits: 2),
                            .text("<= \(limit(set.name).formatted(0))x"), .count(timing.repeatCount),
                            .samples(slowest.samples, digits: 0),
                            .number(slowest.samples.median / floorMean.median, digits: 2),
                            .text(set.trace.prios[slowest.index].map { "prio \($0)" } ?? "no rule")])
            section.targets.append(Target("ClassBench \(set.name) (\(set.rules.grouped) rules): mean ns/packet over a trace",
                                          measured: ratio.median, .atMost, limit(set.name), unit: "x floor"))
        }
        return section
    }

    /// Round by round, a sample over the floor's sample of the same round.
    static func ratios(_ samples: Samples, _ floor: Samples) -> Samples {
        Samples(zip(samples.values, floor.values).map { $0 / $1 })
    }

    // MARK: - 100,000 rules

    static func large(_ options: Options, _ sizes: Sizes) throws -> Section {
        let count = sizes.largeRules
        progress("acl: generating \(count.grouped) ACL rules...")
        let generator = ACLGenerator(ruleCount: count, rulesPerPrio: 2 ... 2, device: RuleLines.device)
        let lines = generator.lines(seed: 12)
        let workload = try RuleSetWorkload(name: "ACLGenerator seed 12", lines: lines)
        let ipv6 = workload.rules.rules.count { $0.l3EtherType == EtherType.ipv6 }
        let vlan = workload.rules.rules.count { $0.filterProtocol.rawValue.isVLANType }

        progress("acl: xdpflow -batch of \(count.grouped) rules, \(sizes.fileRounds) round(s)...")
        let file = try fileLoad(lines: lines, rules: count, rounds: sizes.fileRounds)

        progress("acl: Plan + Datapath of the same rules in process, and a trace...")
        let (datapath, plan, load, total) = try Datapath.timedLoad(workload.rules, device: RuleLines.device, rounds: 1)
        let trace = try Trace(workload.rules, device: RuleLines.device, count: sizes.frames, seed: 100)
        let floor = try PacketCase.floor()
        let pins = try DispatcherPins([floor.program, datapath.program!])
        defer { pins.remove() }
        try trace.check(datapath.program!, "\(count.grouped) ACL rules")
        let timings = [try sizes.timing("floor", floor.program, trace),
                       try sizes.timing("acl\(count)", datapath.program!, trace)]
        progress("acl: timing the trace and the floor, \(options.rounds) rounds...")
        let results = try Benchmark.alternate(timings.map(\.benchmark), rounds: options.rounds)
        let floorMean = results[0][TraceTiming.mean], mean = results[1][TraceTiming.mean]
        let ratio = ratios(mean, floorMean)
        let slowest = timings[1].slowestFrame
        let prios = Set(workload.rules.rules.map(\.prio)).count

        var section = Section(
            slug: "acl-large", title: "\(count.grouped) ACL rules: from a file, and per packet",
            method: """
                \(count.grouped) rules from `ACLGenerator` (seed 12): \(prios.grouped) prios of 2 rules each (tc has \
                65,535 prios, so one prio per rule cannot hold 100,000), \(ipv6.grouped) on IPv6 and \
                \(vlan.grouped) under a VLAN tag, nesting prefixes, port classes and ranges, drop and pass. \
                *From a file*: `xdpflow -batch FILE` of the real binary (beside xdpflow-bench) on a veth it \
                was attached to beforehand (`xdpflow attach`, not timed), timed from spawn to exit as suite cli \
                does: parsing, the store and its journal, the plan, and every map write in the kernel; the \
                device must then hold all \(count.grouped) rules (`Offload.status`). \(sizes.fileRounds) \
                round\(sizes.fileRounds == 1 ? "" : "s"), detached and attached again between them. *In \
                process*: `Plan` and `Datapath` of the parsed rules (one round), whose program is timed on a \
                trace of \(sizes.frames) frames (as in acl-classbench, ~10% random; \(sizes.repeatsText)) against \
                the floor, \(options.rounds) rounds after a warm-up; median (min-max).\(options.quick ? " Quick run: 20,000 rules (the goals are for 100,000)." : "")
                """,
            columns: [Column("what", key: "what", .left), Column("value", key: "value"), Column("unit", key: "unit", .left)])
        section.append([.text("xdpflow -batch FILE (wall)"), .samples(file.wall, digits: 2), .text("s")])
        section.append([.text("xdpflow -batch FILE (CPU)"), .samples(file.cpu, digits: 2), .text("s")])
        section.append([.text("Plan + Datapath in process"), .samples(total, digits: 0), .text("ms")])
        section.append([.text("  Plan"), .samples(plan, digits: 0), .text("ms")])
        section.append([.text("  Datapath"), .samples(load, digits: 0), .text("ms")])
        section.append([.text("tables"), datapath.plan.tables.map { .count($0.tables.count) } ?? .absent("inline"),
                        .text("")])
        section.append([.text("floor, mean over the trace"), .samples(floorMean, digits: 1), .text("ns/packet")])
        section.append([.text("mean over the trace (\(timings[1].repeatCount.grouped) runs/frame; floor \(timings[0].repeatCount.grouped))"),
                        .samples(mean, digits: 1), .text("ns/packet")])
        section.append([.text("mean over the trace / floor"), .samples(ratio, digits: 2), .text("x floor")])
        section.append([.text("slowest frame (ends in \(trace.prios[slowest.index].map { "prio \($0)" } ?? "no rule"))"),
                        .samples(slowest.samples, digits: 0), .text("ns/packet")])
        section.append([.text("slowest frame / floor"), .number(slowest.samples.median / floorMean.median, digits: 2),
                        .text("x floor")])
        if !options.quick {
            section.targets = [
                Target("\(count.grouped) ACL rules loaded from a file (xdpflow -batch, attached)",
                       measured: file.wall.median, .atMost, 5, unit: "s"),
                Target("\(count.grouped) ACL rules: mean ns/packet over a trace", measured: ratio.median, .atMost, 12,
                       unit: "x floor"),
            ]
        }
        return section
    }

    /// `xdpflow -batch FILE` of `lines` onto an attached veth of a lab of its own, timed
    /// from spawn to exit, `rounds` times; seconds.
    static func fileLoad(lines: [String], rules: Int, rounds: Int) throws -> (wall: Samples, cpu: Samples) {
        try Undo.shared.onSignals {
            defer { Undo.shared.all() }
            let lab = try Lab()
            let pair = try lab.addPair()
            let xdpflow = try Shell.xdpflowBinary()
            let file = "\(lab.stateDirectory)/acl-\(rules).batch"
            try lines.map { $0.replacingOccurrences(of: "dev \(RuleLines.device) ", with: "dev \(pair.device) ") + "\n" }
                .joined().write(toFile: file, atomically: false, encoding: .utf8)
            var wall: [Double] = [], cpu: [Double] = []
            for _ in 0 ..< rounds {
                try Shell.run([xdpflow, "attach", "dev", pair.device])
                let time = try timedCommand([xdpflow, "-batch", file])
                guard let status = try Offload(device: pair.device).status(auditingEntries: false) else {
                    throw BenchError("xdpflow -batch: no offload on \(pair.device) afterwards")
                }
                guard status.rules == rules, status.problems.isEmpty else {
                    throw BenchError("xdpflow -batch: \(status.rules) rules of \(rules) on \(pair.device); "
                        + "problems: \(status.problems)")
                }
                wall.append(time.wall / 1e3)
                cpu.append(time.cpu / 1e3)
                try Shell.run([xdpflow, "detach", "dev", pair.device])
            }
            return (Samples(wall), Samples(cpu))
        }
    }
}

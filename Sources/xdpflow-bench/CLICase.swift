import FlowCompiler
import FlowOffload
import FlowRules
import Foundation

/// Suite "cli": what an operator waits for when adding a rule from the command line,
/// `xdpflow filter add` against `tc filter add` and `nft add rule` on the same machine,
/// where xdpflow's time goes, and how fast each loads a file of rules.
enum CLICases {
    /// Rules every device holds while single rules are added.
    static let existing = 1_000

    static func sections(_ options: Options) throws -> [Section] {
        try Undo.shared.onSignals {
            defer { Undo.shared.all() }
            return try measure(Peers(lab: Lab()), options)
        }
    }

    private static func measure(_ peers: Peers, _ options: Options) throws -> [Section] {
        let many = options.quick ? 10_000 : 100_000, scaleSamples = options.quick ? 10 : 100
        progress("cli: xdpflow filter add with 10 and with \(many.grouped) rules on the device...")
        let scale = try CLIScaleCases(peers: peers).measure(few: 10, many: many, samples: scaleSamples)
        progress("cli: \(existing.grouped) rules on each device, then the checks that can fail...")
        try load(peers, 0 ..< existing)
        try checkNothingActsYet(peers)
        // Quick: an xdpflow sample (add, check, delete) takes a few hundred ms at 1,000 rules.
        let samples = options.quick ? 10 : 200
        progress("cli: \(samples) single adds per tool and case, alternated...")
        let update = try CLIUpdateCases(peers: peers).measure(samples: samples)
        let rounds = options.quick ? 3 : 20
        progress("cli: where xdpflow filter add's time goes, \(rounds) rounds...")
        let breakdown = try AddBreakdown(peers: peers).measure(rounds: rounds)
        let batchRules = options.quick ? 1_000 : 10_000, batchRounds = options.quick ? 1 : 3
        progress("cli: \(batchRules.grouped)-rule files, \(batchRounds) round(s)...")
        let batch = try BatchCases(peers: peers, rules: batchRules).measure(rounds: batchRounds)
        return [update, scale, breakdown, batch]
    }

    /// Each tool's device gets `flows` from a file (untimed).
    static func load(_ peers: Peers, _ flows: Range<Int>) throws {
        let files = try BatchFiles(peers: peers, flows: flows)
        try Shell.run([peers.xdpflow, "-batch", files.xdpflow])
        try Shell.run(["tc", "-batch", files.tc])
        try Shell.run(["nft", "-f", files.nft])
        try peers.nftRulesLoaded()
    }

    /// The checks of the samples must be able to fail: before any add, the frame of the
    /// first sample's flow is taken by no tool.
    static func checkNothingActsYet(_ peers: Peers) throws {
        let flow = FiveTuple(CLIUpdateCases.Case.existingSubtable.firstFlow)
        let wait = Duration.milliseconds(100)
        let taken = [
            ("xdpflow", try peers.xdpflowActs(flow, prio: 1, handle: CLIUpdateCases.firstHandle, within: wait)),
            ("tc", try peers.tcActs(flow, within: wait)),
            ("nft", try peers.nftActs(flow, within: wait) != nil),
        ].filter(\.1).map(\.0)
        guard taken.isEmpty else { throw BenchError("cli: \(taken) took a frame no rule matches yet") }
    }
}

/// The rules of `flows` as a file for each tool, in the lab's state directory.
struct BatchFiles {
    var xdpflow, tc, nft: String

    init(peers: Peers, flows: Range<Int>) throws {
        let base = "\(peers.lab.stateDirectory)/batch-\(flows.count)"
        xdpflow = base + ".xdpflow"
        tc = base + ".tc"
        nft = base + ".nft"
        try peers.xdpflowFile(flows).write(toFile: xdpflow, atomically: false, encoding: .utf8)
        try peers.tcFile(flows).write(toFile: tc, atomically: false, encoding: .utf8)
        try peers.nftFile(flows).write(toFile: nft, atomically: false, encoding: .utf8)
    }
}

/// Single rule adds, timed from the spawn of the command until its exit; the rule is
/// checked to act (a frame sent through the device is taken by it) and then removed,
/// both outside the timed span, so every sample adds to the same `existing` rules.
struct CLIUpdateCases {
    let peers: Peers

    enum Case: CaseIterable {
        /// Same prio and mask as the rules there: XDPFlow writes map entries, tc appends
        /// to the u32 filter of prio 1, nftables appends to the chain.
        case existingSubtable
        /// A new prio: XDPFlow builds, verifies and swaps in a new program; tc creates a
        /// new filter (tcf_proto); nftables has no such structure and appends again.
        case newSubtable

        var prio: Int { self == .existingSubtable ? 1 : 2 }
        /// Each sample adds a flow no rule has yet.
        var firstFlow: Int { self == .existingSubtable ? 20_000 : 30_000 }
        var title: String {
            self == .existingSubtable ? "(a) existing subtable (prio 1)" : "(b) new subtable (new prio 2)"
        }
    }

    /// XDPFlow's handles for the sampled rules, away from the automatic ones.
    static let firstHandle = 100_000
    /// u32's handle for the sampled rule of prio 1 (its own are 800::800 upwards).
    static let tcHandle = "800::fff"

    func measure(samples: Int) throws -> Section {
        let tools = ["xdpflow", "tc", "nft"]
        let benchmarks = Case.allCases.flatMap { [xdpflow($0), tc($0), nft($0)] }
        let results = try Benchmark.alternate(benchmarks, rounds: samples)
        var section = Section(
            slug: "cli-update", title: "Rule update from the command line: start of the command until it exits",
            method: method(samples: samples),
            columns: [Column("case", key: "case", .left), Column("tool", key: "tool", .left),
                      Column("p50 ms", key: "p50_ms"), Column("p99 ms", key: "p99_ms"), Column("max ms", key: "max_ms"),
                      Column("min ms", key: "min_ms"), Column("CPU p50 ms", key: "cpu_p50_ms"),
                      Column("xdpflow p50 / p50", key: "ratio_xdpflow_to_tool")])
        for (index, updateCase) in Case.allCases.enumerated() {
            let row = Array(results[index * tools.count ..< (index + 1) * tools.count])
            let xdpflowMedian = row[0][Self.metrics[0]].median
            // Issue 11: at most tc's p50 in an existing subtable, at most twice it for a new one.
            section.targets.append(Target("xdpflow filter add, \(updateCase.title): p50 / tc filter add p50",
                                          measured: xdpflowMedian / row[1][Self.metrics[0]].median, .atMost,
                                          updateCase == .existingSubtable ? 1 : 2, unit: "x"))
            for (tool, result) in zip(tools, row) {
                let samples = result[Self.metrics[0]]
                section.append([.text(updateCase.title), .text(tool), .number(samples.median, digits: 2),
                                .number(samples.percentile(99), digits: 2), .number(samples.max, digits: 2),
                                .number(samples.min, digits: 2), .number(result[Self.metrics[1]].median, digits: 2),
                                .number(xdpflowMedian / samples.median, digits: 1)])
            }
        }
        return section
    }

    /// Wall and CPU milliseconds of a command (`CommandTime`).
    static let metrics = ["ms", "cpu ms"]

    private func method(samples: Int) -> String {
        """
        Wall time from just before the command is spawned (posix_spawn) until its exit is reaped: \
        process start, the tool's work and its exit, as an operator waits for it. \(samples) samples per \
        tool and case after one warm-up, the six alternated round by round. Each device holds \
        \(CLICases.existing.grouped) exact IPv4/UDP 5-tuple drop rules in prio 1, loaded from a file; each \
        sample adds a rule for a new 5-tuple, then, outside the timed span, sends that flow's frame through \
        the device from the peer namespace and requires the rule to take it (XDPFlow: the rule's counter; \
        tc: the sink device's tx_packets; nftables: the rule's counter), then deletes the rule again. \
        A check that no tool takes such a frame before its rule exists runs first. XDPFlow's program id is \
        checked too: unchanged for (a), new for (b). \
        Commands: `xdpflow filter add dev D prio P handle H protocol ip flower src_ip .. dst_ip .. ip_proto \
        udp src_port .. dst_port .. action drop` (attached, state in a temp directory on ext4, fsync'd); \
        `tc filter add dev D ingress prio P protocol ip u32 match ip src ../32 match ip dst ../32 match ip \
        protocol 17 0xff match ip sport .. 0xffff match ip dport .. 0xffff action mirred egress redirect dev \
        SINK` on clsact (this kernel has neither cls_flower nor act_gact, so not `flower skip_hw ... action \
        drop`: u32 and mirred are what tc can do here; rule parsing and the netlink round trip are tc's \
        either way); `nft add rule netdev T ingress ip saddr .. ip daddr .. udp sport .. udp dport .. \
        counter drop` on a netdev ingress chain. xdpflow's commands go to its command server (started by \
        the first of them, kept warm by the samples; see cli-breakdown for the same add without it). \
        CPU is the command's user and system time (wait4): for xdpflow the client's, without the server's; \
        the gap to the wall time is waiting (fsync, the scheduler). p99 is the nearest-rank percentile (with \(samples) \
        samples it is the \(Int((0.99 * Double(samples)).rounded(.up)))th smallest). \
        For comparison, the seed figures for a first flow from the xdp_flow RFC (bpf-next, 2019, another \
        machine): xdp_flow 22 ms, TC flower 6 ms, OVS kernel module 0.6 ms.
        """
    }

    /// The environment of a command that runs without the command server.
    static let serverOff = ["XDPFLOW_COMMAND_SERVER": "off"]

    /// One sample: `xdpflow filter add` (with `environment`), timed; the program swapped or
    /// not as the case says; the rule takes its frame; the rule deleted (`filter del`).
    func xdpflow(_ updateCase: Case, environment: [String: String] = [:]) -> Benchmark {
        var sample = 0
        return Benchmark("xdpflow \(updateCase)", metrics: Self.metrics) {
            defer { sample += 1 }
            let flow = FiveTuple(updateCase.firstFlow + sample)
            let prio = updateCase.prio, handle = Self.firstHandle + sample
            let program = peers.xdpflowProgramID
            let time = try timedCommand([peers.xdpflow] + RuleWords.xdpflow(
                dev: peers.xdp.device, prio: prio, handle: handle, flow), environment: environment)
            let swapped = peers.xdpflowProgramID != program
            guard swapped == (updateCase == .newSubtable) else {
                throw BenchError("xdpflow \(updateCase): the program was \(swapped ? "" : "not ")swapped")
            }
            guard try peers.xdpflowActs(flow, prio: prio, handle: handle) else {
                throw BenchError("xdpflow \(updateCase): the rule added for \(flow.src) did not take its frame")
            }
            try peers.xdpflowDelete(prio: prio, handle: handle)
            return [time.wall, time.cpu]
        }
    }

    private func tc(_ updateCase: Case) -> Benchmark {
        var sample = 0
        let handle = updateCase == .existingSubtable ? Self.tcHandle : nil
        return Benchmark("tc \(updateCase)", metrics: Self.metrics) {
            defer { sample += 1 }
            let flow = FiveTuple(updateCase.firstFlow + sample)
            let time = try timedCommand(["tc"] + RuleWords.tc(
                dev: peers.tc.device, prio: updateCase.prio, handle: handle, sink: peers.sink.device, flow))
            guard try peers.tcActs(flow) else {
                throw BenchError("tc \(updateCase): the filter added for \(flow.src) did not take its frame")
            }
            try Shell.run(["tc", "filter", "del", "dev", peers.tc.device, "ingress", "prio", "\(updateCase.prio)"]
                          + (handle.map { ["handle", $0, "u32"] } ?? []))
            return [time.wall, time.cpu]
        }
    }

    private func nft(_ updateCase: Case) -> Benchmark {
        var sample = 0
        return Benchmark("nft \(updateCase)", metrics: Self.metrics) {
            defer { sample += 1 }
            let flow = FiveTuple(updateCase.firstFlow + sample)
            let time = try timedCommand(["nft"] + RuleWords.nft(table: peers.table, flow))
            guard let handle = try peers.nftActs(flow) else {
                throw BenchError("nft \(updateCase): the rule added for \(flow.src) did not take its frame")
            }
            try Shell.run(["nft", "delete", "rule", "netdev", peers.table, "ingress", "handle", "\(handle)"])
            return [time.wall, time.cpu]
        }
    }
}

/// `xdpflow filter add` into an existing subtable, with few rules on the device and with
/// many: a command's cost should not grow with the rules the device holds.
struct CLIScaleCases {
    let peers: Peers
    static let firstHandle = 1_000_000

    func measure(few: Int, many: Int, samples: Int) throws -> Section {
        var rows: [(rules: Int, samples: Samples, cpu: Samples, load: Double)] = []
        for rules in [few, many] {
            // With many rules a sample takes long (each command reads them all): fewer.
            let samples = rules == few ? samples : max(5, samples / 5)
            try peers.emptyXDPFlow()
            let file = "\(peers.lab.stateDirectory)/scale-\(rules).xdpflow"
            try peers.xdpflowFile(0 ..< rules).write(toFile: file, atomically: false, encoding: .utf8)
            let load = try timedCommand([peers.xdpflow, "-batch", file])
            let results = try Benchmark.alternate([adds(firstFlow: rules + 1_000)], rounds: samples)
            rows.append((rules, results[0][CLIUpdateCases.metrics[0]], results[0][CLIUpdateCases.metrics[1]],
                         load.wall / 1e3))
        }
        try peers.emptyXDPFlow()
        var section = Section(
            slug: "cli-scale", title: "xdpflow filter add with few and with many rules on the device",
            method: """
                `xdpflow filter add` of a new exact IPv4/UDP 5-tuple drop rule into prio 1 (an existing \
                subtable: map writes), timed from spawn to exit as in cli-update, \(samples) samples (a fifth \
                of them with many rules) after a warm-up, with \(few.grouped) and then \(many.grouped) such rules on the device (loaded with \
                `xdpflow -batch`, whose time is given). Every sample's rule must take its frame; then it is \
                deleted again (`xdpflow filter del`, untimed). The commands go to xdpflow's command server, \
                which keeps the device's plan: the first add after the load reads it.
                """,
            columns: [Column("rules on the device", key: "rules"), Column("p50 ms", key: "p50_ms"),
                      Column("p99 ms", key: "p99_ms"), Column("CPU p50 ms", key: "cpu_p50_ms"),
                      Column("p50 / p50 with \(few.grouped)", key: "ratio_to_few"),
                      Column("-batch load s", key: "load_s")])
        section.targets = [Target("xdpflow filter add with \(many.grouped) rules / with \(few.grouped): p50",
                                  measured: rows[1].samples.median / rows[0].samples.median, .atMost, 1.2, unit: "x")]
        for row in rows {
            section.append([.count(row.rules), .number(row.samples.median, digits: 2),
                            .number(row.samples.percentile(99), digits: 2), .number(row.cpu.median, digits: 2),
                            .number(row.samples.median / rows[0].samples.median, digits: 2),
                            .number(row.load, digits: 2)])
        }
        return section
    }

    private func adds(firstFlow: Int) -> Benchmark {
        var sample = 0
        return Benchmark("xdpflow add", metrics: CLIUpdateCases.metrics) {
            defer { sample += 1 }
            let flow = FiveTuple(firstFlow + sample)
            // Past the handles the file's rules took (1 to `many`).
            let handle = Self.firstHandle + sample
            let time = try timedCommand([peers.xdpflow] + RuleWords.xdpflow(
                dev: peers.xdp.device, prio: 1, handle: handle, flow))
            guard try peers.xdpflowActs(flow, prio: 1, handle: handle) else {
                throw BenchError("cli-scale: the rule added for \(flow.src) did not take its frame")
            }
            try peers.xdpflowDelete(prio: 1, handle: handle)
            return [time.wall, time.cpu]
        }
    }
}

/// A file of `rules` 5-tuples loaded into an empty device (XDPFlow attached with no
/// rules, a fresh clsact, an empty chain), timed like the single adds.
struct BatchCases {
    let peers: Peers
    let rules: Int

    func measure(rounds: Int) throws -> Section {
        let files = try BatchFiles(peers: peers, flows: 0 ..< rules)
        let last = FiveTuple(rules - 1)
        let benchmarks = [
            batch("xdpflow", [peers.xdpflow, "-batch", files.xdpflow], empty: peers.emptyXDPFlow) {
                try peers.xdpflowActs(last, prio: 1, handle: rules)
            },
            batch("tc", ["tc", "-batch", files.tc], empty: peers.emptyTC) { try peers.tcActs(last) },
            batch("nft", ["nft", "-f", files.nft], empty: peers.emptyNFT) { try peers.nftActs(last) != nil },
        ]
        let results = try Benchmark.alternate(benchmarks, rounds: rounds)
        var section = Section(
            slug: "cli-batch", title: "Rules from a file",
            method: """
                \(rules.grouped) exact IPv4/UDP 5-tuple drop rules (one prio) from a file into an empty \
                device: `xdpflow -batch FILE` (attached: all rules reach the kernel before it exits), \
                `tc -batch FILE` (u32 + mirred, as above), `nft -f FILE` (a netdev ingress chain). \
                Timed from spawn to exit; \(rounds) round\(rounds == 1 ? "" : "s") after a warm-up, the tools \
                alternated; the device is emptied before each sample, and after it the last rule of the file \
                must take its flow's frame.
                """,
            columns: [Column("tool", key: "tool", .left), Column("rules", key: "rules"),
                      Column("seconds", key: "seconds"), Column("rules/s", key: "rules_per_second"),
                      Column("xdpflow time / time", key: "ratio_xdpflow_to_tool")])
        let xdpflowMedian = results[0][Self.metric].median
        section.targets = [Target("xdpflow -batch of \(rules.grouped) rules / nft -f of the same: time",
                                  measured: xdpflowMedian / results[2][Self.metric].median, .atMost, 1, unit: "x")]
        for result in results {
            let seconds = result[Self.metric]
            section.append([.text(result.name), .count(rules), .samples(seconds, digits: 3),
                            .count(Int((Double(rules) / seconds.median).rounded())),
                            .number(xdpflowMedian / seconds.median, digits: 1)])
        }
        return section
    }

    static let metric = "s"

    private func batch(_ tool: String, _ command: [String], empty: @escaping () throws -> Void,
                       acts: @escaping () throws -> Bool) -> Benchmark {
        Benchmark(tool, metrics: [Self.metric]) {
            try empty()
            let time = try timedCommand(command)
            guard try acts() else { throw BenchError("\(tool): the file's last rule did not take its frame") }
            return [time.wall / 1e3]
        }
    }
}

extension Samples {
    /// The nearest-rank percentile: the smallest value with at least `percent` of the
    /// values at or below it.
    func percentile(_ percent: Double) -> Double {
        let sorted = values.sorted()
        let rank = Int((percent / 100 * Double(sorted.count)).rounded(.up))
        return sorted[Swift.max(rank, 1) - 1]
    }
}

import BPFKernel
import FlowCompiler
import Foundation
import Packets

/// Capturing the frames of one rule at the live lab's device: `xdpflow capture` (AF_XDP,
/// the rule's frames steered by `action xsk`) against tcpdump (AF_PACKET, the same frames
/// through the stack, a BPF filter picking them) and xdpdump (its own XDP program, a perf
/// ring), on the same veth with the same traffic; then xdpflow capture's cost by batch
/// size; then the cost per frame of the mark companion, XDPFlow's tc program.
enum CaptureCases {
    struct Timing {
        var seconds: Double
        var rounds: Int

        static let full = Timing(seconds: 1.5, rounds: 3)
        static let quick = Timing(seconds: 0.8, rounds: 1)
    }

    static let port: UInt16 = 4789
    static let frame = Frames.udp(dst: Frames.nowhere, dstPort: port)
    static let batches = [1, 8, 32, 64, 256]

    /// One capture run: what the sender sent, what the tool says it captured, and the
    /// CPU time the tool's process took.
    struct Sample {
        var sent: Int
        var seconds: Double
        var captured: Int
        var cpuNanoseconds: UInt64

        var rate: Double { Double(captured) / seconds }
        var offered: Double { Double(sent) / seconds }
        var cpuPerFrame: Double { captured == 0 ? .nan : Double(cpuNanoseconds) / Double(captured) }
    }

    /// A capture tool: how to start it on the device, the line that says it listens, and
    /// how to read its count at the end (all three say "N packets captured").
    struct Tool {
        var name: String
        var command: [String]
        var environment: [String: String] = [:]
        var ready: String
        /// XDPFlow's: the words of its `attach` (nil: a tool without XDPFlow).
        var attach: [String]?

        static let xdpflow = "xdpflow capture"
        static let xdpflowRule = "xdpflow capture, metadata rule"
    }

    static func sections(_ options: Options) throws -> [Section] {
        let timing = options.quick ? Timing.quick : Timing.full
        let xdpflow = try Shell.xdpflowBinary()
        return try Undo.shared.onSignals {
            defer { Undo.shared.all() }
            let lab = try LiveLab()
            progress("capture: lab \(lab.device) <- \(lab.sender) in \(lab.namespace)")
            let peer = try XDPFlowPeer(lab, xdpflow: xdpflow)
            let xsk = try LiveWorkload("1 rule, action xsk", short: "capture", lines: [
                "filter add dev \(RuleLines.device) protocol ip prio 1 flower ip_proto udp dst_port \(port) action xsk",
            ], frame: frame)
            let libxdp = "/sys/fs/bpf/xfb-\(lab.tag)-libxdp"
            let undoLibXDP = Undo.shared.push("xdpdump's \(libxdp)") {
                try? FileManager.default.removeItem(atPath: libxdp)
            }
            defer { Undo.shared.done(undoLibXDP) }
            func capture(batch: Int = 64, busyPoll: Int? = nil, metadataRule: Bool = false) -> Tool {
                Tool(name: metadataRule ? Tool.xdpflowRule : Tool.xdpflow,
                     command: [xdpflow, "capture", "dev", lab.device, "-w", "/dev/null", "--batch", "\(batch)"]
                        + (busyPoll.map { ["--busy-poll", "\($0)"] } ?? []),
                     environment: peer.environment, ready: "capturing on",
                     attach: metadataRule ? ["metadata", "rule"] : [])
            }
            let tcpdump = Tool(name: "tcpdump", command: ["tcpdump", "-i", lab.device, "-n", "-w", "/dev/null",
                                                          "udp", "dst", "port", "\(port)"],
                               ready: "listening on")
            let xdpdump = Tool(name: "xdpdump", command: ["xdpdump", "-i", lab.device, "--load-xdp-program",
                                                          "-w", "/dev/null"],
                               environment: ["LIBXDP_BPFFS": libxdp], ready: "listening on")

            // The tools, round by round; XDPFlow attached only for its own.
            var rates: [String: [Sample]] = [:]
            for round in 1 ... timing.rounds {
                for tool in [capture(), capture(metadataRule: true), tcpdump, xdpdump] {
                    if let words = tool.attach {
                        peer.attachWords = words
                        try peer.attach(xsk)
                    }
                    defer { if tool.attach != nil { try? peer.detach() } }
                    let sample = try measure(tool, lab: lab, xdpflow: xdpflow, timing: timing)
                    progress("capture: round \(round), \(tool.name): \(sample.captured) of \(sample.sent), "
                        + "\((sample.rate / 1e6).formatted(3)) Mpps")
                    rates[tool.name, default: []].append(sample)
                }
            }
            // The batch curve, without busy polling: the CPU time is then the frames' own.
            var curve: [(batch: Int, samples: [Sample])] = []
            peer.attachWords = []
            try peer.attach(xsk)
            for batch in batches {
                var samples: [Sample] = []
                for _ in 1 ... timing.rounds {
                    samples.append(try measure(capture(batch: batch, busyPoll: 0), lab: lab, xdpflow: xdpflow,
                                               timing: timing))
                }
                let cpu = Samples(samples.map(\.cpuPerFrame)).median
                progress("capture: batch \(batch): \(cpu.formatted(0)) ns CPU a frame")
                curve.append((batch, samples))
            }
            try peer.detach()
            let companion = try MarkCompanionCost.measure(lab: lab, peer: peer, xdpflow: xdpflow)
            return [rateSection(rates), batchSection(curve), companion.section]
        }
    }

    /// Starts `tool` on the receiving CPU, sends for the timing's seconds from the other,
    /// stops the tool with SIGINT once the last frame had time to arrive, and reads its count.
    static func measure(_ tool: Tool, lab: LiveLab, xdpflow: String, timing: Timing) throws -> Sample {
        let running = try Shell.start(["taskset", "-c", "\(LiveLab.receiverCPU)"] + tool.command,
                                      environment: tool.environment)
        let deadline = monotonicNanoseconds() + 5_000_000_000
        while !running.errorsSoFar().contains(tool.ready), monotonicNanoseconds() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        guard running.errorsSoFar().contains(tool.ready) else {
            running.interrupt()
            throw BenchError("\(tool.name) did not start: \(running.errorsSoFar())")
        }
        let cpuBefore = try cpuNanoseconds(of: running.pid)
        let hex = frame.map { String(format: "%02x", $0) }.joined()
        let report = try Shell.run(["ip", "netns", "exec", lab.namespace, "taskset", "-c", "\(LiveLab.senderCPU)",
                                    xdpflow, "-j", "gen", "dev", lab.sender, "--duration", "\(timing.seconds)",
                                    "--flows", "64", "--packet", hex])
        Thread.sleep(forTimeInterval: 0.3)
        let cpuAfter = try cpuNanoseconds(of: running.pid)
        running.interrupt()
        let errors = try running.finish().errors
        guard let json = try JSONSerialization.jsonObject(with: Data(report.utf8)) as? [String: Any],
              let sent = json["frames"] as? Int, let seconds = json["seconds"] as? Double else {
            throw BenchError("xdpflow gen: no frame count in \(report)")
        }
        guard let line = errors.split(separator: "\n").first(where: { $0.hasSuffix(" packets captured") }),
              let captured = Int(line.split(separator: " ")[0]) else {
            throw BenchError("\(tool.name): no 'packets captured' line in \(errors)")
        }
        guard captured <= sent + 16 else {
            throw BenchError("\(tool.name) captured \(captured) frames of \(sent) sent")
        }
        return Sample(sent: sent, seconds: seconds, captured: captured, cpuNanoseconds: cpuAfter - cpuBefore)
    }

    /// The time a process ran on a CPU, from the scheduler (/proc/PID/schedstat, in ns).
    static func cpuNanoseconds(of pid: Int32) throws -> UInt64 {
        let path = "/proc/\(pid)/schedstat"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let first = text.split(separator: " ").first, let value = UInt64(first) else {
            throw BenchError("cannot read \(path)")
        }
        return value
    }

    static func rateSection(_ rates: [String: [Sample]]) -> Section {
        var section = Section(
            slug: "capture", title: "Capture at the device: xdpflow capture, tcpdump, xdpdump",
            method: """
                The live lab's veth, frames of 64 bytes to UDP port \(port) over 64 flows sent by `xdpflow gen` \
                from the sender namespace (pinned to CPU \(LiveLab.senderCPU), where the veth also receives) for \
                the timing's seconds; each tool pinned to CPU \(LiveLab.receiverCPU) and writing to /dev/null: \
                `xdpflow capture --batch 64` (busy polling 50 us) with the one rule \
                `ip_proto udp dst_port \(port) action xsk`, attached as by default (metadata mark: this rule \
                writes no metadata) and with metadata rule (each frame carries its rule, for the comments), \
                tcpdump with the filter `udp dst port \(port)` on the same device without XDPFlow, and xdpdump \
                with its own capture
                program (`--load-xdp-program`): it cannot attach to XDPFlow's programs, which carry no BTF. \
                Captured is the tool's own count ("N packets captured", printed on SIGINT 0.3 s after the last \
                frame was sent); the rate is captured frames over the sending time. What a tool did not capture \
                its ring could not take (or the sender was slowed by the receive work on its CPU). Tools alternate \
                round by round; medians (min-max).
                """,
            columns: [Column("tool", key: "tool", .left), Column("captured Mpps", key: "captured_mpps"),
                      Column("sent Mpps", key: "sent_mpps"), Column("captured of sent %", key: "captured_percent"),
                      Column("tool CPU ns a frame", key: "cpu_ns_per_frame"),
                      Column("ratio to tcpdump", key: "ratio_to_tcpdump")])
        func median(_ name: String, _ value: (Sample) -> Double) -> Double { Samples((rates[name] ?? []).map(value)).median }
        let tcpdump = median("tcpdump", \.rate)
        for name in [Tool.xdpflow, Tool.xdpflowRule, "tcpdump", "xdpdump"] {
            let samples = rates[name] ?? []
            section.append([.text(name), .samples(Samples(samples.map { $0.rate / 1e6 }), digits: 3),
                            .samples(Samples(samples.map { $0.offered / 1e6 }), digits: 3),
                            .number(median(name) { Double($0.captured) / Double($0.sent) * 100 }, digits: 1),
                            .number(median(name, \.cpuPerFrame), digits: 0),
                            .number(median(name, \.rate) / tcpdump, digits: 2)])
        }
        let ours = median(Tool.xdpflow, \.rate), withRules = median(Tool.xdpflowRule, \.rate)
        section.targets = [
            Target("xdpflow capture against tcpdump, frames captured a second", measured: ours / tcpdump,
                   .atLeast, 3, unit: "x"),
            Target("the same, attached with metadata rule", measured: withRules / tcpdump, .atLeast, 3, unit: "x"),
            Target("xdpflow capture against xdpdump", measured: ours / median("xdpdump", \.rate), .atLeast, 1,
                   unit: "x"),
        ]
        return section
    }

    static func batchSection(_ curve: [(batch: Int, samples: [Sample])]) -> Section {
        var section = Section(
            slug: "capture-batch", title: "xdpflow capture by batch size",
            method: """
                As above (attached as by default), `xdpflow capture -w /dev/null --batch N --busy-poll 0`: \
                frames taken from the rx ring per call, and the capture sleeps in poll whenever the rings are \
                empty (busy polling would add its looking to the CPU time). CPU ns a frame is the capture \
                process's own time on a CPU (the scheduler's, /proc/PID/schedstat) over the frames it wrote; the \
                kernel's copy into the umem runs in the sender's softirq and is not in it.
                """,
            columns: [Column("batch", key: "batch"), Column("captured Mpps", key: "captured_mpps"),
                      Column("captured of sent %", key: "captured_percent"),
                      Column("CPU ns a frame", key: "cpu_ns_per_frame")])
        for (batch, samples) in curve {
            section.append([.count(batch), .samples(Samples(samples.map { $0.rate / 1e6 }), digits: 3),
                            .number(Samples(samples.map { Double($0.captured) / Double($0.sent) * 100 }).median, digits: 1),
                            .samples(Samples(samples.map(\.cpuPerFrame)), digits: 0)])
        }
        let points = curve.map { Curve.Point(x: Double($0.batch), y: Samples($0.samples.map(\.cpuPerFrame))) }
        section.curves = [Curve(name: "xdpflow capture --busy-poll 0", xLabel: "batch (frames)", yLabel: "CPU ns a frame",
                                points: points)]
        return section
    }
}

/// The mark companion's cost a frame. BPF_PROG_TEST_RUN measures it on a frame without
/// metadata, but cannot give it one: a tc test run builds its skb from the input alone.
/// So live frames too, with a mark in their metadata and without, timed by the kernel's
/// own accounting of program runs (kernel.bpf_stats_enabled: run_time_ns over run_cnt,
/// as bpftool prog shows them), which adds its own clock reads to every run: the
/// difference between the two is what a mark costs.
struct MarkCompanionCost {
    var rows: [(what: String, program: String, nanoseconds: Double, runs: Int)] = []
    /// BPF_PROG_TEST_RUN, a million runs on a frame without metadata: the companion and
    /// the floor (a tc program that only returns), ns a run.
    var testRun = (companion: 0.0, floor: 0.0)

    static func measure(lab: LiveLab, peer: XDPFlowPeer, xdpflow: String) throws -> MarkCompanionCost {
        let marked = try LiveWorkload("1 rule, skbedit mark", short: "mark", lines: [
            "filter add dev \(RuleLines.device) protocol ip prio 1 flower ip_proto udp dst_port 53 action skbedit mark 5",
        ], frame: Frames.udp(dst: Frames.nowhere, dstPort: 53))
        let statsPath = "/proc/sys/kernel/bpf_stats_enabled"
        let before = try String(contentsOfFile: statsPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let restore = Undo.shared.push("\(statsPath) back to \(before)") {
            try? before.write(toFile: statsPath, atomically: false, encoding: .utf8)
        }
        defer { Undo.shared.done(restore) }
        try "1".write(toFile: statsPath, atomically: false, encoding: .utf8)
        try peer.attach(marked)
        defer { try? peer.detach() }
        let (xdp, tc) = try programs(on: lab.device, peer: peer, xdpflow: xdpflow)
        var cost = MarkCompanionCost()
        let program = try Program.load(.schedCLS, attachType: .tcxIngress, name: MarkCompanion.name,
                                       instructions: MarkCompanion.instructions(for: .mark))
        // The floor: a tc program that only returns TC_ACT_OK (0), run the same way.
        let floor = try Program.load(.schedCLS, attachType: .tcxIngress, name: "xfb_tc_floor",
                                     instructions: [.mov(.r0, 0), .exit])
        let run = TestRun(packet: marked.frame, repeatCount: 1_000_000)
        cost.testRun = (Double(try program.testRun(run).duration), Double(try floor.testRun(run).duration))
        let unmarked = Frames.udp(dst: Frames.nowhere, dstPort: 9)
        for (what, frame) in [("frame with a mark", marked.frame), ("frame without metadata", unmarked)] {
            let start = try [xdp, tc].map(runStats)
            let hex = frame.map { String(format: "%02x", $0) }.joined()
            try Shell.run(["ip", "netns", "exec", lab.namespace, xdpflow, "gen", "dev", lab.sender,
                           "--count", "200000", "--rate", "100000", "--packet", hex])
            Thread.sleep(forTimeInterval: 0.2)
            let end = try [xdp, tc].map(runStats)
            for (index, program) in ["XDP (entry and rules)", "tcx mark companion"].enumerated() {
                let runs = end[index].count - start[index].count
                let nanoseconds = Double(end[index].nanoseconds - start[index].nanoseconds) / Double(max(runs, 1))
                cost.rows.append((what, program, nanoseconds, runs))
            }
        }
        return cost
    }

    /// The ids of the device's XDP program (bpftool) and of its mark companion
    /// (`xdpflow -j show`: Debian's bpftool does not list tcx programs).
    static func programs(on device: String, peer: XDPFlowPeer, xdpflow: String) throws -> (xdp: Int, tc: Int) {
        func object(_ arguments: [String], environment: [String: String] = [:]) throws -> Any {
            try JSONSerialization.jsonObject(with: Data(Shell.run(arguments, environment: environment).utf8))
        }
        let net = (try object(["bpftool", "-j", "net", "show", "dev", device]) as? [[String: Any]])?.first
        let shown = (try object([xdpflow, "-j", "show", "dev", device], environment: peer.environment)
            as? [[String: Any]])?.first
        guard let xdp = (net?["xdp"] as? [[String: Any]])?.first?["id"] as? Int,
              let tc = (shown?["mark_companion"] as? [String: Any])?["prog_id"] as? Int
        else { throw BenchError("\(device): no XDP program (bpftool net show) or no mark companion (xdpflow show)") }
        return (xdp, tc)
    }

    static func runStats(_ id: Int) throws -> (nanoseconds: Int, count: Int) {
        let shown = try Shell.run(["bpftool", "-j", "prog", "show", "id", "\(id)"])
        guard let object = try JSONSerialization.jsonObject(with: Data(shown.utf8)) as? [String: Any] else {
            throw BenchError("bpftool prog show id \(id): not a JSON object")
        }
        return (object["run_time_ns"] as? Int ?? 0, object["run_cnt"] as? Int ?? 0)
    }

    var section: Section {
        var section = Section(
            slug: "capture-mark", title: "The mark companion's cost a frame",
            method: """
                BPF_PROG_TEST_RUN of the companion, a million runs on a frame without metadata (a tc test run \
                cannot carry an XDP metadata area): \(testRun.companion.formatted(1)) ns a run, against \
                \(testRun.floor.formatted(1)) ns for a tc program that only returns (the test-run loop itself). \
                Then live: the rule \
                `udp dst_port 53 action skbedit mark 5` attached on the live lab's veth, so that the tcx \
                ingress companion is attached; 200,000 frames at 100,000 a second, once to port 53 (the XDP program \
                writes a mark into the metadata, the companion sets skb->mark from it) and once to port 9 (no rule, \
                no metadata: the companion returns at its first check). The kernel's own accounting \
                (kernel.bpf_stats_enabled, run_time_ns over run_cnt as bpftool prog shows them) of both programs: \
                the XDP figure, for scale, includes the rules' program it tail-calls. The accounting reads the \
                clock around every run, which costs more than a short program: compare the two rows of a \
                program, whose difference is what the mark costs it.
                """,
            columns: [Column("frames", key: "frames", .left), Column("program", key: "program", .left),
                      Column("ns a run", key: "ns_per_run"), Column("runs", key: "runs")])
        for row in rows {
            section.append([.text(row.what), .text(row.program), .number(row.nanoseconds, digits: 1), .count(row.runs)])
        }
        return section
    }
}

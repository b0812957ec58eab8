import FlowCompiler
import FlowOffload
import FlowRules
import Foundation

/// Where the time of `xdpflow filter add` goes, for a rule into the existing subtable of
/// the device with `CLICases.existing` rules: the command through the command server,
/// the same command without it (what the server saves), its process start, the same add
/// as a library call, and the steps that call takes, each timed in this process on that
/// device's own state files and multiplied by the times one add takes it.
struct AddBreakdown {
    let peers: Peers

    enum Step: String, CaseIterable {
        case served = "`xdpflow filter add` through the command server (as in the update table; CPU: the client's)"
        case command = "`xdpflow filter add` without the server (XDPFLOW_COMMAND_SERVER=off)"
        case start = "process start: `xdpflow --version`"
        case floor = "process floor: `true` (a C program that does nothing; tc pays it too)"
        case library = "`Offload.run` in this process: the add without a process"
        case readRules = "read DEV's snapshot and replay its journal (FileRuleSetStore), without the checks below"
        case ruleSet = "RuleSet(rules): add's checks, for every stored rule"
        case readState = "read DEV.offload.json, decode the plan's memory"
        case plan = "Plan(rules, memory:)"
        case journal = "append the change's journal record and fsync it"

        /// Times one add into an existing subtable takes the step inside `Offload.run`:
        /// snapshot, journal and state read once, the rules planned once (the change
        /// then goes through `Plan.apply`), one synced journal record (the commit is
        /// appended unsynced). Nil for the rows that are not such a step.
        var perAdd: Int? {
            switch self {
            case .readRules, .ruleSet, .readState, .plan, .journal: 1
            case .served, .command, .start, .floor, .library: nil
            }
        }
    }

    /// The part of DEV.offload.json the runtime compiles with (the rest is a few scalars).
    struct StoredState: Codable {
        var memory: Plan.Memory
    }

    /// The two metrics of a step: wall and CPU milliseconds.
    static func metrics(_ step: Step) -> [String] { [step.rawValue + " | wall", step.rawValue + " | cpu"] }

    func measure(rounds: Int) throws -> Section {
        let results = try Benchmark.alternate([
            CLIUpdateCases(peers: peers).xdpflow(.existingSubtable).renamed(Step.served.rawValue,
                                                                         metrics: Self.metrics(.served)),
            CLIUpdateCases(peers: peers).xdpflow(.existingSubtable, environment: CLIUpdateCases.serverOff)
                .renamed(Step.command.rawValue, metrics: Self.metrics(.command)),
            Benchmark(Step.start.rawValue, metrics: Self.metrics(.start)) {
                let time = try timedCommand([peers.xdpflow, "--version"], environment: CLIUpdateCases.serverOff)
                return [time.wall, time.cpu]
            },
            Benchmark(Step.floor.rawValue, metrics: Self.metrics(.floor)) {
                let time = try timedCommand(["true"])
                return [time.wall, time.cpu]
            },
            library(), steps(),
        ], rounds: rounds)
        let samples = Dictionary(uniqueKeysWithValues: results.flatMap { result in
            result.metrics.map { ($0.key, $0.value) }
        })
        func wall(_ step: Step) -> Samples { samples[Self.metrics(step)[0]]! }
        func cpu(_ step: Step) -> Samples { samples[Self.metrics(step)[1]]! }
        var section = Section(
            slug: "cli-breakdown", title: "Where `xdpflow filter add` spends its time (existing subtable)",
            method: """
                The add of the update table's case (a), on the same device (\(CLICases.existing.grouped) rules), \
                taken apart. It goes through xdpflow's command server, which keeps the device's plan \
                between commands; its CPU time is the client process's alone (wait4 does not see the \
                server's). The rest takes apart the same add without the server, which reads the state \
                and plans every rule again: that is what the server saves. Process start is `xdpflow --version` (the binary, the Swift runtime and \
                Foundation loaded, arguments parsed by ArgumentParser, which `filter` commands skip), timed \
                as the adds are. The process floor is `true`, which does nothing: the start of any program \
                linked with glibc, which on this VM is mostly glibc's reading of the cache sizes through \
                CPUID, each of which traps to the hypervisor (about 10 µs each here). `Offload.run` is the same add made by this process through the library, \
                which `filter add` calls: the lock, snapshot and journal read, one plan, the change through \
                `Plan.apply`, a synced journal record, the map writes, the commit. The steps below it are \
                parts of that call, each timed in this process on the device's own state files (the journal \
                record goes to a scratch file on the same file system); what they leave out (lock, opening \
                the pinned maps, Plan.apply, the map writes themselves, the redirect check, the commit) is \
                the rest. The rows are measured in turn, \(rounds) rounds after a \
                warm-up; medians (min-max). Wall time is what an operator waits; CPU time (user and system: \
                wait4 for the commands, the thread's clock in process) is the work, which load on a shared \
                machine disturbs much less, so the parts are added up and compared in CPU time; wall minus \
                CPU is waiting (fsync, the scheduler).
                """,
            columns: [Column("part", key: "part", .left), Column("per add", key: "per_add"),
                      Column("wall ms (one)", key: "wall_ms"), Column("CPU ms (one)", key: "cpu_ms"),
                      Column("CPU ms per add", key: "cpu_ms_per_add"), Column("% of the command's CPU", key: "percent")])
        let command = cpu(.command).median
        func row(_ name: String, times: Int?, wall: Samples?, cpu: Samples?, _ total: Double) {
            section.append([.text(name), times.map { .count($0) } ?? .absent(""),
                            wall.map { .samples($0, digits: 2) } ?? .absent(""),
                            cpu.map { .samples($0, digits: 2) } ?? .absent(""),
                            .number(total, digits: 2), .number(total / command * 100, digits: 0)])
        }
        var inSteps = 0.0
        for step in Step.allCases {
            let times = step.perAdd ?? 1
            let total = cpu(step).median * Double(times)
            if step.perAdd != nil { inSteps += total }
            row(step.rawValue, times: times, wall: wall(step), cpu: cpu(step), total)
            if step == .library {
                row("command - library: a fresh process (start, first use of the code, exit)", times: nil,
                    wall: nil, cpu: nil, command - cpu(.library).median)
            }
        }
        row("library - steps: lock, pinned maps, Plan.apply, map writes, commit", times: nil, wall: nil, cpu: nil,
            cpu(.library).median - inSteps)
        return section
    }

    /// The add, timed, then the same checks and delete as the command's samples.
    private func library() -> Benchmark {
        let device = peers.xdp.device
        var sample = 0
        return Benchmark(Step.library.rawValue, metrics: Self.metrics(.library)) {
            defer { sample += 1 }
            let flow = FiveTuple(40_000 + sample)
            let handle = CLIUpdateCases.firstHandle + sample
            let words = RuleWords.xdpflow(dev: device, prio: 1, handle: handle, flow)
            let command = try FilterCommand.parse(words)
            let (_, time) = try timedWithCPU { _ = try Offload(device: device).run(command) }
            guard try peers.xdpflowActs(flow, prio: 1, handle: handle) else {
                throw BenchError("Offload.update: the rule added for \(flow.src) did not take its frame")
            }
            try peers.xdpflowDelete(prio: 1, handle: handle)
            return [time.wall, time.cpu]
        }
    }

    /// Every step once, on the device's state files as they are between samples.
    private func steps() -> Benchmark {
        let device = peers.xdp.device
        let state = StateDirectory.default
        let scratch = "\(peers.lab.stateDirectory)/breakdown.journal"
        let stateFile = URL(fileURLWithPath: Offload(device: device).files.path.appending("\(device).offload.json").string)
        let record = "begin 1 change\n+ " + RuleWords.xdpflow(dev: device, prio: 1, handle: 1, FiveTuple(0))
            .joined(separator: " ") + "\n"
        let measured: [Step] = [.readRules, .ruleSet, .readState, .plan, .journal]
        return Benchmark("steps", metrics: measured.flatMap(Self.metrics)) {
            // The store checks the rules as it reads them: the checks are timed again alone.
            let (ruleSet, readRules) = try timedWithCPU { try FileRuleSetStore(state: state).rules(of: device) }
            let (_, checks) = try timedWithCPU { try RuleSet(ruleSet.rules) }
            let (stored, readState) = try timedWithCPU {
                try JSONDecoder().decode(StoredState.self, from: Data(contentsOf: stateFile))
            }
            let (plan, planning) = try timedWithCPU { try Plan(ruleSet, device: device, memory: stored.memory) }
            _ = plan
            let (_, journal) = try timedWithCPU {
                let fd = open(scratch, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw BenchError("cannot open \(scratch)") }
                defer { close(fd) }
                _ = record.withCString { write(fd, $0, strlen($0)) }
                guard fsync(fd) == 0 else { throw BenchError("fsync \(scratch) failed") }
            }
            let reading = CommandTime(wall: readRules.wall - checks.wall, cpu: readRules.cpu - checks.cpu)
            return [reading, checks, readState, planning, journal].flatMap { [$0.wall, $0.cpu] }
        }
    }
}

extension Benchmark {
    /// The same samples under other names.
    func renamed(_ name: String, metrics names: [String]) -> Benchmark {
        precondition(names.count == metrics.count, "one name per metric")
        return Benchmark(name, metrics: names, sample: sample)
    }
}

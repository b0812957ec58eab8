import FlowCompiler
import FlowOffload
import FlowRules
import Foundation

/// Where the time of `xdpflow filter add` goes, for a rule into the existing subtable of
/// the device with `CLICases.existing` rules: the command, its process start, the same
/// add as a library call, and the steps that call takes, each timed in this process on
/// that device's own state files and multiplied by the times one add takes it.
struct AddBreakdown {
    let peers: Peers

    enum Step: String, CaseIterable {
        case command = "`xdpflow filter add` (as in the update table)"
        case start = "process start: `xdpflow --version`"
        case library = "`Offload.update` in this process: the add without a process"
        case readRules = "read DEV.rules.json, decode [FlowRule] (JSONDecoder)"
        case ruleSet = "RuleSet(rules): add's checks, for every stored rule"
        case readState = "read DEV.offload.json, decode the plan's memory"
        case plan = "Plan(rules, memory:)"
        case generate = "CodeGenerator.generate (is the program the same?)"
        case writeRules = "encode DEV.rules.json, write, fsync file and directory"
        case writeState = "encode DEV.offload.json, write, fsync file and directory"
        case fsync = "(of the writes: an empty file, written and fsync'd)"

        /// Times one add into an existing subtable takes the step inside `Offload.update`:
        /// the state files read once, the old and the new rule set planned, both programs
        /// generated to see whether the program changes, the rules written once and the
        /// state twice (pending, then done). Nil for the rows that are not such a step.
        var perAdd: Int? {
            switch self {
            case .readRules, .ruleSet, .readState, .writeRules: 1
            case .plan, .generate, .writeState: 2
            case .command, .start, .library, .fsync: nil
            }
        }
    }

    /// The part of DEV.offload.json the runtime compiles with (the rest is a few scalars).
    struct StoredState: Codable {
        var memory: Plan.Memory
    }

    func measure(rounds: Int) throws -> Section {
        let results = try Benchmark.alternate([
            UpdateCases(peers: peers).xdpflow(.existingSubtable).renamed(Step.command.rawValue),
            Benchmark(Step.start.rawValue, metrics: [Step.start.rawValue]) {
                [try timedCommand([peers.xdpflow, "--version"])]
            },
            library(), steps(),
        ], rounds: rounds)
        let samples = Dictionary(uniqueKeysWithValues: results.flatMap { result in
            result.metrics.map { ($0.key, $0.value) }
        })
        var section = Section(
            slug: "cli-breakdown", title: "Where `xdpflow filter add` spends its time (existing subtable)",
            method: """
                The add of the update table's case (a), on the same device (\(CLICases.existing.grouped) rules), \
                taken apart. Process start is `xdpflow --version` (the binary, the Swift runtime and \
                Foundation loaded, arguments parsed), timed as the adds are. `Offload.update` is the same add \
                made by this process through the library, which `filter add` calls: the lock, the state \
                read, two plans, the map writes, the state written three times. The steps below it are the \
                parts of that call, each timed in this process on the device's own state files (writes go to \
                a scratch directory on the same ext4 file system), times the number of times one add takes \
                it; what they leave out (lock, opening the pinned maps, the map writes themselves, the \
                redirect check) is the rest. The four rows are measured in turn, \(rounds) rounds after a \
                warm-up; ms median (min-max); shares of the command's median.
                """,
            columns: [Column("part", key: "part", .left), Column("ms (one)", key: "ms"),
                      Column("per add", key: "per_add"), Column("ms per add", key: "ms_per_add"),
                      Column("% of the command", key: "percent")])
        let command = samples[Step.command.rawValue]!.median
        func row(_ name: String, _ one: Samples?, times: Int?, _ milliseconds: Double) {
            section.append([.text(name), one.map { .samples($0, digits: 2) } ?? .absent(""),
                            times.map { .count($0) } ?? .absent(""), .number(milliseconds, digits: 2),
                            .number(milliseconds / command * 100, digits: 0)])
        }
        let library = samples[Step.library.rawValue]!.median
        var inSteps = 0.0
        for step in Step.allCases {
            let one = samples[step.rawValue]!
            let times = step.perAdd ?? (step == .fsync ? nil : 1)
            let total = one.median * Double(times ?? 1)
            if step.perAdd != nil { inSteps += total }
            row(step.rawValue, one, times: times, total)
            if step == .library {
                row("command - library: process start, parsing, exit", nil, times: nil, command - library)
            }
        }
        row("library - steps: lock, pinned maps, map writes", nil, times: nil, library - inSteps)
        return section
    }

    /// The add, timed, then the same checks and delete as the command's samples.
    private func library() -> Benchmark {
        let device = peers.xdp.device
        var sample = 0
        return Benchmark(Step.library.rawValue, metrics: [Step.library.rawValue]) {
            defer { sample += 1 }
            let flow = FiveTuple(40_000 + sample)
            let handle = UpdateCases.firstHandle + sample
            let words = RuleWords.xdpflow(dev: device, prio: 1, handle: handle, flow)
            guard case .add(let rule) = try FilterCommand.parse(words).operation else { throw BenchError("not an add") }
            let (_, nanoseconds) = try timed { _ = try Offload(device: device).update { try $0.add(rule) } }
            guard try peers.xdpflowActs(flow, prio: 1, handle: handle) else {
                throw BenchError("Offload.update: the rule added for \(flow.src) did not take its frame")
            }
            try peers.xdpflowDelete(prio: 1, handle: handle)
            return [nanoseconds / 1e6]
        }
    }

    /// Every step once, on the device's state files as they are between samples.
    private func steps() -> Benchmark {
        let device = peers.xdp.device
        let state = StateDirectory.default
        let scratch = StateDirectory(.init("\(peers.lab.stateDirectory)/breakdown"))
        let rulesFile = URL(fileURLWithPath: state.path.appending(FileRuleSetStore.file(of: device)).string)
        let stateFile = URL(fileURLWithPath: state.path.appending("\(device).offload.json").string)
        let measured: [Step] = [.readRules, .ruleSet, .readState, .plan, .generate, .writeRules, .writeState, .fsync]
        return Benchmark("steps", metrics: measured.map(\.rawValue)) {
            let (rules, readRules) = try timed { try JSONDecoder().decode([FlowRule].self, from: Data(contentsOf: rulesFile)) }
            let (ruleSet, checks) = try timed { try RuleSet(rules) }
            let (stored, readState) = try timed { try JSONDecoder().decode(StoredState.self, from: Data(contentsOf: stateFile)) }
            let (plan, planning) = try timed { try Plan(ruleSet, device: device, memory: stored.memory) }
            let (_, generating) = try timed { try CodeGenerator.generate(plan, options: CompileOptions()) }
            let (_, writeRules) = try timed { try scratch.locked { try scratch.write(ruleSet, to: "rules.json") } }
            let (_, writeState) = try timed { try scratch.locked { try scratch.write(stored, to: "state.json") } }
            let (_, fsync) = try timed { try scratch.locked { try scratch.write([Int](), to: "empty.json") } }
            return [readRules, checks, readState, planning, generating, writeRules, writeState, fsync].map { $0 / 1e6 }
        }
    }
}

extension Benchmark {
    /// The same samples under another name (and metric, for one-metric benchmarks).
    func renamed(_ name: String) -> Benchmark {
        Benchmark(name, metrics: metrics.count == 1 ? [name] : metrics, sample: sample)
    }
}

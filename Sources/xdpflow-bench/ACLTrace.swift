import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import Packets
import RuleSetWorkloads

/// Frames drawn from a rule set (`TraceGenerator`: each hits a rule drawn from the set,
/// or is random), with the verdict the reference classifier gives each: the program must
/// give the same before any frame is timed, or the figure is of another path.
struct Trace {
    var frames: [[UInt8]]
    var verdicts: [XDPAction]
    /// The prio of the rule each frame ends in (the first that matches); nil for none.
    var prios: [UInt16?]
    /// Frames drawn at random rather than from a rule (`missShare`).
    static let missShare = 0.1

    init(_ ruleSet: RuleSet, device: String, count: Int, seed: UInt64) throws {
        var generator = TraceGenerator(rules: ruleSet, seed: seed)
        frames = generator.frames(count: count, missShare: Self.missShare)
        var reference = try ReferenceClassifier(rules: ruleSet, device: device)
        verdicts = []
        prios = []
        for frame in frames {
            let classified = reference.classify(frame, now: 0)
            switch classified.verdict {
            case .drop: verdicts.append(.drop)
            case .pass: verdicts.append(.pass)
            default: throw BenchError("a trace frame got \(classified.verdict): the ACL sets only drop and pass")
            }
            prios.append(classified.matchedRules.first?.prio)
        }
    }

    /// Frames no rule matches (random frames that found no rule; a set ending in a
    /// catch-all rule has none).
    var unmatched: Int { prios.count { $0 == nil } }

    /// Runs every frame once through `program`: each must get the reference's verdict.
    func check(_ program: Program, _ name: String) throws {
        for (index, frame) in frames.enumerated() {
            let result = try program.testRun(TestRun(packet: frame))
            guard result.action == verdicts[index] else {
                throw BenchError("\(name): trace frame \(index) got "
                    + "\(result.action.map { "\($0)" } ?? "\(result.returnValue)"), the reference says \(verdicts[index])")
            }
        }
    }
}

/// Each frame of a trace timed with BPF_PROG_TEST_RUN (`repeatCount` runs, the kernel's
/// mean), round after round; the rounds' per-frame times are kept for the slowest frame.
final class TraceTiming {
    let name: String
    let program: Program
    let runs: [TestRun]
    /// Runs per frame and sample: as many as take about the budget, within bounds, so
    /// that a trace costing microseconds a frame takes no longer than one costing tens
    /// of nanoseconds.
    let repeatCount: Int
    static let fewestRepeats = 50
    /// Per round (the warm-up round first), per frame: ns.
    private(set) var rounds: [[Double]] = []

    /// Calibrates the runs per frame on one pass over the frames (`fewestRepeats` each).
    init(_ name: String, program: Program, trace: Trace, maxRepeats: Int, budgetNanoseconds: Double) throws {
        self.name = name
        self.program = program
        let calibration = try trace.frames.map { frame in
            Double(try program.testRun(TestRun(packet: frame, repeatCount: Self.fewestRepeats)).duration)
        }
        let mean = max(1, calibration.reduce(0, +) / Double(calibration.count))
        repeatCount = min(maxRepeats, max(Self.fewestRepeats, Int(budgetNanoseconds / mean)))
        runs = trace.frames.map { [repeatCount] in TestRun(packet: $0, repeatCount: repeatCount) }
    }

    static let mean = "mean ns/packet", slowest = "slowest frame ns"

    /// One sample: the mean over the frames, and the slowest frame of the round.
    var benchmark: Benchmark {
        Benchmark(name, metrics: [Self.mean, Self.slowest]) { [self] in
            let values = try runs.map { Double(try program.testRun($0).duration) }
            rounds.append(values)
            return [values.reduce(0, +) / Double(values.count), values.max()!]
        }
    }

    /// The frame that is slowest by its median over the recorded rounds: its index and
    /// those rounds' times (round noise picks no frame).
    var slowestFrame: (index: Int, samples: Samples) {
        let recorded = rounds.dropFirst()
        let perFrame = runs.indices.map { frame in Samples(recorded.map { $0[frame] }) }
        let index = perFrame.indices.max { perFrame[$0].median < perFrame[$1].median }!
        return (index, perFrame[index])
    }
}

extension Datapath {
    /// Plans and loads `ruleSet` `rounds` times (each round's datapath gone before the
    /// next is made); returns the last datapath and the wall times, ms: Plan, and
    /// Datapath (the program generated, maps created and filled, the verifier).
    static func timedLoad(_ ruleSet: RuleSet, device: String, rounds: Int) throws
        -> (datapath: Datapath, plan: Samples, load: Samples, total: Samples) {
        var datapath: Datapath?
        var times: [(plan: Double, load: Double)] = []
        for _ in 0 ..< rounds {
            datapath = nil
            let (plan, planTime) = try timed { try Plan(ruleSet, device: device) }
            let (loaded, loadTime) = try timed { try Datapath(plan: plan, targetIndex: { _ in 1 }) }
            datapath = loaded
            times.append((planTime / 1e6, loadTime / 1e6))
        }
        return (datapath!, Samples(times.map(\.plan)), Samples(times.map(\.load)), Samples(times.map { $0.plan + $0.load }))
    }
}

/// Keeps the programs being timed in the kernel's XDP dispatcher, each attached in native
/// mode to a veth of its own (`xfbd` + the process id + its index). Every XDP
/// BPF_PROG_TEST_RUN adds the program it runs to the dispatcher and takes it out again,
/// and each of those changes waits for an RCU grace period (10-20 ms on this VM); for a
/// program already there (attached) both are no-ops. Without this a trace of hundreds of
/// frames would cost hundreds of grace periods a round, not the test runs themselves.
final class DispatcherPins {
    private var links: [XDPLink] = []
    private var devices: [String] = []
    private var token: Undo.Token?

    init(_ programs: [Program]) throws {
        let base = "xfbd\(getpid() % 100_000)x"
        let names = programs.indices.map { "\(base)\($0)" }
        token = Undo.shared.push("the dispatcher veths \(base)*") {
            for name in names { Shell.attempt(["ip", "link", "del", name]) }
        }
        for (name, program) in zip(names, programs) {
            try Shell.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"])
            devices.append(name)
            links.append(try XDPLink(attaching: program, to: NetworkInterface(named: name), mode: .native))
        }
    }

    /// Detaches the programs and deletes the veths.
    func remove() {
        for link in links { try? link.detach() }
        links = []
        for device in devices { Shell.attempt(["ip", "link", "del", device]) }
        devices = []
        if let token { Undo.shared.forget(token) }
        token = nil
    }

    deinit { remove() }
}

import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Packets

/// `disagreements` for a plan already made (the workload tests assert on the plan before
/// they load it, and a plan of ten thousand rules is not made twice), with a count of the
/// frames the reference matched to some rule, so that a test can tell a trace that hits
/// rules from one that only misses.
struct WorkloadRun {
    /// One line per frame that differs, as `disagreements` writes them.
    var disagreements: [String] = []
    /// Frames the reference classifier matched to at least one rule.
    var hits = 0
    var frames = 0
}

/// Loads `plan` (of `rules`) through the verifier and runs every frame through the
/// program and the reference classifier.
func run(_ frames: [[UInt8]], through plan: Plan, of rules: RuleSet) throws -> WorkloadRun {
    let datapath = try Datapath(plan: plan, options: CompileOptions(recordMatches: true), targetIndex: { _ in 1 })
    var reference = try ReferenceClassifier(rules: rules, device: plan.device)
    return try run(frames, through: datapath, reference: &reference)
}

/// Every frame through `datapath` (loaded with `recordMatches`) and `reference`.
func run(_ frames: [[UInt8]], through datapath: Datapath, reference: inout ReferenceClassifier) throws -> WorkloadRun {
    var result = WorkloadRun(frames: frames.count)
    for (index, frame) in frames.enumerated() {
        let expected = reference.classify(frame, now: 0)
        if !expected.matchedRules.isEmpty { result.hits += 1 }
        let problems = try datapath.trace(frame).differences(from: expected)
        if !problems.isEmpty {
            result.disagreements.append("frame \(index) \(hex(frame)): " + problems.joined(separator: "; "))
        }
    }
    return result
}

import FlowCompiler
import FlowOffload
import FlowRules
import Testing

/// Failure classes the differential tests found and reported, whose fix is not in yet.
/// TEMPORARY: each entry goes when its fix lands, so that its cases fail loudly again.
/// A case of a known class is tallied instead of failing the test, so that the other
/// cases still run; the tally is recorded as a known issue.
struct KnownIssue: Sendable {
    var name: String
    var matches: @Sendable (_ rules: [FlowRule], _ failure: Reproduction.Failure) -> Bool

    static let all: [KnownIssue] = [
        // CodeGenerator.hitFunction: when every step kind is terminal (tx, redirect), no
        // step jumps to control_N and the verifier refuses its unreachable code.
        KnownIssue(name: "rule sets whose only actions are mirred redirects do not load (unreachable insn)") {
            rules, failure in
            guard case .error(let text) = failure, text.contains("unreachable insn") else { return false }
            return rules.allSatisfy { rule in
                rule.actions.allSatisfy { if case .mirred = $0.kind { true } else { false } }
            }
        },
        // FlowOffload/Trace.swift names the device of the rule's last mirred action; the
        // program runs the first (a redirect ends the rule).
        KnownIssue(name: "trace names the last mirred device of a rule, not the first, which runs") { rules, failure in
            guard case .disagreements(let lines) = failure,
                  lines.allSatisfy({ Reproduction.Failure.disagreements([$0]).signature == "redirect" })
            else { return false }
            return rules.contains { rule in
                Set(rule.actions.compactMap { if case .mirred(let mirred) = $0.kind { mirred.device } else { nil } })
                    .count > 1
            }
        },
        // Plan.maxSubtables (64) counts subtables only, but the kernel takes at most 64
        // maps per program (MAX_USED_MAPS), the shared ones included: E2BIG.
        KnownIssue(name: "plans with more than 64 maps in all pass Plan and fail to load (E2BIG)") { rules, failure in
            guard let maps = mapCount(rules), case .error(let text) = failure else { return false }
            return text.contains("E2BIG") && maps > 64
        },
        // The verifier walks each parse path (the presence word is a known constant on
        // each) through every lookup and the hit function: past ~50 subtables in a few
        // prios with varied actions it gives up ("BPF program is too large", E2BIG).
        KnownIssue(name: "large plans exceed the verifier's 1M-instruction complexity limit (E2BIG)") { rules, failure in
            guard let maps = mapCount(rules), case .error(let text) = failure else { return false }
            return text.contains("E2BIG") && maps <= 64
        },
    ]
}

/// The maps a program for `rules` uses, the trace map included.
private func mapCount(_ rules: [FlowRule]) -> Int? {
    guard let set = try? RuleSet(rules), let plan = try? Plan(set, device: testDevice) else { return nil }
    return Datapath.mapSpecs(for: plan).count + 1
}

/// How often each known class turned up in one test, with the first case's seed.
struct KnownIssueTally {
    private var seen: [(issue: KnownIssue, count: Int, first: String)] = []

    mutating func add(_ issue: KnownIssue, _ fuzzCase: FuzzCase, _ failure: Reproduction.Failure) {
        if let index = seen.firstIndex(where: { $0.issue.name == issue.name }) {
            seen[index].count += 1
        } else {
            seen.append((issue, 1, "\(fuzzCase): \(failure.summary)"))
        }
    }

    func record() {
        for (issue, count, first) in seen {
            withKnownIssue(Comment(rawValue: issue.name), isIntermittent: true) {
                Issue.record("\(count) cases of: \(issue.name); first: \(first)")
            }
        }
    }
}

import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import RuleSetWorkloads
import Testing

/// Rule sets shaped like access control lists (`ACLGenerator`: prefixes that nest and
/// overlap, port ranges and the ACL port classes, IPv4 and IPv6, several rules at a prio
/// in some sets) against the reference classifier, with frames drawn for their rules
/// (`TraceGenerator`, random misses among them) and the fuzzer's adversarial frames
/// (`FrameGenerator`: near misses one bit or one port past an edge, cut and damaged
/// frames).
///
/// Small sets (a few to a dozen rules: a port range makes several subtables of one rule)
/// mostly plan inline with the default limit, and are run again in tables
/// (`inlineLimit` 0); large ones (hundreds to thousands of prios) are past the
/// limit and plan into tables either way. Every case is a function of its seed, which a
/// failure names; `XDPFLOW_FUZZ_SEED=SEED` runs that case alone, `XDPFLOW_FUZZ_SCALE`
/// multiplies the cases.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct ACLDifferentialTests {
    /// `base` seeds times the scale, or the one `XDPFLOW_FUZZ_SEED` names.
    static func seeds(_ base: Int, salt: UInt64, replay: Bool = true) -> [UInt64] {
        if replay, let seed = FuzzSettings.seed { return [seed] }
        return (0 ..< UInt64(FuzzSettings.cases(base))).map { (salt &+ $0) &* 0x9e37_79b9_7f4a_7c15 }
    }

    @Test(arguments: seeds(12, salt: 0xac1))
    func smallSetsAgreeInlineAndInTables(seed: UInt64) throws {
        let aclCase = ACLCase(seed: seed, ruleCount: 3 ... 14, test: "smallSetsAgreeInlineAndInTables")
        let inline = try Plan(aclCase.rules, device: testDevice)
        try aclCase.verify(inline)
        let tables = try Plan(aclCase.rules, device: testDevice, inlineLimit: 0)
        #expect(tables.tables != nil && tables.subtables.isEmpty, "\(aclCase): inlineLimit 0 plans tables")
        try aclCase.verify(tables)
    }

    @Test(arguments: seeds(5, salt: 0xac1_1a29e))
    func largeSetsAgreeInTables(seed: UInt64) throws {
        let aclCase = ACLCase(seed: seed, ruleCount: 300 ... 3000, test: "largeSetsAgreeInTables")
        let plan = try Plan(aclCase.rules, device: testDevice)
        #expect(plan.tables != nil, "\(aclCase): past the inline limit, tables")
        try aclCase.verify(plan)
    }

    /// The small sets are meant to try the inline classifier: most of them must fit it.
    @Test func mostSmallSetsPlanInline() throws {
        let seeds = Self.seeds(12, salt: 0xac1, replay: false)
        let inline = try seeds.count { seed in
            try Plan(ACLCase(seed: seed, ruleCount: 3 ... 14, test: "").rules, device: testDevice).tables == nil
        }
        #expect(inline * 2 >= seeds.count, "\(inline) of \(seeds.count) small ACL sets plan inline")
    }
}

/// One generated ACL rule set and its frames, all drawn from `seed`.
struct ACLCase: CustomStringConvertible {
    let seed: UInt64
    /// The test that draws it, to replay it alone.
    let test: String
    let generator: ACLGenerator
    let rules: RuleSet
    /// Drawn for the rules by `TraceGenerator`, a fifth random.
    let traced: [[UInt8]]
    /// `FrameGenerator`'s: hits, near misses, damage.
    let adversarial: [[UInt8]]

    static let tracedFrames = 150, adversarialFrames = 150

    init(seed: UInt64, ruleCount: ClosedRange<Int>, test: String) {
        self.seed = seed
        self.test = test
        var rng = SeededRandom(seed: seed)
        generator = ACLGenerator(ruleCount: rng.int(ruleCount),
                                 rulesPerPrio: rng.pick([1 ... 1, 1 ... 1, 1 ... 3, 2 ... 4]),
                                 ipv6Share: rng.pick([0, 0.2, 0.5]), device: testDevice)
        rules = generator.workload(seed: seed).rules
        var trace = TraceGenerator(rules: rules, seed: seed ^ 0x7ace)
        traced = trace.frames(count: Self.tracedFrames, missShare: 0.2)
        adversarial = FrameGenerator(pool: ValuePool(&rng)).frames(count: Self.adversarialFrames, for: rules.rules, &rng)
    }

    var seedText: String { "0x" + String(seed, radix: 16) }

    var description: String {
        "ACL seed \(seedText) (\(rules.count) rules, \(Set(rules.rules.map(\.prio)).count) prios, "
            + "\(generator.rulesPerPrio) a prio, IPv6 share \(generator.ipv6Share))"
    }

    /// Loads `plan` and runs both traces through it; records an issue naming the seed, the
    /// classifier and a reduced reproduction for each trace that differs.
    func verify(_ plan: Plan) throws {
        let classifier = plan.tables == nil ? "inline (\(plan.subtables.count) subtables)"
            : "tables (inlineLimit \(plan.inlineLimit), \(plan.tables!.tables.count) tables)"
        for (name, frames) in [("TraceGenerator", traced), ("FrameGenerator", adversarial)] {
            let result = try run(frames, through: plan, of: rules)
            if name == "TraceGenerator" {
                #expect(result.hits >= frames.count / 2, "\(self): only \(result.hits) traced frames hit a rule")
            }
            guard !result.disagreements.isEmpty else { continue }
            Issue.record("""
                \(self), \(classifier): \(result.disagreements.count) of \(frames.count) \(name) frames differ; first:
                \(result.disagreements.prefix(3).joined(separator: "\n"))
                Replay: XDPFLOW_FUZZ_SEED=\(seedText) swift test --skip-build --filter ACLDifferentialTests/\(test)
                Reduced:
                \(Reproduction.minimised(rules.rules, frames, inlineLimit: plan.inlineLimit, attempts: 120))
                """)
        }
    }
}

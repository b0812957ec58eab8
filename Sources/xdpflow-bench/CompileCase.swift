import FlowCompiler
import FlowOffload
import FlowRules

/// The compiler's own time for one rule set, phase by phase, from rules already parsed.
struct CompileCase {
    var name: String
    var slug: String
    var rules: [FlowRule]
    /// The most `compile` (Plan + CodeGenerator) may take, in milliseconds.
    var targetMilliseconds: Double?

    enum Phase: String, CaseIterable {
        /// RuleSet(rules): add's checks (handles, protocol, one match per prio).
        case ruleSet = "RuleSet"
        case plan = "Plan"
        case codeGenerator = "CodeGenerator"
        /// Plan + CodeGenerator: compiling a rule set the runtime already holds.
        case compile = "Plan+CodeGenerator"
        /// RuleSet + Plan + CodeGenerator: compiling a list of rules.
        case compileFromRules = "RuleSet+Plan+CodeGenerator"
        /// Datapath(plan:): maps created and filled, the program generated again and
        /// loaded through the verifier.
        case load = "Datapath load"

        /// The JSON key: "plan_codegenerator_ms".
        var key: String {
            rawValue.lowercased().split { !$0.isLetter }.joined(separator: "_") + "_ms"
        }
    }

    /// One sample: every phase once, in milliseconds. The datapath is closed at the end.
    func sample() throws -> [Double] {
        let (ruleSet, ruleSetTime) = try timed { try RuleSet(rules) }
        let (plan, planTime) = try timed { try Plan(ruleSet, device: RuleLines.device) }
        let (_, generateTime) = try timed { try CodeGenerator.generate(plan, options: CompileOptions()) }
        let (_, loadTime) = try timed { try Datapath(plan: plan, options: CompileOptions(), targetIndex: { _ in 1 }) }
        let byPhase: [Phase: Double] = [
            .ruleSet: ruleSetTime, .plan: planTime, .codeGenerator: generateTime,
            .compile: planTime + generateTime, .compileFromRules: ruleSetTime + planTime + generateTime,
            .load: loadTime,
        ]
        return Phase.allCases.map { byPhase[$0]! / 1e6 }
    }

    var benchmark: Benchmark {
        Benchmark(slug, metrics: Phase.allCases.map(\.rawValue), sample: sample)
    }
}

enum CompileCases {
    static func sections(_ options: Options) throws -> [Section] {
        progress("parsing the compile cases...")
        let cases = try all(quick: options.quick)
        progress("timing \(cases.count) compile cases, \(options.compileRounds) rounds...")
        let results = try Benchmark.alternate(cases.map(\.benchmark), rounds: options.compileRounds)
        let phases = CompileCase.Phase.allCases
        var section = Section(
            slug: "compile", title: "Compiler (ms)",
            method: """
                Wall time of each phase from parsed FlowRule values, \(options.compileRounds) rounds after a \
                warm-up round; median (min-max). Datapath load creates and fills the maps, generates the \
                program again and loads it through the verifier.
                """,
            columns: [Column("case", key: "case", .left), Column("rules", key: "rules")]
                + phases.map { Column($0.rawValue, key: $0.key) })
        for (compileCase, result) in zip(cases, results) {
            section.append([.text(compileCase.name), .count(compileCase.rules.count)]
                           + phases.map { .samples(result[$0.rawValue], digits: 1) })
            if let limit = compileCase.targetMilliseconds {
                section.targets.append(Target("compile \(compileCase.rules.count.grouped) rules (Plan+CodeGenerator)",
                                              measured: result[CompileCase.Phase.compile.rawValue].median,
                                              .atMost, limit, unit: "ms"))
            }
        }
        return [section]
    }

    /// The 16-subtable prefix shape of the packet benchmarks, at two sizes.
    static func all(quick: Bool) throws -> [CompileCase] {
        try (quick ? [1_000] : [1_000, 10_000]).map { count in
            CompileCase(name: "\(count.grouped) dst_ip prefixes, 16 subtables", slug: "compile-prefix\(count)",
                        rules: try RuleLines.rules(RuleLines.prefixes(count, groups: 16)),
                        targetMilliseconds: count == 1_000 ? 50 : nil)
        }
    }
}

extension Int {
    /// 10000 -> "10,000".
    var grouped: String {
        let digits = String(self)
        return digits.enumerated().map { index, digit in
            index > 0 && (digits.count - index) % 3 == 0 ? ",\(digit)" : "\(digit)"
        }.joined()
    }
}

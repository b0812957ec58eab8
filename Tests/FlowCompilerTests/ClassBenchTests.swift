import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import RuleSetWorkloads
import Testing

/// The field's standard rule sets through the table classifier: every shipped ClassBench
/// file (RuleSetWorkloads) has hundreds to thousands of prios, far past the inline limit,
/// so it plans into tables; the program loads through the verifier, and a trace of
/// frames drawn for its rules, with random misses among them, is classified as the
/// reference classifier classifies it.
///
/// `XDPFLOW_FUZZ_SCALE` multiplies the frames of each trace.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct ClassBenchTests {
    static let frameCount = FuzzSettings.cases(300)

    @Test(arguments: ClassBench.shippedFiles.map(\.key))
    func shippedSetClassifiesAsTheReferenceInTables(_ name: String) throws {
        let workload = try ClassBench.load(name, device: testDevice)
        let expected = try #require(ClassBench.shippedFiles.first { $0.key == name }?.value)
        #expect(workload.rules.count == expected)

        let plan = try Plan(workload.rules, device: testDevice)
        let tables = try #require(plan.tables, "\(name): \(expected) prios are past the inline limit")
        #expect(plan.subtables.isEmpty)
        #expect(tables.rules.count == expected, "every rule of \(name) can match: each is in a table")
        #expect(tables.tables.count > 1)

        // The seed is the file's: a failure replays with the same frames.
        var trace = TraceGenerator(rules: workload.rules, seed: UInt64(expected))
        let frames = trace.frames(count: Self.frameCount, missShare: 0.2)
        let result = try run(frames, through: plan, of: workload.rules)
        #expect(result.disagreements.isEmpty, """
            \(name): \(result.disagreements.count) of \(frames.count) frames (TraceGenerator seed \(expected)) \
            differ from the reference; first:
            \(result.disagreements.prefix(5).joined(separator: "\n"))
            """)
        #expect(result.hits > frames.count / 2, "\(name): only \(result.hits) of \(frames.count) frames hit a rule")
    }
}

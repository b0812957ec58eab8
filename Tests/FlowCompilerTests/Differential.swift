import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import KernelTestSupport
import Packets
import Foundation
import Testing

let kernelAvailable = Kernel.isAvailable
let kernelUnavailable = Comment(rawValue: Kernel.unavailableReason ?? "")

/// The device the differential tests compile for; redirects to it are XDP_TX.
let testDevice = "xft0"

/// A rule set from `filter add` lines (the device word is ignored: rules are per set).
func ruleSet(_ lines: [String]) throws -> RuleSet {
    var set = RuleSet()
    for line in lines {
        let command = try FilterCommand.parse(line.split(separator: " ").map(String.init))
        guard case .add(let rule) = command.operation else { throw DifferentialFailure(text: "not an add: \(line)") }
        try set.add(rule)
    }
    return set
}

struct DifferentialFailure: Error, CustomStringConvertible {
    var text: String
    var description: String { text }
}

/// Compiles `rules`, loads the program, runs every frame through it and through the
/// reference classifier; returns a description of each disagreement.
func disagreements(_ rules: RuleSet, _ frames: [[UInt8]], inlineLimit: Int = Plan.defaultInlineLimit) throws
    -> [String] {
    let plan = try Plan(rules, device: testDevice, inlineLimit: inlineLimit)
    if ProcessInfo.processInfo.environment["XDPFLOW_DUMP"] != nil {
        print(try CodeGenerator.generate(plan, options: CompileOptions(recordMatches: true)).disassembly())
    }
    let datapath = try Datapath(plan: plan, options: CompileOptions(recordMatches: true), targetIndex: { _ in 1 })
    var reference = try ReferenceClassifier(rules: rules, device: testDevice)
    var failures: [String] = []
    for (index, frame) in frames.enumerated() {
        let expected = reference.classify(frame, now: 0)
        let got = try datapath.trace(frame)
        let problems = got.differences(from: expected)
        if !problems.isEmpty {
            failures.append("frame \(index) \(hex(frame)): " + problems.joined(separator: "; "))
        }
    }
    return failures
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowRules

/// What the program did with one frame, run with BPF_PROG_TEST_RUN.
public struct TraceRecord: Hashable, Sendable {
    public var verdict: XDPAction
    /// Rules that counted the frame, in order: more than one when `continue` is used.
    public var matched: [RuleID]
    /// The frame as the program left it, without metadata.
    public var output: [UInt8]
    /// The metadata area the program wrote in front of the frame (empty when none).
    public var metadata: [UInt8]
    /// The device of a redirect verdict.
    public var redirectDevice: String?
    /// Devices that got a copy by broadcast (mirrors); the frame itself went to
    /// `redirectDevice`, or was dropped when there is none.
    public var mirrorDevices: [String] = []
    /// No rule could be decided: the frame went to the kernel counted as unparsed.
    public var unparsed: Bool

    /// The rule whose actions decided the verdict: the last one matched.
    public var decidingRule: RuleID? { matched.last }
}

extension Datapath {
    /// Runs `frame` through the program once. The datapath must have been built with
    /// `recordMatches`.
    public func trace(_ frame: [UInt8]) throws(BPFError) -> TraceRecord {
        guard let log = views.trace, let program else {
            throw .missingMap(program: "xdpflow", map: FlowMaps.trace, instruction: nil)
        }
        try log.set(0, TraceLog())
        let result = try program.testRun(TestRun(packet: frame, context: XDPTestContext(),
                                                 outputCapacity: frame.count + 256))
        let slots = try log.get(0)?.slots ?? []
        let ruleBySlot = Dictionary(uniqueKeysWithValues: plan.slots.indexes.map { ($0.value, $0.key) })
        let matched = slots.compactMap { ruleBySlot[$0] }
        let verdict = result.action ?? .aborted
        let metadataLength = min(result.metadataLength ?? 0, result.packet.count)
        var redirect: String?
        var mirrors: [String] = []
        if verdict == .redirect, let rule = matched.last,
           let flowRule = plan.rules[rule] {
            // The first redirect steals the frame: later actions never run.
            for action in flowRule.actions {
                guard case .mirred(let mirred) = action.kind else { continue }
                guard mirred.mode == .redirect else { mirrors.append(mirred.device); continue }
                redirect = mirred.device
                break
            }
        }
        return TraceRecord(verdict: verdict, matched: matched, output: Array(result.packet.dropFirst(metadataLength)),
                           metadata: Array(result.packet.prefix(metadataLength)), redirectDevice: redirect,
                           mirrorDevices: mirrors, unparsed: slots.contains(RuleSlots.unparsed))
    }

}

extension TraceRecord {
    /// Where the program and the reference classifier disagree on a frame, each as
    /// "what: program, reference"; empty when they agree.
    public func differences(from expected: Classification) -> [String] {
        var found: [String] = []
        // Mirrors go out by broadcast: XDP_REDIRECT, whatever becomes of the frame itself.
        let reference: XDPAction = switch expected.verdict {
        case _ where !expected.mirrors.isEmpty: .redirect
        case .drop: .drop
        case .pass: .pass
        case .tx: .tx
        case .redirect, .xsk: .redirect
        case .aborted: .aborted
        }
        if verdict != reference { found.append("verdict \(verdict), reference \(reference)") }
        if case .redirect(let device) = expected.verdict, redirectDevice != device {
            found.append("redirect to \(redirectDevice ?? "nothing"), reference \(device)")
        }
        if mirrorDevices != expected.mirrors {
            found.append("mirrors \(mirrorDevices.joined(separator: " ")), reference \(expected.mirrors.joined(separator: " "))")
        }
        let rules = expected.matchedRules.map { RuleID(prio: $0.prio, handle: $0.handle) }
        if matched != rules { found.append("matched \(Self.list(matched)), reference \(Self.list(rules))") }
        if unparsed != (expected.unclassifiable != nil) {
            found.append("unparsed \(unparsed), reference \(expected.unclassifiable.map { "\($0)" } ?? "false")")
        }
        if output != expected.frame { found.append("output \(Self.hex(output)), reference \(Self.hex(expected.frame))") }
        let mark = FlowMetadata(endingAt: metadata)?.mark
        if mark != expected.mark {
            found.append("mark \(mark.map(String.init) ?? "none"), reference \(expected.mark.map(String.init) ?? "none")")
        }
        return found
    }

    static func list(_ rules: [RuleID]) -> String {
        rules.isEmpty ? "none" : rules.map(\.description).joined(separator: ", ")
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}

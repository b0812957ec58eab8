import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import KernelTestSupport
import Testing

/// Fault injection: the xdpflow binary is killed (SIGKILL) at random moments of a batch,
/// a filter add, an attach and a detach. After each kill the next command finishes or
/// rolls back what was pending, `xdpflow check` finds no difference, and real frames of
/// a stored drop rule are dropped. 50 kills in `make test`; `make fuzz`
/// (XDPFLOW_FUZZ_SCALE=50) makes 250.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct CrashTests {
    static let kills = 50 * max(1, (ProcessInfo.processInfo.environment["XDPFLOW_FUZZ_SCALE"].flatMap(Int.init) ?? 1) / 10)

    @Test func aCommandKilledAtAnyMomentLeavesStateTheNextCommandMakesWhole() throws {
        let lab = try OffloadLab(attach: false)
        var random = SystemRandomNumberGenerator()
        let guardRule = "filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 53 action drop"
        let batch = FileManager.default.temporaryDirectory.appendingPathComponent("\(lab.namespace).batch").path
        defer { try? FileManager.default.removeItem(atPath: batch) }
        var sent = 0, outcomes: [String: Int] = [:]
        for kill in 0..<Self.kills {
            // Every round starts attached, with the drop rule stored.
            if !lab.offload.isAttached { try lab.xdpflow("attach dev DEV") }
            if !(try lab.offload.statistics()?.rules.keys.contains(RuleID(prio: 1, handle: 1)) ?? false) {
                try lab.xdpflow(guardRule)
            }
            let operation: [String]
            switch kill % 4 {
            case 0:
                // A batch of new rules in many prios: new subtables, new programs.
                let lines = (0..<300).map { index in
                    "filter add dev \(lab.device) protocol ip prio \(100 + kill * 300 % 5_000 + index % 7) flower "
                        + "dst_ip 10.\(kill % 200).\(index / 250).\(index % 250) action drop"
                }
                try lines.joined(separator: "\n").write(toFile: batch, atomically: true, encoding: .utf8)
                operation = lab.xdpflowCommand("-batch \(batch)")
            case 1:
                operation = lab.xdpflowCommand("filter add dev DEV protocol ip prio \(10 + kill) flower ip_proto tcp "
                    + "dst_port \(1000 + kill) action drop")
            case 2:
                operation = lab.xdpflowCommand("filter del dev DEV prio \(10 + kill - 1)")
            default:
                // Detach, and attach again, each killed somewhere.
                operation = lab.xdpflowCommand("detach dev DEV")
            }
            let outcome = try Self.killed(operation, after: .milliseconds(Int.random(in: 0...80, using: &random)),
                                          state: lab.state)
            outcomes[outcome, default: 0] += 1
            if kill % 4 == 3 {
                _ = try? Self.killed(lab.xdpflowCommand("attach dev DEV"),
                                     after: .milliseconds(Int.random(in: 0...80, using: &random)), state: lab.state)
            }

            // The next command: check. It says what it finished or rolled back, and then agrees.
            let check = try execute(lab.xdpflowCommand("check dev DEV"))
            if check.status != 0 {
                #expect(check.errors.contains("is not attached"), "kill \(kill): \(check.output) \(check.errors)")
                // An attach or detach killed anywhere leaves no companion behind.
                #expect(TCXLink.ingressProgramIDs(lab.veths.device).isEmpty, "kill \(kill): a tc program is left")
                continue
            }
            #expect(check.output == "\(lab.device): ok\n", "kill \(kill) of \(operation.suffix(4)): \(check.output)")
            // Real frames of the stored drop rule are dropped (counted by the rule).
            if try lab.offload.statistics()?.rules[RuleID(prio: 1, handle: 1)] != nil {
                let before = try lab.offload.statistics()?.rules[RuleID(prio: 1, handle: 1)]?.packets ?? 0
                let met = try lab.sendCounted(count: 20) { try lab.gen(TestFrame.udp(port: 53), count: 20) }
                let after = try lab.statistics(once: RuleID(prio: 1, handle: 1), counted: before + UInt64(met))
                #expect(after.rules[RuleID(prio: 1, handle: 1)]?.packets == before + UInt64(met), "kill \(kill)")
                sent += met
            }
        }
        #expect(sent > 0, "frames were checked: \(outcomes)")
        #expect(outcomes.keys.contains { $0.contains("server") }, "commands died in the command server too: \(outcomes)")
    }

    /// Runs `command`, kills it with SIGKILL after `delay` (if it still runs), and with
    /// it the command server of `state`, which may be running it; says whether it had
    /// finished.
    static func killed(_ command: [String], after delay: Duration, state: StateDirectory) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: Double(delay.components.attoseconds) / 1e18 + Double(delay.components.seconds))
        let servers = commandServers(of: state)
        servers.forEach { kill($0, SIGKILL) }
        guard process.isRunning else {
            process.waitUntilExit()
            return servers.isEmpty ? "finished" : "finished, server killed"
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return servers.isEmpty ? "killed" : "killed with its server"
    }
}

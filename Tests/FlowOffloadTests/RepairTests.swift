import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import Testing

/// A command that dies between writing a change to disk and carrying it into the kernel
/// leaves the change marked pending; the next command finds the mark, rebuilds the
/// kernel side from the stored rules, and says so.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct RepairTests {
    @Test func aChangeLeftPendingIsRepairedByTheNextCommandAndSaid() throws {
        let lab = try OffloadLab()
        try lab.filter("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 53 action drop")

        // The crash: the rules on disk gained a rule (a new subtable) the kernel never got.
        let crashed = try FilterCommand.parse(lab.words(
            "filter add dev DEV protocol ip prio 2 handle 1 flower dst_ip 10.0.0.2 action drop"))
        try FileRuleSetStore(state: lab.state).update(device: lab.device) { rules in try crashed.apply(to: &rules) }
        let stateFile = lab.state.path.appending("\(lab.device).offload.json").string
        var state = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stateFile)))
            as? [String: Any])
        state["pending"] = true
        try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: stateFile))
        func subtablePins() throws -> Int {
            try FileManager.default.contentsOfDirectory(atPath: lab.offload.pins.string).count { $0.hasPrefix("xf_st_") }
        }
        #expect(try subtablePins() == 1, "before the repair the kernel has prio 1's subtable only")

        let command = try FilterCommand.parse(lab.words(
            "filter add dev DEV protocol ip prio 1 handle 2 flower ip_proto udp dst_port 54 action drop"))
        let update = try lab.offload.update { rules in try command.apply(to: &rules) }
        let repair = try #require(update.repair)
        #expect(repair.hasPrefix("repaired \(lab.device): an earlier change did not finish; program "))
        #expect(repair.hasSuffix("rebuilt from the 2 stored rules"))

        // Now the kernel has every stored rule, and the mark is gone.
        #expect(try subtablePins() == 2)
        let tracer = try lab.offload.tracer()
        #expect(try tracer.datapath.trace(TestFrame.udp(port: 80)).matched == [RuleID(prio: 2, handle: 1)])
        #expect(try tracer.datapath.trace(TestFrame.udp(port: 54)).matched == [RuleID(prio: 1, handle: 2)])
        #expect(try tracer.datapath.trace(TestFrame.udp(port: 53)).matched == [RuleID(prio: 1, handle: 1)])
        let after = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stateFile)))
            as? [String: Any])
        #expect(after["pending"] as? Bool == false)
        #expect(try lab.offload.update { _ in }.repair == nil, "repaired once")
    }
}

import FlowCompiler
import FlowOffload
import FlowRules
import BPFKernel
import Foundation
import Testing

/// A command that dies between journalling a change and committing it leaves the record
/// pending; the next command, whatever it is, rolls it back (the kernel rebuilt from the
/// stored rules), says so, and the audit finds the kernel and the rules agreeing.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct RepairTests {
    @Test func aChangeLeftPendingIsRolledBackByTheNextCommandAndSaid() throws {
        let lab = try OffloadLab()
        try lab.filter("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 53 action drop")

        // The crash: the journal began a change (a new subtable) the kernel may hold in part.
        let journal = try #require(FileManager.default.enumerator(atPath: lab.state.path.string)?
            .compactMap { $0 as? String }.first { $0.hasSuffix("\(lab.device).journal") })
        let path = lab.state.path.appending(journal).string
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(("begin 99 change\n+ filter add dev \(lab.device) ingress prio 2 handle 0x1 protocol ip "
            + "flower dst_ip 10.0.0.2 action drop\n").utf8))
        try handle.close()

        let checked = try #require(try lab.offload.check())
        let recovery = try #require(checked.recovery)
        #expect(recovery.hasPrefix("rolled back a change of \(lab.device) that did not finish (1 rules); program "))
        #expect(recovery.hasSuffix("rebuilt from the 1 stored rules"))
        #expect(checked.differences.isEmpty, "\(checked.differences)")

        let tracer = try lab.offload.tracer()
        #expect(try tracer.datapath.trace(TestFrame.udp(port: 53)).matched == [RuleID(prio: 1, handle: 1)])
        #expect(try tracer.datapath.trace(TestFrame.udp(port: 80)).matched.isEmpty, "the pending rule is gone")
        #expect(try lab.offload.check()?.recovery == nil, "rolled back once")
    }

    /// A detach removes the link and pins, then the snapshot, then the journal. Killed
    /// between the last two on a device whose journal was compacted, it leaves records
    /// that no longer replay (their rules were in the snapshot): the next command finishes
    /// the detach instead of failing on them (CrashTests found it).
    @Test func aDetachThatDiedAfterRemovingTheSnapshotIsFinished() throws {
        let lab = try OffloadLab()
        try lab.filter("filter add dev DEV protocol ip prio 47 handle 1 flower ip_proto udp dst_port 53 action drop")
        let files = lab.offload.files.path
        // As a compaction left it (the add in the snapshot, a later change in the journal),
        // and then the detach, halfway.
        try "begin 3 change\n- 0 47 1\ncommit 3\nbegin 4 detach\n"
            .write(toFile: files.appending("\(lab.device).journal").string, atomically: true, encoding: .utf8)
        try? FileManager.default.removeItem(atPath: files.appending("\(lab.device).rules").string)

        let checked = try #require(try lab.offload.check())
        #expect(checked.recovery == "finished detaching \(lab.device): an earlier detach did not finish")
        #expect(XDPLink.attachedProgramID(lab.veths.device) == nil)
        #expect(try lab.offload.stored().rules.rules.isEmpty)
        #expect(!lab.offload.isAttached)
    }

    @Test func theAuditFindsAnEntryTheRulesDoNotHave() throws {
        let lab = try OffloadLab()
        try lab.filter("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 53 action drop")
        try lab.filter("filter add dev DEV protocol ip prio 2 handle 1 flower dst_ip 10.0.0.2 action drop")
        #expect(try lab.offload.check()?.differences == [])
        // Someone else writes into a subtable: the audit names it.
        let pins = try FileManager.default.contentsOfDirectory(atPath: lab.offload.pins.string)
        let subtable = try #require(pins.first { $0.hasPrefix("xf_st_") })
        let map = try BPFKernel.Map(pinnedAt: lab.offload.pins.appending(subtable))
        let key = [UInt8](repeating: 0x42, count: map.spec.keySize)
        if map.spec.type == .array {
            try map.update([0x42, 0x42, 0, 0], [UInt8](repeating: 7, count: map.spec.valueSize))
        } else {
            try map.update(key, [UInt8](repeating: 7, count: map.spec.valueSize))
        }
        let differences = try #require(try lab.offload.check()?.differences)
        #expect(differences.count == 1)
        #expect(differences.first?.contains("holds an entry no stored rule has") == true, "\(differences)")
    }
}

import BPFKernel
import FlowCompiler
import FlowOffload
import Foundation
import KernelTestSupport
import Testing

/// `skbedit mark` reaches the stack: the XDP program leaves the mark in the frame's
/// metadata and the mark companion, on tc ingress, puts it in skb->mark. An nftables
/// netdev ingress chain on the device (after tc ingress) counts frames by mark.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct MarkTests {
    let sent = 500

    @Test func aMarkedFrameReachesNetfilterWithItsMarkAndAnUnmarkedOneWithMarkZero() throws {
        let lab = try OffloadLab()
        // skbedit's control defaults to pipe; the last action's pipe ends the list: pass.
        try lab.filter("filter add dev DEV protocol ip prio 1 flower ip_proto udp dst_port 53 action skbedit mark 5")
        try lab.filter("filter add dev DEV protocol ip prio 2 flower ip_proto udp dst_port 54 action pass")
        #expect(try lab.reference(TestFrame.udp(port: 53)).mark == 5)
        let table = try CountingTable(device: lab.device, rules: [
            "marked": "meta mark 0x5 udp dport 53", "port 53": "udp dport 53",
            "unmarked": "meta mark 0 udp dport 54", "port 54": "udp dport 54",
        ])
        defer { table.delete() }

        let marked = try lab.sendCounted(TestFrame.udp(port: 53), count: sent)
        let unmarked = try lab.sendCounted(TestFrame.udp(port: 54), count: sent)
        #expect(try table.settled("port 53", at: marked) == marked, "every marked frame reaches the stack")
        #expect(try table.settled("marked", at: marked) == marked, "with mark 5")
        #expect(try table.settled("port 54", at: unmarked) == unmarked)
        #expect(try table.settled("unmarked", at: unmarked) == unmarked, "a frame no rule marks has mark 0")
    }

    /// `attach ... metadata rule`: every decided frame carries its rule, marked or not;
    /// the companion reads that layout's marks (and leaves the others at 0).
    @Test func theRuleLayoutKeepsMarksAndNamesTheRule() throws {
        let lab = try OffloadLab()
        try lab.offload.detach()
        _ = try lab.offload.attach(mode: .native, metadata: .rule)
        try lab.filter("filter add dev DEV protocol ip prio 1 handle 3 flower ip_proto udp dst_port 53 action skbedit mark 5")
        try lab.filter("filter add dev DEV protocol ip prio 2 handle 4 flower ip_proto udp dst_port 54 action pass")
        let named = FlowMetadata(endingAt: try lab.offload.tracer().datapath.trace(TestFrame.udp(port: 54)).metadata)
        #expect(named?.rule?.prio == 2 && named?.rule?.handle == 4 && named?.mark == nil)
        let table = try CountingTable(device: lab.device, rules: [
            "marked": "meta mark 0x5 udp dport 53", "unmarked": "meta mark 0 udp dport 54", "port 54": "udp dport 54",
        ])
        defer { table.delete() }
        let marked = try lab.sendCounted(TestFrame.udp(port: 53), count: sent)
        let unmarked = try lab.sendCounted(TestFrame.udp(port: 54), count: sent)
        #expect(try table.settled("marked", at: marked) == marked)
        #expect(try table.settled("port 54", at: unmarked) == unmarked)
        #expect(try table.settled("unmarked", at: unmarked) == unmarked)
        #expect(try lab.offload.check()?.differences == [])
        #expect(try lab.xdpflow("show dev DEV").contains("\n  metadata: the deciding rule and the mark"))
        #expect(try lab.xdpflow("-j show dev DEV").contains("\"metadata\":\"rule\""))
    }

    @Test func aMaskedMarkSetsTheBitsTcSets() throws {
        let lab = try OffloadLab()
        // tc: mark = (mark & ~0xf0) | (0x1234 & 0xf0), from 0.
        try lab.filter("filter add dev DEV protocol ip prio 1 flower ip_proto udp dst_port 53 "
            + "action skbedit mark 0x1234/0xf0")
        #expect(try lab.reference(TestFrame.udp(port: 53)).mark == 0x30)
        let table = try CountingTable(device: lab.device, rules: ["masked": "meta mark 0x30 udp dport 53",
                                                                  "port 53": "udp dport 53"])
        defer { table.delete() }
        let met = try lab.sendCounted(TestFrame.udp(port: 53), count: sent)
        #expect(try table.settled("port 53", at: met) == met)
        #expect(try table.settled("masked", at: met) == met)
    }

    @Test func theCompanionIsShownCheckedAndGoneWithDetach() throws {
        let lab = try OffloadLab()
        let status = try #require(try lab.offload.status())
        let id = try #require(status.markCompanionID)
        #expect(TCXLink.ingressProgramIDs(lab.veths.device) == [id])
        #expect(status.problems.isEmpty, "\(status.problems)")
        #expect(try lab.xdpflow("show dev DEV").contains("mark companion: tcx ingress, program id \(id)"))
        #expect(try lab.xdpflow("-j show dev DEV").contains("\"mark_companion\":{\"kind\":\"tcx\",\"prog_id\":\(id)}"))
        // bpftool 7.1 lists tcx links (type 11) but not their device: by program.
        #expect(try linkedPrograms().contains(id))

        try lab.offload.detach()
        #expect(TCXLink.ingressProgramIDs(lab.veths.device).isEmpty, "detach leaves no tcx program")
        #expect(try !linkedPrograms().contains(id), "nor its link")
        #expect(XDPLink.attachedProgramID(lab.veths.device) == nil)
    }

    /// A device attached before xdpflow had the companion: no tc pins. `check` and `show`
    /// say what to do, and detach and attach gives it one.
    @Test func aDeviceAttachedWithoutTheCompanionNeedsDetachAndAttach() throws {
        let lab = try OffloadLab()
        try lab.filter("filter add dev DEV protocol ip prio 1 flower ip_proto udp dst_port 53 action skbedit mark 5")
        for pin in MarkCompanionAttachment.Pin.all { try unpin(lab.offload.pins.appending(pin)) }
        // Nothing holds the link now: it is gone with its pin.
        #expect(TCXLink.ingressProgramIDs(lab.veths.device).isEmpty)

        let differences = try #require(try lab.offload.check()?.differences)
        #expect(differences.count == 1)
        #expect(differences.first?.hasPrefix("no mark companion on tc ingress") == true, "\(differences)")
        let status = try #require(try lab.offload.status())
        #expect(status.markCompanionID == nil && status.needsRepair)
        #expect(try lab.xdpflow("show dev DEV").contains("needs repair: no mark companion"))
        // Rules still change.
        try lab.filter("filter add dev DEV protocol ip prio 2 flower ip_proto udp dst_port 54 action pass")

        // What it says to do gives the device its companion, and the stored rules.
        try lab.offload.detach()
        _ = try lab.offload.attach(mode: .native)
        try lab.filter("filter add dev DEV protocol ip prio 1 flower ip_proto udp dst_port 53 action skbedit mark 5")
        #expect(try lab.offload.check()?.differences == [])
        #expect(try lab.offload.status()?.markCompanionID != nil)
    }

    @Test func aCompanionDetachedBehindXDPFlowsBackIsADifference() throws {
        let lab = try OffloadLab()
        try TCXLink(pinnedAt: lab.offload.pins.appending(MarkCompanionAttachment.Pin.link)).detach()
        let differences = try #require(try lab.offload.check()?.differences)
        #expect(differences.count == 1)
        #expect(differences.first?.hasPrefix("the mark companion's link pinned at \(lab.offload.pins) was detached")
            == true, "\(differences)")
        try lab.offload.detach()
        _ = try lab.offload.attach(mode: .native)
        #expect(try lab.offload.check()?.differences == [])
    }
}

/// The programs of every bpf_link, as bpftool lists them.
func linkedPrograms() throws -> Set<UInt32> {
    let links = try JSONSerialization.jsonObject(with: Data(try run(["bpftool", "-j", "link", "show"]).utf8))
    return Set((links as? [[String: Any]] ?? []).compactMap { ($0["prog_id"] as? Int).map(UInt32.init) })
}

/// An nftables table of the test's own (netdev family, unique name) with a chain on the
/// device's ingress hook and one counter per rule, each rule found again by its comment.
struct CountingTable {
    let name: String

    init(device: String, rules: [String: String]) throws {
        name = "xft_mark_\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        var script = "table netdev \(name) {\n  chain ingress {\n"
            + "    type filter hook ingress device \"\(device)\" priority 0; policy accept;\n"
        for (comment, rule) in rules.sorted(by: { $0.key < $1.key }) {
            script += "    \(rule) counter comment \"\(comment)\"\n"
        }
        script += "  }\n}\n"
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("\(name).nft")
        try script.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        try run(["nft", "-f", file.path])
    }

    func delete() {
        _ = try? run(["nft", "delete", "table", "netdev", name])
    }

    /// Packets counted by each rule, by comment (`nft -j list table`).
    func counters() throws -> [String: Int] {
        let json = try run(["nft", "-j", "list", "table", "netdev", name])
        let root = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        var counts: [String: Int] = [:]
        for item in root?["nftables"] as? [[String: Any]] ?? [] {
            guard let rule = item["rule"] as? [String: Any], let comment = rule["comment"] as? String else { continue }
            for expression in rule["expr"] as? [[String: Any]] ?? [] {
                if let counter = expression["counter"] as? [String: Any], let packets = counter["packets"] as? Int {
                    counts[comment] = packets
                }
            }
        }
        return counts
    }

    /// The rule's count once it reaches `expected` or the wait is over.
    func settled(_ comment: String, at expected: Int) throws -> Int {
        try KernelTestSupport.settled(at: expected) { try counters()[comment] ?? -1 }
    }
}

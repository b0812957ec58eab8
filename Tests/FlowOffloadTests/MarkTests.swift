import BPFKernel
import FlowCompiler
import FlowOffload
import Foundation
import KernelTestSupport
import Packets
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

    /// Policy routing sees the mark: in a namespace of the test's own (forwarding on, an
    /// `ip rule fwmark 5` into a table whose one route leads out of a second veth),
    /// marked frames are forwarded out of that veth and unmarked ones find no route.
    @Test func anIPRuleFwmarkRoutesTheMarkedFrames() throws {
        let lab = try OffloadLab(attach: false)
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let router = "xft-\(tag)-r", sender = "xft-\(tag)-s"
        let device = "xft\(tag)r", peer = "xft\(tag)s", out = "xft\(tag)o", sink = "xft\(tag)k"
        defer { for space in [router, sender] { _ = try? run(["ip", "netns", "del", space]) } }
        try run(["ip", "netns", "add", router])
        try run(["ip", "netns", "add", sender])
        for (inside, outside) in [(device, peer), (out, sink)] {
            try run(["ip", "-n", router, "link", "add", inside, "type", "veth", "peer", "name", outside, "netns", sender])
            // No IPv6: no neighbour discovery or MLD frames in the counts.
            try run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv6.conf.\(inside).disable_ipv6=1"])
            try run(["ip", "netns", "exec", sender, "sysctl", "-qw", "net.ipv6.conf.\(outside).disable_ipv6=1"])
            try run(["ip", "-n", router, "link", "set", inside, "up"])
            try run(["ip", "-n", sender, "link", "set", outside, "up"])
        }
        try run(["ip", "-n", router, "addr", "add", "10.77.0.1/24", "dev", device])
        try run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        try run(["ip", "-n", router, "rule", "add", "fwmark", "5", "table", "77", "pref", "100"])
        try run(["ip", "-n", router, "route", "add", "198.51.100.0/24", "dev", out, "table", "77"])
        try run(["ip", "-n", router, "neigh", "add", "198.51.100.7", "lladdr", "02:00:00:00:0e:07", "dev", out,
                 "nud", "permanent"])

        func xdpflow(_ line: String) throws -> CommandResult {
            try execute(lab.xdpflowCommand("-n \(router) " + line.replacingOccurrences(of: "RDEV", with: device)))
        }
        #expect(try xdpflow("attach dev RDEV").status == 0)
        defer { _ = try? xdpflow("detach dev RDEV") }
        #expect(try xdpflow("filter add dev RDEV protocol ip prio 1 flower ip_proto udp dst_port 53 "
            + "action skbedit mark 5").status == 0)

        let mac = try #require(MACAddress(try run(["ip", "netns", "exec", router, "cat", "/sys/class/net/\(device)/address"])
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        func frame(_ port: UInt16) -> [UInt8] {
            FrameBuilder().ethernet(dst: mac, src: TestFrame.source)
                .ipv4(src: IPv4Address("10.77.0.2")!, dst: IPv4Address("198.51.100.7")!).udp(src: 1000, dst: port)
                .padded().bytes
        }
        func forwarded() throws -> Int {
            let text = try run(["ip", "-n", router, "-s", "-j", "link", "show", "dev", out])
            let links = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]]
            let stats = links?.first?["stats64"] as? [String: Any]
            return (stats?["tx"] as? [String: Any])?["packets"] as? Int ?? -1
        }
        _ = try NetworkNamespace.run(in: sender) {
            let generator = try TrafficGenerator(device: NetworkInterface(named: peer))
            try generator.send(frame(54), count: self.sent)
            try generator.send(frame(53), count: self.sent)
        }
        #expect(try settled(at: sent) { try forwarded() } == sent, "only the marked frames take table 77")
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
        // Nothing holds the link now: it is gone with its pin (the kernel frees a link
        // whose last reference was a pin in a workqueue, soon after the unlink).
        #expect(try settled(at: true) { TCXLink.ingressProgramIDs(lab.veths.device).isEmpty })

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
        try loadNFTables(script)
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

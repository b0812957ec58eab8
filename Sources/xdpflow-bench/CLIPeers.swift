import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import KernelTestSupport

/// One rule in the words of each tool: the same exact IPv4/UDP 5-tuple, dropped.
/// tc has no flower or gact in this kernel (`tc filter add ... flower` answers "TC
/// classifier not found"), so its rule is u32 on the same five fields with a mirred
/// redirect to a sink device: the frame leaves the ingress path as a drop would.
enum RuleWords {
    static func xdpflow(dev: String, prio: Int, handle: Int? = nil, _ flow: FiveTuple) -> [String] {
        ["filter", "add", "dev", dev, "prio", "\(prio)"] + (handle.map { ["handle", "\($0)"] } ?? [])
            + ["protocol", "ip", "flower", "src_ip", "\(flow.src)", "dst_ip", "\(flow.dst)", "ip_proto", "udp",
               "src_port", "\(flow.srcPort)", "dst_port", "\(flow.dstPort)", "action", "drop"]
    }

    /// `handle` is u32's "800::N" form.
    static func tc(dev: String, prio: Int, handle: String? = nil, sink: String, _ flow: FiveTuple) -> [String] {
        ["filter", "add", "dev", dev, "ingress", "prio", "\(prio)"] + (handle.map { ["handle", $0] } ?? [])
            + ["protocol", "ip", "u32", "match", "ip", "src", "\(flow.src)/32", "match", "ip", "dst", "\(flow.dst)/32",
               "match", "ip", "protocol", "17", "0xff", "match", "ip", "sport", "\(flow.srcPort)", "0xffff",
               "match", "ip", "dport", "\(flow.dstPort)", "0xffff", "action", "mirred", "egress", "redirect", "dev", sink]
    }

    static func nft(table: String, _ flow: FiveTuple) -> [String] {
        ["add", "rule", "netdev", table, "ingress", "ip", "saddr", "\(flow.src)", "ip", "daddr", "\(flow.dst)",
         "udp", "sport", "\(flow.srcPort)", "udp", "dport", "\(flow.dstPort)", "counter", "drop"]
    }

    /// The lines of a `-batch` (or `nft -f`) file.
    static func file(_ lines: [[String]]) -> String {
        lines.map { $0.joined(separator: " ") + "\n" }.joined()
    }
}

/// The three tools on devices of one lab, each device holding the same rules: XDPFlow
/// attached to `xdp`, tc's clsact on `tc` (redirecting to `sink`), an nftables netdev
/// ingress chain on `nft`. Each can be emptied and filled again from a file, and can
/// tell whether the rule of a flow acts on a frame sent through its device.
final class Peers {
    let lab: Lab
    /// The xdpflow binary next to xdpflow-bench (both in the release build directory).
    let xdpflow: String
    let xdp, tc, sink, nft: Veth
    var table: String { "\(Lab.prefix)\(lab.tag)" }

    init(lab: Lab) throws {
        self.lab = lab
        xdpflow = try Shell.xdpflowBinary()
        for tool in ["tc", "nft"] where !Shell.attempt(["which", tool]) {
            throw BenchError("the cli suite needs \(tool) (iproute2, nftables)")
        }
        xdp = try lab.addPair()
        tc = try lab.addPair(gro: true)
        sink = try lab.addPair()
        nft = try lab.addPair(gro: true)
        try Shell.run([xdpflow, "attach", "dev", xdp.device])
        try Shell.run(["tc", "qdisc", "add", "dev", tc.device, "clsact"])
        lab.onRemove("the nftables table \(table)", ["nft", "delete", "table", "netdev", table])
        try Shell.run(["nft", "add", "table", "netdev", table])
        try emptyNFT()
    }

    // MARK: Emptying

    /// Detaches and attaches again: no rules, a fresh program.
    func emptyXDPFlow() throws {
        try Offload(device: xdp.device).detach()
        _ = try Offload(device: xdp.device).attach()
    }

    func emptyTC() throws {
        try Shell.run(["tc", "qdisc", "del", "dev", tc.device, "clsact"])
        try Shell.run(["tc", "qdisc", "add", "dev", tc.device, "clsact"])
    }

    /// A fresh ingress chain: rules gone, handles from 1 again.
    func emptyNFT() throws {
        Shell.attempt(["nft", "delete", "chain", "netdev", table, "ingress"])
        try Shell.run(["nft", "add", "chain", "netdev", table, "ingress",
                       "{ type filter hook ingress device \(nft.device) priority 0; policy accept; }"])
        newestNFTHandle = 0
    }

    // MARK: Rules from files

    func xdpflowFile(_ flows: Range<Int>, prio: Int = 1) -> String {
        RuleWords.file(flows.map { RuleWords.xdpflow(dev: xdp.device, prio: prio, FiveTuple($0)) })
    }

    func tcFile(_ flows: Range<Int>, prio: Int = 1) -> String {
        RuleWords.file(flows.map { RuleWords.tc(dev: tc.device, prio: prio, sink: sink.device, FiveTuple($0)) })
    }

    func nftFile(_ flows: Range<Int>) -> String {
        RuleWords.file(flows.map { RuleWords.nft(table: table, FiveTuple($0)) })
    }

    // MARK: Does the rule act?

    /// Sends the flow's frame through `pair` and waits until `observed` says the rule
    /// took it (true), or `timeout` passes (false): a frame crosses a veth in well under
    /// a millisecond, so a short timeout does when the rule is expected not to act.
    private func acts(_ flow: FiveTuple, through pair: Veth, within timeout: Duration,
                      _ observed: () throws -> Bool) throws -> Bool {
        try lab.send(Frames.udp(flow), to: pair)
        return try settled(at: true, timeout: timeout, observed)
    }

    /// The XDPFlow rule (prio, handle) counted the flow's frame.
    func xdpflowActs(_ flow: FiveTuple, prio: Int, handle: Int, within timeout: Duration = .seconds(2)) throws -> Bool {
        let rule = RuleID(prio: UInt16(prio), handle: UInt32(handle))
        let before = try xdpflowPackets(rule)
        return try acts(flow, through: xdp, within: timeout) { try xdpflowPackets(rule) > before }
    }

    /// The rule's packet counter, as `xdpflow -s -j filter get` prints it: through the
    /// command server, which keeps the device's plan and reads that one counter (in this
    /// process, every check would plan every rule again: 3 s with 100,000, and a cold
    /// machine for the next timed sample). A rule that does not exist (yet) has counted nothing.
    private func xdpflowPackets(_ rule: RuleID) throws -> UInt64 {
        let (text, errors) = try Shell.start([xdpflow, "-s", "-j", "filter", "get", "dev", xdp.device, "prio",
                                              "\(rule.prio)", "handle", "\(rule.handle)", "protocol", "ip", "flower"])
            .finish(accepting: [0, 2])
        guard !errors.contains("no rule at") else { return 0 }
        guard let objects = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]] else {
            throw BenchError("xdpflow -s -j filter get: unexpected output")
        }
        let stats = objects.lazy.compactMap { (($0["options"] as? [String: Any])?["actions"] as? [[String: Any]])?
            .first?["stats"] as? [String: Any] }.first
        return UInt64(stats?["packets"] as? Int ?? 0)
    }

    /// Deletes an XDPFlow rule with `xdpflow filter del`, through the command server that
    /// keeps the device's plan (a change in this process would make it read the disk again).
    func xdpflowDelete(prio: Int, handle: Int) throws {
        try Shell.run([xdpflow, "filter", "del", "dev", xdp.device, "prio", "\(prio)", "handle", "\(handle)", "flower"])
    }

    /// The program in the slot of XDPFlow's entry program: the one a new subtable replaces.
    var xdpflowProgramID: UInt32? { Offload(device: xdp.device).programID }

    /// tc redirected the flow's frame to the sink.
    func tcActs(_ flow: FiveTuple, within timeout: Duration = .seconds(2)) throws -> Bool {
        let before = try transmitted(by: sink.device)
        return try acts(flow, through: tc, within: timeout) { try transmitted(by: sink.device) > before }
    }

    private func transmitted(by device: String) throws -> Int {
        let text = try String(contentsOfFile: "/sys/class/net/\(device)/statistics/tx_packets", encoding: .utf8)
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    /// The chain's newest rule, newer than any before it, counted the flow's frame (its
    /// counter starts at 0); returns that rule's handle (for `nft delete rule`), or nil
    /// when the newest rule is an older one or did not count the frame.
    func nftActs(_ flow: FiveTuple, within timeout: Duration = .seconds(2)) throws -> Int? {
        var handle: Int?
        let counted = try acts(flow, through: nft, within: timeout) {
            guard let newest = try nftRules().max(by: { $0.handle < $1.handle }),
                  newest.handle > newestNFTHandle else { return false }
            handle = newest.handle
            return newest.packets > 0
        }
        guard counted, let handle else { return nil }
        newestNFTHandle = handle
        return handle
    }

    /// The handle of the newest rule that took a frame in `nftActs`, or of the newest
    /// rule loaded from a file: rules with higher handles are new.
    private var newestNFTHandle = 0

    /// Remembers the chain's newest rule as old.
    func nftRulesLoaded() throws {
        newestNFTHandle = try nftRules().map(\.handle).max() ?? 0
    }

    /// The chain's rules: handle and counter.
    private func nftRules() throws -> [(handle: Int, packets: Int)] {
        let text = try Shell.run(["nft", "-j", "list", "chain", "netdev", table, "ingress"])
        guard let root = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let objects = root["nftables"] as? [[String: Any]]
        else { throw BenchError("nft -j list chain: unexpected output") }
        return objects.compactMap { object in
            guard let rule = object["rule"] as? [String: Any], let handle = rule["handle"] as? Int,
                  let expressions = rule["expr"] as? [[String: Any]] else { return nil }
            let counter = expressions.lazy.compactMap { $0["counter"] as? [String: Any] }.first
            return (handle, counter?["packets"] as? Int ?? 0)
        }
    }
}

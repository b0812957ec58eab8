import FlowCompiler
import FlowRules
import Foundation
import Packets
import RuleSetWorkloads

/// Live rates on the live suite's veth lab: XDPFlow with ClassBench acl1_10000 against
/// nftables with the same rules in first-match order, and one of its rules against the
/// floor program. The frame ends in a drop rule as late in the set as one can be found,
/// so nftables walks nearly all of it; every source port `gen --flows` sends ends there too.
enum ACLLive {
    static func sections(_ options: Options) throws -> [Section] {
        let timing = options.quick ? LiveCases.Timing.quick : LiveCases.Timing.full
        let (one, acl) = try workloads(flows: timing.flows, suite: "acl live")
        let xdpflow = try Shell.xdpflowBinary()
        return try Undo.shared.onSignals {
            defer { Undo.shared.all() }
            let lab = try LiveLab()
            try lab.place(.senderCPU)
            progress("acl live: lab \(lab.device) <- \(lab.sender) in \(lab.namespace)")
            // The frame ends in rule `index`, not in the set's last rule: the peers' checks
            // are of their totals (every frame received counted by some rule).
            let peers: [any LivePeer] = [try FloorPeer(lab), TotalOnly(try XDPFlowPeer(lab, xdpflow: xdpflow)),
                                         TotalOnly(NFTablesPeer(lab, translate: ACLLive.nftables))]
            if let why = peers[2].cannot(acl) { throw BenchError("acl live: nftables: \(why)") }
            let samples = try LiveCases.alternated(peers, [one, acl], lab: lab, xdpflow: xdpflow, timing: timing,
                                                   suite: "acl live")
            return [section([one, acl], samples, timing: timing)]
        }
    }

    /// acl1_10000 with a frame that ends in a late drop rule for each of `flows` source
    /// ports, and that rule alone.
    static func workloads(flows: Int, suite: String) throws -> (one: LiveWorkload, acl: LiveWorkload) {
        let workload = try ClassBench.load("acl1_10000", device: RuleLines.device)
        progress("\(suite): finding a frame that ends in a late drop rule of acl1_10000...")
        let (frame, index) = try lateDropFrame(workload.rules, flows: flows)
        let rules = workload.rules.rules
        let acl = LiveWorkload(name: "ClassBench acl1_10000 (\(rules.count.grouped) rules), ends in rule \(index + 1)",
                               short: "acl1_10000", lines: workload.lines, rules: rules, frame: frame)
        let one = LiveWorkload(name: "1 rule (acl1_10000's rule \(index + 1) alone)", short: "1 rule",
                               lines: [workload.lines[index]], rules: [rules[index]], frame: frame)
        return (one, acl)
    }

    static func section(_ ruleSets: [LiveWorkload], _ samples: [[String: [LiveCases.Sample]]],
                        timing: LiveCases.Timing) -> Section {
        let peers = ["floor", "XDPFlow", "nftables"]
        var section = Section(
            slug: "acl-live", title: "ACL live over veth (Mpps received; sender and receiver on one CPU)",
            method: """
                The live suite's lab and method (see its section): `xdpflow gen` sends 64-byte frames over \
                \(timing.flows) source ports into a veth whose receiver runs on the sender's CPU; rates are \
                the device's rx_packets over a \(timing.window.formatted(1)) s window after \
                \(timing.warm.formatted(1)) s, \(timing.rounds) rounds, the peers alternated; median (min-max), \
                ratios per round. Every sample checks that every frame sent was received, that the XDP peers \
                dropped them all, and that the peer's rule counters (`xdpflow -s filter show`, nftables' \
                counters) add up to the frames received. XDPFlow: `xdpflow attach` and `xdpflow -batch` of the \
                ClassBench lines (the table classifier). nftables: a netdev ingress chain with one rule per \
                ClassBench line in the same order (first match wins), `ip saddr`/`ip daddr` prefixes, \
                `ip protocol`, `tcp`/`udp sport`/`dport` ranges, each with a counter and the flower rule's \
                verdict (drop, or accept for pass). The frame is a TCP or UDP frame that the reference \
                classifier finds ending in the latest drop rule it could find one for (for every source port \
                sent), the rule named in the table: nftables evaluates every rule before it. *1 rule*: that \
                rule alone, against the floor (XDP_DROP only).
                """,
            columns: [Column("rule set", key: "rule_set", .left)] + peers.map { Column("\($0) Mpps", key: "\(key($0))_mpps") }
                + [Column("XDPFlow / nftables", key: "ratio_to_nftables"), Column("XDPFlow / floor", key: "ratio_to_floor")])
        for (ruleSet, results) in zip(ruleSets, samples) {
            func rates(_ peer: String) -> Samples { Samples(results[peer]!.map { $0.window.receivedRate / 1e6 }) }
            func ratio(over peer: String) -> Samples {
                Samples(zip(results["XDPFlow"]!, results[peer]!).map { $0.window.receivedRate / $1.window.receivedRate })
            }
            section.append([.text(ruleSet.name)] + peers.map { LiveReport.cell(rates($0)) }
                + [.samples(ratio(over: "nftables"), digits: 1), .samples(ratio(over: "floor"), digits: 2)])
            if ruleSet.rules.count == 1 {
                section.targets.append(Target("ACL, 1 rule, live: XDPFlow / floor", measured: ratio(over: "floor").median,
                                              .atLeast, 0.9, unit: "x"))
            } else {
                section.targets.append(Target("ACL acl1_10000, live: XDPFlow / nftables (same rules, first match)",
                                              measured: ratio(over: "nftables").median, .atLeast, 20, unit: "x"))
            }
        }
        return section
    }

    private static func key(_ name: String) -> String {
        name.lowercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
    }

    /// A frame whose classification ends in a drop rule as late in `rules` as one is
    /// found for, with each of the `flows` source ports `gen` gives it; the rule's index.
    static func lateDropFrame(_ rules: RuleSet, flows: Int) throws -> (frame: [UInt8], index: Int) {
        let list = rules.rules
        var reference = try ReferenceClassifier(rules: rules, device: RuleLines.device)
        var generator = TraceGenerator(rules: rules, seed: 20)
        func endsIn(_ frame: [UInt8]) -> FlowRule? { reference.classify(frame, now: 0).matchedRules.first }
        for index in list.indices.reversed() where list[index].actions == [.gact(.drop)] {
            let rule = list[index]
            // gen varies the source port: a rule that names one would lose most frames.
            guard rule.match.srcPort == nil else { continue }
            for _ in 0 ..< 20 {
                let frame = generator.frame(matching: rule)
                let keys = FlowKeys(dissecting: frame)
                guard keys.vlans.isEmpty, case .v4? = keys.srcIP, let port = keys.srcPort,
                      keys.ipProto == IPProtocolNumber.tcp || keys.ipProto == IPProtocolNumber.udp,
                      endsIn(frame) == rule else { continue }
                // The source port is at 14 + 20 (no VLAN, no IPv4 options): checked by dissecting.
                var variant = frame
                let all = (0 ..< flows).allSatisfy { step in
                    let value = port &+ UInt16(truncatingIfNeeded: step)
                    variant[34] = UInt8(value >> 8)
                    variant[35] = UInt8(value & 0xff)
                    return FlowKeys(dissecting: variant).srcPort == value && endsIn(variant) == rule
                }
                if all { return (frame, index) }
            }
        }
        throw BenchError("acl live: no frame ends in a drop rule of the set for all \(flows) source ports")
    }

    /// A ClassBench flower rule as an nftables rule of a netdev chain, with a counter:
    /// IPv4 prefixes, the protocol, port ranges, and drop or pass (accept).
    static func nftables(_ rule: FlowRule) throws -> String {
        var rest = rule.match
        var words: [String] = []
        if case .v4(let prefix)? = rest.srcIP, let length = prefix.prefixLength {
            words.append("ip saddr \(prefix.key)/\(length)")
            rest.srcIP = nil
        }
        if case .v4(let prefix)? = rest.dstIP, let length = prefix.prefixLength {
            words.append("ip daddr \(prefix.key)/\(length)")
            rest.dstIP = nil
        }
        let transport: String? = switch rest.ipProto {
        case IPProtocolNumber.tcp: "tcp"
        case IPProtocolNumber.udp: "udp"
        default: nil
        }
        if let proto = rest.ipProto { words.append("ip protocol \(transport ?? "\(proto)")") }
        rest.ipProto = nil
        for (name, match) in [("sport", rest.srcPort), ("dport", rest.dstPort)] {
            guard let match else { continue }
            guard let transport else { throw BenchError("nftables: a port without tcp or udp in \(rule.match)") }
            switch match {
            case .range(let range): words.append("\(transport) \(name) \(range.min)-\(range.max)")
            case .masked(let port) where port.isExact: words.append("\(transport) \(name) \(port.value)")
            case .masked(let port):
                words.append("\(transport) \(name) & \(String(format: "0x%04x", port.mask)) == \(port.key)")
            }
        }
        rest.srcPort = nil
        rest.dstPort = nil
        let verdict: String
        if rule.actions == [.gact(.drop)] {
            verdict = "drop"
        } else if rule.actions == [.gact(.pass)] {
            verdict = "accept"
        } else {
            throw BenchError("nftables: actions \(rule.actions) are not drop or pass")
        }
        guard rule.filterProtocol == .ip, rest == FlowMatch() else {
            throw BenchError("nftables: cannot translate \(rule.match)")
        }
        if words.isEmpty { words.append("meta protocol ip") }
        return (words + ["counter", verdict]).joined(separator: " ")
    }
}

extension LiveWorkload {
    /// A rule set whose frame need not end in its last rule (`rules` in classification order).
    init(name: String, short: String, lines: [String], rules: [FlowRule], frame: [UInt8]) {
        self.name = name
        self.short = short
        self.lines = lines
        self.rules = rules
        self.frame = frame
        subtables = 0
    }
}

/// A peer whose counters are checked in total only: the frame ends in some rule, not
/// necessarily the last.
final class TotalOnly: LivePeer {
    private let peer: any LivePeer
    init(_ peer: any LivePeer) { self.peer = peer }

    var name: String { peer.name }
    var isXDP: Bool { peer.isXDP }
    func cannot(_ ruleSet: LiveWorkload) -> String? { peer.cannot(ruleSet) }
    func attach(_ ruleSet: LiveWorkload) throws { try peer.attach(ruleSet) }
    func counted() throws -> (total: Int, lastRule: Int?)? { try peer.counted().map { ($0.total, nil) } }
    func detach() throws { try peer.detach() }
}

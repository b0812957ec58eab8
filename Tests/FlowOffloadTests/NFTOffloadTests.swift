import BPFKernel
import FlowRules
import Foundation
import KernelTestSupport
import NFTables
import Packets
import Testing

/// `xdpflow nft sync` against the kernel: the same frames go through random nftables
/// ingress rulesets on a veth, first with nftables alone, then with the offload attached,
/// and each frame must get the same verdict both times. A frame's verdict is whether it
/// left the ingress hook: an inet prerouting chain of the test's own records the source
/// MAC of every frame that reaches it (each frame has its own), in a dynamic set, before
/// any defragmentation (priority -450).
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct NFTOffloadTests {
    /// Rulesets and frames of each, in `make test` (XDPFLOW_FUZZ_SCALE multiplies them).
    static let rulesets = 10 * (ProcessInfo.processInfo.environment["XDPFLOW_FUZZ_SCALE"].flatMap(Int.init) ?? 1)
    static let framesPerRuleset = 2_000

    @Test func verdictsAgreeWithNFTablesAlone() throws {
        var totals = (frames: 0, passed: 0, droppedInXDP: 0, droppedByTC: 0)
        for seed in 0 ..< UInt64(Self.rulesets) {
            var random = SplitMix(seed: seed &* 0x9e37_79b9 &+ 17)
            let lab = try NFTLab()
            let ruleset = RandomRuleset(device: lab.device, random: &random)
            let frames = (0 ..< Self.framesPerRuleset).map { RandomFrame.make(index: $0, to: lab.deviceMAC, random: &random) }
            try loadNFTables(ruleset.script(table: lab.table))
            // tc's rules run first, and a frame they drop never reaches the hook: as the
            // reference classifier decides them (this kernel has no cls_flower), then
            // nftables alone; with the offload, in XDP before it.
            let tc = ruleset.tcRules.enumerated().map { "filter add dev \(lab.device) ingress prio \($0.offset + 1) \($0.element)" }
            var tcRules = RuleSet()
            for line in try Batch(text: tc.joined(separator: "\n")).lines { try line.command.apply(to: &tcRules) }
            var reference = try ReferenceClassifier(rules: tcRules, device: lab.device)
            let droppedByTC = Set(frames.indices.filter { reference.classify(frames[$0], now: 0).verdict == .drop })
            let alone = try lab.passed(frames).subtracting(droppedByTC)
            if !tc.isEmpty {
                try lab.xdpflow("attach dev DEV")
                for line in tc { try lab.xdpflow(line) }
            }
            let synced = try lab.xdpflow("nft sync dev DEV")
            let offloaded = try lab.passed(frames)
            let status = try lab.xdpflow("-j nft status dev DEV")
            let differing = frames.indices.filter { alone.contains($0) != offloaded.contains($0) }
            let shown = differing.isEmpty ? "" : try lab.xdpflow("nft show dev DEV")
            #expect(differing.isEmpty, """
                seed \(seed): \(differing.count) of \(frames.count) frames got another verdict with the offload; \
                first: \(differing.prefix(3).map { "frame \($0) passed alone: \(alone.contains($0))" })
                ruleset:
                \(ruleset.script(table: lab.table))
                \(tc.joined(separator: "\n"))
                \(synced)
                \(shown)
                """)
            totals.frames += frames.count
            totals.passed += alone.count
            totals.droppedInXDP += Self.droppedInXDP(status)
            totals.droppedByTC += droppedByTC.count
        }
        print("nft differential: \(totals.frames) frames, \(totals.passed) passed, \(totals.frames - totals.passed) dropped, "
            + "\(totals.droppedInXDP) of those in XDP by nftables' rules, \(totals.droppedByTC) by tc's before them")
        // The offload must decide frames, not only pass them on.
        #expect(totals.droppedInXDP > totals.frames / 20)
        #expect(totals.droppedByTC > 0, "tc rules before the offload must decide frames too")
    }

    /// tc rules and the offload on one device: the offload takes the prios from 49153
    /// on, after the tc rules, which `filter` commands cannot reach into; a sync whose
    /// band would pass a tc rule is refused; the offload's removal leaves the tc rules.
    @Test func tcRulesRunBeforeTheOffload() throws {
        let lab = try NFTLab()
        try loadNFTables("table netdev \(lab.table) {\n  chain in { type filter hook ingress device \"\(lab.device)\" priority 0;"
            + " policy accept;\n    ip saddr 10.0.1.0/24 drop\n  }\n}\n")
        try lab.xdpflow("attach dev DEV")
        try lab.xdpflow("filter add dev DEV ingress prio 10 protocol ip flower src_ip 10.0.2.0/24 action drop")
        #expect(try lab.xdpflow("nft sync dev DEV").contains("changed"))
        let prios = try lab.xdpflow("-j filter show dev DEV ingress")
        #expect(prios.contains("\"pref\":10,") && prios.contains("\"pref\":49160,") && !prios.contains("\"pref\":8,"))
        let frames = [RandomFrame.ipv4(index: 0, source: "10.0.1.5", to: lab.deviceMAC),
                      RandomFrame.ipv4(index: 1, source: "10.0.2.5", to: lab.deviceMAC),
                      RandomFrame.ipv4(index: 2, source: "10.0.3.5", to: lab.deviceMAC)]
        #expect(try lab.passed(frames) == [2])

        func refused(_ line: String) throws -> String {
            let result = try execute(lab.lab.xdpflowCommand(line))
            #expect(result.status == 2, "\(line): \(result)")
            return result.errors
        }
        #expect(try refused("filter add dev DEV ingress prio 50000 protocol ip flower action drop")
            .contains("prio 50000 of \(lab.device) belongs to the nftables offload (prios 49153-65535)"))
        #expect(try refused("filter del dev DEV ingress").contains("nftables offload"))
        #expect(try lab.xdpflow("filter add dev DEV ingress protocol ip flower src_ip 10.0.4.0/24 action drop").isEmpty)
        #expect(try lab.xdpflow("-j filter show dev DEV ingress").contains("\"pref\":9,"), "tc's automatic prio: below the lowest")
        // Saved: the tc rules; the offload comes back from the ruleset.
        let saved = try lab.xdpflow("save dev DEV")
        #expect(saved.contains("prio 9 ") && saved.contains("prio 10 ") && !saved.contains("prio 49160 ")
            && saved.contains("# and 1 rule offloaded from nftables (prios 49153-65535)"), "\(saved)")

        // The table goes: the offload with it, the tc rules and the program stay.
        try run(["nft", "delete", "table", "netdev", lab.table])
        #expect(try lab.xdpflow("nft sync dev DEV").contains("after the 2 tc rules"))
        #expect(try lab.passed(frames) == [0, 2])
        try lab.xdpflow("filter add dev DEV ingress prio 60000 protocol ip flower src_ip 10.0.3.0/24 action pass")
        try loadNFTables("table netdev \(lab.table) {\n  chain in { type filter hook ingress device \"\(lab.device)\" priority 0;"
            + " policy accept;\n    ip saddr 10.0.1.0/24 drop\n  }\n}\n")
        #expect(try refused("nft sync dev DEV").contains("has a tc rule at prio 60000"))
    }

    /// `nft watch` follows set elements, rules (one inserted first, one after another, a file of them), a flush, the table's deletion and its
    /// return, as map writes where it can, and leaves nothing behind when stopped.
    @Test func watchFollowsTheRuleset() throws {
        let lab = try NFTLab()
        let table = "table netdev \(lab.table) { set blocked { type ipv4_addr; flags interval; }\n"
            + "  chain ingress { type filter hook ingress device \"\(lab.device)\" priority 0; policy accept;\n"
            + "    ip saddr @blocked counter drop\n  }\n}\n"
        try loadNFTables(table)
        let watch = Process()
        let command = lab.lab.xdpflowCommand("nft watch dev DEV")
        watch.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        watch.arguments = Array(command.dropFirst())
        // What it prints says how each change came: followed in memory, or read.
        let printed = FileManager.default.temporaryDirectory.appendingPathComponent("xft-watch-\(lab.table).out")
        _ = FileManager.default.createFile(atPath: printed.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: printed) }
        watch.standardOutput = try FileHandle(forWritingTo: printed)
        try watch.run()
        defer { if watch.isRunning { watch.terminate() } }

        /// The device as `nft status -j` shows it once `condition` holds (or the wait is over).
        func status(once condition: @escaping ([String: Any]) -> Bool) throws -> [String: Any] {
            var last: [String: Any] = [:]
            _ = try settled(at: true, timeout: .seconds(5)) {
                let shown = try lab.xdpflow("-j nft status dev DEV")
                last = (try JSONSerialization.jsonObject(with: Data(shown.utf8)) as? [[String: Any]])?.first ?? [:]
                return condition(last)
            }
            return last
        }
        func flowRules(_ device: [String: Any]) -> [Int] {
            (device["rules"] as? [[String: Any]] ?? []).map { $0["flower_rules"] as? Int ?? -1 }
        }
        func synced(_ device: [String: Any]) -> Bool { device["in_sync"] as? Bool == true }

        var device = try status { synced($0) }
        #expect(synced(device) && flowRules(device) == [0], "an empty set: no flower rule")

        try run(["nft", "add", "element", "netdev", lab.table, "blocked", "{ 10.0.0.1, 10.0.9.0/24 }"])
        device = try status { synced($0) && flowRules($0) == [2] }
        #expect(flowRules(device) == [2], "a set element is a flower rule: \(device)")
        // It acts: the element's frames are dropped in XDP.
        try lab.lab.send(TestFrame.udp(from: "10.0.0.1", port: 53), count: 10)
        device = try status { (($0["rules"] as? [[String: Any]])?.first?["xdp"] as? [String: Any])?["packets"] as? Int == 10 }
        #expect((((device["rules"] as? [[String: Any]])?.first?["xdp"] as? [String: Any])?["packets"] as? Int) == 10)

        try run(["nft", "add", "rule", "netdev", lab.table, "ingress", "tcp", "dport", "22", "drop"])
        device = try status { synced($0) && flowRules($0) == [2, 2] }
        #expect(flowRules(device) == [2, 2], "a rule of either IP family: two flower rules")
        // The monitor does not say where; the kernel's notification does (in sync: as a new read has it).
        try run(["nft", "insert", "rule", "netdev", lab.table, "ingress", "ip", "saddr", "10.0.5.0/24", "drop"])
        device = try status { synced($0) && flowRules($0) == [1, 2, 2] }
        #expect(flowRules(device) == [1, 2, 2], "an inserted rule goes first")
        // One added after a rule the command names goes there.
        let listed = try run(["nft", "-a", "list", "chain", "netdev", lab.table, "ingress"])
        let handle = try #require(listed.split(separator: "\n").first { $0.contains("@blocked") }?
            .split(separator: " ").last.map(String.init))
        try run(["nft", "add", "rule", "netdev", lab.table, "ingress", "position", handle, "ip", "saddr", "10.0.6.0/24", "drop"])
        device = try status { synced($0) && flowRules($0) == [1, 2, 1, 2] }
        #expect(flowRules(device) == [1, 2, 1, 2], "a rule added after another goes after it")

        try run(["nft", "delete", "element", "netdev", lab.table, "blocked", "{ 10.0.0.1 }"])
        device = try status { synced($0) && flowRules($0) == [1, 1, 1, 2] }
        #expect(flowRules(device) == [1, 1, 1, 2])

        // A file of rules: one transaction, its events followed together, each placed.
        try loadNFTables((0 ..< 100).map { "add rule netdev \(lab.table) ingress ip saddr 10.1.0.\($0) drop\n" }.joined())
        device = try status { synced($0) && flowRules($0).count == 104 }
        #expect(flowRules(device) == [1, 1, 1, 2] + Array(repeating: 1, count: 100))

        try run(["nft", "flush", "chain", "netdev", lab.table, "ingress"])
        device = try status { synced($0) && flowRules($0).isEmpty }
        #expect(flowRules(device).isEmpty)

        try run(["nft", "delete", "table", "netdev", lab.table])
        device = try status { $0["attached"] as? Bool == false }
        #expect(device["attached"] as? Bool == false, "the table gone, the offload goes")

        try loadNFTables(table)
        device = try status { synced($0) }
        #expect(synced(device), "the table back, the offload comes back")

        watch.terminate()
        let exited = try settled(at: false, timeout: .seconds(10)) { watch.isRunning } == false
        #expect(exited, "the watch stops on SIGTERM")
        if !exited { kill(watch.processIdentifier, SIGKILL) }
        watch.waitUntilExit()
        #expect(exited && watch.terminationStatus == 0)
        let output = try String(contentsOf: printed, encoding: .utf8)
        #expect(output.contains("changed (1 event followed)"), "rules and elements are followed, not read: \(output)")
        // (Together, unless the monitor paused for a millisecond within the file's events.)
        #expect(output.contains(" events followed)"), "a file of rules is followed: \(output)")
        #expect(!FileManager.default.fileExists(atPath: lab.lab.offload.pins.string), "no pins after the watch")
        #expect(try lab.xdpflow("show").isEmpty, "nothing attached after the watch")
    }

    /// The frames XDP dropped, from `nft status -j`.
    static func droppedInXDP(_ json: String) -> Int {
        guard let devices = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]] else { return 0 }
        return devices.reduce(0) { sum, device in
            let rules = device["rules"] as? [[String: Any]] ?? []
            return sum + (device["policy_drops"] as? Int ?? 0)
                + rules.reduce(0) { $0 + (($1["xdp"] as? [String: Any])?["packets"] as? Int ?? 0) }
        }
    }
}

/// A veth lab with nftables: the test's ruleset table on the device's ingress hook, the
/// collector, and xdpflow's state of its own.
final class NFTLab {
    let lab: OffloadLab
    let table: String
    let collector: String
    let deviceMAC: MACAddress

    var device: String { lab.device }

    init() throws {
        lab = try OffloadLab(attach: false)
        let tag = String(UInt32.random(in: 0 ... .max), radix: 16)
        table = "xft_nft_\(tag)"
        collector = "xft_seen_\(tag)"
        // IPv6 frames reach prerouting only with IPv6 on; GRO takes the peer's XDP frames
        // without a program on the device.
        try run(["sysctl", "-qw", "net.ipv6.conf.\(lab.device).disable_ipv6=0"])
        try run(["ethtool", "-K", lab.device, "gro", "on"])
        deviceMAC = MACAddress(try String(contentsOfFile: "/sys/class/net/\(lab.device)/address", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines))!
        try loadNFTables("""
            table inet \(collector) {
              set seen { type ether_addr; flags dynamic; size 65535; }
              chain pre { type filter hook prerouting priority -450; policy accept;
                iifname "\(lab.device)" update @seen { ether saddr }
              }
            }
            """)
    }

    deinit {
        _ = try? run(["nft", "delete", "table", "netdev", table])
        _ = try? run(["nft", "delete", "table", "inet", "\(table)_inet"])
        _ = try? run(["nft", "delete", "table", "inet", collector])
    }

    @discardableResult
    func xdpflow(_ line: String) throws -> String { try lab.xdpflow(line) }

    /// The indexes of the frames that left the ingress hook, sending each once.
    func passed(_ frames: [[UInt8]]) throws -> Set<Int> {
        // A busy machine can fill the device's receive ring: the peer counts each frame
        // it could not hand over, and then the whole send is made again, slower.
        var rate = 20_000.0
        for _ in 1 ... 3 {
            try run(["nft", "flush", "set", "inet", collector, "seen"])
            let before = try lab.peerStatistics().transmitErrors
            let peer = lab.peer
            try NetworkNamespace.run(in: lab.namespace) { [rate] in
                let generator = try TrafficGenerator(device: NetworkInterface(named: peer),
                                                     frames: frames.map { GeneratedFrame($0) })
                try generator.send(count: frames.count, rate: rate)
            }
            // The frames are handled after the send returns: wait until the set stops growing.
            var seen: Set<MACAddress> = []
            var stable = 0
            while stable < 3 {
                Thread.sleep(forTimeInterval: 0.1)
                let now = try collected()
                stable = now == seen ? stable + 1 : 0
                seen = now
            }
            if try lab.peerStatistics().transmitErrors == before {
                return Set(frames.indices.filter { seen.contains(RandomFrame.source(index: $0)) })
            }
            rate /= 4
        }
        Issue.record("frames lost before the device's ingress in three sends")
        return []
    }

    private func collected() throws -> Set<MACAddress> {
        let json = try run(["nft", "-j", "list", "set", "inet", collector, "seen"])
        let ruleset = try Ruleset(json: Array(json.utf8))
        return Set(ruleset.sets.flatMap(\.elements).compactMap { element -> MACAddress? in
            guard case .value(let value) = element, let text = value.string else { return nil }
            return MACAddress(text)
        })
    }
}

/// A random netdev ingress ruleset: one to three base chains of random priority and
/// policy, a regular chain to jump to, a named set, and rules drawn from the matches and
/// statements the offload translates, mixed with ones it hands to nftables.
struct RandomRuleset {
    var device: String
    var bases: [(priority: Int, policy: String, rules: [String])] = []
    var sub: [String] = []
    var sub2: [String] = []
    var setElements: [String] = []
    /// An inet table's ingress chain on the device (it sees IPv4 and IPv6 only).
    var inet: (priority: Int, policy: String, rules: [String])?
    /// tc flower rules on the device (the words after the prio), which run before the hook.
    var tcRules: [String] = []

    init(device: String, random: inout SplitMix) {
        self.device = device
        setElements = (0 ..< random.next(in: 1 ... 4)).map { _ in Self.address4(&random) }
        var priorities = Set<Int>()
        func priority() -> Int {
            var priority = random.next(in: -50 ... 50)
            while !priorities.insert(priority).inserted { priority += 1 }
            return priority
        }
        func policy() -> String { random.next(in: 0 ... 4) == 0 ? "drop" : "accept" }
        for _ in 0 ..< random.next(in: 1 ... 3) {
            bases.append((priority(), policy(), (0 ..< random.next(in: 3 ... 14)).map { _ in Self.rule(&random, to: ["sub"]) }))
        }
        // Below a jump: a return, and a goto or jump further down.
        sub = (0 ..< random.next(in: 1 ... 4)).map { _ in
            random.next(in: 0 ... 4) == 0 ? Self.matches(&random) + " return" : Self.rule(&random, to: ["sub2"])
        }
        sub2 = (0 ..< random.next(in: 1 ... 3)).map { _ in Self.rule(&random, to: []) }
        if random.next(in: 0 ... 2) == 0 {
            inet = (priority(), policy(), (0 ..< random.next(in: 2 ... 8)).map { _ in Self.rule(&random, to: []) })
        }
        if random.next(in: 0 ... 1) == 0 {
            tcRules = (0 ..< random.next(in: 1 ... 3)).map { _ in Self.tcRule(&random) }
        }
    }

    /// A flower rule of one network protocol (`protocol all` reads a tagged frame
    /// otherwise in tc, which sees it untagged, than in XDP).
    static func tcRule(_ random: inout SplitMix) -> String {
        let action = random.next(in: 0 ... 2) == 0 ? "pass" : "drop"
        switch random.next(in: 0 ... 3) {
        case 0: return "protocol ip flower src_ip \(prefix4(&random)) action \(action)"
        case 1: return "protocol ip flower ip_proto tcp dst_port \(port(&random)) action \(action)"
        case 2: return "protocol ipv6 flower dst_ip \(prefix6(&random)) action \(action)"
        default: return "protocol ip flower dst_ip \(prefix4(&random)) ip_proto udp action \(action)"
        }
    }

    func script(table: String) -> String {
        let set = "  set blocked { type ipv4_addr; flags interval; elements = { \(setElements.joined(separator: ", ")) } }\n"
        func chain(_ name: String, _ rules: [String], hook: (priority: Int, policy: String)? = nil) -> String {
            let head = hook.map { " type filter hook ingress device \"\(device)\" priority \($0.priority); policy \($0.policy);" } ?? ""
            return "  chain \(name) {\(head)\n" + rules.map { "    \($0)\n" }.joined() + "  }\n"
        }
        var text = "table netdev \(table) {\n" + set + chain("sub2", sub2) + chain("sub", sub)
        for (index, base) in bases.enumerated() {
            text += chain("base\(index)", base.rules, hook: (base.priority, base.policy))
        }
        text += "}\n"
        if let inet {
            text += "table inet \(table)_inet {\n" + set + chain("ingress", inet.rules, hook: (inet.priority, inet.policy)) + "}\n"
        }
        return text
    }

    /// A rule whose verdict may jump or go to one of `targets`.
    static func rule(_ random: inout SplitMix, to targets: [String]) -> String {
        let verdicts = ["drop", "drop", "accept", "continue", "counter drop", "counter accept"]
            + targets.flatMap { ["jump \($0)", "goto \($0)"] }
        switch random.next(in: 0 ... 20) {
        case 0: return "meta pkttype host " + matches(&random) + " drop"
        case 1: return matches(&random) + " limit rate 100000/second burst 100000 packets accept"
        case 2: return matches(&random) + " counter"
        // Keys that do not overlap, as a map's must not.
        case 3: return "ip daddr vmap { 10.0.\(random.next(in: 0 ... 3)).0/24 : drop, 10.0.\(random.next(in: 4 ... 7)).0/25 : accept }"
        case 4: return "meta mark != 0x1 " + matches(&random) + " drop"
        // The kernel has taken the tag off before the hook: this matches QinQ alone.
        case 5: return "meta protocol vlan drop"
        // nftables sets the mark on what XDP passes; the mark matches after it stay nftables'.
        case 6: return "meta mark set 0x1 " + matches(&random) + " " + verdicts[random.next(in: 0 ... verdicts.count - 1)]
        default: return matches(&random) + " " + verdicts[random.next(in: 0 ... verdicts.count - 1)]
        }
    }

    /// One to three matches that nftables takes together: one network family and one
    /// transport protocol a rule.
    static func matches(_ random: inout SplitMix) -> String {
        var family = [4, 6, 0][random.next(in: 0 ... 2)]
        var transport = [nil, "tcp", "udp"][random.next(in: 0 ... 2)]
        return (0 ..< random.next(in: 1 ... 3)).map { _ in match(&random, family: &family, transport: &transport) }
            .joined(separator: " ")
    }

    static func match(_ random: inout SplitMix, family: inout Int, transport: inout String?) -> String {
        let ports = transport == "tcp" || transport == "udp" ? transport : nil
        var choices: [(inout SplitMix) -> String] = []
        if family != 6 {
            choices += [
                { "ip saddr \(prefix4(&$0))" }, { "ip daddr \(prefix4(&$0))" }, { "ip saddr != \(prefix4(&$0))" },
                { _ in "ip saddr @blocked" }, { "ip daddr { \(prefix4(&$0)), \(address4(&$0)) }" },
                { random in
                    let low = address4(&random)
                    return "ip daddr \(low)-\(low.split(separator: ".").prefix(3).joined(separator: ".")).255"
                },
            ]
            if let ports {
                choices.append { "ip saddr . \(ports) dport { \(address4(&$0)) . \(port(&$0)), \(address4(&$0)) . \(port(&$0)) }" }
            }
        }
        if family != 4 {
            choices += [{ "ip6 saddr \(prefix6(&$0))" }, { "ip6 daddr != \(prefix6(&$0))" }]
        }
        if let ports {
            choices += [{ "\(ports) dport \(Self.ports(&$0))" }, { "\(ports) sport \(Self.ports(&$0))" },
                        { "\(ports) dport != \(Self.ports(&$0, comparisons: false))" }, { _ in "meta l4proto \(ports)" }]
            if family == 4 { choices.append { _ in "ip protocol \(ports)" } }
        } else if transport == nil {
            choices.append { _ in "meta l4proto icmp" }
        }
        if family == 0 { choices.append { _ in "meta protocol ip" } }
        // `!=` of a protocol: no port or protocol match may follow it in the rule.
        if transport == nil {
            choices.append { _ in "meta l4proto != tcp" }
            if family != 6 { choices.append { _ in "ip protocol != udp" } }
            if family == 0 { choices.append { _ in "meta protocol != ip6" } }
        }
        if family == 4, transport == nil { choices.append { _ in "icmp type echo-request" } }
        let text = choices[random.next(in: 0 ... choices.count - 1)](&random)
        // What the match fixes for the rest of the rule.
        if text.hasPrefix("ip ") || text == "meta protocol ip" || text.hasPrefix("icmp") { family = 4 }
        if text.hasPrefix("ip6 ") { family = 6 }
        if text.contains("icmp") { transport = "icmp" }
        if text.contains("!= tcp") || text.contains("!= udp") { transport = "negated" }
        return text
    }

    /// Addresses in 10.0.0.0/21, where the frames' are.
    static func address4(_ random: inout SplitMix, above: Int = 0) -> String {
        "10.0.\(random.next(in: 0 ... 7)).\(min(255, random.next(in: 0 ... 247) + above))"
    }

    static func prefix4(_ random: inout SplitMix) -> String {
        ["10.0.\(random.next(in: 0 ... 3)).0/24", "10.0.0.0/22", "10.0.\(random.next(in: 0 ... 7)).\(random.next(in: 0 ... 3) * 64)/26"][random.next(in: 0 ... 2)]
    }

    static func prefix6(_ random: inout SplitMix) -> String {
        ["2001:db8:0:\(random.next(in: 0 ... 3))::/64", "2001:db8::/48", "2001:db8:0:\(random.next(in: 0 ... 3))::\(random.next(in: 1 ... 9))"][random.next(in: 0 ... 2)]
    }

    static func port(_ random: inout SplitMix) -> Int { [22, 53, 80, 443, 1000, 1500, 60000][random.next(in: 0 ... 6)] }

    static func ports(_ random: inout SplitMix, comparisons: Bool = true) -> String {
        switch random.next(in: 0 ... (comparisons ? 5 : 3)) {
        case 0: "\(port(&random))"
        case 1: "1000-2000"
        case 2: "0-1023"
        case 3: "{ 22, 53, 443 }"
        case 4: "< 1024"
        default: ">= 60000"
        }
    }
}

/// The frames: IPv4 and IPv6, TCP, UDP and ICMP, to the device's MAC (the stack takes
/// them to prerouting), each from a source MAC of its own that names it; some with what
/// nftables reads otherwise than flower: a VLAN tag (id 0, a priority tag: the kernel
/// takes it off and the frame goes on), IPv4 fragments (first and later), IPv6
/// destination options before the transport header.
enum RandomFrame {
    static func source(index: Int) -> MACAddress { MACAddress(rawValue: 0x0200_0000_0000 | UInt64(index + 1)) }

    static func make(index: Int, to destination: MACAddress, random: inout SplitMix) -> [UInt8] {
        var ethernet = FrameBuilder().ethernet(dst: destination, src: source(index: index))
        if random.next(in: 0 ... 9) == 0 { ethernet = ethernet.vlan(id: 0, priority: UInt8(random.next(in: 0 ... 7))) }
        let ports = (RandomRuleset.port(&random), [22, 53, 80, 443, 1000, 1500, 2000, 60000, random.next(in: 1 ... 65535)][random.next(in: 0 ... 8)])
        let ip: FrameBuilder
        let v6 = random.next(in: 0 ... 3) == 0
        let proto = [6, 17, 1][random.next(in: 0 ... 2)]
        let odd = random.next(in: 0 ... 9) == 0
        if v6 {
            ip = ethernet.ipv6(src: IPv6Address("2001:db8:0:\(random.next(in: 0 ... 3))::\(random.next(in: 1 ... 9))")!,
                               dst: IPv6Address("2001:db8:0:\(random.next(in: 0 ... 3))::\(random.next(in: 1 ... 9))")!,
                               extensionHeaders: odd ? [.destinationOptions()] : [])
        } else {
            let later = odd && random.next(in: 0 ... 1) == 0
            ip = ethernet.ipv4(src: IPv4Address(RandomRuleset.address4(&random))!, dst: IPv4Address(RandomRuleset.address4(&random))!,
                               identification: UInt16(truncatingIfNeeded: index), fragmentOffset: later ? 8 : 0,
                               moreFragments: odd)
        }
        let frame: FrameBuilder = switch proto {
        case 6: ip.tcp(src: UInt16(ports.0), dst: UInt16(ports.1))
        case 17: ip.udp(src: UInt16(ports.0), dst: UInt16(ports.1))
        default: v6 ? ip.icmpv6(type: 128, code: 0) : ip.icmp(type: [8, 0][random.next(in: 0 ... 1)], code: 0)
        }
        return frame.padded().bytes
    }

    /// A UDP frame from `source`, named by `index`.
    static func ipv4(index: Int, source address: String, to destination: MACAddress) -> [UInt8] {
        FrameBuilder().ethernet(dst: destination, src: source(index: index))
            .ipv4(src: IPv4Address(address)!, dst: IPv4Address("10.0.0.1")!).udp(src: 1000, dst: 53).padded().bytes
    }
}

/// A small seeded generator, so that a failing ruleset can be run again.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    mutating func next(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }
}

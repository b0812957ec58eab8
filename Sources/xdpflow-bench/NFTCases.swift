import Foundation
import RuleSetWorkloads

/// Suite nft (issue 15): nftables' own rules offloaded by `xdpflow nft sync`, against
/// nftables alone with the same rules, live on the live suite's veth lab; and how long a
/// sync of 10,000 rules takes.
enum NFTCases {
    static func sections(_ options: Options) throws -> [Section] {
        let timing = options.quick ? LiveCases.Timing.quick : LiveCases.Timing.full
        let (one, acl) = try ACLLive.workloads(flows: timing.flows, suite: "nft")
        let xdpflow = try Shell.xdpflowBinary()
        return try Undo.shared.onSignals {
            defer { Undo.shared.all() }
            let lab = try LiveLab()
            try lab.place(.senderCPU)
            progress("nft: lab \(lab.device) <- \(lab.sender) in \(lab.namespace)")
            let synced = try NFTSyncPeer(lab, xdpflow: xdpflow)
            let peers: [any LivePeer] = [try FloorPeer(lab), TotalOnly(NFTablesPeer(lab, translate: ACLLive.nftables)),
                                         TotalOnly(synced)]
            if let why = peers[1].cannot(acl) { throw BenchError("nft: \(why)") }
            let samples = try LiveCases.alternated(peers, [one, acl], lab: lab, xdpflow: xdpflow, timing: timing, suite: "nft")
            let syncs = try syncTimes(acl, lab: lab, peer: synced, rounds: options.quick ? 2 : 4)
            var latencies: [(String, [Double], [Double])] = []
            for (ruleSet, rounds) in [(one, options.quick ? 10 : 30), (acl, options.quick ? 3 : 8)] {
                latencies.append(try watchLatencies(ruleSet, lab: lab, peer: synced, xdpflow: xdpflow, rounds: rounds))
            }
            return [liveSection([one, acl], samples, timing: timing), syncSection(syncs, rules: acl.rules.count),
                    watchSection(latencies)]
        }
    }

    static func liveSection(_ ruleSets: [LiveWorkload], _ samples: [[String: [LiveCases.Sample]]],
                            timing: LiveCases.Timing) -> Section {
        let peers = ["floor", "nftables", "nft sync"]
        var section = Section(
            slug: "nft-live", title: "nftables offloaded, live over veth (Mpps received; sender and receiver on one CPU)",
            method: """
                The acl-live section's lab, frames and method (\(timing.flows) source ports, \
                \(timing.window.formatted(1)) s windows after \(timing.warm.formatted(1)) s, \(timing.rounds) rounds, \
                the peers alternated; median (min-max), ratios per round). Both peers load the same nftables \
                table: a netdev ingress chain with one rule per ClassBench line in the same order (first match \
                wins), each with a counter and drop or accept. *nftables*: that alone. *nft sync*: then \
                `xdpflow nft sync dev DEV`, which runs the chain in XDP: the frame's rule drops it there. Every \
                sample checks that every frame sent was received and that the rules' counters (for nft sync, \
                `xdpflow -j nft status`: XDP's and nftables' together) add up to the frames received. *floor*: \
                an XDP program that drops every frame and does nothing else, in turn with the others: floor / \
                nftables is the most any XDP program could reach over nftables in the same round.
                """,
            columns: [Column("rule set", key: "rule_set", .left)]
                + peers.map { Column("\($0) Mpps", key: "\($0.replacingOccurrences(of: " ", with: "_"))_mpps") }
                + [Column("nft sync / nftables", key: "ratio"), Column("floor / nftables", key: "floor_ratio"),
                   Column("nft sync / floor", key: "of_floor")])
        for (ruleSet, results) in zip(ruleSets, samples) {
            func rates(_ peer: String) -> Samples { Samples(results[peer]!.map { $0.window.receivedRate / 1e6 }) }
            func ratios(_ peer: String, _ base: String) -> Samples {
                Samples(zip(results[peer]!, results[base]!).map { $0.window.receivedRate / $1.window.receivedRate })
            }
            let ratio = ratios("nft sync", "nftables")
            section.append([.text(ruleSet.name)] + peers.map { LiveReport.cell(rates($0)) }
                + [.samples(ratio, digits: 1), .samples(ratios("floor", "nftables"), digits: 1),
                   .samples(ratios("nft sync", "floor"), digits: 2)])
            let (goal, limit) = ruleSet.rules.count == 1
                ? ("nftables, 1 rule, live: nft sync / nftables alone", 3.0)
                : ("nftables, acl1_10000 first match, live: nft sync / nftables alone", 20.0)
            section.targets.append(Target(goal, measured: ratio.median, .atLeast, limit, unit: "x"))
        }
        return section
    }

    /// What `xdpflow nft sync dev DEV` costs for `ruleSet`'s table, by case: its first run
    /// (attach and every rule), a run with nothing changed, and runs after one rule is
    /// appended and after one is inserted first (every rule after it moves a prio).
    static func syncTimes(_ ruleSet: LiveWorkload, lab: LiveLab, peer: NFTSyncPeer, rounds: Int) throws
        -> [(String, [Double])] {
        var times: [(String, [Double])] = [("first sync (attach, every rule)", []), ("sync, nothing changed", []),
                                           ("sync after nft add rule (appended)", []),
                                           ("sync after nft insert rule (first)", [])]
        for round in 1 ... rounds {
            try peer.load(ruleSet)
            times[0].1.append(try peer.timedSync())
            times[1].1.append(try peer.timedSync())
            try Shell.run(["nft", "add", "rule", "netdev", peer.table, "ingress", "ip", "saddr", "203.0.113.\(round)",
                           "counter", "drop"])
            times[2].1.append(try peer.timedSync())
            try Shell.run(["nft", "insert", "rule", "netdev", peer.table, "ingress", "ip", "saddr", "198.51.100.\(round)",
                           "counter", "drop"])
            times[3].1.append(try peer.timedSync())
            progress("nft: sync round \(round): " + times.map { "\(($0.1.last! * 1e3).formatted(0)) ms" }.joined(separator: ", "))
            try peer.detach()
        }
        return times
    }

    static func syncSection(_ times: [(String, [Double])], rules: Int) -> Section {
        var section = Section(
            slug: "nft-sync", title: "xdpflow nft sync of \(rules.grouped) rules (ms)",
            method: """
                The nft-live section's table of acl1_10000 (\(rules.grouped) rules), loaded with `nft -f`; then \
                `xdpflow nft sync dev DEV` timed from spawn to exit: its first run on the device (it attaches and \
                adds every rule), again with nothing changed, after `nft add rule` appends a rule, and after \
                `nft insert rule` puts one first. Each run reads the ruleset (`nft -j list chains`, `nft -j -s list table` of the table, and `nft list \
                chains` for the devices nft 1.0.6 leaves out of its JSON), translates the hook and changes the device's rules through the one engine. \
                \(times[0].1.count) rounds, each on a freshly loaded table; median (min-max).
                """,
            columns: [Column("case", key: "case", .left), Column("ms", key: "ms")])
        for (name, values) in times {
            section.append([.text(name), .samples(Samples(values.map { $0 * 1e3 }), digits: 0)])
        }
        section.targets.append(Target("xdpflow nft sync of acl1_10000 (first): seconds", measured: Samples(times[0].1).median,
                                      .atMost, 1, unit: "s"))
        return section
    }
}

extension NFTCases {
    /// How long after `nft add rule` (and `nft add element`) returns `xdpflow nft watch`
    /// has the change in the kernel: the line it prints once the device's rules changed.
    static func watchLatencies(_ ruleSet: LiveWorkload, lab: LiveLab, peer: NFTSyncPeer, xdpflow: String,
                               rounds: Int) throws -> (String, [Double], [Double]) {
        try peer.load(ruleSet)
        defer { try? peer.unload() }
        // A set for the elements, and the rule that reads it.
        try Shell.run(["nft", "add", "set", "netdev", peer.table, "extra", "{ type ipv4_addr; }"])
        try Shell.run(["nft", "add", "rule", "netdev", peer.table, "ingress", "ip", "saddr", "@extra", "counter", "drop"])
        let watch = try WatchProcess(xdpflow: xdpflow, device: lab.device, environment: peer.environment)
        defer { watch.stop() }
        _ = try watch.line(containing: "following", timeout: 60)
        var rules: [Double] = [], elements: [Double] = []
        /// Seconds from now until the watch says the device's rules changed.
        func untilChanged() throws -> Double {
            try timed { try watch.line(containing: "changed", timeout: 60) }.1 / 1e9
        }
        for round in 1 ... rounds {
            // Spawned and reaped directly (wait4): Shell's bookkeeping after the exit would
            // count against the watch.
            _ = try timedCommand(["nft", "add", "rule", "netdev", peer.table, "ingress", "ip", "saddr",
                                  "203.0.\(round / 256).\(round % 256)", "counter", "drop"])
            rules.append(try untilChanged())
            _ = try timedCommand(["nft", "add", "element", "netdev", peer.table, "extra",
                                  "{ 198.18.\(round / 256).\(round % 256) }"])
            elements.append(try untilChanged())
        }
        progress("nft: watch, \(ruleSet.short): rule \((Samples(rules).median * 1e3).formatted(1)) ms, "
            + "element \((Samples(elements).median * 1e3).formatted(1)) ms")
        return (ruleSet.name, rules, elements)
    }

    static func watchSection(_ latencies: [(String, [Double], [Double])]) -> Section {
        var section = Section(
            slug: "nft-watch", title: "xdpflow nft watch: from the nft command's return to the change in XDP (ms)",
            method: """
                The nft-live section's table, with a set `extra` and a rule `ip saddr @extra counter drop` added; \
                `xdpflow nft watch dev DEV` running (it syncs, then follows `nft -j monitor`: when nftables has \
                been quiet for a millisecond after an event, it applies the events to the ruleset it holds, a new \
                rule where the kernel's notification of it says, walks the translation again from the first rule \
                the events reach and changes \
                the device's rules through the one engine). Then, in turn, `nft add rule ... ip saddr A counter drop` and \
                `nft add element ... extra { B }`, each timed from the command's return until the watch prints \
                that the device's rules changed (its map writes, or a new program, are in the kernel then). \
                Median (min-max).
                """,
            columns: [Column("rule set", key: "rule_set", .left), Column("rounds", key: "rounds"),
                      Column("nft add rule", key: "rule_ms"), Column("nft add element", key: "element_ms")])
        for (name, rules, elements) in latencies {
            section.append([.text(name), .text("\(rules.count)"), .samples(Samples(rules.map { $0 * 1e3 }), digits: 1),
                            .samples(Samples(elements.map { $0 * 1e3 }), digits: 1)])
        }
        if let big = latencies.last {
            section.targets.append(Target("nft watch, acl1_10000: nft add rule acts in XDP, p50 (ms)",
                                          measured: Samples(big.1).median * 1e3, .atMost, 10, unit: "ms"))
            section.targets.append(Target("nft watch, acl1_10000: nft add element acts in XDP, p50 (ms)",
                                          measured: Samples(big.2).median * 1e3, .atMost, 10, unit: "ms"))
        }
        return section
    }
}

/// `xdpflow nft watch` running, its standard output read line by line as it comes.
final class WatchProcess {
    private let process = Process()
    private let output = Pipe()
    private var pending: [UInt8] = []
    private var token: Undo.Token?

    init(xdpflow: String, device: String, environment: [String: String]) throws {
        process.executableURL = URL(fileURLWithPath: xdpflow)
        process.arguments = ["nft", "watch", "dev", device]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        token = Undo.shared.push("xdpflow nft watch") { [process] in
            if process.isRunning { process.terminate(); process.waitUntilExit() }
        }
    }

    /// The next line that contains `text`, within `timeout` seconds.
    func line(containing text: String, timeout: Double) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        let descriptor = output.fileHandleForReading.fileDescriptor
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            while let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<end], as: UTF8.self)
                pending.removeSubrange(...end)
                if line.contains(text) { return line }
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw BenchError("xdpflow nft watch: no line with '\(text)' in \(timeout) s") }
            var polled = [pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)]
            guard poll(&polled, 1, Int32(left * 1000)) > 0 else { continue }
            let count = read(descriptor, &buffer, buffer.count)
            guard count > 0 else { throw BenchError("xdpflow nft watch ended") }
            pending += buffer[..<count]
        }
    }

    /// SIGTERM: the watch removes its offloads and exits.
    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        if let token { Undo.shared.done(token) }
        token = nil
    }
}

/// nftables' own rules (the nftables peer's table), offloaded by `xdpflow nft sync`.
final class NFTSyncPeer: LivePeer {
    let name = "nft sync"
    let isXDP = true
    private let lab: LiveLab
    private let xdpflow: String
    private let nftables: NFTablesPeer
    /// Its state directory, pins and their removal: an XDPFlow peer's, not attached by it.
    private let offload: XDPFlowPeer
    var environment: [String: String] { offload.environment }
    var table: String { nftables.table }

    init(_ lab: LiveLab, xdpflow: String) throws {
        self.lab = lab
        self.xdpflow = xdpflow
        nftables = NFTablesPeer(lab, translate: ACLLive.nftables)
        offload = try XDPFlowPeer(lab, xdpflow: xdpflow, stateName: "nft")
    }

    func cannot(_ ruleSet: LiveWorkload) -> String? { nftables.cannot(ruleSet) }

    /// The table alone, not yet offloaded.
    func load(_ ruleSet: LiveWorkload) throws { try nftables.attach(ruleSet) }

    /// The table gone (the offload removed already).
    func unload() throws { try nftables.detach() }

    func attach(_ ruleSet: LiveWorkload) throws {
        try load(ruleSet)
        let synced = try Shell.run([xdpflow, "nft", "sync", "dev", lab.device], environment: environment)
        let status = try Shell.run([xdpflow, "show", "dev", lab.device], environment: environment)
        guard status.contains("native mode") else {
            throw BenchError("xdpflow nft sync dev \(lab.device): not in native mode: \(synced) \(status)")
        }
    }

    /// One `xdpflow nft sync dev DEV`, from spawn to exit reaped, in seconds.
    func timedSync() throws -> Double {
        try timedCommand([xdpflow, "nft", "sync", "dev", lab.device], environment: environment).wall / 1e3
    }

    /// Every rule's count, XDP's and nftables' together, from `xdpflow -j nft status`.
    func counted() throws -> (total: Int, lastRule: Int?)? {
        let shown = try Shell.run([xdpflow, "-j", "nft", "status", "dev", lab.device], environment: environment)
        guard let devices = try JSONSerialization.jsonObject(with: Data(shown.utf8)) as? [[String: Any]] else {
            throw BenchError("xdpflow -j nft status: not a JSON array")
        }
        let total = devices.flatMap { $0["rules"] as? [[String: Any]] ?? [] }
            .compactMap { ($0["counters"] as? [String: Any])?["packets"] as? Int }.reduce(0, +)
        return (total, nil)
    }

    func detach() throws {
        try offload.detach()
        try nftables.detach()
    }
}

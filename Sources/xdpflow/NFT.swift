import ArgumentParser
import FlowCompiler
import FlowOffload
import FlowRules
import FoundationEssentials
import Glibc
import NFTables

/// `xdpflow nft sync|status|show [dev DEV]`: nftables' ingress chains run in XDP.
struct NFT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nft",
        abstract: "Offload nftables' ingress chains to XDP: sync, status, show.",
        usage: "xdpflow nft sync [dev DEV]\n       xdpflow [-j [-p]] nft status [dev DEV]\n       xdpflow nft show [dev DEV]",
        discussion: nftManual,
        subcommands: [NFTSync.self, NFTStatus.self, NFTShow.self])
}

/// `xdpflow nft sync [dev DEV]`.
struct NFTSync: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Run each device's nftables ingress chains in XDP, as far as XDP can be sure.",
        usage: "xdpflow nft sync [dev DEV]",
        discussion: "See xdpflow nft --help.")

    @Argument(help: ArgumentHelp("dev DEV", valueName: "dev DEV"))
    var words: [String] = []

    func run() throws {
        let only = words.isEmpty ? nil : try DeviceWords.device(in: words, command: "nft sync")
        let ruleset = try NFTRulesetSource.read()
        for device in try NFTRulesetSource.devices(of: ruleset, only: only) {
            print(try NFTRulesetSource.sync(device, ruleset: ruleset))
        }
    }
}

/// `xdpflow [-j] nft status [dev DEV]`.
struct NFTStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Per nftables rule: offloaded or not (and why), and its counts in XDP and in nftables.",
        usage: "xdpflow [-j [-p]] nft status [dev DEV]",
        discussion: "See xdpflow nft --help.")

    @OptionGroup(visibility: .hidden) var global: GlobalOptions

    @Argument(help: ArgumentHelp("dev DEV", valueName: "dev DEV"))
    var words: [String] = []

    func run() throws {
        let only = words.isEmpty ? nil : try DeviceWords.device(in: words, command: "nft status")
        let ruleset = try NFTRulesetSource.read()
        let reports = try NFTRulesetSource.devices(of: ruleset, only: only).map {
            try NFTDeviceStatus(device: $0, ruleset: ruleset)
        }
        global.print(json: .array(reports.map(\.json)), text: reports.map(\.text).joined())
    }
}

/// `xdpflow nft show [dev DEV]`: the flower rules a sync would run, as a `-batch` file.
struct NFTShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print the flower rules nft sync would run, as a -batch file, with each nftables rule's fate.",
        usage: "xdpflow nft show [dev DEV]",
        discussion: "See xdpflow nft --help.")

    @Argument(help: ArgumentHelp("dev DEV", valueName: "dev DEV"))
    var words: [String] = []

    func run() throws {
        let only = words.isEmpty ? nil : try DeviceWords.device(in: words, command: "nft show")
        let ruleset = try NFTRulesetSource.read()
        for device in only.map({ [$0] }) ?? HookOffload.devices(of: ruleset) {
            let offload = try HookOffload(ruleset: ruleset, device: device)
            var lines = ["# dev \(device): " + offload.chains.map(\.description).joined(separator: ", ")]
            for report in offload.reports { lines.append("# \(report.rule): \(NFTDeviceStatus.describe(report.status))") }
            lines += offload.rules.map { $0.batchLine(device: device) }
            print(lines.joined(separator: "\n"))
        }
    }
}

/// The running ruleset, and the devices whose offload follows it.
enum NFTRulesetSource {
    /// The marker a sync leaves beside a device's rules: the device's rules are nftables'.
    struct Marker: Codable {
        var chains: [String]
    }

    static func markerFile(_ device: String) -> String { "\(device).nft" }

    /// `nft -j list ruleset`, with `nft list chains` for the devices nft 1.0.6 leaves out
    /// of the JSON (the text of the chains alone: that of every rule costs as much again).
    static func read() throws -> Ruleset {
        let json = try Subprocess.output(of: ["nft", "-j", "list", "ruleset"])
        let ruleset = try Ruleset(json: json)
        guard ruleset.chains.contains(where: { $0.base?.hook == "ingress" && $0.base?.devices.isEmpty == true }) else {
            return ruleset
        }
        let listing = try Subprocess.output(of: ["nft", "list", "chains"])
        return try Ruleset(json: json, listing: String(decoding: listing, as: UTF8.self))
    }

    /// `only`, or every device with an ingress chain or an offload a sync made.
    static func devices(of ruleset: Ruleset, only: String?) throws -> [String] {
        if let only { return [only] }
        let marked = try Offload.devices().filter { Offload(device: $0).files.contains(markerFile($0)) }
        return Set(HookOffload.devices(of: ruleset) + marked).sorted()
    }

    /// Makes the device's rules the offload of its chains, through the one engine: the
    /// rules that changed go, the new ones come, in one change. Without chains left, the
    /// offload a sync made is detached.
    static func sync(_ device: String, ruleset: Ruleset) throws -> String {
        let translated = try HookOffload(ruleset: ruleset, device: device)
        let offload = Offload(device: device)
        let marked = offload.files.contains(markerFile(device))
        if translated.chains.isEmpty {
            guard marked else { return "\(device): no nftables ingress chain; nothing to do" }
            do {
                try offload.detach()
            } catch OffloadError.notAttached {
                // Detached by hand already.
            }
            try offload.files.remove(markerFile(device))
            return "\(device): no nftables ingress chain left; offload detached"
        }
        let wanted = Set(translated.rules)
        let marker = Marker(chains: translated.chains.map(\.description))
        // One read of the device's state, in the update; attached first when it is not.
        func replace() throws -> Offload.Update<Void> {
            try offload.update { rules, change in
                if !marked, !rules.rules.isEmpty { throw NFTSyncRefusal(device: device, rules: rules.count) }
                // Marked before the rules change: a sync that dies after it leaves rules
                // the next sync may replace.
                if !marked { try offload.files.write(marker, to: markerFile(device)) }
                let have = Set(rules.rules)
                change = RuleChange(removed: rules.rules.filter { !wanted.contains($0) },
                                    added: translated.rules.filter { !have.contains($0) })
                try rules.apply(change)
            }
        }
        let update: Offload.Update<Void>
        do {
            update = try replace()
        } catch OffloadError.notAttachedForRules(_, let stored) {
            if !marked, stored > 0 { throw NFTSyncRefusal(device: device, rules: stored) }
            _ = try offload.attach()
            update = try replace()
        }
        let offloaded = translated.reports.filter { if case .offloaded = $0.status { true } else { false } }.count
        let handed = translated.reports.filter { if case .notOffloaded = $0.status { true } else { false } }.count
        let changed = update.change == nil ? "unchanged" : "changed"
        return "\(device): \(translated.chains.count) base chain\(translated.chains.count == 1 ? "" : "s"), "
            + "\(translated.reports.count) rules: \(offloaded) offloaded, \(handed) to nftables; "
            + "\(translated.rules.count) flower rules, \(changed)"
    }
}

/// A sync would replace rules that `xdpflow filter` added.
struct NFTSyncRefusal: Error, CustomStringConvertible {
    var device: String
    var rules: Int

    var description: String {
        "\(device) holds \(rules) rules of xdpflow filter; nft sync replaces a device's rules with its chains' "
            + "(xdpflow detach dev \(device) first)"
    }
}

/// One device in `nft status`.
struct NFTDeviceStatus {
    struct Line {
        var report: RuleReport
        var flowRules: Int
        /// Frames XDP decided for the rule (dropped), which nftables never saw.
        var xdp: (packets: UInt64, bytes: UInt64)?
        var nftables: (packets: UInt64, bytes: UInt64)?

        /// Both together: every frame the rule counted, wherever it was decided.
        var total: (packets: UInt64, bytes: UInt64)? {
            guard xdp != nil || nftables != nil else { return nil }
            return ((xdp?.packets ?? 0) + (nftables?.packets ?? 0), (xdp?.bytes ?? 0) + (nftables?.bytes ?? 0))
        }
    }

    var device: String
    var chains: [String]
    var inSync: Bool
    var attached: Bool
    var lines: [Line]
    /// Frames the chains' drop policies dropped in XDP.
    var policyDrops: UInt64

    init(device: String, ruleset: Ruleset) throws {
        self.device = device
        let translated = try HookOffload(ruleset: ruleset, device: device)
        let offload = Offload(device: device)
        let stored = try offload.stored()
        chains = translated.chains.map(\.description)
        attached = stored.isAttached
        inSync = attached && Set(stored.rules.rules) == Set(translated.rules)
        let statistics = inSync ? try offload.statistics() : nil
        var xdp: [Rule.ID: (packets: UInt64, bytes: UInt64)] = [:]
        var policyDrops: UInt64 = 0
        for rule in translated.rules {
            guard let origin = translated.origin(prio: rule.prio, handle: rule.handle), origin.role == .drops,
                  let id = origin.rule,
                  let counts = statistics?.rules[FlowCompiler.RuleID(prio: rule.prio, handle: rule.handle)] else { continue }
            if id.handle == 0 { policyDrops += counts.packets }
            let sum = xdp[id] ?? (0, 0)
            // As nftables counts them: skb->len at the hook, after the Ethernet header
            // (XDP decides untagged frames only).
            xdp[id] = (sum.packets + counts.packets, sum.bytes + counts.bytes - min(counts.bytes, 14 * counts.packets))
        }
        self.policyDrops = policyDrops
        let counted = Dictionary(ruleset.rules.compactMap { rule in rule.counted.map { (rule.id, $0) } },
                                 uniquingKeysWith: { a, _ in a })
        lines = translated.reports.map {
            Line(report: $0, flowRules: $0.flowRules, xdp: xdp[$0.rule], nftables: counted[$0.rule])
        }
    }

    static func describe(_ status: RuleReport.Status) -> String {
        switch status {
        case .offloaded(let verdict): "offloaded (\(verdictWord(verdict)))"
        case .notOffloaded(let reason): "not offloaded: \(reason)"
        case .unreachable(let rule): "not offloaded: after handle \(rule.handle), which hands every frame to nftables"
        case .noEffect: "no effect (nothing to offload)"
        }
    }

    static func verdictWord(_ verdict: Verdict) -> String {
        switch verdict {
        case .accept: "accept"
        case .drop: "drop"
        case .continue: "continue"
        case .return: "return"
        case .jump(let target): "jump \(target)"
        case .goto(let target): "goto \(target)"
        }
    }

    var text: String {
        var out = "dev \(device): " + (chains.isEmpty ? "no ingress chain" : chains.joined(separator: ", "))
        out += !attached ? "; not offloaded (xdpflow nft sync)\n" : inSync ? "; in sync\n" : "; out of sync: run xdpflow nft sync\n"
        for line in lines {
            out += "  \(line.report.rule): \(Self.describe(line.report.status))"
            if let total = line.total {
                out += "; \(total.packets) packets \(total.bytes) bytes"
                    + " (XDP \(line.xdp?.packets ?? 0), nftables \(line.nftables.map { "\($0.packets)" } ?? "no counter"))"
            }
            out += "\n"
        }
        if policyDrops > 0 { out += "  policy drop: \(policyDrops) packets dropped in XDP\n" }
        return out
    }

    var json: JSON {
        func counts(_ value: (packets: UInt64, bytes: UInt64)?) -> JSON {
            value.map { .object([("packets", .integer($0.packets)), ("bytes", .integer($0.bytes))]) } ?? .null
        }
        return .object([
            ("dev", .string(device)),
            ("chains", .array(chains.map(JSON.string))),
            ("attached", .bool(attached)),
            ("in_sync", .bool(inSync)),
            ("policy_drops", .integer(policyDrops)),
            ("rules", .array(lines.map { line in
                let rule = line.report.rule
                var fields: [(String, JSON)] = [
                    ("family", .string(rule.table.family.rawValue)), ("table", .string(rule.table.name)),
                    ("chain", .string(rule.chain)), ("handle", .integer(rule.handle)),
                ]
                switch line.report.status {
                case .offloaded(let verdict):
                    fields += [("offloaded", .bool(true)), ("verdict", .string(Self.verdictWord(verdict)))]
                case .notOffloaded(let reason):
                    fields += [("offloaded", .bool(false)), ("reason", .string(reason))]
                case .unreachable(let after):
                    fields += [("offloaded", .bool(false)),
                               ("reason", .string("after handle \(after.handle), which hands every frame to nftables"))]
                case .noEffect:
                    fields += [("offloaded", .bool(false)), ("reason", .string("no effect"))]
                }
                fields += [("flower_rules", .integer(line.flowRules)), ("counters", counts(line.total)),
                           ("xdp", counts(line.xdp)), ("nftables", counts(line.nftables))]
                return .object(fields)
            })),
        ])
    }
}

/// Runs a program and returns its standard output; a failure carries its standard error.
enum Subprocess {
    struct Failure: Error, CustomStringConvertible {
        var command: [String]
        var status: Int32
        var message: String
        var description: String {
            "\(command.joined(separator: " ")) exited with \(status)"
                + (message.isEmpty ? "" : ": " + message.split(separator: "\n").joined(separator: "; "))
        }
    }

    static func output(of command: [String]) throws -> [UInt8] {
        var out: [Int32] = [0, 0], err: [Int32] = [0, 0]
        guard pipe(&out) == 0, pipe(&err) == 0 else {
            throw Failure(command: command, status: -1, message: String(cString: strerror(errno)))
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO)
        posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO)
        // The child gets the write ends as its streams and nothing else of ours.
        for descriptor in out + err { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
        let argv = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, command[0], &actions, nil, argv, environ)
        close(out[1])
        close(err[1])
        defer { close(out[0]); close(err[0]) }
        guard spawned == 0 else {
            throw Failure(command: command, status: -1, message: String(cString: strerror(spawned)))
        }
        // Both pipes at once: a full one would stop the program.
        var output: [UInt8] = [], errors: [UInt8] = []
        var open = [out[0], err[0]]
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !open.isEmpty {
            var polled = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&polled, nfds_t(polled.count), -1) >= 0 else {
                if errno == EINTR { continue }
                break
            }
            for entry in polled where entry.revents != 0 {
                let count = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    if entry.fd == out[0] { output += buffer[..<count] } else { errors += buffer[..<count] }
                } else if count == 0 || errno != EINTR {
                    open.removeAll { $0 == entry.fd }
                }
            }
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        guard exitStatus == 0 else {
            throw Failure(command: command, status: exitStatus, message: String(decoding: errors, as: UTF8.self))
        }
        return output
    }
}

let nftManual = """
    Runs the nftables rules of each device's ingress hook in the device's XDP program, \
    as far as XDP can be sure of the verdict nftables would give; nftables still runs \
    after XDP and decides every frame XDP passes.

    xdpflow nft sync [dev DEV] reads the running ruleset (nft -j list ruleset), finds the \
    base chains on the ingress hook of each device (netdev family, and inet family, which \
    sees IPv4 and IPv6 only), translates them in hook order into flower rules and makes \
    them the device's rules through the one change engine (xdpflow attach first when the \
    device is not attached). A device whose chains are gone is detached. The device's \
    rules are then nftables': a device with rules of xdpflow filter is refused. Run it \
    again after changing the ruleset.

    What runs in XDP: drop (XDP drops, nftables never sees the frame), accept in the last \
    base chain (XDP passes, nftables accepts), chain policies, jump and goto (inlined), \
    matches on ether saddr|daddr|type, meta protocol|l4proto|iifname, ip saddr|daddr|protocol, \
    ip6 saddr|daddr|nexthdr, tcp|udp|sctp sport|dport, icmp and icmpv6 type|code, with ==, \
    !=, <, <=, >, >=, prefixes, ranges, anonymous and named sets, concatenations, and \
    verdict maps of accept, drop and continue. Any other rule (ct, limit, log, meta mark \
    set, fwd, dup, a counter without a verdict, accept before another base chain) hands \
    every frame it might match to nftables, and the rules after it still run in XDP for \
    the others. VLAN-tagged frames, IPv4 fragments and IPv6 frames with extension headers \
    always go to nftables.

    xdpflow nft status [dev DEV] prints each rule: offloaded or not, and why; the frames \
    XDP dropped for it (nftables never counted them) and its own counter in nftables. \
    -j prints JSON. xdpflow nft show [dev DEV] prints the flower rules a sync would run, \
    as a -batch file.

    EXIT STATUS
      0 done; 1 the command cannot be read, or nft cannot be run; 2 refused (the device \
      holds xdpflow filter rules, the kernel refused the program, the rules exceed a limit).
    """

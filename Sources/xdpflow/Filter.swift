import ArgumentParser
import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import FoundationEssentials
import Glibc

/// `xdpflow filter ...`: the words after `filter` are read by FlowRules' grammar, so
/// that a `tc filter ... flower` line works with `tc` replaced by `xdpflow`.
struct Filter: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add, replace, change, delete, get and show tc flower rules.",
        usage: """
            xdpflow [-s] [-j [-p]] filter { add | replace | change } dev DEV
                    [ingress] [chain N] [pref|prio N] [handle H] [protocol PROTO]
                    flower [MATCH...] [action ACTION...]
            xdpflow [-s] [-j [-p]] filter { del | get | show } dev DEV
                    [ingress] [chain N] [pref|prio N] [handle H] [protocol PROTO]
                    [flower]
            xdpflow [-s] [-j [-p]] [-force] -batch FILE
            """,
        discussion: filterManual)

    @OptionGroup var global: GlobalOptions

    @Argument(parsing: .captureForPassthrough, help: "The words of the command, as tc takes them.")
    var words: [String] = []

    func run() throws {
        if let first = words.first, ["help", "--help", "-h"].contains(first) {
            print(Filter.helpMessage())
            return
        }
        try FilterRunner(options: global.output).run(["filter"] + words)
    }
}

/// Runs filter commands on a rule set store and prints what they show. Exit statuses as
/// tc's: 1 for a command that cannot be read, 2 for one that is refused (`CommandError`).
struct FilterRunner {
    let options: OutputOptions
    /// Rules persist per device in the state directory (XDPFLOW_STATE_DIR); on an
    /// attached device they reach the kernel in the same step.
    let store: any RuleSetStore = NFTGuardedStore(base: OffloadingStore { message in
        printError("Warning: " + message + "\n")
    })

    func run(_ words: [String]) throws {
        let command: FilterCommand
        do {
            command = try FilterCommand.parse(words)
        } catch {
            // Word 1 is `filter`, as in a batch line.
            throw CommandError.unreadable(error)
        }
        warn(command.notes)
        do {
            try requireDevice(of: command)
            guard command.changesRules else {
                if case .show = command.operation { warnIfNotLive(command.device) }
                var set = try store.rules(of: command.device)
                emit(command, try command.apply(to: &set))
                try requireCountersReadable()
                return
            }
            // Refused before anything is read or written: the state and pins are root's.
            try Privileges.require("filter \(command.operation.word)")
            let rules = try store.update(device: command.device) { set, change in
                try command.apply(to: &set, recording: &change)
            }
            emit(command, rules)
            if command.verbose { try printVerifierLog(of: command.device) }
        } catch {
            throw CommandError.refused(error)
        }
    }

    /// Without root, `-s` printed the rules without counters (none rather than zeros,
    /// which would say that no frame matched): the command then fails, saying why.
    private func requireCountersReadable() throws {
        if options.stats && !Privileges.sufficient { throw OffloadError.countersNeedRoot }
    }

    /// With `force` (tc's `-force`), past the lines that fail: each is reported, the
    /// others are carried out, and the status is the first failed line's.
    func runBatch(path: String, force: Bool = false) throws {
        let text = try BatchFile.text(at: path)
        if force {
            try runForced(Batch.forced(text), path: path)
            return try requireCountersReadable()
        }
        let batch: Batch
        do {
            batch = try Batch(text: text)
        } catch {
            throw CommandError.at(path, error.isUsageError ? .unreadable(error) : .refused(error))
        }
        let missing = missingDevices(batch.lines)
        for line in batch.lines {
            warn(line.command.notes, at: "\(path): line \(line.number)")
            if let error = missing[line.command.device] ?? needsRoot(line) {
                throw CommandError.at("\(path): line \(line.number)", .refused(error))
            }
        }
        do {
            try batch.run(on: store) { line, rules in emit(line.command, rules) }
        } catch {
            throw CommandError.at(path, error.isUsageError ? .unreadable(error) : .refused(error))
        }
        try requireCountersReadable()
    }

    /// Without root, a line that changes rules is refused before anything is read or
    /// written: the state and the pins are root's.
    private func needsRoot(_ line: Batch.Line) -> (any Error)? {
        line.command.changesRules && !Privileges.sufficient ? OffloadError.needsRoot(command: "-batch") : nil
    }

    private func runForced(_ parsed: (batch: Batch, errors: [BatchError]), path: String) throws {
        func failure(_ error: BatchError) -> (line: Int, error: CommandError) {
            (error.line, .at(path, error.isUsageError ? .unreadable(error) : .refused(error)))
        }
        var failures = parsed.errors.map(failure)
        var lines: [Batch.Line] = []
        let missing = missingDevices(parsed.batch.lines)
        for line in parsed.batch.lines {
            warn(line.command.notes, at: "\(path): line \(line.number)")
            if let error = missing[line.command.device] ?? needsRoot(line) {
                failures.append((line.number, .at("\(path): line \(line.number)", .refused(error))))
            } else {
                lines.append(line)
            }
        }
        Batch(lines: lines).runForced(on: store, output: { line, rules in emit(line.command, rules) }) { error in
            failures.append(failure(error))
        }
        guard !failures.isEmpty else { return }
        failures.sort { $0.line < $1.line }
        printError(failures.map { "Error: \($0.error)\n" }.joined())
        throw ExitCode(failures[0].error.status)
    }

    /// `verbose`: the verifier's log of the program the device now runs, on standard
    /// error (standard output stays what tc prints).
    private func printVerifierLog(of device: String) throws {
        guard let log = try Offload(device: device).verifierLog() else { return }
        printError("verifier log of the program on \(device):\n" + log)
    }

    /// Before the rules of a device that is not attached, or whose kernel side does not
    /// hold them: that they are not live, and what to do.
    private func warnIfNotLive(_ device: String) {
        guard let status = try? Offload(device: device).status(auditingEntries: false) else { return }
        var lines = (status.recovery ?? status.pending?.description).map { ["Warning: \($0)"] } ?? []
        if status.mode == nil {
            lines.append("Warning: no xdpflow program on \(device): these rules are not live; run: xdpflow attach dev \(device)")
        }
        lines += status.problems.map { "Warning: not live as stored: \($0)" }
        if !lines.isEmpty { printError(lines.map { $0 + "\n" }.joined()) }
    }

    /// Every filter command names a device that exists, as tc's ("Cannot find device"):
    /// a show of a misspelt name says so instead of printing nothing.
    private func requireDevice(of command: FilterCommand) throws {
        _ = try NetworkInterface(named: command.device)
    }

    /// The devices a batch names that do not exist, each asked once (a socket and an
    /// ioctl each: per line, a tenth of a 10,000-line batch).
    private func missingDevices(_ lines: [Batch.Line]) -> [String: any Error] {
        var missing: [String: any Error] = [:], seen: Set<String> = []
        for line in lines where seen.insert(line.command.device).inserted {
            do {
                try requireDevice(of: line.command)
            } catch {
                missing[line.command.device] = error
            }
        }
        return missing
    }

    /// Prints the rules that get and show name; the other commands print nothing, as tc.
    private func emit(_ command: FilterCommand, _ rules: [FlowRule]) {
        switch command.operation {
        case .get, .show: break
        default: return
        }
        var stats: ((FlowRule) -> RuleStats?)?
        // Without root the counters cannot be read: none are shown (`requireCountersReadable`).
        let readsCounters = options.stats && Privileges.sufficient
        let counters = readsCounters
            ? try? Offload(device: command.device).statistics(of: Set(rules.map(RuleID.init)))
            : nil
        if readsCounters {
            let now = counters == nil ? nil : try? KernelClock.now()
            stats = { rule in
                // A device that is not attached has met no packet.
                counters?.stats(of: rule, now: now) ?? RuleStats(packets: 0, bytes: 0, lastUsed: nil)
            }
        }
        let show = RuleShow(device: command.device, rules: rules, stats: stats)
        if options.json {
            var isGet = false
            if case .get = command.operation { isGet = true }
            print(show.json(pretty: options.pretty, prioHeads: !isGet))
        } else if !rules.isEmpty {
            print(show.text, terminator: "")
        }
        // The device's own counters follow the rules (text only: the JSON stays what
        // `tc -j filter show` prints; `xdpflow -j show dev DEV` has them).
        if case .show = command.operation, !options.json, let counters {
            print((rules.isEmpty ? "" : "\n") + DeviceCounters.text(device: command.device, counters))
        }
    }
}

extension FilterCommand.Operation {
    /// The word of the command line, as messages name the command.
    var word: String {
        switch self {
        case .add: "add"
        case .replace: "replace"
        case .change: "change"
        case .delete: "del"
        case .get: "get"
        case .show: "show"
        }
    }
}

let filterManual = """
    Each command is a tc filter command with "tc" replaced by "xdpflow". The \
    rules run in XDP, at the driver's receive hook: every rule is an ingress \
    rule.

    FILTER LINE (in any order, before "flower")
      dev DEV            the device (required)
      ingress            accepted (also "parent ffff:"): XDP is ingress only
      pref|prio N        1-65535, lowest first; none: add allocates one
                         below the lowest (49152 in an empty chain)
      handle H           within the prio, base 0; none: lowest free from 1
      protocol PROTO     ip (ipv4), ipv6, 802.1Q, 802.1ad, arp, rarp, all
                         (the default) or a number; the outer EtherType
      chain N            only chain 0 runs at XDP

    MATCH (after "flower"; unambiguous prefixes of keywords are accepted)
      indev DEV
      dst_mac|src_mac MAC[/MAC|/0-48]
      vlan_id 0-4095 | vlan_prio 0-7 | vlan_ethtype PROTO
                         needs protocol 802.1Q or 802.1ad
      cvlan_id | cvlan_prio | cvlan_ethtype
                         needs vlan_ethtype 802.1Q or 802.1ad
      ip_proto tcp|udp|sctp|icmp|icmpv6|l2tp|esp|ah|HEX
                         hex as in tc: ip_proto 17 is 0x17 (a warning
                         says so); udp is 0x11
      ip_tos|ip_ttl VALUE[/HEXMASK]    value decimal, else hex
      dst_ip|src_ip ADDRESS[/LEN|/MASK]
      ip_flags [no]frag[/[no]firstfrag]
                         these need protocol (or vlan_ethtype) ip or ipv6
      dst_port|src_port PORT|MIN-MAX|VALUE/MASK
                         needs ip_proto tcp, udp or sctp before it
      tcp_flags HEX[/HEXMASK]          needs ip_proto tcp before it
      type|code DEC[/DECMASK]          needs ip_proto icmp or icmpv6
      arp_op request|reply|0-2[/MASK] | arp_sip|arp_tip ADDRESS[/LEN]
      arp_sha|arp_tha MAC[/MAC|/0-48]  need protocol arp or rarp
      skip_hw            kept and shown (no hardware path)
      skip_sw            accepted: every rule is offloaded to XDP only
      verbose            prints the verifier's log of the program the
                         device runs after the command (standard error)
      classid|flowid MAJ:MIN           kept and shown; steers nothing

    ACTIONS ("action" before each; a control word may follow, as in tc)
      drop | pass | continue | pipe    a bare control word is gact
      mirred egress redirect dev DEV   to the same device: XDP_TX
      vlan pop
      vlan push id N [priority P] [protocol 802.1Q|802.1ad]
      vlan modify id N [priority P] [protocol 802.1Q|802.1ad]
      pedit ex munge eth dst|src set MAC [munge ...]
                         (pedit's control defaults to pass, not pipe)
      skbmod set dmac MAC [set smac MAC]
      skbedit mark N[/MASK]            reported as XDP metadata
      police rate RATE burst SIZE conform-exceed EXCEED[/CONFORM]
      xsk [CONTROL]                    XDPFlow's own: to the AF_XDP socket bound to
                                       the receive queue (pinned map xf_xsks); with
                                       none bound, CONTROL (default pass)
    A rule without actions passes the frame and ends classification.
    Valid tc that XDP cannot run exactly is accepted here and refused when
    the rules are compiled: mirred ingress, a mirred mirror followed by
    anything but mirrors and then a redirect or a drop (copies go out by
    broadcast), reclassify, trap, goto chain, jump, and police without
    conform-exceed (whose exceed default is reclassify).

    OUTPUT
      show and get print rules as tc does; -j prints JSON in the schema of
      "tc -j filter show" (counters in each action's "stats"), -p indents it,
      -s adds each rule's counters, and after show on an attached device the
      device's own: frames no rule matched (miss) and frames the program could
      not classify (unparsed). In JSON these are in "xdpflow -j show dev DEV".

    PRIVILEGES
      show and get read the stored rules, which every user may read; -s needs
      root (the counters are in pinned maps): without, the rules are printed
      without counters and the command fails. add, replace, change, del and a
      -batch that changes rules need root, and are refused before anything is
      read or written.

    EXIT STATUS (as tc's)
      0 done; 1 the command could not be read (the message names the word
      and its position) or names a device that does not exist; 2 the command
      was refused (the rule already exists, XDP cannot run it, the kernel or
      the state directory refused it, not root).

    See docs/flower.md for the full reference.
    """

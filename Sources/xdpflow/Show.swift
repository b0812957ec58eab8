import ArgumentParser
import BPFKernel
import FlowOffload
import FoundationEssentials
import Glibc

/// `xdpflow show [dev DEV]`: what xdpflow has attached where.
struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what is attached where: mode, program, rules, counters.",
        usage: "xdpflow [-j [-p]] show [dev DEV]",
        discussion: showManual)

    /// Hidden: the manual says which apply.
    @OptionGroup(visibility: .hidden) var global: GlobalOptions

    @Argument(help: ArgumentHelp("dev DEV", valueName: "dev DEV"))
    var words: [String] = []

    func run() throws {
        let device = words.isEmpty ? nil : try DeviceWords.device(in: words, command: "show")
        let reports = try (device.map { [$0] } ?? Offload.devices()).map(DeviceReport.init(device:))
        let pending = reports.compactMap { $0.pending.map { "Warning: \($0)\n" } }
        printError(pending.joined())
        global.print(json: .array(reports.map(\.json)), text: reports.map(\.text).joined())
        // Without root an attached device was shown as stored: the command fails, naming what was not read.
        if reports.contains(where: { $0.status?.kernelRead == false }) {
            throw OffloadError.kernelNeedsRoot
        }
    }
}

/// One device in `xdpflow show`: its status, or that it is not attached.
struct DeviceReport {
    let device: String
    let status: Offload.Status?
    /// Rules on disk for a device that is not attached.
    let storedRules: Int
    /// Without root: a record a command that died left unfinished.
    let pending: Offload.Pending?

    init(device: String) throws {
        self.device = device
        let offload = Offload(device: device)
        var status = try offload.status()
        pending = status?.pending
        // Without root, a device the state does not say is attached is not attached,
        // a pending record or not (said apart).
        if status?.kernelRead == false && status?.mode == nil { status = nil }
        self.status = status
        storedRules = status == nil ? try offload.stored().rules.count : 0
    }

    var text: String {
        guard let status else {
            let stored = storedRules == 0 ? "" : " (\(storedRules) rules stored: xdpflow attach dev \(device) loads them)"
            return "\(device): not attached\(stored)\n"
        }
        var lines: [String] = []
        let lookups = status.tables > 0 ? "\(status.tables) tables" : "\(status.subtables) subtables"
        let what = "\(status.rules) rules in \(lookups), \(status.entries) entries"
        switch (status.mode, status.programID) {
        // Without root, what the state directory says; the kernel's part is not claimed.
        case (let mode?, _) where !status.kernelRead: lines.append("\(device): stored as attached in \(mode) mode, \(what)")
        case (let mode?, let id?): lines.append("\(device): attached in \(mode) mode, program id \(id), \(what)")
        case (nil, let id?): lines.append("\(device): program id \(id) behind a pinned link, \(what)")
        case (_, nil): lines.append("\(device): no program running, \(what)")
        }
        if let id = status.markCompanionID { lines.append("  mark companion: tcx ingress, program id \(id)") }
        if status.metadata == .rule { lines.append("  metadata: the deciding rule and the mark, on every decided frame") }
        let now = try? KernelClock.now()
        if let misses = status.misses { lines.append("  miss: " + misses.sentText(now: now)) }
        if let unparsed = status.unparsed {
            lines.append("  unparsed (\(status.unparsedDrop ? "dropped" : "passed")): " + unparsed.sentText(now: now))
        }
        if let unbound = status.xskUnbound { lines.append("  xsk, no socket bound: " + unbound.sentText(now: now)) }
        for problem in status.problems { lines.append("  needs repair: " + problem) }
        return lines.map { $0 + "\n" }.joined()
    }

    /// Keys in the order of docs/runtime.md; what was not read (without root: whether
    /// the kernel runs it, whether it needs repair) is null.
    var json: JSON {
        let now = try? KernelClock.now()
        var stats = JSON.null
        if let misses = status?.misses, let unparsed = status?.unparsed {
            stats = .object([("miss", misses.json(now: now)), ("unparsed", unparsed.json(now: now))]
                + (status?.xskUnbound.map { [("xsk_unbound", $0.json(now: now))] } ?? []))
        }
        let kernelRead = status?.kernelRead ?? true
        return .object([
            ("dev", .string(device)),
            ("attached", kernelRead ? .bool(status?.mode != nil && status?.programID != nil) : .null),
            ("mode", status?.mode.map(JSON.string) ?? .null),
            ("prog_id", .optional(status?.programID)),
            ("mark_companion", status?.markCompanionID.map {
                .object([("kind", .string("tcx")), ("prog_id", .integer($0))])
            } ?? .null),
            ("unparsed", status.map { .string($0.unparsedDrop ? "drop" : "pass") } ?? .null),
            ("metadata", status.map { .string($0.metadata.rawValue) } ?? .null),
            ("rules", .integer(status?.rules ?? storedRules)),
            ("subtables", .integer(status?.subtables ?? 0)),
            ("tables", .integer(status?.tables ?? 0)),
            ("entries", .integer(status?.entries ?? 0)),
            ("stats", stats),
            ("needs_repair", kernelRead ? .bool(status?.needsRepair ?? false) : .null),
            ("problems", kernelRead ? .array((status?.problems ?? []).map(JSON.string)) : .null),
        ])
    }
}

extension RuleStatistics {
    /// Seconds since the last hit; nil when never hit (or the clock cannot be read).
    func secondsSinceLastHit(now: KernelClock?) -> UInt64? {
        now?.seconds(since: lastHit)
    }

    /// As tc prints counters: "Sent 120 bytes 2 pkt, last used 3 sec".
    func sentText(now: KernelClock?) -> String {
        "Sent \(bytes) bytes \(packets) pkt, " + (secondsSinceLastHit(now: now).map { "last used \($0) sec" } ?? "never used")
    }

    /// As a rule's `stats` in docs/flower.md.
    func json(now: KernelClock?) -> JSON {
        .object([("packets", .integer(packets)), ("bytes", .integer(bytes)),
                 ("last_used", .optional(secondsSinceLastHit(now: now)))])
    }
}

/// The device's miss and unparsed counters after `xdpflow -s filter show dev DEV`.
enum DeviceCounters {
    static func text(device: String, _ statistics: Offload.Statistics) -> String {
        let now = try? KernelClock.now()
        return "dev \(device) miss: \(statistics.misses.sentText(now: now))\n"
            + "dev \(device) unparsed: \(statistics.unparsed.sentText(now: now))"
            + (statistics.xskUnbound.map { "\ndev \(device) xsk, no socket bound: \($0.sentText(now: now))" } ?? "")
    }
}

let showManual = """
    Without dev, every device xdpflow holds in this network namespace: offload state \
    in the state directory (XDPFLOW_STATE_DIR, default /var/lib/xdpflow) or pins \
    under the pin directory (XDPFLOW_PIN_DIR, default /sys/fs/bpf/xdpflow).

    Without root, what the state directory holds, read without changing anything: an \
    attached device as "DEV: stored as attached in MODE mode, R rules ...", without \
    program id, counters or audit (null in JSON), which are the kernel's; a change a \
    crash left pending is said on standard error, and left to a command run as root.

    OUTPUT
      DEV: attached in MODE mode, program id ID, R rules in S subtables (or T tables), E entries
        mark companion: tcx ingress, program id CID
        miss: Sent B bytes P pkt, last used T sec
        unparsed (passed|dropped): Sent B bytes P pkt, never used
        xsk, no socket bound: Sent B bytes P pkt, last used T sec
        needs repair: WHAT, and the command that repairs it
      MODE is native or generic; ID the program that holds the rules, in the slot
      xdpflow's entry program tail-calls (as bpftool prog show lists it). CID is the
      tc ingress program (tcx) that copies the mark a rule's skbedit mark left in the
      XDP metadata into the skb (attached with every device). miss counts frames no rule matched (passed to
      the stack); unparsed counts frames the program could not classify with
      certainty (passed, or dropped after "attach ... unparsed drop"); xsk, only
      when a rule has action xsk, frames it found no AF_XDP socket bound to
      their receive queue for (the action's control decided them).
      -j prints a JSON array, one object per device, counters included
      (docs/runtime.md); -p indents it; -s changes nothing (the counters are
      always there), so "xdpflow -s -j show dev DEV" is where a device's miss
      and unparsed counters are in JSON.

    NEEDS REPAIR (what "xdpflow check" finds; see docs/runtime.md)
      state, no link       after a reboot or a bpffs remount the link is gone:
                           "xdpflow attach dev DEV" loads the stored rules again
      pins, no state       "xdpflow detach dev DEV"
      device gone          its link went with it: "xdpflow detach dev DEV"
      another owner        the pins belong to another XDPFLOW_STATE_DIR: nothing
                           is touched; use that state directory
      entries differ       "xdpflow detach dev DEV", then attach again
      no mark companion    attached by an xdpflow before it had one (marks do not
                           reach the stack): "xdpflow detach dev DEV", then attach
      A change, attach or detach that a crash left unfinished is rolled back (or,
      for a detach, finished) by the next command, which says which.

    EXIT STATUS
      0 done (also for a device that is not attached); 1 the command could not be
      read; 2 the command failed, or, without root, an attached device was shown
      as stored (program ids, counters and the audit need root).
    """

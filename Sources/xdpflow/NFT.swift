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
        usage: "xdpflow nft sync|watch [dev DEV]\n       xdpflow [-j [-p]] nft status [dev DEV]\n       xdpflow nft show [dev DEV]",
        discussion: nftManual,
        subcommands: [NFTSync.self, NFTWatch.self, NFTStatus.self, NFTShow.self])
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
            print(try NFTRulesetSource.sync(device, ruleset: ruleset).line)
        }
    }
}

/// `xdpflow nft watch [dev DEV]`: sync, then again after every change nftables reports,
/// until SIGINT or SIGTERM; then the offloads go.
struct NFTWatch: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Sync, then follow nftables' changes (nft monitor) until stopped; on stop, remove the offloads.",
        usage: "xdpflow nft watch [dev DEV]",
        discussion: "See xdpflow nft --help.")

    @Argument(help: ArgumentHelp("dev DEV", valueName: "dev DEV"))
    var words: [String] = []

    /// Past this many events at once (a file of rules), the ruleset is read again: faster
    /// than following them one by one. The kernel's notifications place a new rule for
    /// free (a file of 500 rules appended to 10,000 is followed in 80 ms, 2,000 in 0.57 s,
    /// 4,000 in 2.3 s, against about 1 s for a read); without them each costs a dump of
    /// its chain (50 ms at 10,000 rules).
    static func followLimit(notified: Bool) -> Int { notified ? 1024 : 64 }
    /// Of a batch's new rules, how many a dump may place when their notifications were
    /// lost (the socket overran): past it, a read costs less.
    static let dumpLimit = 8
    /// `nft monitor` may subscribe after the first read has begun: a read this long after
    /// the start catches what came between.
    static let confirmingRead: Duration = .seconds(1)

    func run() throws {
        let only = words.isEmpty ? nil : try DeviceWords.device(in: words, command: "nft watch")
        let stop = StopSignals()
        // Kept from one sync to the next, as the command server keeps it (checked
        // against the files and pins before each use).
        Offload.keepsState = true
        // Started before the first read: no change after it goes unseen. The kernel's
        // notifications say where a new rule went, which the monitor's JSON does not;
        // without them, a dump of the rule's chain says.
        let notifications = try? NFTRuleOrder.Notifications()
        let monitor = try Subprocess.Running(["nft", "-j", "monitor"], capturingErrors: false)
        var offloaded: Set<String> = []
        /// The ruleset as the events left it; nil: read it again.
        var ruleset: Ruleset?
        /// Events followed in memory since the last sync.
        var events: [RulesetEvent] = []
        /// Each device's translation as its offload holds it, which the next events
        /// change where they reach rather than translating the hook again.
        var translations: [String: HookOffload] = [:]
        func syncAll() {
            do {
                let how = ruleset == nil ? "ruleset read" : "\(events.count) event\(events.count == 1 ? "" : "s") followed"
                if ruleset == nil { translations.removeAll() }
                let current = try ruleset ?? NFTRulesetSource.read()
                ruleset = current
                for device in try NFTRulesetSource.devices(of: current, only: only) {
                    do {
                        // Taken out, so that following it does not copy its rules.
                        var followed: NFTRulesetSource.Synced?
                        if let translation = translations.removeValue(forKey: device) {
                            followed = NFTRulesetSource.follow(device, from: consume translation, events: events, ruleset: current)
                        }
                        let synced = try followed ?? NFTRulesetSource.sync(device, ruleset: current)
                        translations[device] = synced.translation
                        if !synced.line.hasSuffix("unchanged") { print(synced.line + " (\(how))") }
                        offloaded.insert(device)
                    } catch {
                        printError("Error: \(device): \(error)\n")
                    }
                }
            } catch {
                // The ruleset changed and cannot be read: the rules in XDP may be stale.
                printError("Error: \(error)\n")
                for device in offloaded.sorted() {
                    if let line = try? NFTRulesetSource.remove(device) { print(line) }
                }
                offloaded.removeAll()
                ruleset = nil
            }
            events.removeAll()
            fflush(nil)
        }
        /// Chain dumps made in the current batch (`dumpLimit`).
        var dumps = 0
        /// Where the kernel put a new rule.
        func place(of rule: Rule) throws -> RulePlace? {
            if let place = notifications?.place(of: rule.id) { return place }
            guard notifications == nil || dumps < Self.dumpLimit else { return nil }
            dumps += 1
            return RulePlace(of: rule.handle, in: try NFTRuleOrder.handles(table: rule.table, chain: rule.chain))
        }
        /// Follows one event in memory; an event it cannot follow has the ruleset read again.
        func follow(_ line: ArraySlice<UInt8>) {
            guard var current = ruleset, !line.isEmpty else { return }
            // Taken out, so that the change does not copy every rule.
            ruleset = nil
            do {
                let event = try RulesetEvent(json: Array(line))
                if try current.apply(event, place: place) {
                    ruleset = current
                    events.append(event)
                }
            } catch {
                ruleset = nil
            }
        }
        syncAll()
        print("following nftables (nft monitor); SIGINT or SIGTERM stops and removes the offloads")
        fflush(nil)
        var confirmAt: ContinuousClock.Instant? = .now + Self.confirmingRead
        var buffer = [UInt8](repeating: 0, count: 65536)
        var pending: [UInt8] = []
        var monitorEnded = false
        watching: while !stop.requested {
            if let at = confirmAt, ContinuousClock.now >= at {
                confirmAt = nil
                ruleset = nil
                syncAll()
            }
            // A signal interrupts the poll; the timeout bounds one that comes just before it.
            var polled = [pollfd(fd: monitor.output, events: Int16(POLLIN), revents: 0)]
            guard poll(&polled, 1, 200) > 0 else { continue }
            // The events of one change (a table of rules is many) come together: read
            // until nftables is quiet for a millisecond, then sync once.
            repeat {
                let count = buffer.withUnsafeMutableBytes { read(monitor.output, $0.baseAddress, $0.count) }
                if count == 0 {
                    monitorEnded = true
                    break watching
                }
                if count > 0 { pending += buffer.prefix(count) }
                var next = [pollfd(fd: monitor.output, events: Int16(POLLIN), revents: 0)]
                if poll(&next, 1, 1) <= 0 { break }
            } while true
            // One JSON object a line.
            var lines = pending.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            pending = Array(lines.removeLast())  // the start of a line still to come
            if lines.count > Self.followLimit(notified: notifications != nil) { ruleset = nil }
            dumps = 0
            lines.forEach(follow)
            syncAll()
        }
        monitor.terminate()
        // Nothing stays behind: without the watch, the offload would go stale.
        for device in offloaded.sorted() {
            do {
                print(try NFTRulesetSource.remove(device))
            } catch {
                printError("Error: \(device): \(error)\n")
            }
        }
        if monitorEnded {
            throw Subprocess.Failure(command: monitor.command, status: monitor.wait(), message: "it ended; the offloads were removed")
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
        let ruleset = try NFTRulesetSource.read(counters: true)
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
            let state = Offload(device: device)
            let offload = try NFTRulesetSource.translation(of: ruleset, for: state, marker: try NFTRulesetSource.marker(of: state))
            var lines = ["# dev \(device): " + offload.chains.map(\.description).joined(separator: ", ")]
            for report in offload.reports { lines.append("# \(report.rule): \(NFTDeviceStatus.describe(report.status))") }
            lines += offload.rules.map { $0.batchLine(device: device) }
            print(lines.joined(separator: "\n"))
        }
    }
}

/// The running ruleset, and the devices whose offload follows it.
enum NFTRulesetSource {
    /// The marker a sync leaves beside a device's rules: the rules from `firstPrio` on
    /// are nftables' (all of them, in a marker without it); those below, tc's.
    struct Marker: Codable {
        /// Nil in a marker of the first version, whose band was every rule.
        var firstPrio: UInt16?

        var band: PartialRangeFrom<UInt16> { (firstPrio ?? 1)... }
    }

    static func markerFile(_ device: String) -> String { "\(device).nft" }

    static func marker(of offload: Offload) throws -> Marker? {
        try offload.files.read(Marker.self, from: markerFile(offload.device))
    }

    /// The prios the offload holds on the device, when it has one.
    static func band(of offload: Offload) throws -> PartialRangeFrom<UInt16>? {
        try marker(of: offload)?.band
    }

    /// A device's rules: the offload's (in `band`), and tc's (below it; all of them
    /// without an offload).
    static func split(_ rules: [FlowRule], band: PartialRangeFrom<UInt16>?) -> (offload: [FlowRule], tc: [FlowRule]) {
        rules.reduce(into: ([FlowRule](), [FlowRule]())) { parts, rule in
            if band?.contains(rule.prio) ?? false { parts.0.append(rule) } else { parts.1.append(rule) }
        }
    }

    /// The change from the offload's rules to the translation's: compared by place (prio
    /// and handle), cheaper than hashing every rule whole.
    static func change(from offload: [FlowRule], to translated: [FlowRule]) -> RuleChange {
        let wanted = Dictionary(translated.map { (Slot($0), $0) }, uniquingKeysWith: { a, _ in a })
        let have = Dictionary(offload.map { (Slot($0), $0) }, uniquingKeysWith: { a, _ in a })
        return RuleChange(removed: offload.filter { wanted[Slot($0)] != $0 }, added: translated.filter { have[Slot($0)] != $0 })
    }

    /// The device's chains as flower rules, in the band they take there: never above
    /// the band now (a sync that dies once the marker is written leaves the old band's
    /// rules inside the new one), but a first-version marker's (every rule) moves up.
    static func translation(of ruleset: Ruleset, for offload: Offload, marker: Marker?) throws -> HookOffload {
        var translated = try HookOffload(ruleset: ruleset, device: offload.device)
        if let first = marker?.firstPrio, first < translated.firstPrio { try translated.place(from: first) }
        return translated
    }

    /// The tables with an ingress chain, as nft prints them: `nft -j list chains` (no
    /// rules: milliseconds) says which, `nft -j list table` reads each, so the rules of
    /// other tables (a host's firewall) cost nothing; `nft list chains` adds the devices
    /// nft 1.0.6 leaves out of the JSON (the text of the chains alone: that of every rule
    /// costs as much again). Without `counters`, stateless (`-s`): a translation reads
    /// no counter's values, and nft prints a tenth faster without them.
    static func read(counters: Bool = false) throws -> Ruleset {
        // nft's listing of 10,000 rules spends a sixth of its time in malloc_consolidate
        // and unlink_chunk (perf): without fastbins it takes 0.45 s instead of 0.51.
        let tunables = getenv("GLIBC_TUNABLES").map { String(cString: $0) + ":" } ?? ""
        let nftAllocator = ["GLIBC_TUNABLES": tunables + "glibc.malloc.mxfast=0"]
        func hookedTables() throws -> [TableID] {
            var chains = Ruleset.Reader()
            try Subprocess.run(["nft", "-j", "list", "chains"]) { try chains.read($0) }
            return HookOffload.tables(of: try chains.finish())
        }
        var ruleset = Ruleset()
        for table in try hookedTables() {
            var reader = Ruleset.Reader()
            do {
                try Subprocess.run(["nft", "-j"] + (counters ? [] : ["-s"]) + ["list", "table", table.family.rawValue, table.name],
                                   environment: nftAllocator) { try reader.read($0) }
            } catch {
                // Deleted, or off the hook, since the chains were listed.
                guard try hookedTables().contains(table) else { continue }
                throw error
            }
            ruleset.add(try reader.finish())
        }
        if ruleset.chains.contains(where: { $0.base?.hook == "ingress" && $0.base?.devices.isEmpty == true }) {
            ruleset.addDevices(fromListing: String(decoding: try Subprocess.output(of: ["nft", "list", "chains"]), as: UTF8.self))
        }
        // Flags the JSON does not name (rare: a table with flags): the table's text does.
        for index in ruleset.tables.indices where ruleset.tables[index].flagsUnread {
            let table = ruleset.tables[index].id
            let listing = try Subprocess.output(of: ["nft", "list", "table", table.family.rawValue, table.name])
            ruleset.tables[index].isDormant = Ruleset.dormant(inListing: String(decoding: listing, as: UTF8.self))
        }
        return ruleset
    }

    /// `only`, or every device with an ingress chain or an offload a sync made.
    static func devices(of ruleset: Ruleset, only: String?) throws -> [String] {
        if let only { return [only] }
        let marked = try Offload.devices().filter { Offload(device: $0).files.contains(markerFile($0)) }
        return Set(HookOffload.devices(of: ruleset) + marked).sorted()
    }

    /// What a sync printed, and the translation the device's offload now holds.
    struct Synced {
        var line: String
        var translation: HookOffload?
    }

    /// Makes the device's offload the translation of its chains, through the one engine:
    /// the rules that changed go, the new ones come, in one change. Without chains left,
    /// the offload a sync made goes (`remove`); and when the new rules cannot run, the
    /// old ones go too, since nftables no longer gives their verdicts.
    static func sync(_ device: String, ruleset: Ruleset) throws -> Synced {
        let offload = Offload(device: device)
        let marker = try marker(of: offload)
        do {
            let translated = try translation(of: ruleset, for: offload, marker: marker)
            if translated.chains.isEmpty {
                guard marker != nil else { return Synced(line: "\(device): no nftables ingress chain; nothing to do") }
                return Synced(line: try remove(device))
            }
            return Synced(line: try replace(offload, with: translated, marker: marker), translation: translated)
        } catch let refusal as NFTSyncRefusal where marker == nil {
            throw refusal
        } catch where offload.files.contains(markerFile(device)) {
            // Marked now, by this sync or an earlier one: what it left in XDP goes.
            _ = try? remove(device)
            throw NFTSyncFailure(device: device, reason: error)
        }
    }

    /// The sync that follows `events` from `translated`, the translation the device's
    /// offload holds, to `ruleset`: only the rules the events reach change, checked
    /// against those stored. Nil when the events reach further than a resumed walk
    /// follows, or the stored rules are not `translated`'s: `sync` then.
    static func follow(_ device: String, from translated: consuming HookOffload, events: [RulesetEvent],
                       ruleset: Ruleset) -> Synced? {
        guard let change = translated.follow(events, in: ruleset) else { return nil }
        guard !change.isEmpty else { return Synced(line: summary(of: translated, changed: false), translation: translated) }
        let offload = Offload(device: device)
        do {
            let update = try offload.update { rules, recorded in
                for rule in change.removed where rules.rule(chain: rule.chain, prio: rule.prio, handle: rule.handle) != rule {
                    throw StaleTranslation()
                }
                recorded = change
                try rules.apply(change)
            }
            return Synced(line: summary(of: translated, changed: update.change != nil), translation: translated)
        } catch {
            return nil
        }
    }

    /// The stored rules are not those the translation followed from.
    private struct StaleTranslation: Error {}

    /// Removes the offload a sync made and forgets the device: its rules go, and the
    /// program too unless tc rules stay.
    static func remove(_ device: String) throws -> String {
        let offload = Offload(device: device)
        if let band = try band(of: offload) {
            do {
                let kept = try offload.update { rules, change in
                    change = RuleChange(removed: split(rules.rules, band: band).offload, added: [])
                    try rules.apply(change)
                    return rules.count
                }.result
                if kept > 0 {
                    try offload.files.remove(markerFile(device))
                    return "\(device): offload removed; nftables decides every frame after the \(kept) tc rules"
                }
            } catch OffloadError.notAttachedForRules {
                // Detached by hand already.
            }
        }
        do {
            try offload.detach()
        } catch OffloadError.notAttached {
            // Detached by hand already.
        }
        try offload.files.remove(markerFile(device))
        return "\(device): offload removed; nftables decides every frame"
    }

    /// The device's rules from the band's first prio become the translation's, in one
    /// change; the tc rules below it stay, and run first, as tc's ingress runs before
    /// nftables' hook.
    private static func replace(_ offload: Offload, with translated: HookOffload, marker: Marker?) throws -> String {
        let device = offload.device
        let first = translated.firstPrio
        let written = Marker(firstPrio: first)
        // Marked before the rules change, so that a sync that dies after it leaves rules
        // the next sync replaces; a band that moves up (from a first-version marker),
        // after it, while the old band holds the new.
        let movesUp = marker.map { $0.band.lowerBound < first } ?? false
        // One read of the device's state, in the update; attached first when it is not.
        func replace() throws -> Offload.Update<Void> {
            try offload.update { rules, change in
                // The offload's rules now: none before the first sync.
                let (offloaded, tc) = split(rules.rules, band: marker?.band)
                if let highest = tc.lazy.map(\.prio).max(), highest >= first {
                    throw NFTSyncRefusal(device: device, tcPrio: highest, firstPrio: first, span: translated.span)
                }
                if !movesUp, marker?.firstPrio != first { try offload.files.write(written, to: markerFile(device)) }
                change = NFTRulesetSource.change(from: offloaded, to: translated.rules)
                try rules.apply(change)
            }
        }
        let update: Offload.Update<Void>
        do {
            update = try replace()
        } catch OffloadError.notAttachedForRules {
            _ = try offload.attach()
            update = try replace()
        }
        if movesUp { try offload.files.write(written, to: markerFile(device)) }
        return summary(of: translated, changed: update.change != nil)
    }

    static func summary(of translated: HookOffload, changed: Bool) -> String {
        let offloaded = translated.reports.filter(\.status.isOffloaded).count
        let handed = translated.reports.filter { if case .notOffloaded = $0.status { true } else { false } }.count
        return "\(translated.device): \(translated.chains.count) base chain\(translated.chains.count == 1 ? "" : "s"), "
            + "\(translated.reports.count) rules: \(offloaded) offloaded, \(handed) to nftables; "
            + "\(translated.ruleCount) flower rules, \(changed ? "changed" : "unchanged")"
    }
}

/// A sync that could not make the device's rules its chains': the offload is gone.
struct NFTSyncFailure: Error, CustomStringConvertible {
    var device: String
    var reason: any Error

    var description: String { "\(reason); the offload of \(device) was removed: nftables decides every frame" }
}

/// The device's tc rules reach into the prios the offload needs.
struct NFTSyncRefusal: Error, CustomStringConvertible {
    var device: String
    var tcPrio: UInt16
    var firstPrio: UInt16
    var span: Int

    var description: String {
        "\(device) has a tc rule at prio \(tcPrio); the nftables offload needs prios \(firstPrio)-\(Int(firstPrio) + span - 1) "
            + "after every tc rule (tc's ingress runs before nftables' hook): give the tc rules prios below \(firstPrio)"
    }
}

/// `filter` commands on a device with an offload: the band of prios from the first the
/// offload holds follows the ruleset alone; tc rules run before it.
struct NFTGuardedStore: RuleSetStore {
    let base: OffloadingStore

    func rules(of device: String) throws -> RuleSet { try base.rules(of: device) }

    func update<T>(device: String, _ body: (inout RuleSet, inout RuleChange) throws -> T) throws -> T {
        try base.update(device: device) { rules, change in
            let result = try body(&rules, &change)
            guard !change.isEmpty, let band = try NFTRulesetSource.band(of: Offload(device: device, state: base.state)) else {
                return result
            }
            let reached = (change.removed + change.added).filter { band.contains($0.prio) }
            if let first = reached.first {
                throw NFTBandRefusal(device: device, prio: first.prio, rules: reached.count, band: band)
            }
            return result
        }
    }
}

/// A `filter` command would change the offload's rules.
struct NFTBandRefusal: Error, CustomStringConvertible {
    var device: String
    var prio: UInt16
    var rules: Int
    var band: PartialRangeFrom<UInt16>

    var description: String {
        let what = rules == 1 ? "prio \(prio) of \(device) belongs" : "the command would change \(rules) rules of \(device) that belong"
        return "\(what) to the nftables offload (prios \(band.lowerBound)-65535), which follows the ruleset (xdpflow nft "
            + "sync); tc rules run before it and need prios below \(band.lowerBound)"
            + (rules == 1 ? "" : " (delete tc rules by their prio)")
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
        let offload = Offload(device: device)
        let marker = try NFTRulesetSource.marker(of: offload)
        let translated = try NFTRulesetSource.translation(of: ruleset, for: offload, marker: marker)
        let stored = try offload.stored()
        chains = translated.chains.map(\.description)
        attached = stored.isAttached
        inSync = attached && marker.map { marker in
            NFTRulesetSource.change(from: NFTRulesetSource.split(stored.rules.rules, band: marker.band).offload,
                                    to: translated.rules).isEmpty
        } ?? false
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
        case .offloadedMap(let verdicts): "offloaded (vmap: \(verdicts.map(verdictWord).joined(separator: ", ")))"
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
                fields.append(("offloaded", .bool(line.report.status.isOffloaded)))
                switch line.report.status {
                case .offloaded(let verdict):
                    fields += [("verdict", .string(Self.verdictWord(verdict)))]
                case .offloadedMap(let verdicts):
                    fields += [("verdict", .string("vmap")), ("verdicts", .array(verdicts.map { .string(Self.verdictWord($0)) }))]
                case .notOffloaded(let reason):
                    fields += [("reason", .string(reason))]
                case .unreachable(let after):
                    fields += [("reason", .string("after handle \(after.handle), which hands every frame to nftables"))]
                case .noEffect:
                    fields += [("reason", .string("no effect"))]
                }
                fields += [("flower_rules", .integer(line.flowRules)), ("counters", counts(line.total)),
                           ("xdp", counts(line.xdp)), ("nftables", counts(line.nftables))]
                return .object(fields)
            })),
        ])
    }
}

let nftManual = """
    Runs the nftables rules of each device's ingress hook in the device's XDP program, \
    as far as XDP can be sure of the verdict nftables would give; nftables still runs \
    after XDP and decides every frame XDP passes.

    xdpflow nft sync [dev DEV] reads the running ruleset's tables that have an ingress \
    chain (nft -j list chains, then nft -j -s list table each), finds the \
    base chains on the ingress hook of each device (netdev family, and inet family, which \
    sees IPv4 and IPv6 only), translates them in hook order into flower rules and makes \
    them the device's rules from prio 49153 on through the one change engine (xdpflow \
    attach first when the device is not attached). Rules of xdpflow filter below that \
    prio stay and run first, as tc's ingress runs before nftables' hook (tc's automatic \
    prios, 49152 and down, are below it); filter commands cannot add, change or delete \
    rules from it on, and a sync whose rules would pass a tc rule's prio is refused. \
    The band starts lower when its rules need more than the 16,383 prios above 49152. \
    A device whose chains are gone loses the offload's rules, and is detached when no tc \
    rule stays. Run it again after changing the ruleset: until then XDP runs the rules of \
    the last sync; a sync that cannot apply the new rules removes the offload.

    xdpflow nft watch [dev DEV] syncs, then follows the ruleset's changes (nft -j \
    monitor) and syncs again after each, changing only the flower rules that changed, \
    until SIGINT or SIGTERM; then it removes every offload it made. Rules added or \
    deleted and set elements added are followed in the ruleset it holds (a new rule \
    goes where the kernel's notification of it says: nft's JSON does not), and in its \
    translation from the first rule they reach on; \
    any other change, or more than 1,024 at once (64 without the kernel's notifications), \
    has it read the ruleset again, as it does \
    once a second after it starts. Each line it prints says which (events followed, or \
    ruleset read). make install puts a systemd unit for it in place \
    (xdpflow-nft-watch.service).

    What runs in XDP: drop (XDP drops, nftables never sees the frame), accept in the last \
    base chain (XDP passes, nftables accepts), chain policies, jump and goto (inlined), \
    matches on ether saddr|daddr|type, meta protocol|l4proto|iifname, ip saddr|daddr|protocol, \
    ip6 saddr|daddr|nexthdr, tcp|udp|sctp sport|dport, icmp and icmpv6 type|code, with ==, \
    !=, <, <=, >, >=, prefixes, ranges, anonymous and named sets, concatenations, and \
    verdict maps of accept, drop and continue; meta mark set goes on in XDP (nftables sets \
    the mark on every frame XDP passes). Any other rule (ct, limit, log, fwd, dup, a \
    header written, a counter without a verdict, accept before another base chain) hands \
    every frame it might match to nftables, and the rules after it still run in XDP for \
    the others: fwd, because an XDP redirect skips the qdisc and egress hooks its \
    transmit passes through; dup, because XDP cannot pass a frame on and send a copy; \
    limit, because a second token bucket would decide other frames than nftables' own. VLAN-tagged frames, IPv4 fragments and IPv6 frames with extension headers \
    go to nftables first when a rule could decide them otherwise.

    xdpflow nft status [dev DEV] prints each rule: offloaded or not, and why; the frames \
    XDP dropped for it (nftables never counted them) and its own counter in nftables. \
    -j prints JSON. xdpflow nft show [dev DEV] prints the flower rules a sync would run, \
    as a -batch file.

    EXIT STATUS
      0 done; 1 the command cannot be read, or nft cannot be run; 2 refused (a tc rule \
      at a prio the offload needs, the kernel refused the program, the rules exceed a limit).
    """

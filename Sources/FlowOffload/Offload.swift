import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowRules
import FoundationEssentials
import Glibc
import SystemPackage

/// What the store keeps for an attached device (`DEV.offload.json`), next to its rules:
/// enough to plan again exactly what the kernel holds.
struct OffloadState: Codable {
    /// The mode the link got (native or generic).
    var mode: String
    /// The plan's memory for the rules as of journal record `sequence`.
    var memory: Plan.Memory
    var unparsedDrop: Bool
    var ruleCapacity: Int
    /// Nil in state of an earlier version: 0.
    var sequence: UInt64?
    /// The program in the slot as of `sequence`.
    var programID: UInt32?
    /// What the program writes in the metadata area; nil in state of an earlier version: mark.
    var metadata: FlowMetadata.Layout?

    var options: CompileOptions {
        CompileOptions(unparsedVerdict: unparsedDrop ? .drop : .pass, metadata: metadata ?? .mark)
    }
}

/// One device's offload, in one network namespace: its rules and journal on disk (the
/// store), and when attached, the kernel objects pinned under PINS/net-INODE/DEV/ (the
/// runtime: a link to an entry program, the slot it tail-calls, and the datapath's maps).
/// Every operation holds the state directory's lock, so commands run one at a time, and
/// begins by finishing or rolling back whatever a command that died left pending.
public struct Offload {
    public let device: String
    public let namespace: NamespaceID
    /// The state directory (its root: the lock lives there).
    public let state: StateDirectory
    /// `XDPFLOW_PIN_DIR`, or /sys/fs/bpf/xdpflow.
    public let pinRoot: FilePath

    public static var defaultPinRoot: FilePath {
        if let path = getenv("XDPFLOW_PIN_DIR") { return FilePath(String(cString: path)) }
        // Under `ip netns exec`, /sys is the command's own, without bpffs: pins made
        // there would die with it. The bpffs an ancestor (the shell that ran `ip`) sees is
        // where every other command finds them.
        if !BPFFS.isMounted(), let ancestors = ancestorBPFFS { return ancestors.appending("xdpflow") }
        return BPFFS.defaultMountPoint.appending("xdpflow")
    }

    /// /proc/PID/root/sys/fs/bpf of the nearest ancestor whose mounts have bpffs there.
    static var ancestorBPFFS: FilePath? {
        var pid = getppid()
        for _ in 0..<16 where pid > 1 {
            let path = FilePath("/proc/\(pid)/root").appending(BPFFS.defaultMountPoint.components)
            if BPFFS.isMounted(at: path) { return path }
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let fields = stat.split(separator: ")").last?.split(separator: " "), fields.count > 1,
                  let parent = Int32(fields[1])
            else { return nil }
            pid = parent
        }
        return nil
    }


    public init(device: String, state: StateDirectory = .default, pinRoot: FilePath = Offload.defaultPinRoot,
                namespace: NamespaceID? = nil) {
        self.device = device
        self.state = state
        self.pinRoot = pinRoot
        self.namespace = namespace ?? ((try? NamespaceID.current()) ?? NamespaceID(inode: 0))
    }

    /// Where this namespace's devices keep their files.
    public var files: StateDirectory { StateDirectory(state.path.appending(namespace.directoryName)) }
    public var pins: FilePath { pinRoot.appending(namespace.directoryName).appending(device) }
    var store: FileRuleSetStore { FileRuleSetStore(state: state, namespace: namespace) }
    var journalFile: String { "\(device).journal" }
    var journal: Journal { Journal(path: files.path.appending(journalFile)) }
    var offloadFile: String { "\(device).offload.json" }
    /// A pinned map that names the state directory of the attachment: another state
    /// directory that finds these pins knows whose they are and leaves them alone.
    static let ownerPin = "owner"

    /// What `attach` did.
    public struct Attachment: Sendable {
        public var mode: XDPMode
        public var programID: UInt32
        public var rules: Int
        public var subtables: Int
        public var tables: Int
        /// What the command found left pending and finished or rolled back first.
        public var recovery: String?
    }

    /// Loads the program for the device's stored rules (none: a program that passes and
    /// counts everything), attaches it through the slot's link, attaches the mark
    /// companion to tc ingress (always: see `MarkCompanionAttachment`), and pins everything.
    /// `metadata` is what the program leaves in front of the frames it decides
    /// (`FlowMetadata`): marks only, or the deciding rule on every frame as well.
    public func attach(mode: XDPMode = .auto, unparsedDrop: Bool = false, metadata: FlowMetadata.Layout = .mark,
                       ruleCapacity: Int = Plan.defaultRuleCapacity) throws -> Attachment {
        try Privileges.require("attach")
        let interface = try OffloadError.lifting { try NetworkInterface(named: device) }
        if !pinRoot.starts(with: "/proc") { try OffloadError.lifting { try BPFFS.mountIfNeeded() } }
        return try locked { stored, recovery in
            if let owner = try foreignOwner() { throw OffloadError.ownedElsewhere(device, owner: owner, pins: pins) }
            if stored.offload != nil {
                guard !FileManager.default.fileExists(atPath: pins.appending(ProgramSlot.Pin.link).string) else {
                    throw OffloadError.alreadyAttached(device)
                }
            }
            if let id = XDPLink.attachedProgramID(interface) { throw OffloadError.busy(device, programID: id) }
            // The link went with its bpffs (a reboot, a remount): what is left is cleared.
            let reattach = stored.offload != nil
            removePins()
            let sequence = stored.sequence + 1
            try journal.begin(sequence, .attach, RuleChange(), device: device)
            let plan = try compile(stored.rules, memory: nil, ruleCapacity: ruleCapacity)
            let options = CompileOptions(unparsedVerdict: unparsedDrop ? .drop : .pass, metadata: metadata)
            let datapath: Datapath, slot: ProgramSlot, attachedMode: XDPMode
            do {
                datapath = try Datapath(plan: plan, options: options, targetIndex: redirectIndex)
                slot = try ProgramSlot(running: datapath.program!, attachingTo: interface, mode: mode)
                attachedMode = try slot.link.mode
                let companion = try MarkCompanionAttachment(attachingTo: interface, layout: metadata)
                try BPFFS.makeDirectories(pins)
                try pinOwner()
                try pinMaps(datapath)
                try slot.pin(in: pins)
                try companion.pin(in: pins)
                try files.write(OffloadState(mode: attachedMode.rawValue, memory: plan.memory, unparsedDrop: unparsedDrop,
                                             ruleCapacity: ruleCapacity, sequence: sequence,
                                             programID: datapath.program!.id, metadata: metadata),
                                to: offloadFile)
                try journal.commit(sequence, programID: datapath.program!.id)
            } catch {
                try? rollBackAttach(sequence)
                throw error
            }
            let note = reattach ? "\(device) was attached before but its link was gone (a reboot, or bpffs "
                + "remounted): its \(stored.rules.count) stored rules are loaded again" : nil
            return Attachment(mode: attachedMode, programID: datapath.program!.id, rules: plan.rules.count,
                              subtables: plan.subtables.count, tables: plan.tables?.tables.count ?? 0, recovery: [recovery, note].compactMap { $0 }.first)
        }
    }

    /// Detaches the program and removes the pins and the device's state (its rules too):
    /// the device is as it was before `attach`.
    public func detach() throws {
        try Privileges.require("detach")
        try locked { stored, _ in
            if let owner = try foreignOwner() { throw OffloadError.ownedElsewhere(device, owner: owner, pins: pins) }
            guard stored.offload != nil || FileManager.default.fileExists(atPath: pins.string) else {
                throw OffloadError.notAttached(device)
            }
            try journal.begin(stored.sequence + 1, .detach, RuleChange(), device: device)
            try finishDetach()
        }
    }

    /// The part of `detach` after its journal record, also what a detach that died
    /// halfway leaves for the next command to finish.
    private func finishDetach() throws {
        try removeAttachment()
        try store.remove(device)
        try files.remove(journalFile)
    }

    /// The link detached, the pins and the attachment's state removed: what detach and
    /// a rolled-back attach both take away.
    private func removeAttachment() throws {
        if let link = try? XDPLink(pinnedAt: pins.appending(ProgramSlot.Pin.link)) { try? link.detach() }
        // Its pin gone, the tcx link would detach anyway, unless another process holds it.
        if let link = try? TCXLink(pinnedAt: pins.appending(MarkCompanionAttachment.Pin.link)) { try? link.detach() }
        removePins()
        try files.remove(offloadFile)
    }

    /// Whether the state directory holds an attachment of the device (`stored()`).
    public var isAttached: Bool {
        (try? stored().isAttached) ?? false
    }

    /// What a changing command did to the kernel.
    public typealias Change = LiveRuleSet.Change

    /// The outcome of `update`.
    public struct Update<T> {
        public var result: T
        /// Nil when the rules did not change.
        public var change: Change?
        /// What the command found left pending and finished or rolled back first.
        public var recovery: String?
        /// Things the operator should fix, such as a redirect target that drops frames.
        public var warnings: [String] = []
    }

    /// Changes the device's rules through the one engine: `body` changes the rule set
    /// (recording what it changed), the change is appended to the journal and synced,
    /// carried into the kernel, and committed. If `body` throws or anything refuses the
    /// change (the verifier, a full map, a full disk), rules and kernel stay as they were.
    public func update<T>(_ body: (inout RuleSet, inout RuleChange) throws -> T) throws -> Update<T> {
        try locked { stored, recovery in
            guard let offload = stored.offload else {
                throw OffloadError.notAttachedForRules(device, stored: stored.rules.count)
            }
            let live = try adopt(&stored, offload)
            let sequence = stored.sequence + 1
            var warnings: [String] = []
            var recorded = RuleChange()
            // The added rules as the record prints them, which a compaction right after
            // writes again.
            var printed: [String] = []
            let outcome: (result: T, change: LiveRuleSet.Change?)
            // The record's sync runs while the change is prepared; the device runs none
            // of it before the record is durable.
            var durable: PendingSync?
            defer { try? durable?.wait() }
            do {
                outcome = try live.update(body, willCarry: { change in
                    recorded = change
                    warnings = try RedirectTargets.check(change.added, on: device)
                    printed = change.added.commandLineList(device: device)
                    durable = try journal.beginSyncing(sequence, .change, change, added: printed)
                }, beforeLive: { () throws(OffloadError) in
                    do throws(StoreError) {
                        try durable?.wait()
                    } catch {
                        throw .store(error)
                    }
                })
            } catch {
                // Refused before the kernel saw it: the rules are as they were.
                stored.take(live)
                throw error
            }
            guard let change = outcome.change else {
                stored.take(live)
                return Update(result: outcome.result, recovery: recovery)
            }
            do {
                if case .newProgram = change { try pinMaps(live.datapath) }
                try journal.commit(sequence, programID: live.datapath.program?.id)
            } catch {
                // The kernel holds a change the disk cannot say is done: it goes back.
                if (try? live.apply(recorded.inverse)) != nil, case .newProgram = change {
                    try? pinMaps(live.datapath)
                }
                try? journal.abort(sequence, programID: live.slot?.programID)
                throw error
            }
            let compacted = compactIfLarge(live, sequence: sequence, offload: offload,
                                           printed: Array(zip(recorded.added, printed)))
            keep(Stored(rules: live.rules, offload: compacted ?? offload, sequence: sequence,
                        programID: live.datapath.program?.id ?? stored.programID, keptPlan: live.datapath.plan))
            return Update(result: outcome.result, change: change, recovery: recovery, warnings: warnings)
        }
    }

    /// Runs one filter command on the device: `update` with what the command changes.
    @discardableResult
    public func run(_ command: FilterCommand) throws -> Update<[FlowRule]> {
        try update { rules, change in try command.apply(to: &rules, recording: &change) }
    }

    // MARK: - The state on disk

    /// The device's state as the journal says it is after its last finished record.
    struct Stored {
        /// After the last committed record.
        var rules: RuleSet
        var offload: OffloadState?
        /// The rules `offload.memory` was planned for, and the changes since.
        var planned: (rules: RuleSet, changes: [RuleChange])?
        /// Of the last record (finished or not); 0 when there is none.
        var sequence: UInt64
        /// The program the slot should hold.
        var programID: UInt32?
        var pending: Journal.Record?
        /// The plan of these rules, as a process that serves many commands kept it
        /// (`KeptState`); nil when read from disk.
        var keptPlan: Plan?
    }

    /// Reads the snapshot and the journal.
    func load() throws -> Stored {
        var (rules, rulesSequence) = try store.read(device)
        let offload = try files.read(OffloadState.self, from: offloadFile)
        let planSequence = offload.map { $0.sequence ?? 0 }
        var planned: (rules: RuleSet, changes: [RuleChange])? = planSequence == rulesSequence ? (rules, []) : nil
        var stored = Stored(rules: rules, offload: offload, sequence: max(rulesSequence, planSequence ?? 0),
                            programID: offload?.programID)
        let records = try journal.records()
        // A detach that died may have removed the snapshot already, so that the records
        // after it no longer replay; the rules go with the detach the next command finishes.
        let detaching = records.last.map { !$0.finished && $0.kind == .detach } ?? false
        for record in records {
            stored.sequence = max(stored.sequence, record.sequence)
            guard record.finished else {
                stored.pending = record
                continue
            }
            if let id = record.programID { stored.programID = id }
            if record.aborted { continue }
            guard record.sequence > rulesSequence, !record.change.isEmpty else {
                if record.sequence == planSequence { planned = (rules, []) }
                continue
            }
            if let base = planSequence, record.sequence > base {
                planned?.changes.append(record.change)
            }
            do {
                try rules.apply(record.change)
            } catch where detaching {
                rules = RuleSet()
                stored.sequence = records.last!.sequence
                stored.pending = records.last
                break
            } catch {
                throw StoreError.badRecord(journal.path, sequence: record.sequence, reason: error)
            }
            if record.sequence == planSequence { planned = (rules, []) }
        }
        stored.rules = rules
        stored.planned = offload == nil ? nil : (planned ?? (rules, []))
        return stored
    }

    /// Reads snapshot and journal under the shared lock (`StateDirectory.reading`), for
    /// what only shows: nothing is finished, rolled back or written, and no pin is
    /// opened, so any user who can read the state directory may call it. A pending
    /// record stays pending, its change out of the rules.
    func read() throws -> Stored {
        try OffloadError.lifting { try state.reading { try kept(stamped: stamps) ?? load() } }
    }

    /// What the state directory holds for the device, as a command that shows rules
    /// prints them: `filter show` and `get`, `save`, `show` (without root).
    public struct StoredState: Sendable {
        /// As of the last finished journal record.
        public var rules: RuleSet
        /// The mode recorded at attach; nil when the state holds no attachment.
        public var mode: String?
        public var unparsedDrop: Bool
        /// A record that a command which died left unfinished; only a command that may
        /// write (root's) finishes or rolls it back.
        public var pending: Pending?

        public var isAttached: Bool { mode != nil }
    }

    /// A journal record left unfinished, as a reader that must not touch it says so.
    public struct Pending: Sendable, CustomStringConvertible {
        public enum Kind: Sendable {
            case change, attach, detach
        }

        public var device: String
        public var kind: Kind

        init(device: String, _ record: Journal.Record) {
            self.device = device
            kind = switch record.kind {
            case .change: .change
            case .attach: .attach
            case .detach: .detach
            }
        }

        public var description: String {
            let repair = "run xdpflow as root (xdpflow check dev \(device))"
            return switch kind {
            case .change:
                "a change to \(device) is pending (a command stopped halfway): shown are the rules before it; "
                    + "\(repair) to finish or roll it back"
            case .attach:
                "an attach of \(device) is pending (a command stopped halfway): \(repair) to roll it back"
            case .detach:
                "a detach of \(device) is pending (a command stopped halfway): shown are the rules before it; "
                    + "\(repair) to finish it"
            }
        }
    }

    /// The device's state as stored, read without changing anything (`read()`): the one
    /// way the commands that show rules read them, as root or not.
    public func stored() throws -> StoredState {
        let stored = try read()
        return StoredState(rules: stored.rules, mode: stored.offload?.mode,
                           unparsedDrop: stored.offload?.unparsedDrop ?? false,
                           pending: stored.pending.map { Pending(device: device, $0) })
    }

    /// Runs `body` under the lock on the device's state, after finishing or rolling back
    /// what a command that died left pending (`body` gets what was done, if anything).
    /// Whatever fails in FlowOffload or below is an `OffloadError`; what `body` throws
    /// of its own (a caller's rule change) is passed on as it is.
    /// `body` may move the rules and plan out of the state it gets (`adopt`).
    func locked<T>(_ body: (inout Stored, String?) throws -> T) throws -> T {
        try OffloadError.lifting {
            try state.locked {
                try store.makeDirectory()
                let found = stamps
                var stored = try takeKept(stamped: found) ?? load()
                // Kept again if nothing changed it (a refused change, a show).
                defer { keep(stored, ifStill: found) }
                let recovery = try recover(&stored)
                return try body(&stored, recovery)
            }
        }
    }

    /// Finishes or rolls back a pending record: a change or an attach is rolled back (the
    /// kernel is rebuilt from the stored rules), a detach finished. Says which.
    private func recover(_ stored: inout Stored) throws -> String? {
        guard let pending = stored.pending else { return nil }
        switch pending.kind {
        case .detach:
            try finishDetach()
            stored = Stored(rules: RuleSet(), sequence: 0)
            return "finished detaching \(device): an earlier detach did not finish"
        case .attach:
            try rollBackAttach(pending.sequence)
            stored.offload = nil
            stored.planned = nil
            stored.pending = nil
            return "rolled back an attach of \(device) that did not finish; the device is not attached"
        case .change:
            guard let offload = stored.offload else {
                try journal.abort(pending.sequence, programID: nil)
                stored.pending = nil
                return "rolled back a change of \(device) that did not finish"
            }
            guard FileManager.default.fileExists(atPath: pins.appending(ProgramSlot.Pin.link).string) else {
                // The kernel side is gone (a reboot): the change, journalled before it
                // was carried and perhaps reported done, stays; attach loads it.
                try journal.commit(pending.sequence, programID: nil)
                try stored.rules.apply(pending.change)
                stored.planned?.changes.append(pending.change)
                stored.pending = nil
                return "finished a change of \(device) that the kernel lost (a reboot, or bpffs remounted): "
                    + "its \(pending.change.added.count + pending.change.removed.count) rules stay stored"
            }
            let id = try rebuild(stored, offload)
            try journal.abort(pending.sequence, programID: id)
            stored.programID = id
            stored.pending = nil
            let what = pending.change.added.count + pending.change.removed.count
            return "rolled back a change of \(device) that did not finish (\(what) rules); program \(id) "
                + "rebuilt from the \(stored.rules.count) stored rules"
        }
    }

    private func rollBackAttach(_ sequence: UInt64) throws {
        try removeAttachment()
        try journal.abort(sequence, programID: nil)
    }

    /// The plan of the stored rules, as the kernel should hold it.
    func plan(_ stored: Stored, _ offload: OffloadState) throws -> Plan {
        if let kept = stored.keptPlan { return kept }
        let base = stored.planned ?? (stored.rules, [])
        var plan = try compile(base.rules, memory: offload.memory, ruleCapacity: offload.ruleCapacity)
        for change in base.changes {
            do {
                _ = try plan.apply(change)
            } catch {
                throw OffloadError.compile(error)
            }
        }
        return plan
    }

    /// The device's pinned slot; its link gone is the device's problem to say.
    private func pinnedSlot(_ stored: Stored) throws -> ProgramSlot {
        guard let slot = try? ProgramSlot(pinnedIn: pins) else {
            throw OffloadError.linkGone(device, pins: pins, stored: stored.rules.count)
        }
        return slot
    }

    /// The engine over the pinned kernel objects. The rules and their plan move out of
    /// `stored` into it, so that changing them copies neither (100,000 rules).
    func adopt(_ stored: inout Stored, _ offload: OffloadState) throws -> LiveRuleSet {
        let slot = try pinnedSlot(stored)
        let plan = try plan(stored, offload)
        stored.keptPlan = nil
        let maps = try pinnedMaps(for: plan)
        let datapath = try Datapath(adopting: consume plan, options: offload.options, maps: maps)
        let rules = stored.rules
        stored.rules = RuleSet()
        return LiveRuleSet(adopting: consume rules, datapath: datapath, slot: slot, targetIndex: redirectIndex)
    }

    /// A new program and fresh maps for the stored rules, keeping only the counters and
    /// the AF_XDP sockets their owners bound: for when the maps' contents cannot be
    /// trusted. Returns the program's id.
    private func rebuild(_ stored: Stored, _ offload: OffloadState) throws -> UInt32 {
        let slot = try pinnedSlot(stored)
        let plan = try plan(stored, offload)
        let kept: Set = [FlowMaps.counters, FlowMaps.xsks, FlowMaps.xskUnbound]
        let counters = try pinnedMaps(for: plan).filter { kept.contains($0.key) }
        let adopted = try Datapath(adopting: plan, options: offload.options, maps: counters)
        let next = try Datapath(plan: plan, options: offload.options, targetIndex: redirectIndex, replacing: adopted,
                                sharing: kept)
        try slot.run(next.program!)
        try pinMaps(next)
        return next.program!.id
    }

    /// Writes a snapshot once the journal outgrows a quarter of the rules (every command
    /// replays the journal through the plan, rule by rule): the plan's memory first,
    /// then the rules, then the journal goes (each step leaves a state `load` reads
    /// right). A snapshot that cannot be written is left for a later command.
    /// Returns the state written, if it was.
    /// `printed`: lines of some of the rules, printed already.
    private func compactIfLarge(_ live: LiveRuleSet, sequence: UInt64, offload: OffloadState,
                                printed: [(rule: FlowRule, line: String)]) -> OffloadState? {
        // stat(2) (FileStamp), not FileManager's attributes, which read the owner's
        // names from /etc/passwd and /etc/group on every command.
        let rulesSize = Int(FileStamp(files.path.appending(store.fileName(device))).size)
        guard journal.size > max(32 << 10, rulesSize / 4) else { return nil }
        var next = offload
        next.memory = live.datapath.plan.memory
        next.sequence = sequence
        next.programID = live.slot?.programID
        do {
            try files.write(next, to: offloadFile)
            try store.write(live.rules, sequence: sequence, for: device, printed: printed)
            try files.remove(journalFile)
            return next
        } catch {
            // The journal still holds everything.
            return nil
        }
    }

    // MARK: - Pieces

    func compile(_ rules: RuleSet, memory: Plan.Memory?, ruleCapacity: Int) throws -> Plan {
        do {
            return try Plan(rules, device: device, memory: memory, ruleCapacity: ruleCapacity)
        } catch {
            throw OffloadError.compile(error)
        }
    }

    /// The ifindex of a redirect target; it must exist.
    func redirectIndex(_ name: String) throws(BPFError) -> UInt32 {
        try NetworkInterface(named: name).index
    }

    func pinnedMaps(for plan: Plan) throws -> [String: BPFKernel.Map] {
        var maps: [String: BPFKernel.Map] = [:]
        for spec in Datapath.mapSpecs(for: plan) {
            do {
                maps[spec.name] = try BPFKernel.Map(pinnedAt: pins.appending(spec.name))
            } catch {
                // Not pinned: a map the program has not needed yet.
                guard case .call(_, _, .noSuchFileOrDirectory) = error else { throw error }
            }
        }
        return maps
    }

    /// Pins the maps of `datapath` that are not pinned yet (or whose pin is another
    /// map), and removes the pins of maps it no longer uses.
    private func pinMaps(_ datapath: Datapath) throws {
        for (name, map) in datapath.maps {
            let path = pins.appending(name)
            // A kept map, opened from this pin under the lock this command holds.
            if map.pinPath == path { continue }
            if FileManager.default.fileExists(atPath: path.string) {
                if let pinned = try? BPFKernel.Map(pinnedAt: path), pinned.id == map.id { continue }
                try unpin(path)
            }
            try map.pin(at: path)
        }
        let used = Set(datapath.maps.keys).union(ProgramSlot.Pin.all).union(MarkCompanionAttachment.Pin.all)
            .union([Self.ownerPin])
        let present = (try? FileManager.default.contentsOfDirectory(atPath: pins.string)) ?? []
        for name in present where !used.contains(name) {
            try unpin(pins.appending(name))
        }
    }

    private func removePins() {
        let present = (try? FileManager.default.contentsOfDirectory(atPath: pins.string)) ?? []
        for name in present { try? unpin(pins.appending(name)) }
        rmdir(pins.string)
        rmdir(pins.removingLastComponent().string)  // only when no other device is attached
        rmdir(pinRoot.string)
    }

    /// Records this state directory in a pinned map next to the device's pins.
    private func pinOwner() throws {
        let map = try ArrayMap<OwnerPath>(name: "xf_owner", maxEntries: 1)
        try map.set(0, OwnerPath(ownerName))
        try map.map.pin(at: pins.appending(Self.ownerPin))
    }

    /// The state directory as the owner pin names it: its real path, so that two
    /// spellings of one directory are one owner.
    var ownerName: String {
        guard let resolved = realpath(state.path.string, nil) else { return state.path.string }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// The state directory of another xdpflow that holds pins for this device, if any.
    func foreignOwner() throws -> String? {
        let path = pins.appending(Self.ownerPin)
        guard FileManager.default.fileExists(atPath: path.string),
              let value = try? ArrayMap<OwnerPath>(pinnedAt: path).get(0)
        else { return nil }
        return value.path == ownerName ? nil : value.path
    }
}

/// The owner map's one value: a state directory's path, UTF-8, zero-padded to 256 bytes
/// (a longer path is cut).
struct OwnerPath: MapCodable, Equatable {
    static let byteCount = 256
    var path: String

    init(_ path: String) {
        self.path = path
    }

    func encode(into writer: inout ByteWriter) {
        writer.write(bytes: path.utf8.prefix(Self.byteCount), paddedTo: Self.byteCount)
    }

    init(from reader: inout ByteReader) throws(ByteDecodingError) {
        path = String(decoding: try reader.read(byteCount: Self.byteCount).prefix { $0 != 0 }, as: UTF8.self)
    }
}

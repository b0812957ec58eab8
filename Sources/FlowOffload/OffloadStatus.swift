import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowRules
import FoundationEssentials
import Glibc
import SystemPackage

extension Offload {
    /// What `xdpflow show` reports for a device: what runs there, and whether the kernel
    /// holds what the store says (`audit`).
    public struct Status: Sendable {
        public var device: String
        /// The mode recorded at attach (native or generic); nil without offload state.
        public var mode: String?
        /// The program that holds the rules, in the slot the device's entry program
        /// tail-calls; nil when the device does not run xdpflow's entry program.
        public var programID: UInt32?
        /// The mark companion's program on the device's tcx ingress; nil when it does not run.
        public var markCompanionID: UInt32?
        public var unparsedDrop: Bool
        /// What the program leaves in front of the frames (`attach ... metadata`).
        public var metadata: FlowMetadata.Layout = .mark
        public var rules: Int
        public var subtables: Int
        /// Tables, when the rules are classified by them (`Plan.tables`).
        public var tables: Int
        public var entries: Int
        /// Nil when the device's counters cannot be read (no pinned counters map).
        public var misses: RuleStatistics?
        public var unparsed: RuleStatistics?
        /// Frames `xsk` actions found no AF_XDP socket for; nil when no rule has one.
        public var xskUnbound: RuleStatistics?
        /// What the command found left pending and finished or rolled back first.
        public var recovery: String?
        /// What disagrees, each with what to do; empty when all is well.
        public var problems: [String]
        /// Whether the kernel was read: false without root, when the status is what the
        /// state directory says, without program id, counters or audit.
        public var kernelRead = true
        /// Without root: a record a command that died left unfinished, which this one
        /// may not finish or roll back (with root: `recovery`).
        public var pending: Pending?

        public var needsRepair: Bool { !problems.isEmpty }

        /// The size of the rules' plan: its subtables or tables, and their entries.
        mutating func count(_ plan: Plan) {
            subtables = plan.subtables.count
            tables = plan.tables?.tables.count ?? 0
            entries = plan.entryCount
        }
    }

    /// Nil when xdpflow holds nothing for the device (no state, no pins). Without
    /// `entries`, the audit checks the attachment, programs and maps but not each entry
    /// (a direct subtable is 65,536 of them): for `filter show`'s word on whether its
    /// rules are live. Without root, what the state directory says (`storedStatus()`).
    public func status(auditingEntries entries: Bool = true) throws -> Status? {
        guard Privileges.sufficient else { return try storedStatus() }
        return try locked { stored, recovery -> Status? in
            let hasPins = FileManager.default.fileExists(atPath: pins.string)
            guard stored.offload != nil || hasPins || recovery != nil else { return nil }
            var status = Status(device: device, mode: stored.offload?.mode,
                                unparsedDrop: stored.offload?.unparsedDrop ?? false, rules: stored.rules.count,
                                subtables: 0, tables: 0, entries: 0, recovery: recovery, problems: [])
            status.metadata = stored.offload?.metadata ?? .mark
            guard stored.offload != nil || hasPins else { return status }
            if let owner = try foreignOwner() {
                status.problems.append("attached by the xdpflow state in \(owner), not this one: "
                    + "XDPFLOW_STATE_DIR=\(owner) xdpflow show dev \(device)")
                return status
            }
            status.programID = programID
            status.markCompanionID = markCompanionID
            let planned = stored.offload.flatMap { try? self.plan(stored, $0) }
            if let plan = planned {
                status.count(plan)
                // The device's own counters; no rule's (10,000 lookups on a 10,000-rule device).
                let counters = try? statistics(of: plan, rules: [])
                status.misses = counters?.misses
                status.unparsed = counters?.unparsed
                status.xskUnbound = counters?.xskUnbound
            }
            status.problems = try audit(stored, planned: planned, entries: entries)
            return status
        }
    }

    /// The status as the state directory has it, read without changing anything
    /// (`read()`): the mode, the rules and their plan's size; the program id, counters
    /// and audit are the kernel's, which needs root. Nil when nothing is stored.
    private func storedStatus() throws -> Status? {
        let stored = try read()
        guard stored.offload != nil || stored.pending != nil else { return nil }
        var status = Status(device: device, mode: stored.offload?.mode,
                            unparsedDrop: stored.offload?.unparsedDrop ?? false, rules: stored.rules.count,
                            subtables: 0, tables: 0, entries: 0, problems: [], kernelRead: false,
                            pending: stored.pending.map { Pending(device: device, $0) })
        status.metadata = stored.offload?.metadata ?? .mark
        if let offload = stored.offload, let plan = try? plan(stored, offload) { status.count(plan) }
        return status
    }

    /// The program in the device's slot (the one that holds the rules), as `bpftool prog
    /// show` lists it; nil when the device is not attached.
    public var programID: UInt32? {
        (try? ProgramSlot(pinnedIn: pins)).flatMap { $0.isRunning ? $0.programID : nil }
    }

    /// The mark companion's program on the device's tc ingress; nil when it does not run
    /// there (or the device was attached before xdpflow had it).
    public var markCompanionID: UInt32? {
        (try? MarkCompanionAttachment(pinnedIn: pins)).flatMap { $0.isRunning ? $0.link.programID : nil }
    }

    /// `xdpflow check`: the differences between the kernel and the stored rules, each
    /// with what to do; empty when they agree. Nil when xdpflow holds nothing for the device.
    public func check() throws -> (recovery: String?, differences: [String])? {
        try Privileges.require("check")
        return try locked { stored, recovery in
            guard stored.offload != nil || FileManager.default.fileExists(atPath: pins.string) else {
                return recovery.map { ($0, []) }
            }
            if let owner = try foreignOwner() {
                return (recovery, ["attached by the xdpflow state in \(owner), not this one: "
                    + "XDPFLOW_STATE_DIR=\(owner) xdpflow check dev \(device)"])
            }
            return (recovery, try audit(stored))
        }
    }

    /// Compares the kernel objects with the plan of the stored rules: the link runs the
    /// entry program, the slot the recorded program, every map the plan needs is pinned
    /// with its spec and holds exactly the plan's entries, and nothing else is pinned.
    /// `planned` is the plan of `stored` when the caller made it already.
    func audit(_ stored: Stored, planned: Plan? = nil, entries: Bool = true) throws -> [String] {
        let linkPin = pins.appending(ProgramSlot.Pin.link)
        guard let offload = stored.offload else {
            return ["pins at \(pins) but no state for \(device) in \(files.path) (an attach that did not finish "
                + "and was not recorded): xdpflow detach dev \(device) removes them"]
        }
        guard FileManager.default.fileExists(atPath: linkPin.string) else {
            return [OffloadError.linkGone(device, pins: pins, stored: stored.rules.count).description]
        }
        let slot: ProgramSlot
        do {
            slot = try ProgramSlot(pinnedIn: pins)
        } catch BPFError.noSuchDevice {
            return ["the device is gone, its link with it: xdpflow detach dev \(device) removes the pins and the state"]
        } catch {
            return ["the link or slot pinned at \(pins) cannot be opened (\(error)): "
                + "xdpflow detach dev \(device), then attach again"]
        }
        var found: [String] = []
        let repair = "xdpflow detach dev \(device) and attach again"
        if slot.link.device.name != device {
            found.append("the link pinned at \(linkPin) is on \(slot.link.device), not \(device): was the device "
                + "renamed? xdpflow detach dev \(device) removes it")
        }
        if !slot.isRunning {
            found.append("the device does not run xdpflow's entry program (program "
                + "\(XDPLink.attachedProgramID(slot.link.device).map(String.init) ?? "none") is attached): \(repair)")
        }
        found += auditMarkCompanion(on: slot.link.device, repair: repair)
        if slot.programID != stored.programID {
            found.append("the slot runs program \(slot.programID.map(String.init) ?? "none"), the journal recorded "
                + "\(stored.programID.map(String.init) ?? "none"): \(repair)")
        }
        let plan = try planned ?? plan(stored, offload)
        let specs = Datapath.mapSpecs(for: plan)
        var maps: [String: BPFKernel.Map] = [:]
        for spec in specs {
            guard let map = try? BPFKernel.Map(pinnedAt: pins.appending(spec.name)) else {
                found.append("map \(spec.name) is not pinned at \(pins): \(repair)")
                continue
            }
            guard map.spec.type == spec.type, map.spec.keySize == spec.keySize, map.spec.valueSize == spec.valueSize,
                  map.spec.maxEntries == spec.maxEntries
            else {
                found.append("map \(spec.name) has \(map.spec.maxEntries) entries of \(map.spec.keySize)+"
                    + "\(map.spec.valueSize) bytes, the rules need \(spec.maxEntries) of \(spec.keySize)+"
                    + "\(spec.valueSize): \(repair)")
                continue
            }
            maps[spec.name] = map
        }
        let known = Set(specs.map(\.name)).union(ProgramSlot.Pin.all).union(MarkCompanionAttachment.Pin.all)
            .union([Self.ownerPin])
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: pins.string)) ?? []).sorted()
        where !known.contains(name) {
            found.append("\(name) is pinned at \(pins) but the rules use no such map")
        }
        for subtable in plan.subtables where entries {
            guard let map = maps[subtable.mapName] else { continue }
            found += try audit(subtable, in: map, plan: plan)
        }
        if let tables = plan.tables, entries {
            found += try audit(tables, maps: maps, plan: plan)
        }
        if let map = maps[FlowMaps.actions] {
            let actions = try ArrayMap<ActionProgram>(map)
            for (index, program) in plan.actions.sorted(by: { $0.key < $1.key })
            where (try? actions.get(index)) != program {
                found.append("action program \(index) in \(FlowMaps.actions) is not the rules' one")
            }
        }
        return found
    }

    /// The mark companion: pinned, and on `device`'s tc ingress through its link.
    private func auditMarkCompanion(on device: NetworkInterface, repair: String) -> [String] {
        guard MarkCompanionAttachment.isPinned(in: pins) else {
            return ["no mark companion on tc ingress (attached by an xdpflow without it): marks that rules "
                + "set do not reach the stack: \(repair)"]
        }
        let companion: MarkCompanionAttachment
        do {
            companion = try MarkCompanionAttachment(pinnedIn: pins)
        } catch .noSuchDevice {
            // A defunct link names no device: detached by someone else, or the device went.
            return ["the mark companion's link pinned at \(pins) was detached from tc ingress: \(repair)"]
        } catch {
            return ["the mark companion pinned at \(pins) cannot be opened (\(error)): \(repair)"]
        }
        guard companion.isRunning, companion.link.device == device else {
            let running = TCXLink.ingressProgramIDs(device).map(String.init)
            return ["the mark companion (program \(companion.program.id)) is not on \(device)'s tc ingress (tcx "
                + "ingress runs \(running.isEmpty ? "nothing" : running.joined(separator: ", "))): \(repair)"]
        }
        return []
    }

    /// One subtable's entries against its map: each stored rule's key with its slot,
    /// handle and action, and no other key.
    private func audit(_ subtable: Subtable, in map: BPFKernel.Map, plan: Plan) throws -> [String] {
        let direct = subtable.storage == .direct
        let ruleBySlot = Dictionary(uniqueKeysWithValues: plan.slots.indexes.map { ($0.value, $0.key) })
        func rule(_ value: SubtableValue) -> String {
            ruleBySlot[value.slot].map(\.description) ?? "no rule"
        }
        var kernel: [[UInt8]: SubtableValue] = [:]
        for (key, bytes) in try map.lookupBatch(batchSize: 65536) {
            let value = try SubtableValue(decoding: bytes)
            if !direct || value != .empty { kernel[key] = value }
        }
        var found: [String] = []
        for (key, value) in subtable.entries {
            let mapKey = Datapath.mapKey(key, direct: direct)
            switch kernel.removeValue(forKey: mapKey) {
            case nil:
                found.append("\(subtable.mapName) lacks the entry of \(rule(value)) (key \(TraceRecord.hex(key)))")
            case let held? where held != value:
                found.append("\(subtable.mapName) holds \(rule(held)) where the rules put \(rule(value)) "
                    + "(key \(TraceRecord.hex(key)))")
            default: break
            }
        }
        for (key, value) in kernel.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            found.append("\(subtable.mapName) holds an entry no stored rule has: \(rule(value)) "
                + "(key \(TraceRecord.hex(key)))")
        }
        return found
    }

    /// The table classifier's maps against its tables: every rule's check (with its link
    /// in its chain) and nothing at other slots, every chain's first rule at its place and
    /// nothing at other places, and the current half of the list.
    private func audit(_ tables: TupleTables, maps: [String: BPFKernel.Map], plan: Plan) throws -> [String] {
        let ruleBySlot = Dictionary(uniqueKeysWithValues: plan.slots.indexes.map { ($0.value, $0.key) })
        func rule(_ slot: UInt32) -> String { ruleBySlot[slot].map(\.description) ?? "slot \(slot)" }
        let words = tables.words
        var found: [String] = []
        if let map = maps[FlowMaps.rules] {
            let vacant = RuleCheck.vacant(words: words.count).encodedBytes, zero = [UInt8](repeating: 0, count: vacant.count)
            for (key, bytes) in try map.lookupBatch(batchSize: 65536) {
                let slot = try UInt32(decoding: key)
                if let held = tables.rules[slot] {
                    if bytes != held.check(next: tables.next(after: slot), words: words).encodedBytes {
                        found.append("\(FlowMaps.rules) holds another check for \(rule(slot)) than its rule's")
                    }
                } else if bytes != vacant && bytes != zero {
                    found.append("\(FlowMaps.rules) holds a check at slot \(slot), which no stored rule has")
                }
            }
        }
        if let map = maps[FlowMaps.buckets] {
            for (key, bytes) in try map.lookupBatch(batchSize: 65536) {
                let place = try UInt32(decoding: key), held = try UInt32(decoding: bytes), head = tables.head(at: place)
                if held == head { continue }
                found.append(head == 0
                    ? "\(FlowMaps.buckets) starts a chain at place \(place), where no stored rule's bucket is"
                    : "\(FlowMaps.buckets) starts the chain at place \(place) elsewhere than at \(rule(head))")
            }
        }
        if let map = maps[FlowMaps.tables] {
            let capacity = tables.tableCapacity
            let head = try map.lookup(TableEntry.headKey(tableCapacity: capacity).encodedBytes).map {
                try TableListHead(decoding: Array($0.prefix(TableListHead.byteCount)))
            }
            let half = (head?.generation ?? 0) & 1
            let count = half == 0 ? head?.counts.0 : head?.counts.1
            let order = tables.list
            if count != UInt32(order.count) {
                found.append("\(FlowMaps.tables) lists \(count ?? 0) tables, the rules have \(order.count)")
            } else {
                for (position, table) in order.enumerated()
                where try map.lookup((half * UInt32(capacity) + UInt32(position)).encodedBytes)
                    != TableEntry.encoded(table, words: words) {
                    found.append("\(FlowMaps.tables) lists another table at \(position) than \(table.mask)")
                }
            }
            let later = tables.later
            for table in tables.filtered
            where try map.lookup(TableEntry.key(filtered: table.index, tableCapacity: capacity).encodedBytes)
                != TableEntry.encoded(table, words: words, later: later[table.index]!) {
                found.append("\(FlowMaps.tables) holds another entry for table \(table.index) than \(table.mask)")
            }
            if let head, head.unfiltered != TableFilter.unfiltered(tables.filtered) {
                found.append("\(FlowMaps.tables) does not say which tables each filter dimension leaves unfiltered")
            }
        }
        if let map = maps[FlowMaps.tableFilter] {
            for (key, bytes) in try map.lookupBatch(batchSize: 65536) {
                let index = try UInt32(decoding: key)
                if bytes != tables.filter.value(at: index, words: tables.filterWords) {
                    found.append("\(FlowMaps.tableFilter) holds other bits at \(index) than the rules' keys give")
                }
            }
        }
        return found
    }

    /// The devices xdpflow holds something for in this namespace (state or pins), by name.
    /// Pins that cannot be listed (bpffs is root's) are left out; a state directory that
    /// cannot be read fails.
    public static func devices(state: StateDirectory = .default, pinRoot: FilePath = Offload.defaultPinRoot,
                               namespace: NamespaceID? = nil) throws -> [String] {
        let namespace = namespace ?? (try? NamespaceID.current()) ?? NamespaceID(inode: 0)
        let stored = try OffloadError.lifting { try FileRuleSetStore(state: state, namespace: namespace).devices() }
        let pinned = (try? FileManager.default.contentsOfDirectory(
            atPath: pinRoot.appending(namespace.directoryName).string)) ?? []
        return Set(stored + pinned).sorted()
    }

    // MARK: - Counters

    /// Per-rule counters, each police action's bucket (its overlimits and drops), and
    /// the device's miss and unparsed counts.
    public struct Statistics: Sendable {
        public var rules: [RuleID: RuleStatistics]
        public var policers: [PolicerKey: PolicerBucket]
        public var misses: RuleStatistics
        public var unparsed: RuleStatistics
        /// Frames `xsk` actions found no socket for (`FlowMaps.xskUnbound`); nil when no
        /// rule has one.
        public var xskUnbound: RuleStatistics?

        /// A rule's counters as `filter show -s` prints them, tc's per action.
        public func stats(of rule: FlowRule, now: KernelClock?) -> RuleStats {
            let id = RuleID(prio: rule.prio, handle: rule.handle)
            let counters = rules[id] ?? RuleStatistics()
            var police: [Int: (dropped: UInt64, overlimits: UInt64)] = [:]
            for index in rule.actions.indices {
                guard let bucket = policers[PolicerKey(rule: id, action: index)] else { continue }
                police[index] = (bucket.dropped, bucket.overlimits)
            }
            return RuleStats(rule: rule, packets: counters.packets, bytes: counters.bytes,
                             lastUsed: now?.seconds(since: counters.lastHit), dropped: counters.dropped, police: police)
        }
    }

    /// The verifier's log of the program the device's rules run in (tc's `verbose`),
    /// from loading it once more; nil when the device is not attached.
    public func verifierLog() throws -> String? {
        try locked { stored, _ -> String? in
            guard let offload = stored.offload else { return nil }
            let datapath = try adopt(&stored, offload).datapath
            do throws(BPFError) {
                return try Program.verifierLog(name: "xdpflow", instructions: datapath.instructions, maps: datapath.maps)
            } catch {
                throw OffloadError.kernel(error)
            }
        }
    }

    /// Nil when the device is not attached. Given `rules`, only theirs are read (a `-s
    /// filter get` of one rule among 100,000 reads one), the device's own always.
    public func statistics(of rules: Set<RuleID>? = nil) throws -> Statistics? {
        try locked { stored, _ in
            guard let offload = stored.offload else { return nil }
            return try statistics(of: plan(stored, offload), rules: rules)
        }
    }

    /// The counters in the pinned counters map (of `wanted` only, when given); the caller
    /// holds the lock.
    func statistics(of plan: Plan, rules wanted: Set<RuleID>? = nil) throws -> Statistics {
        let counters = try PerCPUArray<RuleCounters>(pinnedAt: pins.appending(FlowMaps.counters))
        func read(_ slot: UInt32) throws -> RuleStatistics {
            try counters.get(slot).map(RuleStatistics.init(perCPU:)) ?? RuleStatistics()
        }
        var rules: [RuleID: RuleStatistics] = [:]
        if let wanted {
            for rule in wanted { if let slot = plan.slots.indexes[rule] { rules[rule] = try read(slot) } }
        } else {
            for (rule, slot) in plan.slots.indexes { rules[rule] = try read(slot) }
        }
        var policers: [PolicerKey: PolicerBucket] = [:]
        if !plan.policers.isEmpty {
            let buckets = try ArrayMap<PolicerBucket>(pinnedAt: pins.appending(FlowMaps.policers))
            for (key, index) in plan.policerIndex.indexes where wanted?.contains(key.rule) ?? true {
                policers[key] = try buckets.get(index)
            }
        }
        var xskUnbound: RuleStatistics?
        if plan.stepKinds.contains(.xsk) {
            let unbound = try PerCPUArray<RuleCounters>(pinnedAt: pins.appending(FlowMaps.xskUnbound))
            xskUnbound = try unbound.get(0).map(RuleStatistics.init(perCPU:)) ?? RuleStatistics()
        }
        return Statistics(rules: rules, policers: policers, misses: try read(RuleSlots.miss),
                          unparsed: try read(RuleSlots.unparsed), xskUnbound: xskUnbound)
    }
}

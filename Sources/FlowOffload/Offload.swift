import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowRules
import Foundation
import SystemPackage

/// What the runtime keeps on disk for an attached device (`DEV.offload.json`), next to
/// its rules: enough to rebuild the plan the kernel holds.
struct OffloadState: Codable {
    /// The mode the link got (native or generic).
    var mode: String
    var memory: Plan.Memory
    var unparsedDrop: Bool
    var ruleCapacity: Int
    /// Set while a change is being carried into the kernel: if it is still set when the
    /// next command runs, that change may be half done, and the kernel is rebuilt from
    /// the rules on disk.
    var pending: Bool

    static func file(of device: String) -> String { "\(device).offload.json" }

    var options: CompileOptions { CompileOptions(unparsedVerdict: unparsedDrop ? .drop : .pass) }
}

/// One device's offload: rules on disk, and when attached, an XDP link and maps pinned
/// under /sys/fs/bpf/xdpflow/DEV/. Every operation holds the state directory's lock,
/// so commands on a device run one at a time.
public struct Offload {
    public let device: String
    public let state: StateDirectory
    /// `XDPFLOW_PIN_DIR`, or /sys/fs/bpf/xdpflow.
    public let pinRoot: FilePath

    public static var defaultPinRoot: FilePath {
        FilePath(ProcessInfo.processInfo.environment["XDPFLOW_PIN_DIR"] ?? "/sys/fs/bpf/xdpflow")
    }

    public init(device: String, state: StateDirectory = .default, pinRoot: FilePath = Offload.defaultPinRoot) {
        self.device = device
        self.state = state
        self.pinRoot = pinRoot
    }

    public var pins: FilePath { pinRoot.appending(device) }
    var linkPin: FilePath { pins.appending("link") }
    var store: FileRuleSetStore { FileRuleSetStore(state: state) }

    /// What `attach` did.
    public struct Attachment: Sendable {
        public var mode: XDPMode
        public var programID: UInt32
        public var rules: Int
        public var subtables: Int
        /// Set when stale state of an earlier attachment (its link gone) was cleared first.
        public var repair: String?
    }

    /// Loads the program for the device's rules (none: a program that passes and counts
    /// everything), attaches it through a bpf_link, and pins link and maps.
    public func attach(mode: XDPMode = .auto, unparsedDrop: Bool = false,
                       ruleCapacity: Int = Plan.defaultRuleCapacity) throws -> Attachment {
        try Privileges.require("attach")
        let interface = try NetworkInterface(named: device)
        try BPFFS.mountIfNeeded()
        return try state.locked {
            let hasLink = FileManager.default.fileExists(atPath: linkPin.string)
            var repair: String?
            if try state.read(OffloadState.self, from: OffloadState.file(of: device)) != nil {
                guard !hasLink else {
                    throw OffloadFailure("\(device) is already attached (xdpflow show dev \(device); xdpflow detach dev \(device))")
                }
                // The link went with its bpffs (a reboot, a remount): attach again from the stored rules.
                removePins()
                try state.remove(OffloadState.file(of: device))
                repair = "repaired \(device): its link pin was gone, so the stale attachment state was cleared"
            } else if hasLink {
                throw OffloadFailure("\(device) has an xdpflow link pinned at \(linkPin) but no state "
                    + "(an attach did not finish): run xdpflow detach dev \(device), then attach again")
            }
            if let id = XDPLink.attachedProgramID(interface) {
                throw OffloadFailure("another XDP program (id \(id)) is attached to \(device); "
                    + "remove it first (ip link set dev \(device) xdp off, or the tool that attached it)")
            }
            let rules = try store.read(device)
            let plan = try compile(rules, memory: nil, ruleCapacity: ruleCapacity)
            let options = CompileOptions(unparsedVerdict: unparsedDrop ? .drop : .pass)
            let datapath = try Datapath(plan: plan, options: options, targetIndex: redirectIndex)
            let link = try XDPLink(attaching: datapath.program!, to: interface, mode: mode)
            do {
                try BPFFS.makeDirectories(pins)
                try pinMaps(datapath, replacing: nil)
                try link.pin(at: linkPin)
                try state.write(OffloadState(mode: link.mode.rawValue, memory: plan.memory, unparsedDrop: unparsedDrop,
                                             ruleCapacity: ruleCapacity, pending: false),
                                to: OffloadState.file(of: device))
            } catch {
                try? link.detach()
                removePins()
                throw error
            }
            return Attachment(mode: link.mode, programID: datapath.program!.id, rules: plan.rules.count,
                              subtables: plan.subtables.count, repair: repair)
        }
    }

    /// Detaches the program and removes the pins and the device's state (its rules too):
    /// the device is as it was before `attach`.
    public func detach() throws {
        try Privileges.require("detach")
        try state.locked {
            guard try state.read(OffloadState.self, from: OffloadState.file(of: device)) != nil
                || FileManager.default.fileExists(atPath: linkPin.string)
            else {
                throw OffloadFailure("\(device) is not attached by xdpflow (xdpflow show lists what is)")
            }
            if FileManager.default.fileExists(atPath: linkPin.string) {
                do {
                    try XDPLink(pinnedAt: linkPin).detach()
                } catch BPFError.noSuchDevice {
                    // The device is gone and the link with it: removing the pin frees what is left.
                }
            }
            removePins()
            try state.remove(OffloadState.file(of: device))
            try store.remove(device)
        }
    }

    public var isAttached: Bool {
        (try? state.locked { try state.read(OffloadState.self, from: OffloadState.file(of: device)) }) != nil
    }

    /// What a changing command did to the kernel.
    public enum Change: Sendable, Equatable {
        /// Rules only on disk: the device is not attached.
        case stored
        /// The running program kept; this many map writes.
        case mapWrites(Int)
        /// A new program swapped in with bpf_link_update.
        case newProgram(id: UInt32)
    }

    /// The outcome of `update`.
    public struct Update<T> {
        public var result: T
        /// Nil when the rules did not change.
        public var change: Change?
        /// Set when an unfinished earlier change was repaired first.
        public var repair: String?
        /// Things the operator should fix, such as a redirect target that drops frames.
        public var warnings: [String] = []
    }

    /// Changes the device's rules. On an attached device the change reaches the kernel
    /// before this returns; if `body` throws or the kernel refuses the change (the
    /// verifier, a full map, a missing redirect target), rules and kernel stay as they were.
    public func update<T>(_ body: (inout RuleSet) throws -> T) throws -> Update<T> {
        try state.locked {
            var rules = try store.read(device)
            let before = rules
            let result = try body(&rules)
            guard rules != before else { return Update(result: result) }
            let kept = Set(before.rules)
            let warnings = try RedirectTargets.check(rules.rules.filter { !kept.contains($0) }, on: device)
            guard var offload = try state.read(OffloadState.self, from: OffloadState.file(of: device)) else {
                try store.write(rules, for: device)
                return Update(result: result, change: .stored, warnings: warnings)
            }
            let repair = try repairIfPending(&offload, rules: before)
            let change = try carry(from: before, to: rules, offload: &offload)
            return Update(result: result, change: change, repair: repair, warnings: warnings)
        }
    }

    /// Writes the new rules with the change marked pending, carries it into the kernel,
    /// and clears the mark; on failure puts the old rules back and rebuilds the kernel
    /// side from them.
    private func carry(from before: RuleSet, to rules: RuleSet, offload: inout OffloadState) throws -> Change {
        let old = try compile(before, memory: offload.memory, ruleCapacity: offload.ruleCapacity)
        let new = try compile(rules, memory: offload.memory, ruleCapacity: offload.ruleCapacity)
        var next = offload
        next.memory = new.memory
        next.pending = true
        try store.write(rules, for: device)
        try state.write(next, to: OffloadState.file(of: device))
        do {
            let change = try apply(new, over: old, options: offload.options)
            next.pending = false
            try state.write(next, to: OffloadState.file(of: device))
            offload = next
            return change
        } catch {
            try store.write(before, for: device)
            try state.write(offload, to: OffloadState.file(of: device))
            _ = try? rebuild(old, options: offload.options)
            throw error
        }
    }

    /// The kernel side of a change: map writes when the program stays, else a new
    /// program over the kept maps, swapped in atomically.
    private func apply(_ plan: Plan, over old: Plan, options: CompileOptions) throws -> Change {
        let running = try Datapath(adopting: old, options: options, maps: pinnedMaps(for: old))
        if let writes = try running.update(to: plan, targetIndex: redirectIndex) {
            return .mapWrites(writes)
        }
        let next = try Datapath(plan: plan, options: options, targetIndex: redirectIndex, replacing: running)
        try XDPLink(pinnedAt: linkPin).update(to: next.program!)
        try pinMaps(next, replacing: running)
        return .newProgram(id: next.program!.id)
    }

    /// A new program and fresh maps for `plan`, keeping only the counters (their slots
    /// are in the plan's memory): for when the maps' contents cannot be trusted.
    private func rebuild(_ plan: Plan, options: CompileOptions) throws -> UInt32 {
        let counters = try pinnedMaps(for: plan).filter { $0.key == FlowMaps.counters }
        let adopted = try Datapath(adopting: plan, options: options, maps: counters)
        let next = try Datapath(plan: plan, options: options, targetIndex: redirectIndex, replacing: adopted,
                                sharing: [FlowMaps.counters])
        try XDPLink(pinnedAt: linkPin).update(to: next.program!)
        try pinMaps(next, replacing: nil)
        return next.program!.id
    }

    /// A change left pending by a command that did not finish: the kernel may hold any
    /// mix of it, so it is rebuilt from the rules on disk. Says what was done.
    private func repairIfPending(_ offload: inout OffloadState, rules: RuleSet) throws -> String? {
        guard offload.pending else { return nil }
        let plan = try compile(rules, memory: offload.memory, ruleCapacity: offload.ruleCapacity)
        let id = try rebuild(plan, options: offload.options)
        offload.memory = plan.memory
        offload.pending = false
        try state.write(offload, to: OffloadState.file(of: device))
        return "repaired \(device): an earlier change did not finish; program \(id) rebuilt from the \(plan.rules.count) stored rules"
    }

    // MARK: - Counters

    /// Per-rule counters and the device's miss and unparsed counts.
    public struct Statistics: Sendable {
        public var rules: [RuleID: RuleStatistics]
        public var misses: RuleStatistics
        public var unparsed: RuleStatistics
    }

    /// Nil when the device is not attached.
    public func statistics() throws -> Statistics? {
        try state.locked {
            guard let offload = try state.read(OffloadState.self, from: OffloadState.file(of: device)) else { return nil }
            return try statistics(of: offload)
        }
    }

    /// The counters in the pinned counters map; the caller holds the lock.
    func statistics(of offload: OffloadState) throws -> Statistics {
        let counters = try BPFKernel.Map(pinnedAt: pins.appending(FlowMaps.counters))
        func read(_ slot: UInt32) throws -> RuleStatistics {
            try counters.lookupPerCPU(slot.littleEndianBytes).map(RuleStatistics.init(perCPU:)) ?? RuleStatistics()
        }
        var rules: [RuleID: RuleStatistics] = [:]
        for (rule, slot) in offload.memory.slots.indexes { rules[rule] = try read(slot) }
        return Statistics(rules: rules, misses: try read(RuleSlots.miss), unparsed: try read(RuleSlots.unparsed))
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
            let path = pins.appending(spec.name)
            guard FileManager.default.fileExists(atPath: path.string) else { continue }
            maps[spec.name] = try BPFKernel.Map(pinnedAt: path)
        }
        return maps
    }

    /// Pins the maps `datapath` uses that `previous` did not share, and removes the pins
    /// of maps it no longer uses.
    private func pinMaps(_ datapath: Datapath, replacing previous: Datapath?) throws {
        for (name, map) in datapath.maps where previous?.maps[name] !== map {
            let path = pins.appending(name)
            if FileManager.default.fileExists(atPath: path.string) { try unpin(path) }
            try map.pin(at: path)
        }
        let used = Set(datapath.maps.keys).union(["link"])
        let present = (try? FileManager.default.contentsOfDirectory(atPath: pins.string)) ?? []
        for name in present where !used.contains(name) {
            try unpin(pins.appending(name))
        }
    }

    private func removePins() {
        let present = (try? FileManager.default.contentsOfDirectory(atPath: pins.string)) ?? []
        for name in present { try? unpin(pins.appending(name)) }
        rmdir(pins.string)
        rmdir(pinRoot.string)  // only when no other device is attached
    }
}

public struct OffloadFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The rule store of the CLI: rules on disk, and on an attached device in the kernel
/// too. Lets FlowRules' single commands and batches run unchanged on live devices.
public struct OffloadingStore: RuleSetStore {
    public let state: StateDirectory
    /// Told about repairs of unfinished earlier changes, and warnings (a redirect target
    /// that would drop the frames sent to it).
    public let report: @Sendable (String) -> Void

    public init(state: StateDirectory = .default, report: @escaping @Sendable (String) -> Void) {
        self.state = state
        self.report = report
    }

    public func rules(of device: String) throws -> RuleSet {
        try FileRuleSetStore(state: state).rules(of: device)
    }

    public func update<T>(device: String, _ body: (inout RuleSet) throws -> T) throws -> T {
        let update = try Offload(device: device, state: state).update(body)
        if let repair = update.repair { report(repair) }
        update.warnings.forEach(report)
        return update.result
    }
}

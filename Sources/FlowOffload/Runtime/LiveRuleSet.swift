import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowRules

/// A rule set and the datapath that runs it, changed together: the one engine every rule
/// change goes through, from the library, a `filter` command or a batch.
///
/// A change (`RuleChange`) is carried rule by rule through the plan (`Plan.remove`, then
/// `Plan.add`), which says which map writes carry it; the writes of the whole change are
/// merged and written once. When the change fits the running program (its subtables
/// exist with room, its actions need no code or map the program lacks) that is all;
/// otherwise a new program is loaded over the kept maps and swapped into the slot
/// (`ProgramSlot`). A change that only adds, more rules than the plan holds (a batch into
/// a new device), is planned whole instead, into fresh classifier maps. Map writes and
/// the swap are synchronous: a rule acts when the call returns. A change the kernel
/// refuses is taken back the same way it came, rule by rule in reverse (a whole plan's
/// fresh maps are dropped), and leaves rules, plan and maps as they were.
public final class LiveRuleSet {
    public private(set) var rules: RuleSet
    public private(set) var datapath: Datapath
    /// When attached: the program on the device, which runs the datapath's.
    public let slot: ProgramSlot?
    private let targetIndex: (String) throws(BPFError) -> UInt32

    /// What a change did in the kernel.
    public enum Change: Equatable, Sendable {
        /// The running program stays; this many map writes.
        case mapWrites(Int)
        /// A new program (swapped in when attached).
        case newProgram(id: UInt32)
    }

    /// Loads `rules` for `device` and, given an interface, attaches the program to it.
    /// `targetIndex` gives the ifindex of a redirect target device.
    public init(_ rules: RuleSet = RuleSet(), device: String, options: CompileOptions = CompileOptions(),
                ruleCapacity: Int = Plan.defaultRuleCapacity, attachingTo interface: NetworkInterface? = nil,
                mode: XDPMode = .auto, targetIndex: @escaping (String) throws(BPFError) -> UInt32) throws {
        let plan: Plan
        do {
            plan = try Plan(rules, device: device, ruleCapacity: ruleCapacity)
        } catch {
            throw OffloadError.compile(error)
        }
        let datapath = try Datapath(plan: plan, options: options, targetIndex: targetIndex)
        slot = try interface.map { try ProgramSlot(running: datapath.program!, attachingTo: $0, mode: mode) }
        self.rules = rules
        self.datapath = datapath
        self.targetIndex = targetIndex
    }

    /// The rule set running in `datapath` (adopted from pins) behind `slot`.
    public init(adopting rules: RuleSet, datapath: Datapath, slot: ProgramSlot?,
                targetIndex: @escaping (String) throws(BPFError) -> UInt32) {
        self.rules = rules
        self.datapath = datapath
        self.slot = slot
        self.targetIndex = targetIndex
    }

    /// Adds `rule` as `RuleSet.add` does (allocating its prio and handle); returns the
    /// rule as stored.
    @discardableResult
    public func add(_ rule: FlowRule) throws -> (rule: FlowRule, change: Change) {
        let (stored, change) = try run(.add(rule))
        return (stored[0], change)
    }

    /// Deletes the rules `selector` names, as `RuleSet.delete` does; returns them.
    @discardableResult
    public func delete(_ selector: RuleSelector) throws -> (rules: [FlowRule], change: Change) {
        try run(.delete(selector))
    }

    /// One filter operation on the rules, recorded and carried; the rules it names.
    private func run(_ operation: FilterCommand.Operation) throws -> ([FlowRule], Change) {
        var recorded = RuleChange()
        let named = try FilterCommand(device: datapath.plan.device, operation: operation)
            .apply(to: &rules, recording: &recorded)
        return (named, try carry(recorded))
    }

    /// Runs `body` on the rules, recording what it changes (see
    /// `FilterCommand.apply(to:recording:)`), and carries the change: a command, or a
    /// whole batch as one change. `willCarry` sees the change before the kernel does
    /// (the store journals it there). When either throws, what `body` did is taken back.
    /// `beforeLive` runs once the change is prepared (planned, a new program verified),
    /// before the device runs any of it (the store waits there for its journal's sync).
    @discardableResult
    public func update<T>(_ body: (inout RuleSet, inout RuleChange) throws -> T,
                          willCarry: (RuleChange) throws -> Void = { _ in },
                          beforeLive: () throws(OffloadError) -> Void = {}) throws -> (result: T, change: Change?) {
        var recorded = RuleChange()
        let result: T
        do {
            result = try body(&rules, &recorded)
            if !recorded.isEmpty { try willCarry(recorded) }
        } catch {
            try? rules.apply(recorded.inverse)
            throw error
        }
        guard !recorded.isEmpty else { return (result, nil) }
        return (result, try carry(recorded, beforeLive: beforeLive))
    }

    /// Applies `change`, recorded on a rule set that held these rules (a journal's
    /// record), and carries it.
    @discardableResult
    public func apply(_ change: RuleChange) throws -> Change {
        try rules.apply(change)
        return try carry(change)
    }

    // MARK: - The one path into the kernel

    /// Carries `change`, already made to the rules, into the plan and the kernel. When
    /// anything refuses it, the rules, the plan and the maps go back to where they were:
    /// the change's inverse through the same plan, its writes written back once the
    /// kernel's maps had begun to change (`beforeLive` had returned).
    private func carry(_ change: RuleChange, beforeLive: () throws(OffloadError) -> Void = {}) throws -> Change {
        if change.removed.isEmpty, change.added.count >= Self.wholeChange, change.added.count > datapath.plan.rules.count {
            return try carryWhole(change, beforeLive: beforeLive)
        }
        let sizes = datapath.plan.sizes
        let planned: PlanChange
        do {
            planned = try datapath.plan.apply(change)
        } catch {
            try? rules.apply(change.inverse)
            throw OffloadError.compile(error)
        }
        var written = false
        func live() throws(OffloadError) {
            try beforeLive()
            written = true
        }
        do {
            if planned.keepsProgram {
                try live()
                return .mapWrites(try datapath.write(planned.writes, targetIndex: targetIndex))
            }
            let next = try Datapath(plan: datapath.plan, options: datapath.options, targetIndex: targetIndex,
                                    replacing: datapath, writes: planned.writes, beforeLive: live)
            try slot?.run(next.program!)
            datapath = next
            return .newProgram(id: next.program!.id)
        } catch {
            let back = try? datapath.plan.apply(change.inverse)
            // The sizes first: the writes go to the maps the running program has.
            datapath.plan.restore(sizes)
            if written, let back { _ = try? datapath.write(back.writes, targetIndex: targetIndex) }
            try? rules.apply(change.inverse)
            throw error
        }
    }

    /// Adds from which a change that outgrows the plan is planned whole.
    static let wholeChange = 1024

    /// A change that only adds, more rules than the plan holds (a batch into a new or
    /// small device), is planned with all the rules at once, as attach plans them: the
    /// same plan (a plan changed rule by rule is the plan built at once) for half the
    /// work (perf, 100,000 ACL rules: 0.8 s planned at once, 1.6 s rule by rule). The
    /// classifier's maps are made afresh and filled before the program loads; every other
    /// map (counters, actions, redirect targets, policer buckets, AF_XDP sockets) is kept
    /// and given what the new rules need, in indexes no running rule holds. So a refusal
    /// leaves what the running program reads as it was.
    private func carryWhole(_ change: RuleChange, beforeLive: () throws(OffloadError) -> Void) throws -> Change {
        let next: Datapath
        do {
            let plan: Plan
            do {
                plan = try Plan(rules, device: datapath.plan.device, after: datapath.plan,
                                ruleCapacity: datapath.plan.ruleCapacity)
            } catch {
                throw OffloadError.compile(error)
            }
            let classifier = Set(datapath.plan.subtables.map(\.mapName)).union(FlowMaps.tableMaps)
                .union(datapath.plan.prefilter.map { [$0.mapName] } ?? [])
            next = try Datapath(plan: plan, options: datapath.options, targetIndex: targetIndex, replacing: datapath,
                                sharing: Set(datapath.maps.keys).subtracting(classifier), beforeLive: beforeLive)
            try slot?.run(next.program!)
        } catch {
            try? rules.apply(change.inverse)
            throw error
        }
        datapath = next
        return .newProgram(id: next.program!.id)
    }
}

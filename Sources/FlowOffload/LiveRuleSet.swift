import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowRules

/// A rule set and the datapath that runs it, changed together: the library's one way to
/// change the rules of a loaded datapath.
///
/// Adding or deleting one rule changes the plan in place (`Plan.add`, `Plan.remove`):
/// when the rule fits the running program (its subtables exist with room, its actions
/// need no code or map the program lacks) the change is a few map writes; otherwise a new
/// program is loaded over the kept maps and, when attached, swapped in (`ProgramSlot`).
/// Other changes (`update`) plan the whole rule set again. Map writes and the swap are
/// synchronous: a rule acts when the call returns. A change the kernel refuses leaves
/// rules, plan and maps as they were.
public final class LiveRuleSet {
    public private(set) var rules: RuleSet
    public private(set) var datapath: Datapath
    /// When attached: the program on the device, which runs the datapath's.
    public let slot: ProgramSlot?
    private let ruleCapacity: Int
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
        self.ruleCapacity = ruleCapacity
        self.targetIndex = targetIndex
    }

    /// Adds `rule` as `RuleSet.add` does (allocating its prio and handle); returns the
    /// rule as stored.
    @discardableResult
    public func add(_ rule: FlowRule) throws -> (rule: FlowRule, change: Change) {
        let stored = try rules.add(rule)
        let id = RuleID(stored)
        do {
            let sizes = datapath.plan.sizes
            let change: PlanChange
            do {
                change = try datapath.plan.add(stored)
            } catch {
                throw OffloadError.compile(error)
            }
            return (stored, try carry(change, sizes: sizes) { $0.remove(id) })
        } catch {
            _ = try? rules.delete(RuleSelector(chain: stored.chain, prio: stored.prio, handle: stored.handle))
            throw error
        }
    }

    /// Deletes the rules `selector` names, as `RuleSet.delete` does; returns them.
    @discardableResult
    public func delete(_ selector: RuleSelector) throws -> (rules: [FlowRule], change: Change) {
        let removed = try rules.delete(selector)
        do {
            guard removed.count == 1, let rule = removed.first else {
                // A whole prio or chain: planned again, as one change.
                return (removed, try replan())
            }
            let sizes = datapath.plan.sizes
            let change = datapath.plan.remove(RuleID(rule))
            return (removed, try carry(change, sizes: sizes) { (try? $0.add(rule)) ?? PlanChange() })
        } catch {
            for rule in removed { _ = try? rules.add(rule) }
            throw error
        }
    }

    /// Any other change to the rules (replace, change, several at once): the rule set is
    /// planned again and the kernel gets the difference.
    @discardableResult
    public func update<T>(_ body: (inout RuleSet) throws -> T) throws -> (result: T, change: Change?) {
        let before = rules
        let result = try body(&rules)
        guard rules != before else { return (result, nil) }
        do {
            return (result, try replan())
        } catch {
            rules = before
            throw error
        }
    }

    // MARK: -

    /// Carries a change already made to the plan into the kernel; when the kernel refuses
    /// it, `undo` takes it back out of the plan, the map sizes go back to `sizes`, and
    /// the maps are written back.
    private func carry(_ change: PlanChange, sizes: Plan.Sizes, undo: (inout Plan) -> PlanChange) throws -> Change {
        do {
            if change.keepsProgram {
                return .mapWrites(try datapath.write(change.writes, targetIndex: targetIndex))
            }
            return try swap(to: Datapath(plan: datapath.plan, options: datapath.options, targetIndex: targetIndex,
                                         replacing: datapath, writes: change.writes))
        } catch {
            let back = undo(&datapath.plan)
            datapath.plan.restore(sizes)
            _ = try? datapath.write(back.writes, targetIndex: targetIndex)
            throw error
        }
    }

    /// Plans the rules again and carries the difference into the kernel.
    private func replan() throws -> Change {
        let old = datapath.plan
        let plan: Plan
        do {
            plan = try Plan(rules, device: old.device, memory: old.memory, ruleCapacity: ruleCapacity)
        } catch {
            throw OffloadError.compile(error)
        }
        do {
            if let writes = try datapath.update(to: plan, targetIndex: targetIndex) { return .mapWrites(writes) }
            return try swap(to: Datapath(plan: plan, options: datapath.options, targetIndex: targetIndex,
                                         replacing: datapath))
        } catch {
            // Entries written before the refusal go back to what the running program had.
            datapath.plan = old
            _ = try? datapath.write(old.writes(since: plan), targetIndex: targetIndex)
            throw error
        }
    }

    private func swap(to next: Datapath) throws -> Change {
        try slot?.run(next.program!)
        datapath = next
        return .newProgram(id: next.program!.id)
    }
}

/// An attached entry program that tail-calls the program in a one-entry prog array: a
/// new program is swapped in with a map update (~35 us here) instead of
/// bpf_link_update, whose switch of the kernel's XDP dispatcher waits for an RCU grace
/// period (7-36 ms here). The tail call, to a constant index, is patched into a direct
/// jump: about 1 ns a frame. Each frame runs either the old program or the new one.
public final class ProgramSlot {
    /// The program attached to the device.
    public let entry: Program
    public let link: XDPLink
    private let programs: BPFKernel.Map

    public init(running program: Program, attachingTo interface: NetworkInterface, mode: XDPMode = .auto)
        throws(BPFError) {
        programs = try BPFKernel.Map(MapSpec(name: "xf_slot", type: .progArray, keySize: 4, valueSize: 4,
                                             maxEntries: 1))
        // Should the slot ever be empty, the tail call falls through: the frame passes.
        entry = try Program.loadXDP(name: "xdpflow_entry",
                                    instructions: [.loadMap(.r2, "xf_slot"), .mov(.r3, 0), .call(.tailCall)]
                                        + Instruction.return(XDPAction.pass),
                                    maps: ["xf_slot": programs])
        try Self.put(program, in: programs)
        link = try XDPLink(attaching: entry, to: interface, mode: mode)
    }

    /// Swaps `program` in.
    public func run(_ program: Program) throws(BPFError) {
        try Self.put(program, in: programs)
    }

    private static func put(_ program: Program, in programs: BPFKernel.Map) throws(BPFError) {
        try programs.update(UInt32(0).littleEndianBytes, UInt32(bitPattern: program.descriptor.rawValue).littleEndianBytes)
    }
}

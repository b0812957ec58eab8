/// What a command or a batch did to one device's rule set, as the rules that went and
/// the rules that came (each with its prio and handle): the one description of a change
/// that the runtime carries into the kernel and the store writes to its journal.
///
/// Applied in order: every removal, then every addition. A rule added and removed again
/// within the same change leaves no trace; a rule replaced is removed and added.
public struct RuleChange: Hashable, Sendable {
    public private(set) var removed: [FlowRule] = []
    public private(set) var added: [FlowRule] = []

    public init() {}

    public init(removed: [FlowRule], added: [FlowRule]) {
        self.removed = removed
        self.added = added
    }

    public var isEmpty: Bool { removed.isEmpty && added.isEmpty }

    mutating func recordRemoval(of rule: FlowRule) {
        if let position = added.firstIndex(where: { $0.sameSlot(as: rule) }) {
            added.remove(at: position)
        } else {
            removed.append(rule)
        }
    }

    mutating func recordAddition(of rule: FlowRule) { added.append(rule) }

    /// The change that takes this one back: its additions removed, its removals added.
    public var inverse: RuleChange { RuleChange(removed: added, added: removed) }
}

extension FlowRule {
    /// Whether the two rules sit at the same (chain, prio, handle).
    func sameSlot(as other: FlowRule) -> Bool {
        chain == other.chain && prio == other.prio && handle == other.handle
    }
}

extension RuleSet {
    /// Applies a change recorded on a rule set holding what this one holds (a journal
    /// replayed onto its snapshot): removals by place, then additions at their places.
    public mutating func apply(_ change: RuleChange) throws(RuleSetError) {
        for rule in change.removed {
            _ = try delete(RuleSelector(chain: rule.chain, prio: rule.prio, handle: rule.handle))
        }
        for rule in change.added { try add(rule) }
    }
}

extension FilterCommand {
    /// `apply(to:)`, recording what changed in `change`.
    @discardableResult
    public func apply(to set: inout RuleSet, recording change: inout RuleChange) throws(RuleSetError) -> [FlowRule] {
        switch operation {
        case .add(let rule):
            let stored = try set.add(rule)
            change.recordAddition(of: stored)
            return [stored]
        case .replace(let rule), .change(let rule):
            let old = rule.prio == 0 || rule.handle == 0
                ? nil : set.rule(chain: rule.chain, prio: rule.prio, handle: rule.handle)
            let stored = try apply(to: &set)
            if let old { change.recordRemoval(of: old) }
            change.recordAddition(of: stored[0])
            return stored
        case .delete(let selector):
            let removed = try set.delete(selector)
            removed.forEach { change.recordRemoval(of: $0) }
            return removed
        case .get, .show:
            return try apply(to: &set)
        }
    }
}

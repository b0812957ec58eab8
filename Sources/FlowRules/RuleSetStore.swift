/// Where the rule sets of devices live between commands. FlowOffload provides the
/// store whose changes go live; `update` must be atomic per device (all of `body`'s
/// changes, or none when it throws). `body` records what it changes (see
/// `FilterCommand.apply(to:recording:)`): that record is what a live store carries.
public protocol RuleSetStore {
    func rules(of device: String) throws -> RuleSet
    func update<T>(device: String, _ body: (inout RuleSet, inout RuleChange) throws -> T) throws -> T
}

/// Rule sets held in memory: for tests, and for a batch run without a state directory.
public final class InMemoryRuleSetStore: RuleSetStore {
    private var sets: [String: RuleSet]

    public init(_ sets: [String: RuleSet] = [:]) { self.sets = sets }

    public func rules(of device: String) -> RuleSet { sets[device] ?? RuleSet() }

    public func update<T>(device: String, _ body: (inout RuleSet, inout RuleChange) throws -> T) rethrows -> T {
        var set = rules(of: device)
        var change = RuleChange()
        let result = try body(&set, &change)
        sets[device] = set
        return result
    }

    public func update<T>(device: String, _ body: (inout RuleSet) throws -> T) rethrows -> T {
        try update(device: device) { set, _ in try body(&set) }
    }
}

extension FilterCommand {
    /// Whether the command changes the rule set (add, replace, change, del).
    public var changesRules: Bool {
        switch operation {
        case .add, .replace, .change, .delete: true
        case .get, .show: false
        }
    }

    /// Runs the command on the rule set of its device. Returns the rules it names:
    /// the rule stored by add, replace or change, those removed by del, those shown by
    /// get or show.
    @discardableResult
    public func apply(to set: inout RuleSet) throws(RuleSetError) -> [FlowRule] {
        switch operation {
        case .add(let rule): [try set.add(rule)]
        case .replace(let rule): [try set.replace(rule)]
        case .change(let rule): [try set.change(rule)]
        case .delete(let selector): try set.delete(selector)
        case .get(let selector): [try set.get(selector)]
        case .show(let selector): set.show(selector)
        }
    }
}

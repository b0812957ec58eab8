import FlowRules

/// One line of `nft -j monitor`, as far as the ruleset in memory can follow it: the
/// changes that come one by one while the ruleset stands (a rule, a set's new elements).
/// Any other (a table, chain or set added or deleted, a flush, elements deleted) is
/// `.other`, and the ruleset is read again.
public enum RulesetEvent: Sendable {
    /// `add rule` or `insert rule`: the event does not say where the rule went
    /// (`position` is not in nft's JSON); the kernel's notification of it does.
    case addRule(Rule)
    case deleteRule(Rule.ID)
    case addElements(set: String, table: TableID, elements: [Expression])
    case other

    /// The table a rule or element event changes.
    var table: TableID? {
        switch self {
        case .addRule(let rule): rule.table
        case .deleteRule(let id): id.table
        case .addElements(_, let table, _): table
        case .other: nil
        }
    }

    public init(json line: [UInt8]) throws(RulesetError) {
        let document: JSONValue
        do {
            document = try JSONValue(reading: line)
        } catch {
            throw RulesetError("not JSON: \(error)")
        }
        guard let (change, object) = document.singleMember, let (kind, body) = object.singleMember else {
            self = .other
            return
        }
        switch (change, kind) {
        case ("add", "rule"), ("insert", "rule"):
            self = .addRule(try Ruleset.rule(body))
        case ("delete", "rule"):
            let rule = try Ruleset.rule(body)
            self = .deleteRule(rule.id)
        case ("add", "element"):
            self = .addElements(set: try Ruleset.name(body), table: try Ruleset.tableID(body),
                                elements: (body["elem"]?["set"]?.array ?? []).map(Expression.init(json:)))
        default:
            self = .other
        }
    }
}

/// Where a new rule went in its chain: what the kernel's notification of it says
/// (NLM_F_APPEND, and NFTA_RULE_POSITION when the command named a rule), or the rule
/// before it in a dump of the chain.
public enum RulePlace: Hashable, Sendable {
    case first
    case last
    case after(handle: Int)
    case before(handle: Int)
}

extension Ruleset {
    /// Follows `event`; false when it cannot (`.other`, or a rule or set it does not
    /// hold in a table it holds: the caller reads the ruleset again). `place` says where
    /// a new rule went, nil when it cannot.
    public mutating func apply(_ event: RulesetEvent, place: (Rule) throws -> RulePlace?) rethrows -> Bool {
        // A table it does not hold has no ingress chain (a read takes every table that
        // has one), and a table or chain added comes as `.other`: nothing here changes.
        if let table = event.table, !tables.contains(where: { $0.id == table }) { return true }
        switch event {
        case .addRule(let rule):
            guard chain(rule.chain, in: rule.table) != nil else { return false }
            // Read with the ruleset already (the monitor starts before the first read).
            if rules.contains(where: { $0.has(rule.id) }) { return true }
            let sameChain = { (other: Rule) in other.table == rule.table && other.chain == rule.chain }
            let index: Int
            switch try place(rule) {
            case nil:
                return false
            case .first?:
                index = rules.firstIndex(where: sameChain) ?? rules.endIndex
            case .last?:
                index = rules.lastIndex(where: sameChain).map { $0 + 1 } ?? rules.endIndex
            case .after(let handle)?:
                guard let found = rules.firstIndex(where: { $0.handle == handle && sameChain($0) }) else { return false }
                index = found + 1
            case .before(let handle)?:
                guard let found = rules.firstIndex(where: { $0.handle == handle && sameChain($0) }) else { return false }
                index = found
            }
            rules.insert(rule, at: index)
            return true
        case .deleteRule(let id):
            guard let index = rules.firstIndex(where: { $0.has(id) }) else { return false }
            rules.remove(at: index)
            return true
        case .addElements(let name, let table, let elements):
            guard let index = sets.firstIndex(where: { $0.table == table && $0.name == name }), !elements.isEmpty else {
                return false
            }
            sets[index].elements += elements
            return true
        case .other:
            return false
        }
    }
}

extension RulePlace {
    /// The place of `handle` in a chain whose rules have `handles`, in order; nil when
    /// it is not there (deleted again since).
    public init?(of handle: Int, in handles: [Int]) {
        guard let position = handles.firstIndex(of: handle) else { return nil }
        self = position == 0 ? .first : .after(handle: handles[position - 1])
    }
}

import FlowRules

/// One line of `nft -j monitor`, as far as the ruleset in memory can follow it: the
/// changes that come one by one while the ruleset stands (a rule, a set's new elements).
/// Any other (a table, chain or set added or deleted, a flush, elements deleted) is
/// `.other`, and the ruleset is read again.
public enum RulesetEvent: Sendable {
    /// `add rule` or `insert rule`: the event does not say where the rule went
    /// (`position` is not in nft's JSON), so the kernel's order of the chain places it.
    case addRule(Rule)
    case deleteRule(Rule.ID)
    case addElements(set: String, table: TableID, elements: [Expression])
    case other

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

extension Ruleset {
    /// Follows `event`; false when it cannot (`.other`, or a rule or set it does not
    /// hold: the caller reads the ruleset again). `order` gives the handles of a chain's
    /// rules in the kernel's order, asked only for a new rule.
    public mutating func apply(_ event: RulesetEvent, order: (Rule.ID) throws -> [Int]) rethrows -> Bool {
        switch event {
        case .addRule(let rule):
            guard chain(rule.chain, in: rule.table) != nil else { return false }
            // Read with the ruleset already (the monitor starts before the first read).
            if rules.contains(where: { $0.id == rule.id }) { return true }
            let handles = try order(rule.id)
            guard let position = handles.firstIndex(of: rule.handle) else { return false }
            let sameChain = { (other: Rule) in other.table == rule.table && other.chain == rule.chain }
            if position == 0 {
                rules.insert(rule, at: rules.firstIndex(where: sameChain) ?? rules.endIndex)
            } else {
                let before = handles[position - 1]
                guard let index = rules.firstIndex(where: { sameChain($0) && $0.handle == before }) else { return false }
                rules.insert(rule, at: index + 1)
            }
            return true
        case .deleteRule(let id):
            guard let index = rules.firstIndex(where: { $0.id == id }) else { return false }
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

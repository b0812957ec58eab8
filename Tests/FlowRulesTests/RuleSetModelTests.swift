@testable import FlowRules
import Packets
import Testing

/// RuleSet keeps indexes so that add takes constant time; `LinearRuleSet` is the plain
/// list it replaced, kept here as the model: random operations on both must give the same
/// results, the same errors and the same rules.
@Suite struct RuleSetModelTests {
    @Test(arguments: 0 ..< 40) func indexedRuleSetBehavesAsTheList(seed: Int) throws {
        var random = SplitMix(seed: UInt64(seed) &* 0x9e37_79b9_7f4a_7c15 &+ 1)
        var set = RuleSet(), model = LinearRuleSet()
        for step in 0 ..< 300 {
            let context = "seed \(seed) step \(step)"
            switch random.below(10) {
            case 0 ..< 5:
                let rule = randomRule(&random)
                #expect(Result { try set.add(rule) }.text == Result { try model.add(rule) }.text, "\(context): add")
            case 5:
                let rule = randomRule(&random)
                #expect(Result { try set.replace(rule) }.text == Result { try model.replace(rule) }.text,
                        "\(context): replace")
            case 6:
                let rule = randomRule(&random)
                #expect(Result { try set.change(rule) }.text == Result { try model.change(rule) }.text,
                        "\(context): change")
            case 7, 8:
                let selector = randomSelector(&random, flush: random.below(12) == 0)
                #expect(Result { try set.delete(selector) }.text == Result { try model.delete(selector) }.text,
                        "\(context): delete \(selector)")
            default:
                let selector = randomSelector(&random, flush: false)
                #expect(Result { try set.get(selector) }.text == Result { try model.get(selector) }.text,
                        "\(context): get")
            }
            #expect(set.rules == model.rules, "\(context): the rules differ")
            #expect(set.count == model.rules.count)
        }
        #expect(try RuleSet(set.rules) == set, "the same rules, added in order, make an equal set")
    }

    /// Few prios, handles and keys, so that operations meet taken handles, masked matches
    /// that are the same, mixed protocols and empty groups.
    func randomRule(_ random: inout SplitMix) -> FlowRule {
        var match = FlowMatch()
        if random.below(3) > 0 { match.ipProto = [6, 17][random.below(2)] }
        // 0x35 and 0x135 under 0x00ff are the same masked port.
        if random.below(2) == 0 {
            match.dstPort = .masked(Masked([0x35, 0x135, 0x50][random.below(3)], mask: [0xffff, 0x00ff][random.below(2)]))
        }
        return FlowRule(chain: UInt32([0, 0, 0, 1][random.below(4)]), prio: UInt16([0, 0, 1, 2, 3][random.below(5)]),
                        handle: UInt32([0, 0, 0, 1, 2, 3, 5][random.below(7)]),
                        filterProtocol: random.below(5) == 0 ? .ipv6 : .ip, match: match)
    }

    func randomSelector(_ random: inout SplitMix, flush: Bool) -> RuleSelector {
        let chain: UInt32? = [nil, 0, 1][random.below(3)]
        guard !flush else { return RuleSelector(chain: chain) }
        return RuleSelector(chain: chain, prio: UInt16(random.below(4)),
                            filterProtocol: [nil, .ip, .ipv6][random.below(3)],
                            handle: random.below(3) == 0 ? nil : UInt32(random.below(6)))
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func below(_ bound: Int) -> Int {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ z >> 30) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ z >> 27) &* 0x94d0_49bb_1331_11eb
        return Int((z ^ z >> 31) % UInt64(bound))
    }
}

extension Result where Failure == any Error {
    /// The value or the error, as text to compare.
    var text: String {
        switch self {
        case .success(let value): "\(value)"
        case .failure(let error): "error: \(error)"
        }
    }
}

/// The rule set as a sorted list, scanned by every operation: RuleSet as it was before
/// its indexes (commit def8809), the model of its semantics.
struct LinearRuleSet {
    private(set) var rules: [FlowRule] = []

    init() {}

    /// Adds `rules` in order with `add`'s checks.
    init(_ rules: [FlowRule]) throws(RuleSetError) {
        for rule in rules { try add(rule) }
    }

    /// The rule as stored, with its prio and handle allocated.
    @discardableResult
    mutating func add(_ rule: FlowRule) throws(RuleSetError) -> FlowRule {
        var rule = rule
        if rule.prio == 0 { rule.prio = try automaticPrio(chain: rule.chain) }
        try checkProtocol(of: rule)
        if rule.handle == 0 {
            rule.handle = try automaticHandle(chain: rule.chain, prio: rule.prio)
        } else if rules.contains(where: { $0.chain == rule.chain && $0.prio == rule.prio && $0.handle == rule.handle }) {
            throw .handleExists(chain: rule.chain, prio: rule.prio, handle: rule.handle)
        }
        try checkUniqueMatch(of: rule, replacing: nil)
        rules.insert(rule, at: rules.firstIndex { Self.order($0) > Self.order(rule) } ?? rules.endIndex)
        return rule
    }

    @discardableResult
    mutating func replace(_ rule: FlowRule) throws(RuleSetError) -> FlowRule {
        guard let index = index(of: rule) else { return try add(rule) }
        return try replace(at: index, with: rule)
    }

    @discardableResult
    mutating func change(_ rule: FlowRule) throws(RuleSetError) -> FlowRule {
        guard rule.prio != 0, rule.handle != 0 else { throw .changeNeedsPrioAndHandle }
        guard let index = index(of: rule) else {
            throw .notFound(RuleSelector(chain: rule.chain, prio: rule.prio, handle: rule.handle))
        }
        return try replace(at: index, with: rule)
    }

    /// The rules removed.
    @discardableResult
    mutating func delete(_ selector: RuleSelector) throws(RuleSetError) -> [FlowRule] {
        let chain = selector.chain ?? 0
        guard let prio = selector.prio else {
            guard selector.filterProtocol == nil, selector.handle == nil else { throw .flushTakesNoProtocolOrHandle }
            return remove { $0.chain == chain }
        }
        let group = rules.filter { $0.chain == chain && $0.prio == prio }
        guard let held = group.first?.filterProtocol else {
            throw .notFound(RuleSelector(chain: chain, prio: prio))
        }
        if let given = selector.filterProtocol, given != held {
            throw .protocolMismatch(chain: chain, prio: prio, held: held, given: given)
        }
        guard let handle = selector.handle else { return remove { $0.chain == chain && $0.prio == prio } }
        guard group.contains(where: { $0.handle == handle }) else {
            throw .notFound(RuleSelector(chain: chain, prio: prio, handle: handle))
        }
        return remove { $0.chain == chain && $0.prio == prio && $0.handle == handle }
    }

    /// One rule, named by prio and handle (and chain 0 unless given), as `tc filter get`.
    func get(_ selector: RuleSelector) throws(RuleSetError) -> FlowRule {
        let chain = selector.chain ?? 0
        guard let rule = rules.first(where: {
            $0.chain == chain && $0.prio == selector.prio && $0.handle == selector.handle
        }) else {
            throw .notFound(RuleSelector(chain: chain, prio: selector.prio, handle: selector.handle))
        }
        if let given = selector.filterProtocol, given != rule.filterProtocol {
            throw .protocolMismatch(chain: chain, prio: rule.prio, held: rule.filterProtocol, given: given)
        }
        return rule
    }

    func show(_ selector: RuleSelector = RuleSelector()) -> [FlowRule] {
        rules.filter(selector.selects)
    }

    // MARK: -

    private static func order(_ rule: FlowRule) -> (UInt32, UInt16, UInt32) { (rule.chain, rule.prio, rule.handle) }

    private func index(of rule: FlowRule) -> Int? {
        guard rule.prio != 0, rule.handle != 0 else { return nil }
        return rules.firstIndex { Self.order($0) == Self.order(rule) }
    }

    private mutating func replace(at index: Int, with rule: FlowRule) throws(RuleSetError) -> FlowRule {
        try checkProtocol(of: rule)
        try checkUniqueMatch(of: rule, replacing: rules[index].handle)
        rules[index] = rule
        return rule
    }

    private mutating func remove(where selected: (FlowRule) -> Bool) -> [FlowRule] {
        let removed = rules.filter(selected)
        rules.removeAll(where: selected)
        return removed
    }

    private func automaticPrio(chain: UInt32) throws(RuleSetError) -> UInt16 {
        guard let lowest = rules.first(where: { $0.chain == chain })?.prio else { return RuleSet.firstAutomaticPrio }
        guard lowest > 1 else { throw .noPrioLeft(chain: chain) }
        return lowest - 1
    }

    private func automaticHandle(chain: UInt32, prio: UInt16) throws(RuleSetError) -> UInt32 {
        var candidate: UInt32 = 1
        for rule in rules where rule.chain == chain && rule.prio == prio {
            if rule.handle > candidate || candidate > RuleSet.maxAutomaticHandle { break }
            if rule.handle == candidate { candidate += 1 }
        }
        guard candidate <= RuleSet.maxAutomaticHandle else { throw .noHandleLeft(chain: chain, prio: prio) }
        return candidate
    }

    private func checkProtocol(of rule: FlowRule) throws(RuleSetError) {
        if let held = rules.first(where: { $0.chain == rule.chain && $0.prio == rule.prio })?.filterProtocol,
           held != rule.filterProtocol {
            throw .protocolMismatch(chain: rule.chain, prio: rule.prio, held: held, given: rule.filterProtocol)
        }
    }

    /// cls_flower keeps one rule per masked key in a (chain, prio).
    private func checkUniqueMatch(of rule: FlowRule, replacing handle: UInt32?) throws(RuleSetError) {
        let key = rule.match.comparisonKey
        if let twin = rules.first(where: {
            $0.chain == rule.chain && $0.prio == rule.prio && $0.handle != handle && $0.match.comparisonKey == key
        }) {
            throw .sameMatchExists(chain: twin.chain, prio: twin.prio, handle: twin.handle)
        }
    }
}


/// Names rules the way `tc filter del|get|show` does. A nil field is not compared
/// (chain: `del` and `get` mean chain 0, `show` every chain).
public struct RuleSelector: Hashable, Sendable {
    public var chain: UInt32?
    public var prio: UInt16?
    public var filterProtocol: FilterProtocol?
    public var handle: UInt32?

    public init(chain: UInt32? = nil, prio: UInt16? = nil, filterProtocol: FilterProtocol? = nil,
                handle: UInt32? = nil) {
        self.chain = chain
        self.prio = prio
        self.filterProtocol = filterProtocol
        self.handle = handle
    }

    func selects(_ rule: FlowRule) -> Bool {
        (chain ?? rule.chain) == rule.chain && (prio ?? rule.prio) == rule.prio
            && (filterProtocol ?? rule.filterProtocol) == rule.filterProtocol && (handle ?? rule.handle) == rule.handle
    }
}

/// The rules of one device, ordered by chain, then prio, then handle: the order in
/// which they are shown and, within chain 0, classified.
///
/// The operations follow the kernel's cls_api and cls_flower:
/// - A (chain, prio) holds rules of one protocol only.
/// - `add` with prio 0 takes the lowest prio of the chain minus one, or 49152 (0xc000)
///   in an empty chain; with handle 0 it takes the lowest free handle from 1 within
///   (chain, prio). An existing handle, or a rule with the same masked match at the same
///   (chain, prio), is an error.
/// - `replace` replaces the rule at (chain, prio, handle) when there is one, else adds.
/// - `change` replaces an existing rule only.
/// - `delete` without prio removes every rule of the chain (and takes no protocol or
///   handle); with prio and no handle, every rule at that prio; with both, one rule.
/// Every operation leaves the set unchanged when it throws.
public struct RuleSet: Hashable, Sendable, Codable {
    public private(set) var rules: [FlowRule] = []

    /// The prio `add` gives the first rule of an empty chain.
    public static let firstAutomaticPrio: UInt16 = 0xc000
    /// cls_flower allocates handles up to INT_MAX.
    public static let maxAutomaticHandle: UInt32 = 0x7fff_ffff

    public init() {}

    /// Adds `rules` in order with `add`'s checks.
    public init(_ rules: [FlowRule]) throws(RuleSetError) {
        for rule in rules { try add(rule) }
    }

    public init(from decoder: any Decoder) throws {
        try self.init([FlowRule](from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        try rules.encode(to: encoder)
    }

    /// The rule as stored, with its prio and handle allocated.
    @discardableResult
    public mutating func add(_ rule: FlowRule) throws(RuleSetError) -> FlowRule {
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
    public mutating func replace(_ rule: FlowRule) throws(RuleSetError) -> FlowRule {
        guard let index = index(of: rule) else { return try add(rule) }
        return try replace(at: index, with: rule)
    }

    @discardableResult
    public mutating func change(_ rule: FlowRule) throws(RuleSetError) -> FlowRule {
        guard rule.prio != 0, rule.handle != 0 else { throw .changeNeedsPrioAndHandle }
        guard let index = index(of: rule) else {
            throw .notFound(RuleSelector(chain: rule.chain, prio: rule.prio, handle: rule.handle))
        }
        return try replace(at: index, with: rule)
    }

    /// The rules removed.
    @discardableResult
    public mutating func delete(_ selector: RuleSelector) throws(RuleSetError) -> [FlowRule] {
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
    public func get(_ selector: RuleSelector) throws(RuleSetError) -> FlowRule {
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

    public func show(_ selector: RuleSelector = RuleSelector()) -> [FlowRule] {
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
        guard let lowest = rules.first(where: { $0.chain == chain })?.prio else { return Self.firstAutomaticPrio }
        guard lowest > 1 else { throw .noPrioLeft(chain: chain) }
        return lowest - 1
    }

    private func automaticHandle(chain: UInt32, prio: UInt16) throws(RuleSetError) -> UInt32 {
        var candidate: UInt32 = 1
        for rule in rules where rule.chain == chain && rule.prio == prio {
            if rule.handle > candidate || candidate > Self.maxAutomaticHandle { break }
            if rule.handle == candidate { candidate += 1 }
        }
        guard candidate <= Self.maxAutomaticHandle else { throw .noHandleLeft(chain: chain, prio: prio) }
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

extension FlowMatch {
    /// The match with every masked value reduced to its key: two matches with equal
    /// comparison keys select the same frames in the same way.
    var comparisonKey: FlowMatch {
        var match = self
        match.dstMAC = dstMAC.map { Masked($0.key, mask: $0.mask) }
        match.srcMAC = srcMAC.map { Masked($0.key, mask: $0.mask) }
        match.ipTOS = ipTOS.map { Masked($0.key, mask: $0.mask) }
        match.ipTTL = ipTTL.map { Masked($0.key, mask: $0.mask) }
        match.dstIP = dstIP?.comparisonKey
        match.srcIP = srcIP?.comparisonKey
        match.dstPort = dstPort?.comparisonKey
        match.srcPort = srcPort?.comparisonKey
        match.tcpFlags = tcpFlags.map { Masked($0.key, mask: $0.mask) }
        match.icmpType = icmpType.map { Masked($0.key, mask: $0.mask) }
        match.icmpCode = icmpCode.map { Masked($0.key, mask: $0.mask) }
        match.arpOp = arpOp.map { Masked($0.key, mask: $0.mask) }
        match.arpSenderIP = arpSenderIP.map { Masked($0.key, mask: $0.mask) }
        match.arpTargetIP = arpTargetIP.map { Masked($0.key, mask: $0.mask) }
        match.arpSenderMAC = arpSenderMAC.map { Masked($0.key, mask: $0.mask) }
        match.arpTargetMAC = arpTargetMAC.map { Masked($0.key, mask: $0.mask) }
        return match
    }
}

extension IPMatch {
    var comparisonKey: IPMatch {
        switch self {
        case .v4(let masked): .v4(Masked(masked.key, mask: masked.mask))
        case .v6(let masked): .v6(Masked(masked.key, mask: masked.mask))
        }
    }
}

extension PortMatch {
    var comparisonKey: PortMatch {
        switch self {
        case .masked(let masked): .masked(Masked(masked.key, mask: masked.mask))
        case .range: self
        }
    }
}

public enum RuleSetError: Error, Hashable, Sendable, CustomStringConvertible {
    case handleExists(chain: UInt32, prio: UInt16, handle: UInt32)
    case sameMatchExists(chain: UInt32, prio: UInt16, handle: UInt32)
    case protocolMismatch(chain: UInt32, prio: UInt16, held: FilterProtocol, given: FilterProtocol)
    case noPrioLeft(chain: UInt32)
    case noHandleLeft(chain: UInt32, prio: UInt16)
    case notFound(RuleSelector)
    case flushTakesNoProtocolOrHandle
    case changeNeedsPrioAndHandle

    public var description: String {
        switch self {
        case .handleExists(let chain, let prio, let handle):
            "\(place(chain, prio, handle)) already exists"
        case .sameMatchExists(let chain, let prio, let handle):
            "\(place(chain, prio, handle)) already has the same match; use another prio or replace it"
        case .protocolMismatch(let chain, let prio, let held, let given):
            "\(place(chain, prio, nil)) holds protocol \(held.name) rules; protocol \(given.name) needs another prio"
        case .noPrioLeft(let chain):
            "no prio below 1 left to allocate\(chain == 0 ? "" : " in chain \(chain)"); give one with prio"
        case .noHandleLeft(let chain, let prio):
            "no free handle left at \(place(chain, prio, nil))"
        case .notFound(let selector):
            "no rule at \(place(selector.chain ?? 0, selector.prio, selector.handle))"
        case .flushTakesNoProtocolOrHandle:
            "del without prio removes every rule of the chain; it takes no protocol or handle"
        case .changeNeedsPrioAndHandle:
            "change needs the prio and handle of an existing rule"
        }
    }

    private func place(_ chain: UInt32, _ prio: UInt16?, _ handle: UInt32?) -> String {
        var words: [String] = []
        if chain != 0 { words.append("chain \(chain)") }
        if let prio { words.append("prio \(prio)") }
        if let handle { words.append("handle \(TCNames.handle(handle))") }
        return words.isEmpty ? "chain 0" : words.joined(separator: " ")
    }
}

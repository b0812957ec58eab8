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
///
/// Rules are kept per (chain, prio) with the indexes the checks need (handles, masked
/// matches, the lowest free handle), so `add`, `get` and deleting one rule take constant
/// time (amortised) however many rules the set holds.
public struct RuleSet: Hashable, Sendable, Codable {
    private var groups: [Place: Group] = [:]
    /// Each chain's prios, ascending.
    private var prios: [UInt32: [UInt16]] = [:]
    /// Rules over all chains.
    public private(set) var count = 0

    /// The prio `add` gives the first rule of an empty chain.
    public static let firstAutomaticPrio: UInt16 = 0xc000
    /// cls_flower allocates handles up to INT_MAX.
    public static let maxAutomaticHandle: UInt32 = 0x7fff_ffff

    public init() {}

    /// Adds `rules` in order with `add`'s checks.
    public init(_ rules: [FlowRule]) throws(RuleSetError) {
        // Room for the rules of each given (chain, prio) at once: no index grows (and
        // rehashes) a rule at a time.
        var sizes: [Place: Int] = [:]
        for rule in rules where rule.prio != 0 { sizes[Place(rule), default: 0] += 1 }
        for rule in rules { try add(rule, sizes: sizes) }
    }

    public init(from decoder: any Decoder) throws {
        try self.init([FlowRule](from: decoder))
    }

    public func encode(to encoder: any Encoder) throws {
        try rules.encode(to: encoder)
    }

    /// Every rule, ordered by chain, prio and handle.
    public var rules: [FlowRule] {
        if prios.count == 1, let (chain, list) = prios.first, list.count == 1 {
            return groups[Place(chain: chain, prio: list[0])]!.rules
        }
        var rules: [FlowRule] = []
        rules.reserveCapacity(count)
        for chain in prios.keys.sorted() {
            for prio in prios[chain]! { groups[Place(chain: chain, prio: prio)]!.appendRules(to: &rules) }
        }
        return rules
    }

    /// The rule at (chain, prio, handle), if any.
    public func rule(chain: UInt32 = 0, prio: UInt16, handle: UInt32) -> FlowRule? {
        groups[Place(chain: chain, prio: prio)]?[handle]
    }

    /// The rule as stored, with its prio and handle allocated.
    @discardableResult
    public mutating func add(_ rule: FlowRule) throws(RuleSetError) -> FlowRule {
        try add(rule, sizes: [:])
    }

    /// `add`, making room for `sizes[place]` rules when it starts a (chain, prio).
    @discardableResult
    private mutating func add(_ rule: FlowRule, sizes: [Place: Int]) throws(RuleSetError) -> FlowRule {
        var rule = rule
        if rule.prio == 0 { rule.prio = try automaticPrio(chain: rule.chain) }
        let place = Place(rule)
        let key = rule.match.comparisonKey
        let hash = key.hashValue
        if let handle = try groups[place]?.handle(for: rule, key: key, hash: hash) {
            rule.handle = handle
        } else {
            if rule.handle == 0 { rule.handle = 1 }
            insertPrio(place)
            groups[place] = Group(filterProtocol: rule.filterProtocol, capacity: sizes[place] ?? 0)
        }
        groups[place]!.insert(rule, key: key, hash: hash)
        count += 1
        return rule
    }

    @discardableResult
    public mutating func replace(_ rule: FlowRule) throws(RuleSetError) -> FlowRule {
        guard rule.prio != 0, rule.handle != 0, self.rule(chain: rule.chain, prio: rule.prio, handle: rule.handle) != nil
        else { return try add(rule) }
        return try replaceExisting(with: rule)
    }

    @discardableResult
    public mutating func change(_ rule: FlowRule) throws(RuleSetError) -> FlowRule {
        guard rule.prio != 0, rule.handle != 0 else { throw .changeNeedsPrioAndHandle }
        guard self.rule(chain: rule.chain, prio: rule.prio, handle: rule.handle) != nil else {
            throw .notFound(RuleSelector(chain: rule.chain, prio: rule.prio, handle: rule.handle))
        }
        return try replaceExisting(with: rule)
    }

    /// The rules removed.
    @discardableResult
    public mutating func delete(_ selector: RuleSelector) throws(RuleSetError) -> [FlowRule] {
        let chain = selector.chain ?? 0
        guard let prio = selector.prio else {
            guard selector.filterProtocol == nil, selector.handle == nil else { throw .flushTakesNoProtocolOrHandle }
            var removed: [FlowRule] = []
            for prio in prios.removeValue(forKey: chain) ?? [] {
                groups.removeValue(forKey: Place(chain: chain, prio: prio))!.appendRules(to: &removed)
            }
            count -= removed.count
            return removed
        }
        let place = Place(chain: chain, prio: prio)
        guard let group = groups[place] else { throw .notFound(RuleSelector(chain: chain, prio: prio)) }
        if let given = selector.filterProtocol, given != group.filterProtocol {
            throw .protocolMismatch(chain: chain, prio: prio, held: group.filterProtocol, given: given)
        }
        guard let handle = selector.handle else {
            removePrio(place)
            count -= group.count
            return group.rules
        }
        guard group[handle] != nil else {
            throw .notFound(RuleSelector(chain: chain, prio: prio, handle: handle))
        }
        let removed = groups[place]!.remove(handle: handle)
        if groups[place]!.count == 0 { removePrio(place) }
        count -= 1
        return [removed]
    }

    /// One rule, named by prio and handle (and chain 0 unless given), as `tc filter get`.
    public func get(_ selector: RuleSelector) throws(RuleSetError) -> FlowRule {
        let chain = selector.chain ?? 0
        guard let prio = selector.prio, let handle = selector.handle,
              let rule = rule(chain: chain, prio: prio, handle: handle)
        else {
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

    /// A (chain, prio): its rules share one protocol.
    private struct Place: Hashable, Sendable {
        var chain: UInt32
        var prio: UInt16

        init(chain: UInt32, prio: UInt16) {
            self.chain = chain
            self.prio = prio
        }

        init(_ rule: FlowRule) { self.init(chain: rule.chain, prio: rule.prio) }
    }

    /// The rules of one (chain, prio) and what add checks against them. The rules sit in
    /// `storage` in no order (a removal moves the last one into the gap); `handles` gives
    /// the order. No index holds a whole rule or match as its key: at a million rules,
    /// moving and rehashing those on every growth was most of the cost of `add`.
    private struct Group: Hashable, Sendable {
        let filterProtocol: FilterProtocol
        private var storage: [FlowRule] = []
        /// Handle -> position in `storage`.
        private var positions: [UInt32: Int] = [:]
        /// Ascending.
        private(set) var handles: [UInt32] = []
        /// The hash of a masked match (`comparisonKey`) -> the handles of the rules whose
        /// masked match hashes so: one, unless two matches collide.
        private var matchHashes: [Int: Handles] = [:]
        /// The lowest handle from 1 not in use (past `maxAutomaticHandle` when none is left).
        private(set) var firstFree: UInt32 = 1
        /// Whether `storage` is in handle order (rules added with rising handles, none
        /// removed but the last): then it is the ordered list as it is.
        private var inHandleOrder = true

        private enum Handles: Hashable, Sendable {
            case one(UInt32)
            case many([UInt32])

            var all: [UInt32] {
                switch self {
                case .one(let handle): [handle]
                case .many(let handles): handles
                }
            }
        }

        init(filterProtocol: FilterProtocol, capacity: Int) {
            self.filterProtocol = filterProtocol
            storage.reserveCapacity(capacity)
            positions.reserveCapacity(capacity)
            handles.reserveCapacity(capacity)
            matchHashes.reserveCapacity(capacity)
        }

        var count: Int { storage.count }

        subscript(handle: UInt32) -> FlowRule? { positions[handle].map { storage[$0] } }

        var rules: [FlowRule] {
            if inHandleOrder { return storage }
            var rules: [FlowRule] = []
            appendRules(to: &rules)
            return rules
        }

        func appendRules(to rules: inout [FlowRule]) {
            if inHandleOrder {
                rules.append(contentsOf: storage)
            } else {
                for handle in handles { rules.append(storage[positions[handle]!]) }
            }
        }

        static func == (a: Group, b: Group) -> Bool {
            a.filterProtocol == b.filterProtocol && a.handles == b.handles
                && a.handles.allSatisfy { a[$0] == b[$0] }
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(filterProtocol)
            for handle in handles { hasher.combine(self[handle]) }
        }

        func check(protocol rule: FlowRule) throws(RuleSetError) {
            guard filterProtocol == rule.filterProtocol else {
                throw .protocolMismatch(chain: rule.chain, prio: rule.prio, held: filterProtocol,
                                        given: rule.filterProtocol)
            }
        }

        /// The handle `rule` gets when added (its own, or the lowest free one), after
        /// add's checks: one protocol, a free handle, one rule per masked key.
        func handle(for rule: FlowRule, key: FlowMatch, hash: Int) throws(RuleSetError) -> UInt32 {
            try check(protocol: rule)
            var handle = rule.handle
            if handle == 0 {
                handle = firstFree
                guard handle <= RuleSet.maxAutomaticHandle else { throw .noHandleLeft(chain: rule.chain, prio: rule.prio) }
            } else if positions[handle] != nil {
                throw .handleExists(chain: rule.chain, prio: rule.prio, handle: handle)
            }
            try checkUnique(key, hash: hash, of: rule, replacing: nil)
            return handle
        }

        /// cls_flower keeps one rule per masked key in a (chain, prio).
        func checkUnique(_ key: FlowMatch, hash: Int, of rule: FlowRule, replacing handle: UInt32?) throws(RuleSetError) {
            for twin in matchHashes[hash]?.all ?? [] where twin != handle && self[twin]!.match.comparisonKey == key {
                throw .sameMatchExists(chain: rule.chain, prio: rule.prio, handle: twin)
            }
        }

        mutating func insert(_ rule: FlowRule, key: FlowMatch, hash: Int) {
            let handle = rule.handle
            positions[handle] = storage.count
            storage.append(rule)
            addMatch(hash, handle)
            if let last = handles.last, last > handle {
                handles.insert(handle, at: position(of: handle))
                inHandleOrder = false
            } else {
                handles.append(handle)
            }
            if handle == firstFree && handle == handles.last! && handle < RuleSet.maxAutomaticHandle {
                firstFree += 1  // past the highest handle: free
            } else {
                while firstFree <= RuleSet.maxAutomaticHandle && positions[firstFree] != nil { firstFree += 1 }
            }
        }

        mutating func remove(handle: UInt32) -> FlowRule {
            let position = positions.removeValue(forKey: handle)!
            let rule = storage[position]
            if position != storage.count - 1 {
                storage[position] = storage[storage.count - 1]
                positions[storage[position].handle] = position
                inHandleOrder = false
            }
            storage.removeLast()
            removeMatch(rule.match.comparisonKey, handle)
            handles.remove(at: self.position(of: handle))
            firstFree = min(firstFree, handle)
            return rule
        }

        mutating func replace(with rule: FlowRule, key: FlowMatch) {
            let position = positions[rule.handle]!
            removeMatch(storage[position].match.comparisonKey, rule.handle)
            addMatch(key.hashValue, rule.handle)
            storage[position] = rule
        }

        private mutating func addMatch(_ hash: Int, _ handle: UInt32) {
            if let twins = matchHashes.updateValue(.one(handle), forKey: hash) {
                matchHashes[hash] = .many(twins.all + [handle])
            }
        }

        private mutating func removeMatch(_ key: FlowMatch, _ handle: UInt32) {
            let hash = key.hashValue
            let rest = matchHashes[hash]!.all.filter { $0 != handle }
            matchHashes[hash] = rest.count > 1 ? .many(rest) : rest.first.map(Handles.one)
        }

        /// Where `handle` is or would go in `handles`.
        private func position(of handle: UInt32) -> Int {
            var low = 0, high = handles.count
            while low < high {
                let middle = (low + high) / 2
                if handles[middle] < handle { low = middle + 1 } else { high = middle }
            }
            return low
        }
    }

    private mutating func replaceExisting(with rule: FlowRule) throws(RuleSetError) -> FlowRule {
        let place = Place(rule)
        let key = rule.match.comparisonKey
        try groups[place]!.check(protocol: rule)
        try groups[place]!.checkUnique(key, hash: key.hashValue, of: rule, replacing: rule.handle)
        groups[place]!.replace(with: rule, key: key)
        return rule
    }

    private mutating func insertPrio(_ place: Place) {
        var list = prios.removeValue(forKey: place.chain) ?? []
        // A binary search: a set with a prio a rule (ClassBench's, added in prio order) took
        // a scan of every prio before it for each add, O(n^2).
        var low = 0, high = list.count
        while low < high {
            let middle = (low + high) / 2
            if list[middle] < place.prio { low = middle + 1 } else { high = middle }
        }
        list.insert(place.prio, at: low)
        prios[place.chain] = list
    }

    private mutating func removePrio(_ place: Place) {
        groups.removeValue(forKey: place)
        var list = prios.removeValue(forKey: place.chain)!
        list.removeAll { $0 == place.prio }
        if !list.isEmpty { prios[place.chain] = list }
    }

    private func automaticPrio(chain: UInt32) throws(RuleSetError) -> UInt16 {
        guard let lowest = prios[chain]?.first else { return Self.firstAutomaticPrio }
        guard lowest > 1 else { throw .noPrioLeft(chain: chain) }
        return lowest - 1
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

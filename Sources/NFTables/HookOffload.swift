import FlowRules
import Packets

/// The flower rules that run one device's nftables ingress hook in XDP, as far as XDP can
/// be sure of nftables' verdict, and what became of each nftables rule.
///
/// The hook's base chains (netdev `ingress` chains of the device, and inet `ingress`
/// chains, which see IPv4 and IPv6 only) run in priority order; a `drop` ends the hook,
/// an `accept` only its base chain. XDP drops what nftables would drop and passes the
/// rest, so nftables, which still runs after it, decides everything else itself:
///
/// - `drop` is a flower `drop`; the frame never reaches nftables, so `status` adds
///   XDP's count to nftables' own.
/// - `accept` is a flower `pass` in the last base chain; before another it hands the
///   frame to nftables (that chain could still drop it).
/// - A rule XDP cannot run (conntrack, `limit`, a counter without a verdict, a field
///   flower has no key for, ...) becomes a `pass` for every frame it might match: its
///   translatable matches before its first other statement, an over-approximation. The
///   rules after it still run in XDP for the frames it cannot match.
/// - `!=` is a `continue` rule (go on with the next prio) for the values excluded, at
///   lower handles of the rule's prio; `jump` and `goto` inline the chain under the
///   jump's matches; a `return` with matches hands those frames to nftables.
/// - Frames on which nftables reads other bytes than flower (VLAN-tagged frames, which
///   the kernel untags before the hook; IPv4 fragments, which have no ports for
///   nftables; IPv6 extension headers, which nftables skips to find the protocol) go
///   to nftables first, before any rule: the guards.
public struct HookOffload: Sendable {
    public var device: String
    /// The hook's base chains, in the order they run.
    public private(set) var chains: [Chain]
    /// The guards, then the rules, with prio and handle set, in order.
    public var rules: [FlowRule] { guards + emitted }
    /// How many flower rules the offload holds.
    public var ruleCount: Int { guards.count + emitted.count }
    /// Where each flower rule comes from, by prio and handle.
    public private(set) var origins: [Slot: Origin] = [:]
    /// Every nftables rule of the hook's chains (and of those they jump to), in order.
    public private(set) var reports: [RuleReport] = []

    /// The first prio of the band, the guards'; the rules' come 7 after it.
    public private(set) var firstPrio: UInt16 = 1
    /// The prios the band spans, guards included.
    public private(set) var span = 0

    private var guards: [FlowRule] = []
    private var emitted: [FlowRule] = []
    /// What lets a change resume the walk where it begins, rather than at the start.
    private var resumption = Resumption()

    /// The prios before the rules, counted from the band's first: the guards'.
    static let firstRulePrio: UInt16 = 8
    /// Where a band starts when it fits: past tc's first automatic prio (49152, and
    /// lower ones after it), so that tc rules added without a prio run first, as tc's
    /// ingress runs before nftables' hook.
    public static let defaultFirstPrio: UInt16 = 49153

    /// The hook's chains as flower rules in the band from `firstPrio` (default: the
    /// default, or as high as the band fits below 65536).
    public init(ruleset: Ruleset, device: String, firstPrio: UInt16? = nil) throws(OffloadLimit) {
        self.device = device
        chains = Self.ingressChains(of: ruleset, device: device)
        var translator = Translator(ruleset: ruleset, device: device, chains: chains, from: 0, at: .start)
        try translator.walk()
        adopt(translator, from: 0)
        try place(from: firstPrio ?? Self.firstPrio(span: span))
    }

    /// The band's default start for `span` prios.
    public static func firstPrio(span: Int) -> UInt16 { UInt16(max(1, min(Int(defaultFirstPrio), 65536 - span))) }

    /// Moves the band to start at `first`.
    public mutating func place(from first: UInt16) throws(OffloadLimit) {
        guard Int(first) + span - 1 <= Int(UInt16.max) else {
            throw OffloadLimit(description: "the offload needs \(span) prios (one per nftables rule and protocol); "
                + "from prio \(first) there are \(Int(UInt16.max) - Int(first) + 1)")
        }
        let shift = Int(first) - Int(firstPrio)
        guard shift != 0 else { return }
        func moved(_ prio: UInt16) -> UInt16 { UInt16(Int(prio) + shift) }
        func moved(_ rules: inout [FlowRule]) {
            for index in rules.indices { rules[index].prio = moved(rules[index].prio) }
        }
        moved(&guards)
        moved(&emitted)
        origins = Dictionary(uniqueKeysWithValues: origins.map { (Slot(prio: moved($0.key.prio), handle: $0.key.handle), $0.value) })
        firstPrio = first
    }

    /// Follows `events`, which took the ruleset this offload was translated from to
    /// `ruleset`, and returns the change from the old flower rules to the new: the walk
    /// resumes at the first rule of a base chain that an event can reach (the rule
    /// added or deleted, the first that reads a set with new elements or walks a chain
    /// that changed), so a rule appended costs that rule, and the rules before it are
    /// not copied. Nil when an event reaches what a resumed walk cannot follow (a chain
    /// or table added or gone, a policy, a flush) or the band no longer fits; this
    /// translation is spent then: translate the ruleset whole.
    public mutating func follow(_ events: [RulesetEvent], in ruleset: Ruleset) -> RuleChange? {
        var start = resumption.checkpoints.count
        for event in events {
            guard let reached = resumption.firstReached(by: event, in: ruleset, chains: chains) else { return nil }
            start = min(start, reached)
        }
        guard start < resumption.checkpoints.count else { return RuleChange() }
        var translator = Translator(ruleset: ruleset, device: device, chains: chains, from: start,
                                    at: resumption.checkpoints[start])
        do {
            try translator.walk()
        } catch {
            return nil
        }
        // The band must still fit above its first prio; placed past it, a prio would wrap.
        let lastPrio = translator.rules.lazy.map(\.prio).max() ?? 0
        guard Int(firstPrio) - 1 + Int(lastPrio) <= Int(UInt16.max) else { return nil }
        let kept = resumption.checkpoints[start].ruleCount
        let removed = guards + emitted[kept...]
        adopt(translator, from: start)
        let added = guards + emitted[kept...]
        // What the walk emitted again unchanged, at the same place, stays.
        let before = Dictionary(removed.map { (Slot($0), $0) }, uniquingKeysWith: { a, _ in a })
        let same = Set(added.filter { before[Slot($0)] == $0 }.map(Slot.init))
        return RuleChange(removed: removed.filter { !same.contains(Slot($0)) },
                          added: added.filter { !same.contains(Slot($0)) })
    }

    /// Takes the translator's walk, from checkpoint `start` on, in place of this one's:
    /// its rules are placed in the band, its guards replace the old ones.
    private mutating func adopt(_ translator: Translator, from start: Int) {
        let shift = Int(firstPrio) - 1
        func placed(_ rule: FlowRule) -> FlowRule {
            var rule = rule
            rule.prio = UInt16(Int(rule.prio) + shift)
            return rule
        }
        let kept = start < resumption.checkpoints.count ? resumption.checkpoints[start] : Checkpoint.start
        for rule in guards + emitted[kept.ruleCount...] { origins[Slot(rule)] = nil }
        emitted.removeSubrange(kept.ruleCount...)
        emitted += translator.rules.map(placed)
        guards = Translator.guards(for: emitted).map(placed)
        for (slot, origin) in translator.origins { origins[Slot(prio: UInt16(Int(slot.prio) + shift), handle: slot.handle)] = origin }
        for rule in guards { origins[Slot(rule)] = Origin(rule: nil, role: .handsOff) }
        reports.removeSubrange(kept.reportCount...)
        reports += translator.reports
        resumption.adopt(translator, from: start)
        span = (emitted.last ?? guards.last).map { Int($0.prio) - shift } ?? 0
    }

    /// The base chains on `device`'s ingress hook, by priority, in the order the kernel
    /// runs them. Of equal priority the kernel runs the one registered last first, which
    /// no listing says; they go by table and chain handle, and the order does not change
    /// a verdict here: a drop in any base chain ends the hook, and an accept before
    /// another base chain only hands the frame to nftables.
    public static func ingressChains(of ruleset: Ruleset, device: String) -> [Chain] {
        let tableHandles = Dictionary(ruleset.tables.map { ($0.id, $0.handle) }, uniquingKeysWith: { a, _ in a })
        return hookedChains(of: ruleset).filter { $0.base!.devices.contains(device) }.sorted {
            ($0.base!.priority, tableHandles[$0.table] ?? 0, $0.handle) < ($1.base!.priority, tableHandles[$1.table] ?? 0, $1.handle)
        }
    }

    /// The tables with a filter chain on an ingress hook, in the listing's order: all
    /// that an offload reads.
    public static func tables(of ruleset: Ruleset) -> [TableID] {
        var seen: Set<TableID> = []
        return hookedChains(of: ruleset).map(\.table).filter { seen.insert($0).inserted }
    }

    /// The devices with an ingress base chain.
    public static func devices(of ruleset: Ruleset) -> [String] {
        Set(hookedChains(of: ruleset).flatMap { $0.base!.devices }).sorted()
    }

    /// The filter chains on an ingress hook (netdev, and inet's), but those of dormant
    /// tables, which the kernel has taken off their hooks.
    static func hookedChains(of ruleset: Ruleset) -> [Chain] {
        let dormant = Set(ruleset.tables.filter(\.isDormant).map(\.id))
        return ruleset.chains.filter { chain in
            guard let base = chain.base, base.hook == "ingress", base.type == "filter",
                  chain.table.family == .netdev || chain.table.family == .inet else { return false }
            return !dormant.contains(chain.table)
        }
    }

    /// The nftables rule behind a flower rule's prio and handle.
    public func origin(prio: UInt16, handle: UInt32) -> Origin? { origins[Slot(prio: prio, handle: handle)] }
}

/// A flower rule's place.
public struct Slot: Hashable, Sendable {
    public var prio: UInt16
    public var handle: UInt32

    init(prio: UInt16, handle: UInt32) {
        self.prio = prio
        self.handle = handle
    }

    public init(_ rule: FlowRule) { self.init(prio: rule.prio, handle: rule.handle) }
}

/// What a flower rule of the offload stands for.
public struct Origin: Hashable, Sendable {
    /// Nil for a guard; for a chain's policy, the chain with handle 0.
    public var rule: Rule.ID?
    public var role: Role
}

public enum Role: Hashable, Sendable {
    /// Drops in XDP: nftables never sees the frame, its count is XDP's.
    case drops
    /// Passes the frame; nftables gives it the same verdict and counts it.
    case passes
    /// Frames the rule might match go to nftables, which decides them.
    case handsOff
    /// A `!=` value: the frame goes on to the next rule.
    case skips
}

/// What became of one nftables rule.
public struct RuleReport: Hashable, Sendable {
    public enum Status: Hashable, Sendable {
        /// Runs in XDP: `drop` (decided there) or `accept` (passed to nftables, which accepts).
        case offloaded(Verdict)
        /// A verdict map that runs in XDP: its elements' verdicts, each once, in order.
        case offloadedMap([Verdict])
        /// Its frames go to nftables, for this reason.
        case notOffloaded(String)
        /// No frame reaches it in XDP: an earlier rule hands all of them to nftables.
        case unreachable(Rule.ID)
        /// It neither decides nor counts (a match alone, `continue`).
        case noEffect

        /// Runs in XDP, a rule or a verdict map.
        public var isOffloaded: Bool {
            switch self {
            case .offloaded, .offloadedMap: true
            case .notOffloaded, .unreachable, .noEffect: false
            }
        }
    }

    public var rule: Rule.ID
    public var status: Status
    /// The flower rules it became.
    public var flowRules: Int
}

/// The offload needs more than XDPFlow holds.
public struct OffloadLimit: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
}

/// A chain or a named set: a name within a table.
struct QualifiedName: Hashable, Sendable {
    var table: TableID
    var name: String
}

/// Where the walk stood before one rule of a base chain, or before the chain's policy:
/// a walk resumed there emits what follows as a whole walk would.
struct Checkpoint: Sendable {
    /// The base chain's index in the walk.
    var chain: Int
    /// The rule's index in its chain; the chain's count for the policy.
    var rule: Int
    /// Nil for the policy.
    var id: Rule.ID?
    /// Flower rules emitted and rules reported before it (guards apart).
    var ruleCount: Int
    var reportCount: Int
    /// Prios counted from the band's first, 1.
    var nextPrio: UInt16
    var closedBy: Rule.ID?

    static let start = Checkpoint(chain: 0, rule: 0, id: nil, ruleCount: 0, reportCount: 0,
                                  nextPrio: HookOffload.firstRulePrio, closedBy: nil)
}

/// What `HookOffload.follow` needs to find where an event's change begins.
struct Resumption: Sendable {
    var checkpoints: [Checkpoint] = []
    /// Each base chain rule's checkpoint.
    var positions: [Rule.ID: Int] = [:]
    /// Each base chain's policy checkpoint, by the chain's index.
    var ends: [Int] = []
    /// The first checkpoint whose rule read a named set, or walked a chain that is not
    /// a base chain (by a jump or goto): where a change to it begins.
    var setReaders: [QualifiedName: Int] = [:]
    var chainWalkers: [QualifiedName: Int] = [:]

    mutating func adopt(_ translator: Translator, from start: Int) {
        for checkpoint in checkpoints[start...] { if let id = checkpoint.id { positions[id] = nil } }
        checkpoints.removeSubrange(start...)
        checkpoints += translator.checkpoints
        positions.merge(translator.positions) { _, new in new }
        ends.removeSubrange(min(translator.firstChain, ends.count)...)
        ends += translator.ends
        setReaders = setReaders.filter { $0.value < start }.merging(translator.setReaders) { old, _ in old }
        chainWalkers = chainWalkers.filter { $0.value < start }.merging(translator.chainWalkers) { old, _ in old }
    }

    /// The first checkpoint `event` can change the walk from (`Int.max`: none); nil when
    /// a resumed walk cannot follow it.
    func firstReached(by event: RulesetEvent, in ruleset: Ruleset, chains: [Chain]) -> Int? {
        func base(_ table: TableID, _ name: String) -> Int? {
            chains.firstIndex { $0.table == table && $0.name == name }
        }
        switch event {
        case .addRule(let rule):
            guard let chain = base(rule.table, rule.chain) else {
                return chainWalkers[QualifiedName(table: rule.table, name: rule.chain)] ?? .max
            }
            // The first rule after it in its chain that the walk reached, else the policy;
            // nothing when it is gone again. Found from the end, where rules are appended.
            guard let index = ruleset.rules.lastIndex(where: { $0.has(rule.id) }) else {
                return .max
            }
            for next in ruleset.rules[(index + 1)...] {
                guard next.table == rule.table, next.chain == rule.chain else { break }
                if let position = positions[next.id] { return position }
            }
            return ends[chain]
        case .deleteRule(let id):
            guard base(id.table, id.chain) != nil else {
                return chainWalkers[QualifiedName(table: id.table, name: id.chain)] ?? .max
            }
            // A rule the walk never reached was added since, and is gone again.
            return positions[id] ?? .max
        case .addElements(let set, let table, _):
            return setReaders[QualifiedName(table: table, name: set)] ?? .max
        case .other:
            return nil
        }
    }
}

/// Walks the chains and emits flower rules, one prio per nftables rule and protocol,
/// from a checkpoint (`Checkpoint.start` for a whole walk) to the last base chain's end.
struct Translator {
    let ruleset: Ruleset
    let device: String
    let chains: [Chain]
    /// Prios counted from the band's first, 1.
    var rules: [FlowRule] = []
    var origins: [Slot: Origin] = [:]
    var reports: [RuleReport] = []
    var nextPrio: UInt16
    /// The rule after which XDP hands every frame to nftables.
    var closedBy: Rule.ID?

    /// Where the walk starts, and the checkpoints it passes, numbered on from `first`.
    let start: Checkpoint
    let first: Int
    var checkpoints: [Checkpoint] = []
    var positions: [Rule.ID: Int] = [:]
    var ends: [Int] = []
    var setReaders: [QualifiedName: Int] = [:]
    var chainWalkers: [QualifiedName: Int] = [:]
    var firstChain: Int { start.chain }

    /// Each chain's rules in order, grouped once, since a chain is walked again for
    /// every jump to it: all chains at once for a whole walk, one by one for a resumed
    /// walk, which reaches few.
    var rulesByChain: [QualifiedName: [Rule]] = [:]
    let groupedAll: Bool

    /// The most flower rules one nftables rule may become.
    static let maxExpansion = 65_536

    init(ruleset: Ruleset, device: String, chains: [Chain], from first: Int, at start: Checkpoint) {
        self.ruleset = ruleset
        self.device = device
        self.chains = chains
        self.first = first
        self.start = start
        nextPrio = start.nextPrio
        closedBy = start.closedBy
        groupedAll = first == 0
        if groupedAll {
            rulesByChain = Dictionary(grouping: ruleset.rules) { QualifiedName(table: $0.table, name: $0.chain) }
        }
    }

    mutating func rules(of chain: Chain) -> [Rule] {
        let name = QualifiedName(table: chain.table, name: chain.name)
        if let rules = rulesByChain[name] { return rules }
        let rules = groupedAll ? [] : ruleset.rules.filter { $0.table == chain.table && $0.chain == chain.name }
        rulesByChain[name] = rules
        return rules
    }

    /// The base chains from the start on.
    mutating func walk() throws(OffloadLimit) {
        for index in start.chain ..< chains.count {
            try walkBase(index, from: index == start.chain ? start.rule : 0)
        }
    }

    mutating func walkBase(_ index: Int, from firstRule: Int) throws(OffloadLimit) {
        let chain = chains[index]
        // An inet chain sees IPv4 and IPv6 frames only.
        let context = chain.table.family == .inet ? [FlowKey(network: .ipv4), FlowKey(network: .ipv6)] : [FlowKey()]
        let base = Base(chain: chain, isLast: index == chains.count - 1)
        let chainRules = rules(of: chain)
        for position in min(firstRule, chainRules.count) ..< chainRules.count {
            let rule = chainRules[position]
            mark(chain: index, rule: position, id: rule.id)
            // A return at depth 0 takes the policy: the walk goes on.
            _ = try translate(rule, context: context, base: base, depth: 0)
        }
        ends.append(first + checkpoints.count)
        mark(chain: index, rule: chainRules.count, id: nil)
        guard closedBy == nil else { return }
        let policy = Rule.ID(table: chain.table, chain: chain.name, handle: 0)
        // An accept policy lets the frame on to the next base chain: nothing to emit.
        if chain.base?.policy == .drop {
            try emit(context, skips: [], control: .drop, origin: Origin(rule: policy, role: .drops), report: nil)
        }
    }

    /// A checkpoint before a base chain's rule or policy.
    mutating func mark(chain: Int, rule: Int, id: Rule.ID?) {
        if let id { positions[id] = first + checkpoints.count }
        checkpoints.append(Checkpoint(chain: chain, rule: rule, id: id, ruleCount: start.ruleCount + rules.count,
                                      reportCount: start.reportCount + reports.count, nextPrio: nextPrio, closedBy: closedBy))
    }

    /// The checkpoint whose rule is being walked.
    var current: Int { first + checkpoints.count - 1 }

    struct Base {
        var chain: Chain
        var isLast: Bool
    }

    /// Whether the rest of a jumped-to chain runs for the context's frames.
    enum WalkEnd { case fellThrough, returned }

    /// A chain jumped to.
    mutating func walk(_ chain: Chain, context: [FlowKey], base: Base, depth: Int) throws(OffloadLimit) -> WalkEnd {
        for rule in rules(of: chain) {
            if try translate(rule, context: context, base: base, depth: depth) == .returned { return .returned }
        }
        return .fellThrough
    }

    /// One rule: its matches as keys, its verdict as flower's control; past the rule
    /// that closed the walk, only its report.
    mutating func translate(_ rule: Rule, context: [FlowKey], base: Base, depth: Int) throws(OffloadLimit) -> WalkEnd {
        if let closedBy {
            reports.append(RuleReport(rule: rule.id, status: .unreachable(closedBy), flowRules: 0))
            return .fellThrough
        }
        for name in rule.setReferences where setReaders[QualifiedName(table: rule.table, name: name)] == nil {
            setReaders[QualifiedName(table: rule.table, name: name)] = current
        }
        let reader = ConditionReader(ruleset: ruleset, table: rule.table)
        var keys = context
        var skips: [FlowKey] = []
        // The frames the rule might match, as far as its matches before its first other
        // statement say (matches commute; a statement acts on the frames that reach it):
        // what a rule XDP cannot run hands to nftables.
        var mightMatch = context
        var statementSeen = false
        var problem: String?
        var counted = false
        var setsMark = false
        var verdict: Verdict?
        var verdictMap: (key: Expression, map: Expression)?
        statements: for statement in rule.statements {
            switch statement {
            case .match(let match):
                if counted, problem == nil { problem = "a counter before a match counts frames the rule does not match" }
                do {
                    let condition = try reader.condition(match)
                    if match.op == "!=" {
                        skips += Self.keys([FlowKey()], condition, device: device)
                        // The fields must be there to compare: `ip saddr != X` needs IPv4.
                        for field in condition.fields {
                            keys = keys.flatMap { key in field.dependency.compactMap { key.requiring($0) } }
                            if !statementSeen {
                                mightMatch = mightMatch.flatMap { key in field.dependency.compactMap { key.requiring($0) } }
                            }
                        }
                    } else {
                        keys = Self.keys(keys, condition, device: device)
                        if !statementSeen { mightMatch = Self.keys(mightMatch, condition, device: device) }
                    }
                    if keys.count + skips.count > Self.maxExpansion, problem == nil {
                        problem = "it expands to more than \(Self.maxExpansion) flower rules"
                    }
                } catch {
                    problem = problem ?? error.description
                }
            case .counter:
                counted = true
                statementSeen = true
            case .setMark:
                setsMark = true
                statementSeen = true
            case .verdict(let value):
                verdict = value
                break statements
            case .verdictMap(let key, let map):
                verdictMap = (key, map)
                break statements
            case .other(let keyword):
                problem = problem ?? "\(keyword) is not offloaded"
                break statements
            }
        }
        // A `!=` of one protocol in a rule of every protocol: flower puts one protocol in a
        // prio, so the skip rule cannot sit before the rule.
        if problem == nil, keys.contains(where: { FlowKey.filterProtocol($0.network) == .all && $0.l4 == nil }),
           skips.contains(where: { $0.network != .any || $0.l4 != nil }) {
            problem = "a != of one protocol in a rule of every protocol"
        }
        if let problem {
            try handOff(mightMatch, rule: rule.id, reason: problem)
            return .fellThrough
        }
        // It goes on in XDP as in nftables, which sets the mark on the frames XDP passes.
        if setsMark, !counted, verdictMap == nil, verdict == nil || verdict == .continue {
            reports.append(RuleReport(rule: rule.id, status: .offloaded(.continue), flowRules: 0))
            return .fellThrough
        }
        if let verdictMap {
            try translateVerdictMap(verdictMap.key, verdictMap.map, keys: keys, skips: skips, rule: rule, counted: counted,
                                    base: base)
            return .fellThrough
        }
        return try apply(verdict, keys: keys, skips: skips, rule: rule.id, counted: counted, base: base, depth: depth,
                         context: context)
    }

    mutating func apply(_ verdict: Verdict?, keys: [FlowKey], skips: [FlowKey], rule: Rule.ID, counted: Bool, base: Base,
                        depth: Int, context: [FlowKey]) throws(OffloadLimit) -> WalkEnd {
        switch verdict {
        case nil, .continue?:
            if counted {
                try handOff(keys, rule: rule, reason: "a counter without a verdict: nftables counts its frames")
            } else {
                reports.append(RuleReport(rule: rule, status: .noEffect, flowRules: 0))
            }
        case .drop?:
            try emit(keys, skips: skips, control: .drop, origin: Origin(rule: rule, role: .drops), report: .offloaded(.drop))
        case .accept?:
            try accept(keys, skips: skips, rule: rule, base: base)
        case .return?:
            if depth == 0 {
                // The base chain's policy.
                return try apply(base.chain.base?.policy ?? .accept, keys: keys, skips: skips, rule: rule, counted: counted,
                                 base: base, depth: depth, context: context)
            }
            if skips.isEmpty, keys == context {
                reports.append(RuleReport(rule: rule, status: .noEffect, flowRules: 0))
                return .returned
            }
            try handOff(keys, rule: rule, reason: "a return with matches: the rest of the chain runs in nftables")
        case .jump(let target)?, .goto(let target)?:
            let walked = QualifiedName(table: rule.table, name: target)
            if chainWalkers[walked] == nil { chainWalkers[walked] = current }
            guard !counted, skips.isEmpty, depth < 16, let chain = ruleset.chain(target, in: rule.table) else {
                let reason = counted ? "a counter with a jump" : !skips.isEmpty ? "a jump with a != match"
                    : depth >= 16 ? "jumps nested deeper than 16" : "no chain \(target)"
                try handOff(keys, rule: rule, reason: reason)
                return .fellThrough
            }
            reports.append(RuleReport(rule: rule, status: .offloaded(verdict!), flowRules: 0))
            _ = try walk(chain, context: keys, base: base, depth: depth + 1)
            if case .goto = verdict!, closedBy == nil, depth > 0 {
                // Below a jump, what the chain gone to leaves undecided returns to the
                // jump's chain, past the rest of this one.
                if keys == context { return .returned }
                try handOff(keys, rule: rule, reason: "a goto with matches below a jump", reported: false)
            } else if case .goto = verdict!, closedBy == nil {
                // A goto does not come back: what its chain does not decide gets the policy.
                let policy = Rule.ID(table: base.chain.table, chain: base.chain.name, handle: 0)
                if base.chain.base?.policy == .drop {
                    try emit(keys, skips: [], control: .drop, origin: Origin(rule: policy, role: .drops), report: nil)
                } else {
                    try accept(keys, skips: [], rule: policy, base: base, reported: false)
                }
            }
        }
        return .fellThrough
    }

    /// `accept`: XDP passes the frame in the hook's last base chain; before another base
    /// chain it hands it to nftables, since that chain may still drop it.
    mutating func accept(_ keys: [FlowKey], skips: [FlowKey], rule: Rule.ID, base: Base, reported: Bool = true)
        throws(OffloadLimit) {
        if base.isLast {
            try emit(keys, skips: skips, control: .pass, origin: Origin(rule: rule, role: .passes),
                     report: reported ? .offloaded(.accept) : nil)
        } else {
            try handOff(keys, rule: rule, reason: "accept before the base chains after it", reported: reported)
        }
    }

    /// `KEY vmap { VALUE : VERDICT }`: one rule per element, each with its verdict; the
    /// elements of a map never overlap, so their order does not matter.
    mutating func translateVerdictMap(_ key: Expression, _ map: Expression, keys: [FlowKey], skips: [FlowKey],
                                      rule: Rule, counted: Bool, base: Base) throws(OffloadLimit) {
        guard !counted else {
            try handOff(keys, rule: rule.id, reason: "a counter with a verdict map")
            return
        }
        let reader = ConditionReader(ruleset: ruleset, table: rule.table)
        var elements: [Expression]
        switch map {
        case .set(let items): elements = items
        case .reference(let name): elements = ruleset.set(name, in: rule.table)?.elements ?? []
        default: elements = []
        }
        var emitted = 0
        var verdicts: [Verdict] = []
        for element in elements {
            guard case .mapping(let value, let data) = element, case .verdict(let verdict) = data,
                  verdict == .drop || verdict == .accept || verdict == .continue else {
                try handOff(keys, rule: rule.id, reason: "a verdict map with a verdict other than accept, drop or continue")
                return
            }
            let condition: Condition
            do {
                condition = try reader.condition(Match(op: "==", left: key, right: value))
            } catch {
                try handOff(keys, rule: rule.id, reason: error.description)
                return
            }
            if !verdicts.contains(verdict) { verdicts.append(verdict) }
            let elementKeys = Self.keys(keys, condition, device: device)
            let role: Role = verdict == .drop ? .drops : base.isLast ? .passes : .handsOff
            if verdict != .continue {
                emitted += try emit(elementKeys, skips: skips, control: verdict == .drop ? .drop : .pass,
                                    origin: Origin(rule: rule.id, role: role), report: nil)
            }
        }
        reports.append(RuleReport(rule: rule.id, status: verdicts.isEmpty ? .noEffect : .offloadedMap(verdicts), flowRules: emitted))
    }

    /// Frames `keys` might match go to nftables: a `pass` that decides nothing.
    mutating func handOff(_ keys: [FlowKey], rule: Rule.ID, reason: String, reported: Bool = true) throws(OffloadLimit) {
        // Past the expansion limit: every frame of the context, as one rule per network.
        let keys = keys.count > Self.maxExpansion ? [FlowKey()] : keys
        try emit(keys, skips: [], control: .pass, origin: Origin(rule: rule, role: .handsOff),
                 report: reported ? .notOffloaded(reason) : nil)
        if keys.contains(FlowKey()) { closedBy = rule }
    }

    /// Emits the flower rules of `keys` under `control`, the `skips` first, one prio per
    /// protocol; reports `report` for the rule. Returns the rules emitted.
    @discardableResult
    mutating func emit(_ keys: [FlowKey], skips: [FlowKey], control: ActionControl, origin: Origin,
                       report: RuleReport.Status?) throws(OffloadLimit) -> Int {
        var byProtocol: [FilterProtocol: [FlowRule]] = [:]
        var order: [FilterProtocol] = []
        for key in keys {
            for rule in key.flowRules(actions: [.gact(control)]) {
                if byProtocol[rule.filterProtocol] == nil { order.append(rule.filterProtocol) }
                byProtocol[rule.filterProtocol, default: []].append(rule)
            }
        }
        var emitted = 0
        for filterProtocol in order {
            guard nextPrio < UInt16.max else {
                throw OffloadLimit(description: "the offload needs more than \(UInt16.max - HookOffload.firstRulePrio) prios "
                    + "(one per nftables rule and protocol); the rules of \(origin.rule.map(String.init(describing:)) ?? "a guard") do not fit")
            }
            let prio = nextPrio
            nextPrio += 1
            let network: FlowKey.Network = filterProtocol == .ip ? .ipv4 : filterProtocol == .ipv6 ? .ipv6 : .any
            let skipRules = skips.compactMap { $0.restricted(to: network, protocol: filterProtocol) }
                .flatMap { $0.flowRules(actions: [.gact(.continue)]) }
                .filter { $0.filterProtocol == filterProtocol }
            let candidates = skipRules.map { ($0, Role.skips) } + byProtocol[filterProtocol]!.map { ($0, origin.role) }
            var seen = Set<FlowMatch>()
            var handle: UInt32 = 1
            for (rule, role) in candidates {
                guard candidates.count == 1 || seen.insert(rule.match).inserted else { continue }
                var placed = rule
                placed.prio = prio
                placed.handle = handle
                rules.append(placed)
                origins[Slot(prio: prio, handle: handle)] = Origin(rule: origin.rule, role: role)
                handle += 1
                emitted += 1
            }
        }
        if let report, let rule = origin.rule {
            reports.append(RuleReport(rule: rule, status: report, flowRules: emitted))
        }
        return emitted
    }

    /// The guards of `rules`, from prio 1: frames whose headers nftables reads otherwise
    /// than flower go to it before any rule, when a rule could decide them otherwise.
    static func guards(for rules: [FlowRule]) -> [FlowRule] {
        func reads(_ filterProtocol: FilterProtocol, _ field: (FlowMatch) -> Bool) -> Bool {
            rules.contains { $0.filterProtocol == filterProtocol && field($0.match) }
        }
        var prio: UInt16 = 1
        var guards: [FlowRule] = []
        func guardRule(_ filterProtocol: FilterProtocol, handle: UInt32 = 1, _ edit: (inout FlowMatch) -> Void = { _ in }) {
            var rule = FlowRule(prio: prio, handle: handle, filterProtocol: filterProtocol, actions: [.gact(.pass)])
            edit(&rule.match)
            guards.append(rule)
        }
        // The kernel takes a VLAN tag off before the hook and nftables reads what
        // follows; in XDP a tagged frame meets only the rules of every protocol, and one
        // that drops could take it past a rule of its inner protocol.
        if rules.contains(where: { $0.filterProtocol == .all && $0.actions == [.gact(.drop)] }) {
            guardRule(.vlan)
            prio += 1
            guardRule(.qinq)
            prio += 1
        }
        // nftables reads the ports of a first fragment; flower, none.
        if reads(.ip, { $0.srcPort != nil || $0.dstPort != nil || $0.icmpType != nil || $0.icmpCode != nil }) {
            guardRule(.ip) { $0.ipFlags = IPFlagsMatch(isFragment: true) }
            prio += 1
        }
        // nftables finds IPv6's protocol past its extension headers; flower reads the first.
        if reads(.ipv6, { $0.ipProto != nil }) {
            for (index, header) in [0, 43, 44, 51, 59, 60].enumerated() {
                guardRule(.ipv6, handle: UInt32(index + 1)) { $0.ipProto = UInt8(header) }
            }
        }
        return guards
    }

    /// `keys` each combined with each alternative of `condition`.
    static func keys(_ keys: [FlowKey], _ condition: Condition, device: String) -> [FlowKey] {
        // One key and one alternative (most matches): nothing to keep apart.
        if keys.count == 1, condition.alternatives.count == 1 {
            var combined = keys[0]
            for atom in condition.alternatives[0] {
                guard let next = combined.adding(atom, device: device) else { return [] }
                combined = next
            }
            return [combined]
        }
        var result: [FlowKey] = []
        var seen = Set<FlowKey>()
        for key in keys {
            alternatives: for alternative in condition.alternatives {
                var combined = key
                for atom in alternative {
                    guard let next = combined.adding(atom, device: device) else { continue alternatives }
                    combined = next
                }
                if seen.insert(combined).inserted { result.append(combined) }
            }
        }
        return result
    }
}

extension FlowKey {
    /// This key where `other`'s network and protocol are required as well.
    func requiring(_ other: FlowKey) -> FlowKey? {
        var key = self
        if other.network != .any {
            guard key.network == .any || key.network == other.network else { return nil }
            key.network = other.network
        }
        if let l4 = other.l4 {
            guard key.l4 == nil || key.l4 == l4 else { return nil }
            key.l4 = l4
        }
        return key
    }

    /// This key within the rules of one flower protocol; nil when none of its frames are.
    func restricted(to network: Network, protocol filterProtocol: FilterProtocol) -> FlowKey? {
        if network == .any {
            return FlowKey.filterProtocol(self.network) == filterProtocol || self.network == .any ? self : nil
        }
        return requiring(FlowKey(network: network))
    }
}

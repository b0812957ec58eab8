import FlowRules

/// The nftables ruleset as `nft -j list ruleset` prints it (libnftables' JSON schema,
/// libnftables-json(5)), kept as far as an offload to XDP needs it: tables, chains and
/// their hooks, named sets, and each rule's statements as typed values. It may hold
/// some tables only (those with an ingress chain, listed one by one and `add`ed).
public struct Ruleset: Sendable {
    public var tables: [Table] = []
    public var chains: [Chain] = []
    public var sets: [NamedSet] = []
    public var rules: [Rule] = []

    public init() {}

    /// Adds the objects of another listing, of other tables.
    public mutating func add(_ other: Ruleset) {
        tables += other.tables
        chains += other.chains
        sets += other.sets
        rules += other.rules
    }

    /// The chain `name` of `table`.
    public func chain(_ name: String, in table: TableID) -> Chain? {
        chains.first { $0.table == table && $0.name == name }
    }

    public func set(_ name: String, in table: TableID) -> NamedSet? {
        sets.first { $0.table == table && $0.name == name }
    }
}

/// nftables' address families (`table FAMILY NAME`).
public enum Family: String, Sendable, Hashable, Comparable, CaseIterable {
    case ip, ip6, inet, arp, bridge, netdev

    public static func < (a: Family, b: Family) -> Bool { a.rawValue < b.rawValue }
}

/// A table, by family and name.
public struct TableID: Hashable, Sendable, CustomStringConvertible {
    public var family: Family
    public var name: String

    public init(_ family: Family, _ name: String) {
        self.family = family
        self.name = name
    }

    public var description: String { "\(family.rawValue) \(name)" }
}

public struct Table: Sendable {
    public var id: TableID
    /// The kernel's handle: tables made later have larger ones.
    public var handle: Int
    /// `flags dormant`: its chains are registered on no hook.
    public var isDormant = false
    /// The JSON named its flags wrongly (nft 1.0.6 writes the table's name there):
    /// `isDormant` needs the text listing of the table (`dormant(inListing:)`).
    public var flagsUnread = false
}

public struct Chain: Sendable {
    public var table: TableID
    public var name: String
    public var handle: Int
    /// Nil for a regular chain, reached only by `jump` and `goto`.
    public var base: BaseChain?

    public var description: String { "\(table) \(name)" }
}

/// What makes a chain a base chain: the hook it is registered on.
public struct BaseChain: Sendable {
    /// `filter`, `route`, `nat`.
    public var type: String
    /// `ingress`, `egress`, `prerouting`, ...
    public var hook: String
    /// Lower runs first.
    public var priority: Int
    /// The verdict of a frame no rule decides: `accept` unless written.
    public var policy: Verdict
    /// The devices of an `ingress` or `egress` hook.
    public var devices: [String]
}

/// A named set of a table (`set NAME { type ...; elements = { ... } }`), or a map.
public struct NamedSet: Sendable {
    public var table: TableID
    public var name: String
    /// For a map, its elements are `Expression.mapping`s.
    public var isMap: Bool
    public var elements: [Expression]
    /// Elements come from the packet path (`dynamic`) or expire (`timeout`): no event
    /// tells of either.
    public var changesUnseen = false
}

/// One rule, by its table, chain and handle (`nft -a`), and its statements in order.
public struct Rule: Sendable {
    public var table: TableID
    public var chain: String
    public var handle: Int
    public var statements: [Statement]
    public var comment: String?

    public var id: ID { ID(table: table, chain: chain, handle: handle) }

    /// Whether it is the rule `id` names: the handle first, and no `ID` made (a lookup
    /// in 10,000 rules, for every event of a file of them, made one per rule).
    func has(_ id: ID) -> Bool { handle == id.handle && chain == id.chain && table == id.table }

    /// The counter's packets and bytes, when the rule has one.
    public var counted: (packets: UInt64, bytes: UInt64)? {
        for case .counter(let packets, let bytes) in statements { return (packets, bytes) }
        return nil
    }
}

extension Rule {
    /// The named sets and maps its statements read (`@NAME`).
    var setReferences: [String] {
        var names: [String] = []
        func visit(_ expression: Expression) {
            switch expression {
            case .reference(let name): names.append(name)
            case .concatenation(let parts), .set(let parts): parts.forEach(visit)
            case .range(let low, let high): visit(low); visit(high)
            case .mapping(let key, _): visit(key)
            case .payload, .meta, .value, .prefix, .other: break
            }
        }
        for statement in statements {
            switch statement {
            case .match(let match): visit(match.left); visit(match.right)
            case .verdictMap(let key, let map): visit(key); visit(map)
            case .counter, .verdict, .setMark, .other: break
            }
        }
        return names
    }
}

extension Rule {
    /// Where a rule is: `nft -a list ruleset` prints the handle. Handle 0 stands for the
    /// chain's policy.
    public struct ID: Hashable, Sendable, Comparable, CustomStringConvertible {
        public var table: TableID
        public var chain: String
        public var handle: Int

        public init(table: TableID, chain: String, handle: Int) {
            self.table = table
            self.chain = chain
            self.handle = handle
        }

        public var description: String { "\(table) \(chain) handle \(handle)" }

        public static func < (a: ID, b: ID) -> Bool {
            (a.table.family, a.table.name, a.chain, a.handle) < (b.table.family, b.table.name, b.chain, b.handle)
        }
    }
}

/// What a rule ends with, or a chain's policy.
public enum Verdict: Hashable, Sendable {
    case accept, drop, `continue`, `return`
    case jump(String)
    case goto(String)
}

/// One statement of a rule.
public enum Statement: Sendable {
    /// `LEFT OP RIGHT`: the frame must match.
    case match(Match)
    /// `counter`: nftables counts the frames that reach it.
    case counter(packets: UInt64, bytes: UInt64)
    case verdict(Verdict)
    /// `KEY vmap { VALUE : VERDICT, ... }` or `KEY vmap @MAP`.
    case verdictMap(key: Expression, map: Expression)
    /// `meta mark set`: skb->mark, which nftables sets itself on every frame XDP passes
    /// on, and which no translated match reads (a frame XDP drops needs none).
    case setMark
    /// Any other statement (`limit`, `log`, `fwd`, a header written, ...), by its keyword.
    case other(String)
}

/// `left op right`; nftables writes a set membership as `==` with a set on the right.
public struct Match: Sendable {
    public var op: String
    public var left: Expression
    public var right: Expression
}

/// An expression of a match, a set element or a map key.
public indirect enum Expression: Sendable {
    /// `PROTOCOL FIELD` (`ip saddr`, `tcp dport`).
    case payload(protocol: String, field: String)
    /// `meta KEY` (`meta l4proto`, `meta protocol`, `iifname`).
    case meta(String)
    /// `A . B`.
    case concatenation([Expression])
    /// An address, number or symbol (`10.0.0.1`, `22`, `tcp`, `echo-request`).
    case value(JSONValue)
    /// `ADDR/LEN`.
    case prefix(address: String, length: Int)
    /// `LOW-HIGH`.
    case range(Expression, Expression)
    /// `{ A, B, ... }`.
    case set([Expression])
    /// `@NAME`.
    case reference(String)
    /// `KEY : DATA`, an element of a map (a verdict map's data is a verdict).
    case mapping(Expression, MapData)
    /// Anything else (`ct state`, `numgen`, `jhash`, ...), by its keyword.
    case other(String)
}

/// The data side of a map element.
public enum MapData: Sendable {
    case verdict(Verdict)
    case other
}

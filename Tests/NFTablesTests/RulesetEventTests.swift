import Testing
@testable import NFTables

/// `nft -j monitor` lines followed in memory: each rule where the kernel's order of its
/// chain puts it, elements added to their set, and everything else left to a new read.
@Suite struct RulesetEventTests {
    static let table = TableID(.netdev, "t")

    static func rule(_ handle: Int, _ address: String, change: String = "add", table: String = "t") -> String {
        #"{"\#(change)": {"rule": {"family": "netdev", "table": "\#(table)", "chain": "c", "handle": \#(handle), "expr": "#
            + #"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "\#(address)"}}, "#
            + #"{"drop": null}]}}}"#
    }

    func ruleset() throws -> Ruleset {
        let objects: [String] = [
            #"{"table": {"family": "netdev", "name": "t", "handle": 1}}"#,
            #"{"set": {"family": "netdev", "name": "s", "table": "t", "type": "ipv4_addr", "handle": 2}}"#,
            #"{"chain": {"family": "netdev", "table": "t", "name": "c", "handle": 1, "type": "filter", "hook": "ingress", "prio": 0, "policy": "accept", "dev": "xnt0"}}"#,
            String(Self.rule(3, "10.0.0.3").dropFirst(8).dropLast(1)),
            String(Self.rule(4, "10.0.0.4").dropFirst(8).dropLast(1)),
        ]
        return try Ruleset(json: Array(("{\"nftables\": [" + objects.joined(separator: ", ") + "]}").utf8))
    }

    /// `order` is the chain's, asked for the rule of `line` alone.
    func follow(_ line: String, order: [Int] = [], in ruleset: inout Ruleset) throws -> Bool {
        let event = try RulesetEvent(json: Array(line.utf8))
        return try ruleset.apply(event) { rule in
            guard case .addRule(let added) = event else { Issue.record("a place asked for \(event)"); return nil }
            #expect(rule.id == Rule.ID(table: Self.table, chain: "c", handle: added.handle))
            return RulePlace(of: rule.handle, in: order)
        }
    }

    @Test func rulesGoWhereTheKernelPutThem() throws {
        var ruleset = try ruleset()
        #expect(ruleset.rules.map(\.handle) == [3, 4])
        #expect(try follow(Self.rule(5, "10.0.0.5"), order: [3, 4, 5], in: &ruleset))
        #expect(try follow(Self.rule(6, "10.0.0.6", change: "insert"), order: [6, 3, 4, 5], in: &ruleset))
        // `add ... position 3`: the event looks like an append.
        #expect(try follow(Self.rule(7, "10.0.0.7"), order: [6, 3, 7, 4, 5], in: &ruleset))
        #expect(ruleset.rules.map(\.handle) == [6, 3, 7, 4, 5])
        // Read already (the monitor starts before the first read): nothing moves.
        #expect(try follow(Self.rule(7, "10.0.0.7"), order: [6, 3, 7, 4, 5], in: &ruleset))
        #expect(try follow(Self.rule(4, "10.0.0.4", change: "delete"), in: &ruleset))
        #expect(ruleset.rules.map(\.handle) == [6, 3, 7, 5])
        let translated = try HookOffload(ruleset: ruleset, device: "xnt0", firstPrio: 1)
        let lines = translated.rules.map { $0.batchLine(device: "D") }
        let places = ["10.0.0.6", "10.0.0.3", "10.0.0.7", "10.0.0.5"].map { address in
            lines.firstIndex { $0.contains("src_ip \(address) ") }
        }
        #expect(!places.contains(nil) && places == places.sorted { ($0 ?? 0) < ($1 ?? 0) })
    }

    /// The places a notification gives: appended or inserted, next to a rule or not.
    @Test func placesAsTheKernelGivesThem() throws {
        var ruleset = try ruleset()
        for (handle, place) in [(5, RulePlace.last), (6, .first), (7, .after(handle: 3)), (8, .before(handle: 5))] {
            let event = try RulesetEvent(json: Array(Self.rule(handle, "10.0.0.\(handle)").utf8))
            #expect(ruleset.apply(event) { _ in place })
        }
        #expect(ruleset.rules.map(\.handle) == [6, 3, 7, 4, 8, 5])
        let missing = try RulesetEvent(json: Array(Self.rule(9, "10.0.0.9").utf8))
        #expect(!ruleset.apply(missing) { _ in .after(handle: 99) }, "next to a rule it does not hold")
        #expect(!ruleset.apply(missing) { _ in nil }, "no place known")
    }

    @Test func elementsJoinTheirSet() throws {
        var ruleset = try ruleset()
        func line(_ set: String) -> String {
            #"{"add": {"element": {"family": "netdev", "table": "t", "name": "\#(set)", "elem": {"set": ["10.1.1.1", "#
                + #"{"prefix": {"addr": "10.2.0.0", "len": 16}}]}}}}"#
        }
        #expect(try follow(line("s"), in: &ruleset))
        #expect(ruleset.set("s", in: Self.table)?.elements.count == 2)
        #expect(try !follow(line("gone"), in: &ruleset))
    }

    /// What the ruleset in memory cannot follow: read again.
    @Test func otherChangesAskForANewRead() throws {
        var ruleset = try ruleset()
        #expect(try !follow(#"{"add": {"table": {"family": "netdev", "name": "u", "handle": 9}}}"#, in: &ruleset))
        #expect(try !follow(Self.rule(9, "10.0.0.9", change: "delete"), in: &ruleset), "a rule it does not hold")
        #expect(try !follow(Self.rule(9, "10.0.0.9"), order: [3, 4], in: &ruleset), "gone again before the dump")
        #expect(throws: RulesetError.self) { try RulesetEvent(json: Array("# new generation".utf8)) }
    }

    /// A table it was not given has no ingress chain: its rules and elements change nothing.
    @Test func otherTablesAreNotRead() throws {
        var ruleset = try ruleset()
        let before = ruleset.rules.map(\.id)
        #expect(try follow(Self.rule(9, "10.0.0.9", table: "filter"), in: &ruleset))
        #expect(try follow(Self.rule(9, "10.0.0.9", change: "delete", table: "filter"), in: &ruleset))
        #expect(ruleset.rules.map(\.id) == before)
        #expect(try !follow(#"{"add": {"chain": {"family": "netdev", "table": "filter", "name": "c", "handle": 9}}}"#, in: &ruleset),
                "a chain, which may hook ingress: read again")
    }
}

import FlowRules
import RuleSetWorkloads
import Testing
@testable import NFTables

/// A translation that follows events (`HookOffload.follow`) is the translation of
/// the ruleset they leave, and its change takes the old rules to the new: random
/// rulesets of two base chains, a chain jumped to, a set and another device's chain,
/// changed by random rules added anywhere, rules deleted and elements added.
@Suite struct FollowingTests {
    static let table = TableID(.netdev, "t")

    /// Statements of one random rule, as nft's JSON.
    static func statements(_ random: inout SeededRandom, inJumpedChain: Bool) -> String {
        func saddr(_ op: String = "==") -> String {
            "{\"match\": {\"op\": \"\(op)\", \"left\": {\"payload\": {\"protocol\": \"ip\", \"field\": \"saddr\"}}, "
                + "\"right\": {\"prefix\": {\"addr\": \"10.\(random.int(0 ... 3)).0.0\", \"len\": 16}}}}"
        }
        let dport = "{\"match\": {\"op\": \"==\", \"left\": {\"payload\": {\"protocol\": \"tcp\", \"field\": \"dport\"}}, "
            + "\"right\": \(random.pick([22, 80, 443]))}}"
        let ports = "{\"match\": {\"op\": \"==\", \"left\": {\"payload\": {\"protocol\": \"udp\", \"field\": \"dport\"}}, "
            + "\"right\": {\"set\": [53, {\"range\": [1000, 2000]}]}}}"
        let member = "{\"match\": {\"op\": \"==\", \"left\": {\"payload\": {\"protocol\": \"ip\", \"field\": \"saddr\"}}, \"right\": \"@s\"}}"
        let verdict = random.pick(["{\"drop\": null}", "{\"accept\": null}", "{\"drop\": null}"])
        switch random.int(0 ... (inJumpedChain ? 9 : 8)) {
        case 0: return [saddr(), verdict].joined(separator: ", ")
        case 1: return [dport, verdict].joined(separator: ", ")
        case 2: return [member, "{\"counter\": {\"packets\": 0, \"bytes\": 0}}", verdict].joined(separator: ", ")
        case 3: return [saddr("!="), dport, verdict].joined(separator: ", ")
        case 4: return [saddr(), "{\"counter\": {\"packets\": 0, \"bytes\": 0}}"].joined(separator: ", ")
        // The kernel refuses a chain that jumps to itself.
        case 5 where !inJumpedChain: return [saddr(), "{\"jump\": {\"target\": \"j\"}}"].joined(separator: ", ")
        case 5: return [saddr(), verdict].joined(separator: ", ")
        case 6: return [ports, verdict].joined(separator: ", ")
        case 7:
            return "{\"vmap\": {\"key\": {\"payload\": {\"protocol\": \"ip\", \"field\": \"daddr\"}}, \"data\": {\"set\": "
                + "[[\"10.9.0.1\", {\"drop\": null}], [\"10.9.0.2\", {\"accept\": null}]]}}}"
        case 8:
            // Rarely, a rule that hands every frame to nftables: what follows is unreachable.
            return random.chance(0.2) ? "{\"limit\": {\"rate\": 10, \"per\": \"second\"}}, {\"accept\": null}" : [saddr(), verdict].joined(separator: ", ")
        default: return [saddr(), "{\"return\": null}"].joined(separator: ", ")
        }
    }

    static func ruleObject(chain: String, handle: Int, _ statements: String) -> String {
        "{\"rule\": {\"family\": \"netdev\", \"table\": \"t\", \"chain\": \"\(chain)\", \"handle\": \(handle), \"expr\": [\(statements)]}}"
    }

    /// A random ruleset and the next free rule handle.
    static func ruleset(_ random: inout SeededRandom) throws -> (Ruleset, Int) {
        var objects = ["{\"table\": {\"family\": \"netdev\", \"name\": \"t\", \"handle\": 1}}",
                       "{\"set\": {\"family\": \"netdev\", \"name\": \"s\", \"table\": \"t\", \"type\": \"ipv4_addr\", \"handle\": 2, "
                           + "\"flags\": [\"interval\"], \"elem\": [{\"prefix\": {\"addr\": \"10.5.0.0\", \"len\": 16}}]}}"]
        var handle = 10
        let chains: [(String, String?, Int)] = [("b0", "xnt0", 0), ("b1", "xnt0", 10), ("o", "xnt9", 0), ("j", nil, 0)]
        for (index, (name, device, priority)) in chains.enumerated() {
            if let device {
                let policy = random.chance(0.3) ? "drop" : "accept"
                objects.append("{\"chain\": {\"family\": \"netdev\", \"table\": \"t\", \"name\": \"\(name)\", \"handle\": \(index + 3), "
                    + "\"type\": \"filter\", \"hook\": \"ingress\", \"prio\": \(priority), \"policy\": \"\(policy)\", \"dev\": \"\(device)\"}}")
            } else {
                objects.append("{\"chain\": {\"family\": \"netdev\", \"table\": \"t\", \"name\": \"\(name)\", \"handle\": \(index + 3)}}")
            }
            for _ in 0 ..< random.int(0 ... 6) {
                handle += 1
                objects.append(ruleObject(chain: name, handle: handle, statements(&random, inJumpedChain: name == "j")))
            }
        }
        let ruleset = try Ruleset(json: Array("{\"nftables\": [\(objects.joined(separator: ", "))]}".utf8))
        return (ruleset, handle + 1)
    }

    /// One random event, applied to `ruleset`.
    static func event(_ random: inout SeededRandom, _ ruleset: inout Ruleset, handle: inout Int) throws -> RulesetEvent {
        let line: String
        var place = RulePlace.last
        let kind = random.int(0 ... 9)
        if kind < 5 || ruleset.rules.isEmpty {
            let chain = random.pick(["b0", "b0", "b1", "j", "o"])
            let handles = ruleset.rules.filter { $0.chain == chain }.map(\.handle)
            place = random.pick([.first, .last])
            if let other = handles.randomElement(using: &random), random.chance(0.6) {
                place = random.pick([.after(handle: other), .before(handle: other)])
            }
            let rule = ruleObject(chain: chain, handle: handle, statements(&random, inJumpedChain: chain == "j"))
            line = "{\"add\": \(rule)}"
            handle += 1
        } else if kind < 8 {
            let rule = random.pick(ruleset.rules)
            line = "{\"delete\": \(ruleObject(chain: rule.chain, handle: rule.handle, "{\"accept\": null}"))}"
        } else {
            line = "{\"add\": {\"element\": {\"family\": \"netdev\", \"table\": \"t\", \"name\": \"s\", \"elem\": {\"set\": "
                + "[{\"prefix\": {\"addr\": \"10.\(random.int(10 ... 250)).0.0\", \"len\": 16}}]}}}}"
        }
        let event = try RulesetEvent(json: Array(line.utf8))
        #expect(ruleset.apply(event) { _ in place })
        return event
    }

    @Test(arguments: 0 ..< 200)
    func followingIsTranslatingAgain(seed: Int) throws {
        var random = SeededRandom(seed: UInt64(seed))
        var (ruleset, handle) = try Self.ruleset(&random)
        var offload = try HookOffload(ruleset: ruleset, device: "xnt0")
        for step in 0 ..< 12 {
            var events: [RulesetEvent] = []
            for _ in 0 ..< random.int(1 ... 3) { events.append(try Self.event(&random, &ruleset, handle: &handle)) }
            var next = offload
            guard let change = next.follow(events, in: ruleset) else {
                Issue.record("seed \(seed) step \(step): not followed")
                return
            }
            let whole = try HookOffload(ruleset: ruleset, device: "xnt0", firstPrio: offload.firstPrio)
            #expect(whole.rules == whole.rules.sorted { ($0.prio, $0.handle) < ($1.prio, $1.handle) }, "in order")
            let same = next.rules == whole.rules && next.reports == whole.reports && next.span == whole.span
                && whole.rules.allSatisfy { next.origin(prio: $0.prio, handle: $0.handle) == whole.origin(prio: $0.prio, handle: $0.handle) }
            #expect(same, "seed \(seed) step \(step): the translation")
            var stored = try RuleSet(offload.rules)
            try stored.apply(change)
            #expect(stored == (try RuleSet(whole.rules)), "seed \(seed) step \(step): the change")
            guard same else { return }
            offload = next
        }
    }

    /// A band at the top of the prios: a rule that would pass prio 65535 is not followed
    /// (a sync then places the band lower), and nothing wraps.
    @Test func theBandsEnd() throws {
        var random = SeededRandom(seed: 3)
        var (ruleset, handle) = try Self.ruleset(&random)
        let whole = try HookOffload(ruleset: ruleset, device: "xnt0")
        var offload = try HookOffload(ruleset: ruleset, device: "xnt0", firstPrio: UInt16(Int(UInt16.max) - whole.span + 1))
        let added = try RulesetEvent(json: Array("{\"add\": \(Self.ruleObject(chain: "b1", handle: handle, "{\"drop\": null}"))}".utf8))
        handle += 1
        #expect(ruleset.apply(added) { _ in .last })
        #expect(offload.follow([added], in: ruleset) == nil)
    }

    /// What a resumed walk cannot follow, and what it need not.
    @Test func eventsOutOfReach() throws {
        var random = SeededRandom(seed: 7)
        let (ruleset, _) = try Self.ruleset(&random)
        let offload = try HookOffload(ruleset: ruleset, device: "xnt0")
        var copy = offload
        let table = try RulesetEvent(json: Array("{\"add\": {\"table\": {\"family\": \"netdev\", \"name\": \"u\", \"handle\": 9}}}".utf8))
        #expect(copy.follow([table], in: ruleset) == nil, "a table")
        copy = offload
        let elsewhere = RulesetEvent.addElements(set: "other", table: Self.table, elements: [])
        #expect(copy.follow([elsewhere], in: ruleset)?.isEmpty == true, "a set no rule reads")
    }
}

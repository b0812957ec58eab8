import FlowRules
import Foundation
import Packets
import Testing

@Suite struct RuleSetTests {
    func ipRule(prio: UInt16 = 0, handle: UInt32 = 0, chain: UInt32 = 0, proto: UInt8 = 6) -> FlowRule {
        var match = FlowMatch()
        match.ipProto = proto
        return FlowRule(chain: chain, prio: prio, handle: handle, filterProtocol: .ip, match: match)
    }

    @Test func addAllocatesPrioBelowTheLowestAndTheLowestFreeHandle() throws {
        var set = RuleSet()
        #expect(try set.add(ipRule()).prio == 49152, "an empty chain starts at 0xc000")
        #expect(try set.add(ipRule(proto: 17)).prio == 49151, "then one below the lowest prio")
        #expect(try set.add(ipRule(chain: 1)).prio == 49152, "chains allocate separately")
        #expect(try set.add(ipRule(prio: 5, proto: 1)).handle == 1)
        #expect(try set.add(ipRule(prio: 5, handle: 3, proto: 2)).handle == 3)
        #expect(try set.add(ipRule(prio: 5, proto: 3)).handle == 2)
        #expect(try set.add(ipRule(prio: 5, proto: 4)).handle == 4)
        #expect(set.rules.map { [$0.chain, UInt32($0.prio), $0.handle] }
            == [[0, 5, 1], [0, 5, 2], [0, 5, 3], [0, 5, 4], [0, 49151, 1], [0, 49152, 1], [1, 49152, 1]])
    }

    @Test func addRefusesTakenHandlesSameMatchesAndMixedProtocols() throws {
        var set = try RuleSet([ipRule(prio: 1, handle: 1)])
        #expect(throws: RuleSetError.handleExists(chain: 0, prio: 1, handle: 1)) { try set.add(ipRule(prio: 1, handle: 1, proto: 17)) }
        #expect(throws: RuleSetError.sameMatchExists(chain: 0, prio: 1, handle: 1)) { try set.add(ipRule(prio: 1)) }
        var v6 = FlowRule(prio: 1, filterProtocol: .ipv6)
        #expect(throws: RuleSetError.protocolMismatch(chain: 0, prio: 1, held: .ip, given: .ipv6)) { try set.add(v6) }
        v6.prio = 2
        #expect(try set.add(v6).handle == 1)
        #expect(set.rules.count == 2)
    }

    @Test func sameMatchComparesMaskedKeys() throws {
        var a = FlowRule(prio: 1, filterProtocol: .ip)
        a.match.dstIP = .v4(Masked(IPv4Address("10.0.0.1")!, prefixLength: 24)!)
        var b = a
        b.match.dstIP = .v4(Masked(IPv4Address("10.0.0.200")!, prefixLength: 24)!)
        var set = try RuleSet([a])
        #expect(throws: RuleSetError.sameMatchExists(chain: 0, prio: 1, handle: 1)) { try set.add(b) }
        b.match.dstIP = .v4(Masked(IPv4Address("10.0.0.200")!, prefixLength: 25)!)
        #expect(try set.add(b).handle == 2)
    }

    @Test func noPrioLeftBelowOne() throws {
        var set = try RuleSet([ipRule(prio: 1)])
        #expect(throws: RuleSetError.noPrioLeft(chain: 0)) { try set.add(ipRule(proto: 17)) }
    }

    @Test func replaceReplacesOrAddsAndChangeNeedsAnExistingRule() throws {
        var set = try RuleSet([ipRule(prio: 1, handle: 1)])
        try set.replace(ipRule(prio: 1, handle: 1, proto: 17))
        #expect(set.rules == [ipRule(prio: 1, handle: 1, proto: 17)])
        try set.replace(ipRule(prio: 1, handle: 2, proto: 6))
        #expect(set.rules.count == 2)
        try set.change(ipRule(prio: 1, handle: 2, proto: 1))
        #expect(set.rules[1].match.ipProto == 1)
        #expect(throws: RuleSetError.notFound(RuleSelector(chain: 0, prio: 1, handle: 9))) { try set.change(ipRule(prio: 1, handle: 9)) }
        #expect(throws: RuleSetError.changeNeedsPrioAndHandle) { try set.change(ipRule()) }
        #expect(throws: RuleSetError.sameMatchExists(chain: 0, prio: 1, handle: 1)) { try set.change(ipRule(prio: 1, handle: 2, proto: 17)) }
        #expect(set.rules.map(\.match.ipProto) == [17, 1], "a failed operation changes nothing")
    }

    @Test func deleteByChainPrioProtocolAndHandle() throws {
        let rules = [ipRule(prio: 1, handle: 1), ipRule(prio: 1, handle: 2, proto: 17), ipRule(prio: 2, handle: 1),
                     ipRule(prio: 1, handle: 1, chain: 4)]
        var set = try RuleSet(rules)
        #expect(throws: RuleSetError.flushTakesNoProtocolOrHandle) { try set.delete(RuleSelector(handle: 1)) }
        #expect(throws: RuleSetError.notFound(RuleSelector(chain: 0, prio: 3))) { try set.delete(RuleSelector(prio: 3)) }
        #expect(throws: RuleSetError.protocolMismatch(chain: 0, prio: 1, held: .ip, given: .arp)) {
            try set.delete(RuleSelector(prio: 1, filterProtocol: .arp))
        }
        #expect(throws: RuleSetError.notFound(RuleSelector(chain: 0, prio: 1, handle: 7))) { try set.delete(RuleSelector(prio: 1, handle: 7)) }
        #expect(try set.delete(RuleSelector(prio: 1, filterProtocol: .ip, handle: 2)) == [rules[1]])
        #expect(try set.delete(RuleSelector(prio: 1)) == [rules[0]])
        #expect(try set.delete(RuleSelector()) == [rules[2]], "without prio: every rule of chain 0")
        #expect(set.rules == [rules[3]])
        #expect(try set.delete(RuleSelector(chain: 4)) == [rules[3]])
    }

    @Test func getAndShow() throws {
        let set = try RuleSet([ipRule(prio: 1, handle: 1), ipRule(prio: 2, handle: 1), ipRule(prio: 2, handle: 1, chain: 1)])
        #expect(try set.get(RuleSelector(prio: 2, filterProtocol: .ip, handle: 1)) == ipRule(prio: 2, handle: 1))
        #expect(throws: RuleSetError.notFound(RuleSelector(chain: 0, prio: 2, handle: 2))) {
            try set.get(RuleSelector(prio: 2, filterProtocol: .ip, handle: 2))
        }
        #expect(set.show(RuleSelector(prio: 2)).count == 2, "show without chain shows every chain")
        #expect(set.show(RuleSelector(chain: 0)).count == 2)
    }

    @Test func errorsSayWhatIsWrong() {
        #expect(RuleSetError.handleExists(chain: 0, prio: 1, handle: 1).description == "prio 1 handle 0x1 already exists")
        #expect(RuleSetError.protocolMismatch(chain: 2, prio: 1, held: .ip, given: .ipv6).description
            == "chain 2 prio 1 holds protocol ip rules; protocol ipv6 needs another prio")
        #expect(RuleSetError.notFound(RuleSelector(prio: 3)).description == "no rule at prio 3")
    }

    @Test func codableRoundTripKeepsTheRules() throws {
        let set = try RuleSet([ipRule(prio: 1, handle: 1), ipRule(prio: 2, handle: 5, proto: 17)])
        let data = try JSONEncoder().encode(set)
        #expect(try JSONDecoder().decode(RuleSet.self, from: data) == set)
    }
}


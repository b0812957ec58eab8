import FlowRules
import Packets
@testable import NFTables
import Testing

/// `nft -j list table netdev xnft` of this ruleset (nft 1.0.6), whose chain runs on two
/// devices; its JSON leaves the devices out, the text listing has them:
///
///     table netdev xnft {
///       set blocked { type ipv4_addr; flags interval; elements = { 10.1.0.0/16, 192.168.1.5 } }
///       chain other { ip daddr 10.9.9.9 return; tcp dport 22 drop; }
///       chain inbound { type filter hook ingress devices = { xnt0, xnt1 } priority -10; policy drop;
///         ip saddr 10.0.0.0/8 udp dport 53 counter drop
///         ip saddr @blocked drop
///         ip6 daddr 2001:db8::/32 tcp dport { 80, 443 } accept
///         ip saddr != 172.16.0.0/12 tcp sport 1000-2000 counter drop
///         meta l4proto icmp jump other
///         ip daddr vmap { 9.9.9.9 : drop, 8.8.8.8 : accept }
///         limit rate 10/second drop
///       }
///     }
let sampleJSON = """
    {"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, \
    {"table": {"family": "netdev", "name": "xnft", "handle": 108}}, \
    {"set": {"family": "netdev", "name": "blocked", "table": "xnft", "type": "ipv4_addr", "handle": 3, "flags": ["interval"], \
    "elem": [{"prefix": {"addr": "10.1.0.0", "len": 16}}, "192.168.1.5"]}}, \
    {"chain": {"family": "netdev", "table": "xnft", "name": "other", "handle": 1}}, \
    {"chain": {"family": "netdev", "table": "xnft", "name": "inbound", "handle": 2, "type": "filter", "hook": "ingress", \
    "prio": -10, "policy": "drop"}}, \
    {"rule": {"family": "netdev", "table": "xnft", "chain": "other", "handle": 4, "expr": [{"match": {"op": "==", \
    "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.9.9.9"}}, {"return": null}]}}, \
    {"rule": {"family": "netdev", "table": "xnft", "chain": "other", "handle": 5, "expr": [{"match": {"op": "==", \
    "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}, {"drop": null}]}}, \
    {"rule": {"family": "netdev", "table": "xnft", "chain": "inbound", "handle": 6, "expr": [{"match": {"op": "==", \
    "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.0.0.0", "len": 8}}}}, \
    {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}}, \
    {"counter": {"packets": 7, "bytes": 420}}, {"drop": null}]}}, \
    {"rule": {"family": "netdev", "table": "xnft", "chain": "inbound", "handle": 7, "expr": [{"match": {"op": "==", \
    "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@blocked"}}, {"drop": null}]}}, \
    {"rule": {"family": "netdev", "table": "xnft", "chain": "inbound", "handle": 9, "expr": [{"match": {"op": "==", \
    "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": {"prefix": {"addr": "2001:db8::", "len": 32}}}}, \
    {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [80, 443]}}}, \
    {"accept": null}]}}, \
    {"rule": {"family": "netdev", "table": "xnft", "chain": "inbound", "handle": 10, "expr": [{"match": {"op": "!=", \
    "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "172.16.0.0", "len": 12}}}}, \
    {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "sport"}}, "right": {"range": [1000, 2000]}}}, \
    {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}, \
    {"rule": {"family": "netdev", "table": "xnft", "chain": "inbound", "handle": 11, "expr": [{"match": {"op": "==", \
    "left": {"meta": {"key": "l4proto"}}, "right": "icmp"}}, {"jump": {"target": "other"}}]}}, \
    {"rule": {"family": "netdev", "table": "xnft", "chain": "inbound", "handle": 13, "expr": [{"vmap": {"key": \
    {"payload": {"protocol": "ip", "field": "daddr"}}, "data": {"set": [["8.8.8.8", {"accept": null}], \
    ["9.9.9.9", {"drop": null}]]}}}]}}, \
    {"rule": {"family": "netdev", "table": "xnft", "chain": "inbound", "handle": 14, "expr": [{"limit": {"rate": 10, \
    "burst": 5, "per": "second"}}, {"drop": null}]}}]}
    """

let sampleListing = """
    table netdev xnft {
    \tset blocked {
    \t\ttype ipv4_addr
    \t}
    \tchain other {
    \t}
    \tchain inbound {
    \t\ttype filter hook ingress devices = { xnt0, xnt1 } priority filter - 10; policy drop;
    \t}
    }
    """

@Suite struct RulesetReadingTests {
    @Test func readsTablesChainsSetsAndRules() throws {
        var ruleset = try Ruleset(json: Array(sampleJSON.utf8))
        ruleset.addDevices(fromListing: sampleListing)
        #expect(ruleset.tables.map(\.id) == [TableID(.netdev, "xnft")])
        #expect(ruleset.chains.map(\.name) == ["other", "inbound"])
        let base = try #require(ruleset.chains[1].base)
        #expect(base.hook == "ingress" && base.priority == -10 && base.policy == .drop)
        #expect(base.devices == ["xnt0", "xnt1"], "the devices come from the listing when the JSON has none")
        #expect(ruleset.sets.first?.elements.count == 2)
        #expect(ruleset.rules.map(\.handle) == [4, 5, 6, 7, 9, 10, 11, 13, 14])
        #expect(ruleset.rules[2].counted?.packets == 7)
        guard case .other("limit") = ruleset.rules.last?.statements.first else {
            Issue.record("limit should be read as a statement not offloaded")
            return
        }
    }

    @Test func devicesOfOneDeviceChains() throws {
        let json = #"{"nftables": [{"chain": {"family": "netdev", "table": "t", "name": "c", "handle": 1, "type": "filter", "hook": "ingress", "prio": 0, "policy": "accept"}}]}"#
        var ruleset = try Ruleset(json: Array(json.utf8))
        ruleset.addDevices(fromListing: "table netdev t {\n\tchain c {\n\t\ttype filter hook ingress device \"eth9\" priority filter; policy accept;\n")
        #expect(ruleset.chains.first?.base?.devices == ["eth9"])
    }

    /// nft 1.0.6 writes a table's name where its flags go; the text says which they are.
    @Test func dormantTablesAreLeftOut() throws {
        let json = """
            {"nftables": [{"table": {"family": "netdev", "name": "t", "handle": 5, "flags": "t"}}, \
            {"chain": {"family": "netdev", "table": "t", "name": "c", "handle": 1, "type": "filter", "hook": "ingress", \
            "prio": 0, "policy": "drop", "dev": "xnt0"}}]}
            """
        var ruleset = try Ruleset(json: Array(json.utf8))
        #expect(ruleset.tables[0].flagsUnread)
        ruleset.tables[0].isDormant = Ruleset.dormant(inListing: "table netdev t {\n\tflags dormant\n\n\tchain c {")
        #expect(ruleset.tables[0].isDormant)
        #expect(try HookOffload(ruleset: ruleset, device: "xnt0", firstPrio: 1).rules.isEmpty, "a dormant chain drops nothing")
        ruleset.tables[0].isDormant = Ruleset.dormant(inListing: "table netdev t {\n\tflags owner\n")
        #expect(try HookOffload(ruleset: ruleset, device: "xnt0", firstPrio: 1).rules.count == 3, "policy drop, and the VLAN guards")
    }

    @Test func notJSONNamesTheProblem() {
        #expect(throws: RulesetError.self) { try Ruleset(json: Array("table netdev t".utf8)) }
    }
}

@Suite struct PrefixCoverTests {
    /// Every range of 8-bit values: the prefixes cover it exactly, each aligned.
    @Test func coverEveryByteRangeExactly() {
        for low in 0 ... 255 {
            for high in low ... 255 {
                let prefixes = Masked.covering(UInt8(low), through: UInt8(high))
                var covered: [Int] = []
                for block in prefixes {
                    let start = block.value, length = block.prefixLength ?? -1
                    #expect(length >= 0, "a prefix")
                    let size = 1 << (8 - length)
                    #expect(Int(start) % size == 0)
                    covered += Array(Int(start) ..< Int(start) + size)
                }
                #expect(covered == Array(low ... high), "\(low)-\(high)")
            }
        }
    }
}

@Suite struct HookOffloadTests {
    func offload(_ device: String = "xnt0") throws -> HookOffload {
        var ruleset = try Ruleset(json: Array(sampleJSON.utf8))
        ruleset.addDevices(fromListing: sampleListing)
        return try HookOffload(ruleset: ruleset, device: device, firstPrio: 1)
    }

    func lines(_ offload: HookOffload) -> [String] { offload.rules.map { $0.batchLine(device: "D") } }

    /// The band starts past tc's first automatic prio, lower only when it needs the room,
    /// and moves with its origins.
    @Test func theBandFollowsTCsPrios() throws {
        var ruleset = try Ruleset(json: Array(sampleJSON.utf8))
        ruleset.addDevices(fromListing: sampleListing)
        let relative = try HookOffload(ruleset: ruleset, device: "xnt0", firstPrio: 1)
        var placed = try HookOffload(ruleset: ruleset, device: "xnt0")
        #expect(placed.firstPrio == 49153 && placed.span == relative.span)
        #expect(placed.rules.map { Int($0.prio) - 49152 } == relative.rules.map { Int($0.prio) })
        let last = try #require(relative.rules.last)
        #expect(placed.origin(prio: last.prio + 49152, handle: last.handle) == relative.origin(prio: last.prio, handle: last.handle))
        #expect(HookOffload.firstPrio(span: 20_000) == 45_536)
        try placed.place(from: UInt16(65536 - placed.span))
        #expect(placed.rules.last?.prio == 65535)
        #expect(throws: OffloadLimit.self) { try placed.place(from: UInt16(65537 - placed.span)) }
    }

    @Test func translatesTheSample() throws {
        let offload = try offload()
        #expect(offload.chains.map(\.name) == ["inbound"])
        let text = lines(offload)
        // Guards first: fragments (rules read IPv4 ports) and IPv6 extension headers (a
        // rule reads IPv6's protocol) to nftables; no rule of every protocol drops, so a
        // tagged frame meets no rule that could decide it.
        #expect(text.first == "filter add dev D ingress prio 1 handle 0x1 protocol ip flower ip_flags frag action pass")
        #expect(text.contains("filter add dev D ingress prio 2 handle 0x3 protocol ipv6 flower ip_proto 0x2c action pass"))
        #expect(!text.contains { $0.contains("802.1Q") })
        #expect(text.contains("filter add dev D ingress prio 8 handle 0x1 protocol ip flower ip_proto udp src_ip 10.0.0.0/8 dst_port 53 action drop"))
        // `!=`: a continue for the excluded prefix at a lower handle of the same prio.
        #expect(text.contains("filter add dev D ingress prio 11 handle 0x1 protocol ip flower src_ip 172.16.0.0/12 action continue"))
        #expect(text.contains("filter add dev D ingress prio 11 handle 0x2 protocol ip flower ip_proto tcp src_port 1000-2000 action drop"))
        // The jump inlines `other` under the jump's match: its return hands those frames
        // over; tcp dport 22 cannot be ICMP and becomes nothing.
        #expect(text.contains("filter add dev D ingress prio 12 handle 0x1 protocol ip flower ip_proto icmp dst_ip 10.9.9.9 action pass"))
        // The limit: every frame it might match (all) goes to nftables; the policy never runs in XDP.
        #expect(text.last == "filter add dev D ingress prio 15 handle 0x1 protocol all flower action pass")
        #expect(offload.origin(prio: 15, handle: 1)?.role == .handsOff)
        // Each rule's fate.
        let fates = Dictionary(uniqueKeysWithValues: offload.reports.map { ($0.rule.handle, $0.status) })
        #expect(fates[6] == .offloaded(.drop) && fates[9] == .offloaded(.accept))
        #expect(fates[14] == .notOffloaded("limit is not offloaded"))
        // The rules of the sample make a valid rule set.
        #expect(throws: Never.self) { try RuleSet(offload.rules) }
    }

    @Test func aChainOnAnotherDeviceIsNotThisOnes() throws {
        #expect(try offload("xnt9").rules.isEmpty)
        #expect(try offload("xnt1").chains.count == 1)
    }

    /// Builds a ruleset of netdev chains on `xnt0` from (name, priority, policy, rules) and
    /// regular chains, each rule's statements given as JSON.
    func ruleset(bases: [(String, Int, String, [String])], regular: [(String, [String])] = [], inet: Bool = false) throws -> Ruleset {
        let family = inet ? "inet" : "netdev"
        var objects = ["{\"table\": {\"family\": \"\(family)\", \"name\": \"t\", \"handle\": 1}}"]
        var handle = 100
        for (index, base) in bases.enumerated() {
            objects.append("{\"chain\": {\"family\": \"\(family)\", \"table\": \"t\", \"name\": \"\(base.0)\", \"handle\": \(index + 1), "
                + "\"type\": \"filter\", \"hook\": \"ingress\", \"prio\": \(base.1), \"policy\": \"\(base.2)\", \"dev\": \"xnt0\"}}")
            for rule in base.3 {
                handle += 1
                objects.append("{\"rule\": {\"family\": \"\(family)\", \"table\": \"t\", \"chain\": \"\(base.0)\", \"handle\": \(handle), \"expr\": [\(rule)]}}")
            }
        }
        for (index, chain) in regular.enumerated() {
            objects.append("{\"chain\": {\"family\": \"\(family)\", \"table\": \"t\", \"name\": \"\(chain.0)\", \"handle\": \(50 + index)}}")
            for rule in chain.1 {
                handle += 1
                objects.append("{\"rule\": {\"family\": \"\(family)\", \"table\": \"t\", \"chain\": \"\(chain.0)\", \"handle\": \(handle), \"expr\": [\(rule)]}}")
            }
        }
        return try Ruleset(json: Array("{\"nftables\": [\(objects.joined(separator: ", "))]}".utf8))
    }

    static let saddr10 = "{\"match\": {\"op\": \"==\", \"left\": {\"payload\": {\"protocol\": \"ip\", \"field\": \"saddr\"}}, \"right\": {\"prefix\": {\"addr\": \"10.0.0.0\", \"len\": 8}}}}"
    static let dport22 = "{\"match\": {\"op\": \"==\", \"left\": {\"payload\": {\"protocol\": \"tcp\", \"field\": \"dport\"}}, \"right\": 22}}"
    static let accept = "{\"accept\": null}"
    static let drop = "{\"drop\": null}"

    static let markSet = "{\"mangle\": {\"key\": {\"meta\": {\"key\": \"mark\"}}, \"value\": 5}}"

    /// `meta mark set` goes on in XDP: nftables sets the mark on what XDP passes. A
    /// header written is another matter: what the rules after it read changes.
    @Test func aMarkSetGoesOnInXDP() throws {
        let vmap = "{\"vmap\": {\"key\": {\"payload\": {\"protocol\": \"ip\", \"field\": \"saddr\"}}, "
            + "\"data\": {\"set\": [[\"10.0.0.1\", {\"accept\": null}]]}}}"
        let ruleset = try ruleset(bases: [("in", 0, "accept", ["\(Self.markSet)", "\(Self.markSet), \(Self.saddr10), \(Self.drop)",
                                                               "\(Self.markSet), \(vmap)",
                                                               "{\"mangle\": {\"key\": {\"meta\": {\"key\": \"priority\"}}, \"value\": 1}}"])])
        let offload = try HookOffload(ruleset: ruleset, device: "xnt0", firstPrio: 1)
        #expect(offload.reports.map(\.status) == [.offloaded(.continue), .offloaded(.drop), .offloadedMap([.accept]),
                                                  .notOffloaded("mangle is not offloaded")])
        #expect(lines(offload).contains("filter add dev D ingress prio 8 handle 0x1 protocol ip flower src_ip 10.0.0.0/8 action drop"))
    }

    @Test func acceptBeforeAnotherBaseChainGoesToNFTables() throws {
        let ruleset = try ruleset(bases: [("late", 10, "accept", ["\(Self.dport22), \(Self.drop)"]),
                                          ("early", -10, "accept", ["\(Self.saddr10), \(Self.accept)"])])
        let offload = try HookOffload(ruleset: ruleset, device: "xnt0", firstPrio: 1)
        #expect(offload.chains.map(\.name) == ["early", "late"], "by priority")
        let text = lines(offload).filter { !$0.contains("prio 1 ") && !$0.contains("prio 2 ") && !$0.contains("prio 3 ") && !$0.contains("prio 4 ") }
        #expect(text == [
            "filter add dev D ingress prio 8 handle 0x1 protocol ip flower src_ip 10.0.0.0/8 action pass",
            "filter add dev D ingress prio 9 handle 0x1 protocol ip flower ip_proto tcp dst_port 22 action drop",
            "filter add dev D ingress prio 10 handle 0x1 protocol ipv6 flower ip_proto tcp dst_port 22 action drop",
        ])
        #expect(offload.origin(prio: 8, handle: 1)?.role == .handsOff, "the later chain may still drop it")
        #expect(offload.reports.first?.status == .notOffloaded("accept before the base chains after it"))
    }

    @Test func gotoEndsWithThePolicyAndInetSeesIPOnly() throws {
        let ruleset = try ruleset(bases: [("in", 0, "drop", ["\(Self.saddr10), {\"goto\": {\"target\": \"sub\"}}"])],
                                  regular: [("sub", ["\(Self.dport22), \(Self.accept)"])], inet: true)
        let text = lines(try HookOffload(ruleset: ruleset, device: "xnt0", firstPrio: 1)).filter { !$0.contains("prio 1 ") && !$0.contains("prio 2 ") && !$0.contains("prio 3 ") && !$0.contains("prio 4 ") }
        #expect(text == [
            "filter add dev D ingress prio 8 handle 0x1 protocol ip flower ip_proto tcp src_ip 10.0.0.0/8 dst_port 22 action pass",
            // What sub leaves undecided gets the base chain's policy, and goes no further.
            "filter add dev D ingress prio 9 handle 0x1 protocol ip flower src_ip 10.0.0.0/8 action drop",
            // The policy: an inet chain drops IPv4 and IPv6 only.
            "filter add dev D ingress prio 10 handle 0x1 protocol ip flower action drop",
            "filter add dev D ingress prio 11 handle 0x1 protocol ipv6 flower action drop",
        ])
    }

    @Test func aDropOfEveryProtocolHandsTaggedFramesToNFTables() throws {
        let ruleset = try ruleset(bases: [("in", 0, "drop", ["\(Self.saddr10), \(Self.accept)"])])
        #expect(lines(try HookOffload(ruleset: ruleset, device: "xnt0", firstPrio: 1)) == [
            "filter add dev D ingress prio 1 handle 0x1 protocol 802.1Q flower action pass",
            "filter add dev D ingress prio 2 handle 0x1 protocol 802.1ad flower action pass",
            "filter add dev D ingress prio 8 handle 0x1 protocol ip flower src_ip 10.0.0.0/8 action pass",
            "filter add dev D ingress prio 9 handle 0x1 protocol all flower action drop",
        ])
    }

    /// `meta l4proto != tcp accept` needs an IP frame: UDP over IPv4 is accepted, not
    /// left to a later drop.
    @Test func aNegatedProtocolKeepsItsFamilies() throws {
        let l4 = "{\"match\": {\"op\": \"!=\", \"left\": {\"meta\": {\"key\": \"l4proto\"}}, \"right\": \"tcp\"}}"
        let text = lines(try HookOffload(ruleset: ruleset(bases: [("in", 0, "drop", ["\(l4), \(Self.accept)"])]), device: "xnt0", firstPrio: 1))
        #expect(text.contains("filter add dev D ingress prio 8 handle 0x1 protocol ip flower ip_proto tcp action continue"))
        #expect(text.contains("filter add dev D ingress prio 8 handle 0x2 protocol ip flower action pass"))
        #expect(text.contains("filter add dev D ingress prio 9 handle 0x2 protocol ipv6 flower action pass"))
    }

    /// A goto below a jump returns what it leaves undecided to the jump's chain: those
    /// frames go to nftables, not to the base chain's policy.
    @Test func aGotoBelowAJumpDoesNotTakeThePolicy() throws {
        let ruleset = try ruleset(bases: [("in", 0, "drop", ["{\"jump\": {\"target\": \"a\"}}", "\(Self.saddr10), \(Self.accept)"])],
                                  regular: [("a", ["\(Self.dport22), {\"goto\": {\"target\": \"b\"}}"]), ("b", [])])
        let text = lines(try HookOffload(ruleset: ruleset, device: "xnt0", firstPrio: 1))
        #expect(!text.contains { $0.contains("dst_port 22 action drop") }, "\(text)")
        #expect(text.contains("filter add dev D ingress prio 8 handle 0x1 protocol ip flower ip_proto tcp dst_port 22 action pass"))
        #expect(text.contains("filter add dev D ingress prio 10 handle 0x1 protocol ip flower src_ip 10.0.0.0/8 action pass"))
    }

    /// What the kernel changes before the hook, or what changes without an event, goes to
    /// nftables: a VLAN EtherType (the tag is off by then), a set the packet path fills.
    @Test func whatXDPCannotSeeGoesToNFTables() throws {
        let vlan = "{\"match\": {\"op\": \"==\", \"left\": {\"meta\": {\"key\": \"protocol\"}}, \"right\": \"vlan\"}}"
        let dynamic = "{\"match\": {\"op\": \"==\", \"left\": {\"payload\": {\"protocol\": \"ip\", \"field\": \"saddr\"}}, \"right\": \"@seen\"}}"
        let tagged = try HookOffload(ruleset: ruleset(bases: [("in", 0, "accept", ["\(vlan), \(Self.drop)"])]), device: "xnt0", firstPrio: 1)
        #expect(tagged.reports.map(\.status) == [.notOffloaded("the kernel takes a VLAN tag off before the hook")])
        var filled = try ruleset(bases: [("in", 0, "accept", ["\(dynamic), \(Self.drop)"])])
        filled.sets.append(NamedSet(table: TableID(.netdev, "t"), name: "seen", isMap: false, elements: [], changesUnseen: true))
        #expect(try HookOffload(ruleset: filled, device: "xnt0", firstPrio: 1).reports.map(\.status)
            == [.notOffloaded("@seen changes without events (dynamic or timeout)")])
        // And the JSON of such a set says so.
        let json = #"{"nftables": [{"set": {"family": "netdev", "name": "s", "table": "t", "type": "ipv4_addr", "handle": 3, "flags": ["dynamic"]}}]}"#
        #expect(try Ruleset(json: Array(json.utf8)).sets.first?.changesUnseen == true)
    }

    @Test func rulesAfterACatchAllHandOffAreUnreachable() throws {
        let ruleset = try ruleset(bases: [("in", 0, "accept", ["{\"counter\": {\"packets\": 0, \"bytes\": 0}}",
                                                               "\(Self.dport22), \(Self.drop)"])])
        let offload = try HookOffload(ruleset: ruleset, device: "xnt0", firstPrio: 1)
        #expect(offload.reports.map(\.status) == [
            .notOffloaded("a counter without a verdict: nftables counts its frames"),
            .unreachable(Rule.ID(table: TableID(.netdev, "t"), chain: "in", handle: 101)),
        ])
        #expect(lines(offload) == ["filter add dev D ingress prio 8 handle 0x1 protocol all flower action pass"])
    }
}

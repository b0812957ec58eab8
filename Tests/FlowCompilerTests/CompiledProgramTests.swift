import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Packets
import Testing

let hostMAC = MACAddress(rawValue: 0x0200_0000_0001)
let routerMAC = MACAddress(rawValue: 0x0200_0000_00fe)
let client = IPv4Address(rawValue: 0xc000_020a)  // 192.0.2.10
let server = IPv4Address(rawValue: 0xc633_6401)  // 198.51.100.1
let client6 = IPv6Address(rawValue: 0x2001_0db8_0000_0000_0000_0000_0000_0010)
let server6 = IPv6Address(rawValue: 0x2001_0db8_0001_0000_0000_0000_0000_0001)

func ether(dst: MACAddress = routerMAC, src: MACAddress = hostMAC, type: UInt16? = nil) -> FrameBuilder {
    FrameBuilder().ethernet(dst: dst, src: src, type: type)
}

func udp4(dst: UInt16 = 53, src: UInt16 = 40000, to: IPv4Address = server) -> FrameBuilder {
    ether().ipv4(src: client, dst: to).udp(src: src, dst: dst)
}

/// Each feature of the compiler against the reference classifier, on frames chosen to
/// sit on its edges. The property tests cover random combinations.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct CompiledProgramTests {
    func check(_ lines: [String], _ frames: [FrameBuilder], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let failures = try disagreements(ruleSet(lines), frames.map(\.bytes))
        #expect(failures == [], sourceLocation: sourceLocation)
    }

    @Test func oneDestinationPortRule() throws {
        try check(["filter add dev xft0 protocol ip flower ip_proto udp dst_port 53 action drop"], [
            udp4().padded(), udp4(dst: 54).padded(),
            ether().ipv4(src: client, dst: server).tcp(src: 1, dst: 53).padded(),
            ether().vlan(id: 5).ipv4(src: client, dst: server).udp(src: 1, dst: 53).padded(),
            udp4().truncated(to: 14 + 20 + 7), udp4().truncated(to: 14 + 19),
        ])
    }

    @Test func prefixesMasksAndTheLowestHandleWithinAPrio() throws {
        try check([
            "filter add dev xft0 protocol ip prio 1 handle 3 flower dst_ip 198.51.100.0/24 action drop",
            "filter add dev xft0 protocol ip prio 1 handle 2 flower src_ip 192.0.2.0/28 action pass",
            "filter add dev xft0 protocol ip prio 1 handle 1 flower dst_mac 02:00:00:00:00:00/ff:ff:ff:00:00:00 action continue",
            "filter add dev xft0 protocol ip prio 2 flower src_mac 02:00:00:00:00:01 ip_ttl 64/0xf0 action drop",
        ], [
            udp4(), udp4(to: IPv4Address(rawValue: 0xc633_6501)),
            ether(dst: MACAddress(rawValue: 0x0300_0000_0001)).ipv4(src: client, dst: server).udp(src: 1, dst: 2),
            ether(dst: MACAddress(rawValue: 0x0300_0000_0001)).ipv4(src: IPv4Address(rawValue: 1), dst: server),
            ether(dst: MACAddress(rawValue: 0x0300_0000_0001)).ipv4(src: IPv4Address(rawValue: 1), dst: IPv4Address(rawValue: 2)),
        ])
    }

    @Test func portRangesExpandIntoMaskedEntries() throws {
        let lines = ["filter add dev xft0 protocol ip prio 1 flower ip_proto tcp dst_port 1000-2047 src_port 7-9 action drop",
                     "filter add dev xft0 protocol ip prio 1 flower ip_proto tcp dst_port 1024 action pass"]
        let ports: [UInt16] = [999, 1000, 1001, 1023, 1024, 1025, 2046, 2047, 2048]
        let frames = ports.flatMap { dst in
            [6, 7, 9, 10].map { src in ether().ipv4(src: client, dst: server).tcp(src: src, dst: dst) }
        }
        try check(lines, frames)
        let plan = try Plan(ruleSet(lines), device: testDevice)
        #expect(plan.entryCount > 2, "a range rule becomes several masked entries")
    }

    @Test func vlanKeysAndVLANActions() throws {
        let tagged = ether().vlan(id: 100, priority: 3).ipv4(src: client, dst: server).udp(src: 1, dst: 53)
        try check([
            "filter add dev xft0 protocol 802.1Q prio 1 flower vlan_id 100 vlan_prio 3 vlan_ethtype ip action vlan pop pipe action continue",
            "filter add dev xft0 protocol ip prio 2 flower ip_proto udp dst_port 53 action vlan push id 7 priority 5 protocol 802.1ad pipe action pass",
            "filter add dev xft0 protocol 802.1ad prio 3 flower vlan_id 9 vlan_ethtype 802.1Q cvlan_id 10 action vlan modify id 11 pipe action drop",
        ], [
            tagged, udp4(), ether().vlan(id: 100, priority: 2).ipv4(src: client, dst: server),
            ether().vlan(id: 9, tpid: EtherType.qinq).vlan(id: 10).ipv4(src: client, dst: server),
            ether().vlan(id: 9, tpid: EtherType.qinq).vlan(id: 10, dei: true).udp(src: 1, dst: 2),
            ether().vlan(id: 9, tpid: EtherType.qinq).truncated(to: 16),
        ])
    }

    @Test func macRewritesAndMarks() throws {
        try check([
            "filter add dev xft0 protocol ip prio 1 flower ip_proto udp action pedit ex munge eth dst set 02:aa:bb:cc:dd:ee munge eth src set 02:11:22:33:44:55 pipe action skbedit mark 0x10/0xf0 pipe action continue",
            "filter add dev xft0 protocol ip prio 2 flower ip_proto udp dst_port 53 action skbedit mark 0x3 pipe action skbmod set dmac 02:00:00:00:00:99",
        ], [udp4(), udp4(dst: 54), ether().ipv4(src: client, dst: server).tcp(src: 1, dst: 53)])
    }

    @Test func redirectAndTransmit() throws {
        try check([
            "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 53 action mirred egress redirect dev xftother",
            "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 54 action mirred egress redirect dev xft0",
        ], [udp4(), udp4(dst: 54), udp4(dst: 55)])
    }

    @Test func mirrorsGoOutByBroadcastWithTheirRedirectOrDrop() throws {
        try check([
            "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 53 action mirred egress mirror dev xftm1 pipe action mirred egress redirect dev xftr",
            "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 54 action vlan push id 5 pipe action mirred egress mirror dev xftm1 pipe action mirred egress mirror dev xftm2 drop",
            "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 55 action mirred egress mirror dev xft0 pipe action drop",
        ], [udp4(), udp4(dst: 54), udp4(dst: 55), udp4(dst: 56)])
        let refused = try ruleSet(["filter add dev xft0 protocol ip flower action mirred egress mirror dev xftm1 pipe action pass"])
        #expect(throws: CompileError.self) { try Plan(refused, device: testDevice) }
    }

    @Test func ipv6ExtensionHeadersFragmentsAndICMPv6() throws {
        let v6 = { (headers: [IPv6ExtensionHeader]) in ether().ipv6(src: client6, dst: server6, extensionHeaders: headers) }
        try check([
            "filter add dev xft0 protocol ipv6 prio 1 flower ip_proto udp dst_port 547 action drop",
            "filter add dev xft0 protocol ipv6 prio 2 flower ip_proto icmpv6 type 128 code 0 action drop",
            "filter add dev xft0 protocol ipv6 prio 3 flower ip_flags frag/firstfrag action pass",
            "filter add dev xft0 protocol ipv6 prio 4 flower dst_ip 2001:db8:1::/48 action drop",
        ], [
            v6([]).udp(src: 546, dst: 547), v6([.hopByHop(), .routing(), .destinationOptions()]).udp(src: 1, dst: 547),
            v6([.hopByHop(), .hopByHop(), .hopByHop(), .hopByHop()]).udp(src: 1, dst: 547),
            v6([.hopByHop(), .hopByHop(), .hopByHop(), .hopByHop(), .hopByHop()]).udp(src: 1, dst: 547),
            v6([.fragment(offset: 0, moreFragments: true)]).udp(src: 1, dst: 547),
            v6([.fragment(offset: 8, moreFragments: false)]).udp(src: 1, dst: 547),
            v6([.hopByHop(lengthUnits: 2)]).truncated(to: 14 + 40 + 10),
            v6([]).icmpv6(type: 128, code: 0), v6([]).icmpv6(type: 129, code: 0), v6([]).tcp(src: 1, dst: 2),
            ether().ipv6(src: client6, dst: IPv6Address(rawValue: 5)).udp(src: 1, dst: 2),
        ])
    }

    /// `continue` in tables loops back to the parser, and each way through it must
    /// leave one state: a VLAN rule going on to an IPv6 rule that walks extension
    /// headers took the verifier past its million instructions (found by
    /// DifferentialPropertyTests, seed 0xf4875dceb92018ab).
    @Test func continueInTablesOverIPv6ExtensionHeadersLoads() throws {
        let rules = try ruleSet([
            "filter add dev xft0 ingress prio 3 protocol 802.1Q flower vlan_id 2794 action pass action skbedit mark 0/0xeec61ace continue action drop",
            "filter add dev xft0 ingress prio 49152 protocol ipv6 flower indev xft1 ip_proto udp dst_port 1/0xff00 action skbedit mark 7/0xff action police rate 8bit burst 100b conform-exceed pipe/pass action mirred egress redirect dev xft0 action vlan modify id 2794 priority 0 protocol 802.1ad continue",
        ])
        let v6 = { (headers: [IPv6ExtensionHeader]) in ether().ipv6(src: client6, dst: server6, extensionHeaders: headers) }
        let frames = [
            v6([]).udp(src: 1, dst: 1), v6([.hopByHop(), .routing(), .fragment(offset: 0, moreFragments: true)]).udp(src: 1, dst: 2),
            v6([.hopByHop(lengthUnits: 255), .destinationOptions()]).udp(src: 1, dst: 1),
            ether().vlan(id: 2794).ipv6(src: client6, dst: server6).udp(src: 1, dst: 1), ether().vlan(id: 2795).ipv4(src: client, dst: server),
        ]
        #expect(try disagreements(rules, frames.map(\.bytes), inlineLimit: 0) == [])
    }

    @Test func ipv4FragmentsOptionsAndMalformedHeaders() throws {
        let ip = { (offset: UInt16, more: Bool) in ether().ipv4(src: client, dst: server, fragmentOffset: offset, moreFragments: more) }
        try check([
            "filter add dev xft0 protocol ip prio 1 flower ip_proto tcp dst_port 80 tcp_flags 0x2/0x12 action drop",
            "filter add dev xft0 protocol ip prio 2 flower ip_flags nofrag action pass",
            "filter add dev xft0 protocol ip prio 3 flower ip_proto icmp type 8 action drop",
            "filter add dev xft0 prio 4 flower dst_mac 02:00:00:00:00:fe action drop",
        ], [
            ip(0, false).tcp(src: 1, dst: 80), ip(0, true).tcp(src: 1, dst: 80), ip(3, false).tcp(src: 1, dst: 80),
            ether().ipv4(src: client, dst: server, options: [1, 1, 1, 1, 1, 1, 1, 1]).tcp(src: 1, dst: 80),
            ether().ipv4(src: client, dst: server, ihl: 4).tcp(src: 1, dst: 80),
            ether().ipv4(src: client, dst: server).tcp(src: 1, dst: 80, dataOffset: 4),
            ether().ipv4(src: client, dst: server).tcp(src: 1, dst: 80, flags: TCPFlag.syn | TCPFlag.ack),
            ether().ipv4(src: client, dst: server).icmp(type: 8, code: 0), ether().ipv4(src: client, dst: server).icmp(type: 0, code: 0),
            ether().vlan(id: 1).vlan(id: 2).vlan(id: 3).ipv4(src: client, dst: server),
        ])
    }

    @Test func arpAndOtherEtherTypes() throws {
        let arp = { (op: UInt16) in
            ether(dst: MACAddress(rawValue: 0xffff_ffff_ffff)).arp(op: op, sha: hostMAC, spa: client, tha: MACAddress(rawValue: 0), tpa: server)
        }
        try check([
            "filter add dev xft0 protocol arp prio 1 flower arp_op request arp_tip 198.51.100.1 arp_sha 02:00:00:00:00:01 action drop",
            "filter add dev xft0 protocol 0x88b5 prio 2 flower action drop",
        ], [arp(1), arp(2), arp(3), ether(type: 0x88b5).payload([1, 2, 3]), ether(type: 0x88b6).payload([1])])
    }

    @Test func policeTakesFromATokenBucket() throws {
        // 1 byte/s refills nothing during the test; a 200-byte burst lets two 64-byte frames through.
        try check(["filter add dev xft0 protocol ip prio 1 flower ip_proto udp action police rate 8bit burst 200 conform-exceed pipe/drop action pass"],
                  Array(repeating: udp4().padded(to: 64), count: 5))
    }

    /// A test run binds no AF_XDP socket: xsk finds none and its control decides, pass
    /// unless written, the unbound path counting the frame.
    @Test func xskWithoutASocketFallsBackToItsControl() throws {
        try check([
            "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 4789 action xsk",
            "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 53 action xsk pipe action skbedit mark 9",
            "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 54 action xsk drop",
            "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 55 action xsk continue",
            "filter add dev xft0 protocol ip prio 2 flower ip_proto udp action vlan push id 5",
        ], [udp4(dst: 4789), udp4(dst: 53), udp4(dst: 54), udp4(dst: 55), udp4(dst: 56)])
        let plan = try Plan(ruleSet(["filter add dev xft0 protocol ip flower ip_proto udp action xsk"]), device: testDevice)
        let datapath = try Datapath(plan: plan, options: CompileOptions(recordMatches: true), targetIndex: { _ in 1 })
        for _ in 0 ..< 3 { _ = try datapath.trace(udp4().padded(to: 100).bytes) }
        let unbound = try PerCPUArray<RuleCounters>(try #require(datapath.maps[FlowMaps.xskUnbound]))
        let counted = try #require(try unbound.get(0)).reduce(RuleCounters()) {
            RuleCounters(packets: $0.packets + $1.packets, bytes: $0.bytes + $1.bytes)
        }
        #expect(counted.packets == 3 && counted.bytes == 300)
    }

    /// At the inline limit with every shared map a program can use (redirect, police, xsk,
    /// the trace log) and the prefilter: 64 maps, the kernel's most, and it loads.
    @Test func everyMapKindAtTheInlineLimitLoads() throws {
        let actions = ["action mirred egress redirect dev xftr", "action police rate 8bit burst 1500 conform-exceed drop/pass",
                       "action xsk", "action drop"]
        let lines = (1 ... Plan.defaultInlineLimit).map { prio in
            "filter add dev xft0 protocol ip prio \(prio) flower dst_ip 198.51.0.0/\(16 + prio % 17) "
                + actions[min(prio - 1, actions.count - 1)]
        }
        let plan = try Plan(ruleSet(lines), device: testDevice)
        #expect(plan.tables == nil && plan.prefilter != nil)
        let datapath = try Datapath(plan: plan, options: CompileOptions(recordMatches: true), targetIndex: { _ in 1 })
        #expect(datapath.maps.count == 64)
        try check(lines, [udp4(), udp4(to: IPv4Address(rawValue: 0xc633_0001)), udp4(to: IPv4Address(rawValue: 1))])
    }

    @Test func matchAllAndAnEmptyRuleSet() throws {
        try check(["filter add dev xft0 prio 7 flower action drop"], [udp4(), ether(type: 0x1234)])
        try check([], [udp4(), ether().vlan(id: 1).vlan(id: 2).vlan(id: 3)])
    }

    /// Many subtables in one prio, varied actions and continue: the verifier must be able
    /// to prune, or it gives up at a million instructions (found by the property tests).
    @Test func manySubtablesInOnePrioWithVariedActionsLoad() throws {
        let actions = ["action drop", "action continue", "action pedit ex munge eth dst set 02:00:00:00:00:99 continue",
                       "action vlan push id 5 pipe action pass", "action skbedit mark 7 continue",
                       "action police rate 8bit burst 1500 conform-exceed continue/drop"]
        let lines = (1 ... 40).map { length in
            "filter add dev xft0 protocol ip prio 1 flower dst_mac 02:00:00:00:00:fe/\(length) src_ip 192.0.2.0/\(length % 25 + 8) "
                + actions[length % actions.count]
        } + ["filter add dev xft0 protocol ip prio 2 flower ip_proto udp dst_port 53 action drop"]
        try check(lines, [udp4(), udp4(dst: 54), ether().ipv4(src: server, dst: client)])
    }

    /// One subtable past the inline limit the plan turns to tables, which classify alike.
    @Test func pastTheInlineLimitTheRulesGoToTables() throws {
        func rules(_ count: Int) -> [String] {
            (1 ... count).map { "filter add dev xft0 protocol ip prio \($0) flower ip_proto udp dst_port \($0) action drop" }
        }
        let limit = Plan.defaultInlineLimit
        #expect(try Plan(ruleSet(rules(limit)), device: testDevice).tables == nil)
        let past = try Plan(ruleSet(rules(limit + 1)), device: testDevice)
        #expect(past.tables != nil && past.subtables.isEmpty && past.prefilter == nil)
        let frames = [1, 2, limit, limit + 1, 1000].map { udp4(dst: UInt16($0)) }
        try check(rules(limit), frames)
        try check(rules(limit + 1), frames)
    }

    /// Fields the rules' checks compare and no table masks (TOS, TTL, IP and TCP flags, a
    /// VLAN priority, a port masked in part) put rules that differ only in them into one
    /// table, each still deciding only its own frames, the first by rank in the chain.
    @Test func rulesThatDifferInCheckedOnlyFieldsShareATable() throws {
        let lines = [
            "ip_tos 0xb8/0xfc", "ip_ttl 1", "ip_flags frag", "tcp_flags 0x2/0x12", "src_port 0/0xfc00",
            "dst_port 0x100/0xff00", "ip_ttl 64/0xc0",
        ].enumerated().map { index, match in
            "filter add dev xft0 protocol 802.1Q prio \(index + 1) flower vlan_id 7 vlan_prio \(index % 2) "
                + "vlan_ethtype ip src_ip 192.0.2.0/24 ip_proto tcp \(match) action \(index % 2 == 0 ? "drop" : "pass")"
        }
        let rules = try ruleSet(lines)
        #expect(try Plan(rules, device: testDevice, inlineLimit: 0).tables?.tables.count == 1)
        // TOS, TTL, TCP flags, source port, destination port.
        let headers: [(UInt8, UInt8, UInt16, UInt16, UInt16)] = [
            (0, 64, TCPFlag.syn, 1000, 80), (0xb8, 64, TCPFlag.ack, 1000, 80), (0, 1, TCPFlag.syn, 2000, 80),
            (0, 64, TCPFlag.syn | TCPFlag.ack, 80, 2000), (0, 64, TCPFlag.ack, 2000, 0x1ff), (0, 70, TCPFlag.ack, 2000, 80),
            (0, 200, TCPFlag.fin, 2000, 80),
        ]
        var frames: [[UInt8]] = []
        for (tos, ttl, flags, sport, dport) in headers {
            for priority: UInt8 in [0, 1] {
                frames.append(ether().vlan(id: 7, priority: priority)
                    .ipv4(src: IPv4Address(rawValue: 0xc000_0205), dst: server, tos: tos, ttl: ttl)
                    .tcp(src: sport, dst: dport, flags: flags).bytes)
            }
        }
        #expect(try disagreements(rules, frames, inlineLimit: 0) == [])
    }

    /// 320 filtered tables (each pair of address prefix lengths, with or without a
    /// protocol and whole ports, with or without each MAC address) take six filter words,
    /// on a stack that leaves `hit` and its calls room (`continue` makes it a function,
    /// and the test's trace build gives it one more call): the frames of tables in every
    /// word, and frames no rule has, classify as the reference does.
    @Test func filteredTablesPastTheFirstWordAreFound() throws {
        var lines: [String] = [], frames: [[UInt8]] = []
        let ports = [(nil, nil), (1000, nil), (nil, 53), (1000, 53)] as [(Int?, Int?)]
        let macs = [(false, false), (true, false), (false, true), (true, true)]
        for (source, destination) in [8, 16, 24, 32].flatMap({ source in [8, 16, 24, 32].map { (source, $0) } }) {
            for (proto, (dstMAC, srcMAC)) in [nil, "tcp", "udp"].flatMap({ proto in macs.map { (proto, $0) } }) {
                for (sport, dport) in proto == nil ? [(nil, nil)] : ports {
                    let index = lines.count
                    let src = IPv4Address(rawValue: 0x0a00_0000 | UInt32(index) << 8 | 1)
                    let dst = IPv4Address(rawValue: 0xc0a8_0000 | UInt32(index) << 8 | 2)
                    var match = (dstMAC ? "dst_mac \(routerMAC) " : "") + (srcMAC ? "src_mac \(hostMAC) " : "")
                        + "src_ip \(src)/\(source) dst_ip \(dst)/\(destination) "
                    if let proto { match += "ip_proto \(proto) " }
                    if let sport { match += "src_port \(sport) " }
                    if let dport { match += "dst_port \(dport) " }
                    let action = index % 3 == 0 ? "continue" : index % 3 == 1 ? "drop" : "pass"
                    lines.append("filter add dev xft0 protocol ip prio \(1000 - index) flower \(match)action \(action)")
                    let frame = ether().ipv4(src: src, dst: dst)
                    let (sent, received) = (UInt16(sport ?? 7), UInt16(dport ?? 9))
                    frames.append((proto == "udp" ? frame.udp(src: sent, dst: received) : frame.tcp(src: sent, dst: received)).bytes)
                    frames.append(ether().ipv4(src: src, dst: IPv4Address(rawValue: dst.rawValue ^ 0xff00_0000))
                        .udp(src: 1000, dst: 53).bytes)
                }
            }
        }
        let rules = try ruleSet(lines)
        let tables = try #require(try Plan(rules, device: testDevice, inlineLimit: 0).tables)
        #expect(tables.filterWords == TableFilter.maxWords)
        #expect(tables.filtered.count == 320 && tables.list.isEmpty)
        #expect(try disagreements(rules, frames, inlineLimit: 0) == [])
    }

    /// Two rules whose keys' fingerprints collide (one table, one bucket, one chain by
    /// rank) each decide only their own frames. The pair is searched for: keys that
    /// differ only in word 5 (both IPv4 addresses) collide where that word's part of the
    /// fingerprint does, the other words' parts being the same.
    @Test func rulesWhoseBucketsCollideShareAChainAndStillDecideAlone() throws {
        let multiplier = UInt64(bitPattern: Int64(Bucket.multiplierImmediate(KeyField.srcIPv4.offset / 8)))
        func part(_ source: UInt32, _ destination: UInt32) -> UInt32 {
            // The word as a little-endian load of the record's bytes reads it.
            let hash = (UInt64(source.byteSwapped) | UInt64(destination.byteSwapped) << 32) &* multiplier
            return UInt32(truncatingIfNeeded: hash >> 32 ^ hash)
        }
        var rng = SeededRandom(seed: 0xc0111de)
        var seen: [UInt32: (UInt32, UInt32)] = [:]
        var pair: ((UInt32, UInt32), (UInt32, UInt32))?
        while pair == nil {
            let addresses = (0x0a00_0000 | UInt32(rng.int(0 ... 0xff_ffff)), 0xc0a8_0000 | UInt32(rng.int(0 ... 0xffff)))
            let fingerprint = part(addresses.0, addresses.1)
            if let other = seen[fingerprint], other != addresses { pair = (other, addresses) }
            seen[fingerprint] = addresses
        }
        let addresses = [pair!.0, pair!.1].map { (IPv4Address(rawValue: $0.0), IPv4Address(rawValue: $0.1)) }
        let lines = addresses.enumerated().map { index, pair in
            "filter add dev xft0 protocol ip prio \(index + 1) flower src_ip \(pair.0) dst_ip \(pair.1) "
                + "action \(index == 0 ? "drop" : "pass")"
        } + ["filter add dev xft0 protocol ip prio 3 flower dst_ip \(addresses[1].1) action drop"]
        let rules = try ruleSet(lines)
        let tables = try #require(try Plan(rules, device: testDevice, inlineLimit: 0).tables)
        let buckets = Dictionary(grouping: tables.rules.values, by: \.prio).mapValues { $0.map(\.bucket) }
        #expect(buckets[1] == buckets[2], "the two keys were found to collide")
        #expect(tables.tables.count == 2)
        let frames = [addresses[0], addresses[1], (addresses[0].0, addresses[1].1), (addresses[1].0, addresses[0].1)]
            .map { ether().ipv4(src: $0.0, dst: $0.1).udp(src: 1, dst: 2).bytes }
        #expect(try disagreements(rules, frames, inlineLimit: 0) == [])
    }

    /// Buckets of two tables whose places in the heads array collide share one chain by
    /// rank; each rule still decides only its own frames, whichever table the frame's
    /// probe came from. The pair is searched for among host addresses, each table's
    /// index and the plan's places as the plan has them.
    @Test func bucketsOfTwoTablesAtOnePlaceShareAChainAndStillDecideAlone() throws {
        func lines(_ source: IPv4Address, _ destination: IPv4Address) -> [String] {
            ["filter add dev xft0 protocol ip prio 1 flower src_ip \(source) action drop",
             "filter add dev xft0 protocol ip prio 2 flower dst_ip \(destination) action pass",
             "filter add dev xft0 protocol ip prio 3 flower ip_proto udp action drop"]
        }
        var rng = SeededRandom(seed: 0x91ace)
        var found: (RuleSet, IPv4Address, IPv4Address)?
        for _ in 0 ..< 20_000 where found == nil {
            let source = IPv4Address(rawValue: 0x0a00_0000 | UInt32(rng.int(0 ... 0xff_ffff)))
            let destination = IPv4Address(rawValue: 0xc0a8_0000 | UInt32(rng.int(0 ... 0xffff)))
            let rules = try ruleSet(lines(source, destination))
            let tables = try #require(try Plan(rules, device: testDevice, inlineLimit: 0).tables)
            if tables.chains.values.contains(where: { $0.count == 2 }) { found = (rules, source, destination) }
        }
        let (rules, source, destination) = try #require(found, "two buckets were found at one place")
        let other = (IPv4Address(rawValue: 0x0b00_0001), IPv4Address(rawValue: 0xc6_3364_01))
        let frames = [(source, destination), (source, other.1), (other.0, destination), other]
            .map { ether().ipv4(src: $0.0, dst: $0.1).udp(src: 1, dst: 2).bytes }
        #expect(try disagreements(rules, frames, inlineLimit: 0) == [])
    }

    /// Hash subtables keyed on dst_ip are looked up only where the prefilter says they
    /// hold entries; others (src_ip only, direct) always are; the lowest handle still wins.
    @Test func thePrefilterSkipsOnlySubtablesThatCannotHit() throws {
        let lines = [
            "filter add dev xft0 protocol ip prio 1 handle 5 flower dst_ip 198.51.100.0/24 action drop",
            "filter add dev xft0 protocol ip prio 1 handle 4 flower dst_ip 198.51.100.1 ip_proto udp dst_port 53 action pass",
            "filter add dev xft0 protocol ip prio 1 handle 6 flower src_ip 192.0.2.0/24 dst_ip 198.51.0.0/16 action pass",
            "filter add dev xft0 protocol ip prio 2 flower dst_ip 10.1.2.3 action drop",
            "filter add dev xft0 protocol ip prio 3 flower src_ip 192.0.2.10 action drop",
            "filter add dev xft0 protocol ip prio 4 flower dst_ip 10.1.0.0/17 action pass",
            "filter add dev xft0 protocol ip prio 5 flower ip_proto udp dst_port 9 action drop",
        ]
        let plan = try Plan(ruleSet(lines), device: testDevice)
        #expect(plan.prefilter?.offset == KeyField.dstIPv4.offset)
        #expect(plan.prefilter?.bits.count == 5, "the dst_ip subtables: three in prio 1, one each in 2 and 4")
        let addresses: [UInt32] = [0xc633_6401, 0xc633_6402, 0xc633_6501, 0x0a01_0203, 0x0a01_0204, 0x0a01_8000,
                                   0x0a02_0203, 0xc000_0202]
        try check(lines, addresses.flatMap { address in
            [udp4(to: IPv4Address(rawValue: address)), udp4(dst: 9, to: IPv4Address(rawValue: address)),
             ether().ipv4(src: IPv4Address(rawValue: 1), dst: IPv4Address(rawValue: address)).tcp(src: 1, dst: 53)]
        })
    }

    /// With 58 filtered subtables the bits go past 31, where jump immediates (sign-
    /// extended) cannot reach; at 59 the rules go to tables, which have no prefilter.
    @Test func thePrefilterReachesEverySubtableBit() throws {
        func rules(_ count: Int) -> [String] {
            (1 ... count).map { "filter add dev xft0 protocol ip prio \($0) flower dst_ip 10.\($0).0.1 action drop" }
        }
        let plan = try Plan(ruleSet(rules(Plan.maxSubtables - 1)), device: testDevice)
        #expect(plan.prefilter?.bits.count == Plan.maxSubtables - 1)
        #expect(try Plan(ruleSet(rules(Plan.maxSubtables)), device: testDevice).prefilter == nil)
        try check(rules(Plan.maxSubtables - 1), [1, 30, 31, 32, 33, 57, 58, 59].flatMap { prio in
            [udp4(to: IPv4Address(rawValue: 0x0a00_0001 | UInt32(prio) << 16)),
             udp4(to: IPv4Address(rawValue: 0x0a00_0002 | UInt32(prio) << 16))]
        })
    }
}

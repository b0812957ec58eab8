import FlowRules
import Packets
import Testing

let hostMAC = mac("02:00:00:00:00:01")
let routerMAC = mac("02:00:00:00:00:fe")
let client = ipv4("192.0.2.10")
let server = ipv4("198.51.100.1")
let client6 = ipv6("2001:db8::10")
let server6 = ipv6("2001:db8:1::1")

func ether(dst: MACAddress = routerMAC, src: MACAddress = hostMAC) -> FrameBuilder {
    FrameBuilder().ethernet(dst: dst, src: src)
}

func udp4(dst: UInt16 = 53, src: UInt16 = 40000, from: IPv4Address = client, to: IPv4Address = server) -> [UInt8] {
    ether().ipv4(src: from, dst: to).udp(src: src, dst: dst).padded().bytes
}

/// The classifier over rules written as `filter add` lines on eth0.
func classifier(_ lines: [String]) throws -> ReferenceClassifier {
    var set = RuleSet()
    for line in lines {
        guard case .add(let rule) = try parse(line).operation else { throw ParseError(index: 0, token: nil, message: line) }
        try set.add(rule)
    }
    return try ReferenceClassifier(rules: set, device: "eth0")
}

/// Whether a single rule's flower keys match the frame (its action is drop).
func hits(_ flower: String, protocol proto: String = "ip", _ frame: [UInt8]) throws -> Bool {
    var c = try classifier(["filter add dev eth0 protocol \(proto) flower \(flower) action drop"])
    return c.classify(frame, now: 0).verdict == .drop
}

@Suite struct ClassifierMatchTests {
    @Test func macAddressesExactPrefixAndMask() throws {
        let frame = udp4()
        #expect(try hits("dst_mac 02:00:00:00:00:fe", frame))
        #expect(try !hits("dst_mac 02:00:00:00:00:ff", frame))
        #expect(try hits("dst_mac 02:00:00:00:00:00/40", frame))
        #expect(try !hits("dst_mac 03:00:00:00:00:00/8", frame))
        #expect(try hits("src_mac 00:00:00:00:00:00/0", frame), "/0 matches every address")
        #expect(try hits("src_mac 00:00:00:00:00:01/00:00:00:00:00:ff", frame))
        #expect(try !hits("src_mac 00:00:00:00:00:02/00:00:00:00:00:ff", frame))
    }

    @Test func ipv4PrefixesAtTheirBoundaries() throws {
        let inside = udp4(to: ipv4("10.0.0.255"))
        let outside = udp4(to: ipv4("10.0.1.0"))
        #expect(try hits("dst_ip 10.0.0.0/24", inside))
        #expect(try !hits("dst_ip 10.0.0.0/24", outside))
        #expect(try hits("dst_ip 0.0.0.0/0", outside), "/0 matches every IPv4 address")
        #expect(try hits("dst_ip 10.0.1.0/32", outside))
        #expect(try !hits("dst_ip 10.0.1.1/32", outside))
        #expect(try hits("src_ip 192.0.2.0/255.255.255.0", inside))
    }

    @Test func ipv6PrefixesAndFamilies() throws {
        let frame = ether().ipv6(src: client6, dst: server6).udp(src: 1000, dst: 53).bytes
        #expect(try hits("dst_ip 2001:db8:1::1/128", protocol: "ipv6", frame))
        #expect(try !hits("dst_ip 2001:db8:1::2/128", protocol: "ipv6", frame))
        #expect(try hits("dst_ip ::/0", protocol: "ipv6", frame))
        #expect(try hits("src_ip 2001:db8::/64", protocol: "ipv6", frame))
        #expect(try !hits("src_ip 2001:db8:0:1::/64", protocol: "ipv6", frame))
        #expect(try !hits("dst_ip ::/0", protocol: "ipv6", udp4()), "an IPv4 frame is not protocol ipv6")
    }

    @Test func tosAndTTLUnderMasks() throws {
        let frame = ether().ipv4(src: client, dst: server, tos: 0xb8, ttl: 1).udp(src: 1, dst: 2).bytes
        #expect(try hits("ip_tos 0xb8", frame))
        #expect(try hits("ip_tos 0xb8/0xfc", frame))
        #expect(try hits("ip_tos 0xbb/0xfc", frame))
        #expect(try !hits("ip_tos 0xb4/0xfc", frame))
        #expect(try hits("ip_ttl 1", frame))
        #expect(try !hits("ip_ttl 2", frame))
        #expect(try hits("ip_ttl 0/0xfe", frame))
        let v6 = ether().ipv6(src: client6, dst: server6, trafficClass: 0x28, hopLimit: 255).udp(src: 1, dst: 2).bytes
        #expect(try hits("ip_tos 0x28 ip_ttl 255", protocol: "ipv6", v6))
    }

    @Test func portRangesAtTheirEdgesAndMasks() throws {
        for (port, inside) in [(99, false), (100, true), (150, true), (200, true), (201, false)] as [(UInt16, Bool)] {
            #expect(try hits("ip_proto udp dst_port 100-200", udp4(dst: port)) == inside, "port \(port)")
            #expect(try hits("ip_proto udp src_port 100-200", udp4(src: port)) == inside, "port \(port)")
        }
        #expect(try hits("ip_proto udp dst_port 1-65535", udp4(dst: 65535)))
        #expect(try hits("ip_proto udp dst_port 0x1000/0xf000", udp4(dst: 0x1fff)))
        #expect(try !hits("ip_proto udp dst_port 0x1000/0xf000", udp4(dst: 0x2000)))
        #expect(try hits("ip_proto udp dst_port 0/0xffff", udp4(dst: 0)))
        #expect(try !hits("ip_proto tcp dst_port 53", udp4(dst: 53)), "ip_proto is compared too")
        let sctp = ether().ipv4(src: client, dst: server).sctp(src: 5000, dst: 38412).bytes
        #expect(try hits("ip_proto sctp dst_port 38412 src_port 5000", sctp))
        let tcp6 = ether().ipv6(src: client6, dst: server6).tcp(src: 1, dst: 443).bytes
        #expect(try hits("ip_proto tcp dst_port 443", protocol: "ipv6", tcp6))
    }

    @Test func tcpFlagsUnderMasks() throws {
        let syn = ether().ipv4(src: client, dst: server).tcp(src: 1, dst: 80, flags: TCPFlag.syn).bytes
        let synAck = ether().ipv4(src: client, dst: server).tcp(src: 1, dst: 80, flags: TCPFlag.syn | TCPFlag.ack).bytes
        #expect(try hits("ip_proto tcp tcp_flags 0x2/0x12", syn))
        #expect(try !hits("ip_proto tcp tcp_flags 0x2/0x12", synAck))
        #expect(try hits("ip_proto tcp tcp_flags 0x12", synAck))
        #expect(try !hits("ip_proto tcp tcp_flags 0x2", synAck), "without a mask all 12 bits are compared")
    }

    @Test func icmpAndICMPv6TypeAndCode() throws {
        let echo = ether().ipv4(src: client, dst: server).icmp(type: 8, code: 0).bytes
        #expect(try hits("ip_proto icmp type 8 code 0", echo))
        #expect(try !hits("ip_proto icmp type 0", echo))
        #expect(try hits("ip_proto icmp type 0/240", echo))
        let ns = ether().ipv6(src: client6, dst: server6, hopLimit: 255).icmpv6(type: 135, code: 0).bytes
        #expect(try hits("ip_proto icmpv6 type 135", protocol: "ipv6", ns))
        #expect(try !hits("ip_proto icmpv6 type 136", protocol: "ipv6", ns))
    }

    @Test func arpKeys() throws {
        let request = FrameBuilder().ethernet(dst: mac("ff:ff:ff:ff:ff:ff"), src: hostMAC)
            .arp(op: 1, sha: hostMAC, spa: ipv4("10.1.1.5"), tha: mac("00:00:00:00:00:00"), tpa: ipv4("10.1.1.1")).padded().bytes
        #expect(try hits("arp_op request arp_sip 10.1.1.0/24 arp_tip 10.1.1.1", protocol: "arp", request))
        #expect(try !hits("arp_op reply", protocol: "arp", request))
        #expect(try hits("arp_op 0/254", protocol: "arp", request))
        #expect(try hits("arp_sha 02:00:00:00:00:01 arp_tha 00:00:00:00:00:00/0", protocol: "arp", request))
        #expect(try !hits("arp_tip 10.1.1.2", protocol: "arp", request))
        #expect(try !hits("arp_op request", protocol: "arp", udp4()))
    }

    @Test func vlanTagsOuterAndInner() throws {
        let tagged = ether().vlan(id: 100, priority: 3).ipv4(src: client, dst: server).udp(src: 1, dst: 53).bytes
        #expect(try hits("vlan_id 100 vlan_prio 3 vlan_ethtype ipv4 ip_proto udp dst_port 53", protocol: "802.1Q", tagged))
        #expect(try !hits("vlan_id 101", protocol: "802.1Q", tagged))
        #expect(try !hits("vlan_id 100", protocol: "802.1ad", tagged), "the TPID is the protocol")
        #expect(try !hits("ip_proto udp", protocol: "ip", tagged), "protocol ip is an untagged frame")
        #expect(try !hits("vlan_id 100", protocol: "802.1Q", udp4()))

        let qinq = ether().vlan(id: 10, tpid: EtherType.qinq).vlan(id: 20, priority: 7)
            .ipv6(src: client6, dst: server6).tcp(src: 1, dst: 22).bytes
        let both = "vlan_id 10 vlan_ethtype 802.1Q cvlan_id 20 cvlan_prio 7 cvlan_ethtype ipv6 ip_proto tcp dst_port 22"
        #expect(try hits(both, protocol: "802.1ad", qinq))
        #expect(try !hits("vlan_ethtype 802.1Q cvlan_id 21", protocol: "802.1ad", qinq))
        #expect(try !hits("vlan_ethtype 802.1ad", protocol: "802.1ad", qinq), "the inner TPID is 802.1Q")
        #expect(try hits("vlan_ethtype ipv6", protocol: "802.1ad", qinq), "vlan_ethtype names the EtherType after the tags")
        #expect(try hits("vlan_id 20", protocol: "802.1Q",
                         ether().vlan(id: 20).vlan(id: 30).ipv4(src: client, dst: server).bytes))
    }

    @Test func ipFlagsAndFragments() throws {
        let whole = udp4()
        let first = ether().ipv4(src: client, dst: server, moreFragments: true).udp(src: 1, dst: 53).padded().bytes
        let later = ether().ipv4(src: client, dst: server, proto: IPProtocolNumber.udp, fragmentOffset: 10)
            .payload([0, 1, 0, 53, 0, 8, 0, 0]).bytes
        for (flags, expected) in [("frag", [false, true, true]), ("nofrag", [true, false, false]),
                                  ("firstfrag", [false, true, false]), ("nofirstfrag", [true, false, true]),
                                  ("frag/nofirstfrag", [false, false, true])] {
            #expect(try [whole, first, later].map { try hits("ip_flags \(flags)", $0) } == expected, "\(flags)")
        }
        #expect(try hits("ip_proto udp dst_port 53", first), "the first fragment has ports")
        #expect(try !hits("ip_proto udp dst_port 53", later), "later fragments have none")
        #expect(try hits("ip_proto udp", later))

        let v6Later = ether().ipv6(src: client6, dst: server6, extensionHeaders: [.fragment(offset: 3, moreFragments: false)],
                                   nextHeader: IPProtocolNumber.udp).payload([0, 0, 0, 0]).bytes
        #expect(try hits("ip_flags frag/nofirstfrag ip_proto udp", protocol: "ipv6", v6Later))
        #expect(try !hits("ip_proto udp dst_port 0/0", protocol: "ipv6", v6Later))
    }

    @Test func truncationAtEveryHeaderBoundaryNeverMatchesAMissingKey() throws {
        let full = ether().vlan(id: 7).ipv4(src: client, dst: server, options: [1, 1, 1, 1])
            .tcp(src: 1234, dst: 80, flags: TCPFlag.syn).bytes
        var portRule = try classifier(["filter add dev eth0 protocol 802.1Q flower vlan_ethtype ipv4 ip_proto tcp dst_port 80 action drop"])
        var protoRule = try classifier(["filter add dev eth0 protocol 802.1Q flower vlan_ethtype ipv4 ip_proto tcp action drop"])
        var vlanRule = try classifier(["filter add dev eth0 protocol 802.1Q flower vlan_id 7 action drop"])
        // The dissector needs an IPv4 header's fixed 20 bytes, not its options, for the IPv4 keys.
        let ipv4FixedEnd = 14 + 4 + 20, tcpEnd = 14 + 4 + 24 + 20
        for length in 0 ... full.count {
            let frame = Array(full.prefix(length))
            #expect((portRule.classify(frame, now: 0).verdict == .drop) == (length >= tcpEnd), "length \(length)")
            #expect((protoRule.classify(frame, now: 0).verdict == .drop) == (length >= ipv4FixedEnd), "length \(length)")
            #expect((vlanRule.classify(frame, now: 0).verdict == .drop) == (length >= 18), "length \(length)")
        }
    }

    @Test func indevIsTheIngressDevice() throws {
        #expect(try hits("indev eth0", protocol: "all", udp4()))
        #expect(try !hits("indev eth1", protocol: "all", udp4()))
    }
}

@Suite struct ClassifierOrderAndActionTests {
    @Test func xskTakesTheFrameOnlyWhereASocketIsBound() throws {
        var c = try classifier([
            "filter add dev eth0 prio 1 protocol ip flower ip_proto udp dst_port 4789 action xsk",
            "filter add dev eth0 prio 2 protocol ip flower ip_proto udp dst_port 53 action xsk pipe action skbedit mark 9",
            "filter add dev eth0 prio 3 protocol ip flower ip_proto udp dst_port 54 action xsk drop",
        ])
        let vxlan = udp4(dst: 4789)
        #expect(c.classify(vxlan, now: 0).verdict == .pass, "no socket: to the stack")
        #expect(c.classify(vxlan, now: 0).xskUnbound == 1)
        let piped = c.classify(udp4(dst: 53), now: 0)
        #expect(piped.verdict == .pass && piped.mark == 9, "no socket: the control (pipe) goes on")
        #expect(c.classify(udp4(dst: 54), now: 0).verdict == .drop)
        c.boundQueues = [1]
        #expect(c.classify(vxlan, now: 0, queue: 0).verdict == .pass, "a socket on another queue does not count")
        let taken = c.classify(vxlan, now: 0, queue: 1)
        #expect(taken.verdict == .xsk(queue: 1))
        #expect(taken.xskUnbound == 0)
        #expect(c.classify(udp4(dst: 53), now: 0, queue: 1).mark == nil, "the frame went to the socket before the mark")
    }

    @Test func lowestPrioThenLowestHandleWins() throws {
        var c = try classifier([
            "filter add dev eth0 prio 20 protocol ip flower ip_proto udp action drop",
            "filter add dev eth0 prio 10 handle 2 protocol ip flower dst_ip 198.51.100.0/24 action pass",
            "filter add dev eth0 prio 10 handle 1 protocol ip flower dst_ip 198.51.100.1 action mirred egress redirect dev eth2",
        ])
        let result = c.classify(udp4(), now: 0)
        #expect(result.verdict == .redirect("eth2"))
        #expect(result.matchedRules.map { [$0.prio, UInt16($0.handle)] } == [[10, 1]])
        #expect(c.classify(udp4(to: ipv4("198.51.100.2")), now: 0).verdict == .pass)
        #expect(c.classify(udp4(to: ipv4("203.0.113.1")), now: 0).verdict == .drop)
        #expect(c.classify(ether().ipv4(src: client, dst: ipv4("203.0.113.1")).tcp(src: 1, dst: 2).bytes, now: 0).verdict == .pass,
                "no rule matches: pass")
    }

    @Test func continueGoesOnWithTheNextPrioAndSeesTheEditedFrame() throws {
        var c = try classifier([
            "filter add dev eth0 prio 1 handle 1 protocol 802.1Q flower vlan_id 5 action vlan pop action skbedit mark 0x10/0xf0 continue",
            "filter add dev eth0 prio 1 handle 2 protocol 802.1Q flower action drop",
            "filter add dev eth0 prio 2 protocol ip flower ip_proto udp action skbedit mark 3/0x0f pipe",
        ])
        let tagged = ether().vlan(id: 5).ipv4(src: client, dst: server).udp(src: 1, dst: 2).bytes
        let result = c.classify(tagged, now: 0)
        #expect(result.matchedRules.map(\.prio) == [1, 2], "handle 2 of prio 1 is skipped")
        #expect(result.verdict == .pass, "the last action piped: pass")
        #expect(result.mark == 0x13)
        #expect(result.frame == ether().ipv4(src: client, dst: server).udp(src: 1, dst: 2).bytes)
    }

    @Test func ruleWithoutActionsPassesAndStops() throws {
        var c = try classifier(["filter add dev eth0 prio 1 protocol ip flower", "filter add dev eth0 prio 2 flower action drop"])
        #expect(c.classify(udp4(), now: 0).verdict == .pass)
        #expect(c.classify(udp4(), now: 0).matchedRules.count == 1)
    }

    @Test func redirectToTheIngressDeviceIsTX() throws {
        var c = try classifier(["filter add dev eth0 flower action pedit ex munge eth dst set 02:00:00:00:00:01 munge eth src set 02:00:00:00:00:fe pipe action mirred egress redirect dev eth0"])
        let result = c.classify(udp4(), now: 0)
        #expect(result.verdict == .tx)
        #expect(result.frame == ether(dst: hostMAC, src: routerMAC).ipv4(src: client, dst: server).udp(src: 40000, dst: 53).padded().bytes)
    }

    @Test func peditsDefaultControlPassStopsTheActionList() throws {
        var c = try classifier(["filter add dev eth0 flower action skbmod set smac 02:00:00:00:00:aa action pedit ex munge eth dst set 02:00:00:00:00:bb action drop"])
        let result = c.classify(udp4(), now: 0)
        #expect(result.verdict == .pass, "pedit's default control is pass")
        #expect(result.frame == ether(dst: mac("02:00:00:00:00:bb"), src: mac("02:00:00:00:00:aa")).ipv4(src: client, dst: server).udp(src: 40000, dst: 53).padded().bytes)
    }

    @Test func vlanPushPopAndModifyEditTheBytes() throws {
        let plain = ether().ipv4(src: client, dst: server).udp(src: 1, dst: 2).bytes
        var push = try classifier(["filter add dev eth0 flower action vlan push id 100 priority 5 protocol 802.1ad"])
        #expect(push.classify(plain, now: 0).frame
            == ether().vlan(id: 100, priority: 5, tpid: EtherType.qinq).ipv4(src: client, dst: server).udp(src: 1, dst: 2).bytes)

        let tagged = ether().vlan(id: 100, priority: 5, tpid: EtherType.qinq).ipv4(src: client, dst: server).udp(src: 1, dst: 2).bytes
        var modify = try classifier(["filter add dev eth0 flower action vlan modify id 200"])
        #expect(modify.classify(tagged, now: 0).frame
            == ether().vlan(id: 200, priority: 5).ipv4(src: client, dst: server).udp(src: 1, dst: 2).bytes,
                "modify keeps the priority and sets the TPID to 802.1Q unless told")
        #expect(modify.classify(plain, now: 0).frame == plain, "modify leaves an untagged frame alone")

        var pop = try classifier(["filter add dev eth0 flower action vlan pop"])
        #expect(pop.classify(tagged, now: 0).frame == plain)
        #expect(pop.classify(plain, now: 0) == {
            var expected = Classification(verdict: .pass, frame: plain)
            expected.matchedRules = pop.rules
            return expected
        }())
    }

    @Test func anEditTheFrameIsTooShortForAborts() throws {
        var c = try classifier(["filter add dev eth0 flower action vlan push id 1 action drop"])
        #expect(c.classify([1, 2, 3], now: 0).verdict == .aborted)
        var pop = try classifier(["filter add dev eth0 flower action vlan pop"])
        let truncatedTag = Array(ether().vlan(id: 1).ipv4(src: client, dst: server).bytes.prefix(16))
        #expect(pop.classify(truncatedTag, now: 0).verdict == .aborted)
    }

    @Test func policeIsATokenBucketOnTheCallersClock() throws {
        // 1000 bytes per second, 200 bytes deep; frames of 100 bytes.
        var c = try classifier(["filter add dev eth0 protocol ip flower action police rate 8kbit burst 200 conform-exceed drop/pass"])
        let frame = ether().ipv4(src: client, dst: server).udp(src: 1, dst: 2).padded(to: 100).bytes
        let second: UInt64 = 1_000_000_000
        #expect(c.classify(frame, now: 5 * second).verdict == .pass)
        #expect(c.classify(frame, now: 5 * second).verdict == .pass)
        #expect(c.classify(frame, now: 5 * second).verdict == .drop, "the bucket is empty")
        #expect(c.classify(frame, now: 5 * second + second / 10 - 1).verdict == .drop, "99.999999 bytes back")
        #expect(c.classify(frame, now: 5 * second + second / 10).verdict == .pass, "100 bytes back after 0.1 s")
        #expect(c.classify(frame, now: 60 * second).verdict == .pass)
        #expect(c.classify(frame, now: 60 * second).verdict == .pass)
        #expect(c.classify(frame, now: 60 * second).verdict == .drop, "never more than the burst")
    }

    @Test func framesWithUndeterminedKeysPassUnmatched() throws {
        var c = try classifier(["filter add dev eth0 protocol ip flower dst_ip 10.0.0.2 action pass",
                                "filter add dev eth0 flower action drop"])
        let tooDeep = ether().vlan(id: 1).vlan(id: 2).vlan(id: 3).ipv4(src: client, dst: server).bytes
        let result = c.classify(tooDeep, now: 0)
        #expect(result.verdict == .pass)
        #expect(result.unclassifiable == .vlanTooDeep)
        #expect(result.matchedRules.isEmpty)
    }

    @Test func dissectionFailuresInLayersNoRuleReadsDoNotMatter() throws {
        var c = try classifier(["filter add dev eth0 protocol ip flower ip_proto udp dst_port 53 action pass",
                                "filter add dev eth0 flower action drop"])
        // IPv6 with more extension headers than walked: no rule reads IPv6.
        let deep = ether().ipv6(src: IPv6Address(rawValue: 1), dst: IPv6Address(rawValue: 2),
                                extensionHeaders: Array(repeating: .hopByHop(), count: 5)).udp(src: 1, dst: 53).bytes
        let result = c.classify(deep, now: 0)
        #expect(result.unclassifiable == nil)
        #expect(result.verdict == .drop)
        // A TCP header with data offset 4 under IPv4: the port rule reads IPv4 transport.
        let badTCP = ether().ipv4(src: client, dst: server).tcp(src: 1, dst: 53, dataOffset: 4).bytes
        #expect(c.classify(badTCP, now: 0).unclassifiable == .malformedHeader)
        #expect(c.classify(badTCP, now: 0).verdict == .pass)
    }

    @Test func rulesXDPCannotRunAreRefusedWithTheirReasons() throws {
        for (line, limitation) in [
            ("filter add dev eth0 flower action mirred egress mirror dev eth1", XDPLimitation.mirror(action: 1)),
            ("filter add dev eth0 flower action drop action mirred ingress redirect dev eth1", .mirredIngress(action: 2)),
            ("filter add dev eth0 flower action goto chain 1", .control(.gotoChain(1), action: 1)),
            ("filter add dev eth0 flower action police rate 1mbit burst 1k", .policeExceed(.reclassify, action: 1)),
            ("filter add dev eth0 flower action police rate 1mbit burst 1k conform-exceed trap", .policeExceed(.trap, action: 1)),
            ("filter add dev eth0 chain 1 flower action drop", .chain(1)),
        ] {
            #expect(throws: UnsupportedRule.self, "\(line)") { try classifier([line]) }
            #expect(try rule(line).xdpLimitations.contains(limitation), "\(line)")
        }
        #expect(try rule("filter add dev eth0 flower action mirred egress redirect dev eth1 action continue").xdpLimitations.isEmpty)
        // The refusal names the default the operator never typed, and what to write.
        #expect(XDPLimitation.policeExceed(.reclassify, action: 1).description.contains(
            "tc's default exceed action when conform-exceed is not given"))
        #expect(XDPLimitation.policeExceed(.reclassify, action: 1).description.contains("add conform-exceed drop"))
    }
}

@Suite struct PoliceExtremesTests {
    @Test func hugeRatesAndGapsDoNotOverflow() throws {
        var c = try classifier(["filter add dev eth0 flower action police rate 100tbit burst 3g conform-exceed drop/pass"])
        #expect(c.classify(udp4(), now: 0).verdict == .pass)
        #expect(c.classify(udp4(), now: .max).verdict == .pass)
    }
}

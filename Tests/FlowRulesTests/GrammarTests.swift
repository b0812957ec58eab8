import FlowRules
import Packets
import Testing

/// Parses a command written as one line (words split on spaces).
func parse(_ line: String) throws(ParseError) -> FilterCommand {
    try FilterCommand.parse(line.split(separator: " ").map(String.init))
}

/// The rule of an add command.
func rule(_ line: String) throws -> FlowRule {
    guard case .add(let rule) = try parse(line).operation else { throw ParseError(index: 0, token: nil, message: "not add") }
    return rule
}

func mac(_ text: String) -> MACAddress { MACAddress(text)! }
func ipv4(_ text: String) -> IPv4Address { IPv4Address(text)! }
func ipv6(_ text: String) -> IPv6Address { IPv6Address(text)! }

@Suite struct GrammarTests {
    // MARK: The filter line

    @Test func filterLineTakesItsWordsInAnyOrderAndTcPrefixes() throws {
        let a = try parse("filter add dev eth0 ingress prio 7 handle 0x10 protocol ip chain 2 flower")
        let b = try parse("filter add handle 16 chain 2 prot ipv4 dev eth0 pref 7 ingress flower")
        let c = try parse("f a dev eth0 parent ffff: chain 2 priority 0x7 handle 020 protocol 0x800 flower")
        #expect(a == b)
        #expect(a == c)
        #expect(a == FilterCommand(device: "eth0", operation: .add(
            FlowRule(chain: 2, prio: 7, handle: 16, filterProtocol: .ip))))
    }

    @Test func addDefaultsToProtocolAllAndUnallocatedPrioAndHandle() throws {
        #expect(try rule("filter add dev eth0 flower") == FlowRule(filterProtocol: .all))
    }

    @Test func protocolNamesAreCaseInsensitiveAndNumbersBaseZero() throws {
        #expect(try rule("filter add dev eth0 protocol 802.1q flower").filterProtocol == .vlan)
        #expect(try rule("filter add dev eth0 protocol 802.1AD flower").filterProtocol == .qinq)
        #expect(try rule("filter add dev eth0 protocol 0x88cc flower").filterProtocol.rawValue == 0x88cc)
        #expect(try rule("filter add dev eth0 protocol 2048 flower").filterProtocol == .ip)
    }

    @Test func deleteGetAndShowTakeSelectors() throws {
        #expect(try parse("filter del dev eth0").operation == .delete(RuleSelector()))
        #expect(try parse("filter delete dev eth0 chain 3").operation == .delete(RuleSelector(chain: 3)))
        #expect(try parse("filter del dev eth0 pref 5 protocol ip handle 0x2 flower").operation
            == .delete(RuleSelector(prio: 5, filterProtocol: .ip, handle: 2)))
        #expect(try parse("filter get dev eth0 prio 5 protocol ip handle 2 flower").operation
            == .get(RuleSelector(prio: 5, filterProtocol: .ip, handle: 2)))
        #expect(try parse("filter show dev eth0 prio 5").operation == .show(RuleSelector(prio: 5)))
        #expect(try parse("filter ls dev eth0").operation == .show(RuleSelector()))
    }

    @Test func replaceAndChangeCarryTheRule() throws {
        #expect(try parse("filter replace dev eth0 prio 1 handle 1 protocol ip flower ip_proto tcp").operation
            == .replace(FlowRule(prio: 1, handle: 1, filterProtocol: .ip, match: { var m = FlowMatch(); m.ipProto = 6; return m }())))
        #expect(try parse("filter change dev eth0 prio 1 handle 1 flower action drop").operation
            == .change(FlowRule(prio: 1, handle: 1, actions: [.gact(.drop)])))
    }

    // MARK: Number bases and forms, key by key

    @Test func keysReadTheirValuesWithTcsBases() throws {
        let r = try rule("filter add dev eth0 protocol ip flower ip_proto 11 ip_tos 10/f0 ip_ttl 0x40")
        #expect(r.match.ipProto == 17, "ip_proto is hex")
        #expect(r.match.ipTOS == Masked(10, mask: 0xf0), "ip_tos value decimal, mask hex")
        #expect(r.match.ipTTL == Masked(0x40), "ip_ttl falls back to hex")
        #expect(try rule("filter add dev eth0 protocol ip flower ip_tos ff").match.ipTOS == Masked(0xff))

        let ports = try rule("filter add dev eth0 protocol ip flower ip_proto udp dst_port 0x50/0xfff0 src_port 010/0xffff")
        #expect(ports.match.dstPort == .masked(Masked(80, mask: 0xfff0)), "VALUE/MASK is base 0")
        #expect(ports.match.srcPort == .masked(Masked(8, mask: 0xffff)), "a leading 0 is octal")
        let range = try rule("filter add dev eth0 protocol ipv6 flower ip_proto sctp dst_port 1-65535 src_port 53")
        #expect(range.match.dstPort == .range(PortRange(min: 1, max: 65535)!))
        #expect(range.match.srcPort == .masked(Masked(53)))

        let tcp = try rule("filter add dev eth0 protocol ip flower ip_proto tcp tcp_flags 12/12")
        #expect(tcp.match.tcpFlags == Masked(0x12, mask: 0x12), "tcp_flags is hex")
        #expect(try rule("filter add dev eth0 protocol ip flower ip_proto tcp tcp_flags 0x2").match.tcpFlags
            == Masked(2, mask: 0xfff))

        let icmp = try rule("filter add dev eth0 protocol ipv6 flower ip_proto icmpv6 type 128/255 code 10")
        #expect(icmp.match.ipProto == 58)
        #expect(icmp.match.icmpType == Masked(128, mask: 255))
        #expect(icmp.match.icmpCode == Masked(10), "code is decimal")

        let vlan = try rule("filter add dev eth0 protocol 802.1ad flower vlan_id 010 vlan_prio 7 vlan_ethtype 802.1q cvlan_id 4095 cvlan_prio 0 cvlan_ethtype ipv4 ip_proto 6")
        #expect(vlan.match.vlanID == 10, "vlan_id is decimal")
        #expect(vlan.match.vlanPriority == 7)
        #expect(vlan.match.vlanEtherType == EtherType.vlan)
        #expect(vlan.match.cvlanID == 4095)
        #expect(vlan.match.cvlanPriority == 0)
        #expect(vlan.match.cvlanEtherType == EtherType.ipv4)
        #expect(vlan.l3EtherType == EtherType.ipv4)
    }

    @Test func addressesTakeMasksPrefixesAndDottedMasks() throws {
        let r = try rule("filter add dev eth0 protocol ip flower dst_mac 00:11:22:33:44:55/24 src_mac aa:bb:cc:dd:ee:ff/ff:00:ff:00:ff:00 dst_ip 10.1.2.3/8 src_ip 192.0.2.0/255.255.255.0")
        #expect(r.match.dstMAC == Masked(mac("00:11:22:33:44:55"), mask: mac("ff:ff:ff:00:00:00")))
        #expect(r.match.srcMAC == Masked(mac("aa:bb:cc:dd:ee:ff"), mask: mac("ff:00:ff:00:ff:00")))
        #expect(r.match.dstIP == .v4(Masked(ipv4("10.1.2.3"), mask: ipv4("255.0.0.0"))))
        #expect(r.match.srcIP == .v4(Masked(ipv4("192.0.2.0"), prefixLength: 24)!))
        let v6 = try rule("filter add dev eth0 protocol ipv6 flower dst_ip 2001:db8::/32 src_ip ::1")
        #expect(v6.match.dstIP == .v6(Masked(ipv6("2001:db8::"), prefixLength: 32)!))
        #expect(v6.match.srcIP == .v6(Masked(ipv6("::1"))))
    }

    @Test func arpKeysAndIPFlags() throws {
        let r = try rule("filter add dev eth0 protocol arp flower arp_op reply arp_sip 10.0.0.0/24 arp_tip 10.0.0.1 arp_sha 00:00:00:00:00:01/0 arp_tha ff:ff:ff:ff:ff:ff")
        #expect(r.match.arpOp == Masked(2))
        #expect(r.match.arpSenderIP == Masked(ipv4("10.0.0.0"), prefixLength: 24))
        #expect(r.match.arpTargetIP == Masked(ipv4("10.0.0.1")))
        #expect(r.match.arpSenderMAC == Masked(mac("00:00:00:00:00:01"), mask: mac("00:00:00:00:00:00")))
        #expect(try rule("filter add dev eth0 protocol rarp flower arp_op 1/1").match.arpOp == Masked(1, mask: 1))

        let flags = try rule("filter add dev eth0 protocol ip flower ip_flags frag/nofirstfrag")
        #expect(flags.match.ipFlags == IPFlagsMatch(isFragment: true, isFirstFragment: false))
        #expect(flags.match.ipFlags?.masked == Masked(1, mask: 3))
        let lastWins = try rule("filter add dev eth0 protocol ipv6 flower ip_flags frag/nofrag")
        #expect(lastWins.match.ipFlags == IPFlagsMatch(isFragment: false))
    }

    @Test func flagsIndevAndClassID() throws {
        let r = try rule("filter add dev eth0 flower indev eth0 skip_hw classid 1:a")
        #expect(r.match.indev == "eth0")
        #expect(r.skipHardware)
        #expect(r.classID == 0x0001_000a)
        #expect(try rule("filter add dev eth0 flower flowid :5").classID == 5)
    }

    @Test func tcsSkipSwAndVerboseAreAcceptedAndChangeNothing() throws {
        let plain = try rule("filter add dev eth0 protocol ip flower ip_proto udp action drop")
        #expect(try rule("filter add dev eth0 protocol ip flower skip_sw verbose ip_proto udp action drop") == plain)
        #expect(try rule("filter add dev eth0 protocol ip flower verbose skip_hw").skipHardware)
    }

    @Test func aDecimalIPProtocolIsReadAsHexWithANote() throws {
        let words = "filter add dev eth0 protocol ip flower ip_proto 17".split(separator: " ").map(String.init)
        let command = try FilterCommand.parse(words)
        guard case .add(let rule) = command.operation else { Issue.record("not an add"); return }
        #expect(rule.match.ipProto == 0x17, "as tc reads it")
        #expect(command.notes.map(\.description) == ["word 9 '17': ip_proto 17 is read as hex, 0x17 (23 decimal), "
            + "as tc reads it; for udp (17) write ip_proto udp or 0x11"])
        for quiet in ["6", "11", "0x17", "udp", "99"] {
            #expect(try FilterCommand.parse(Array(words.dropLast()) + [quiet]).notes.isEmpty, "\(quiet)")
        }
    }

    @Test func unambiguousPrefixesNameKeys() throws {
        let r = try rule("filter add dev eth0 protocol ip flower ip_pr tcp dst_po 80 ip_fl nofrag")
        #expect(r.match.ipProto == 6)
        #expect(r.match.dstPort == .masked(Masked(80)))
        #expect(r.match.ipFlags == IPFlagsMatch(isFragment: false))
    }

    // MARK: Actions

    @Test func actionsInOrderWithTheirDefaultControls() throws {
        let r = try rule("""
            filter add dev eth0 flower action vlan pop action vlan push id 0x10 priority 5 protocol 802.1ad \
            action vlan modify id 7 action pedit ex munge eth dst set 00:00:00:00:00:01 munge eth src set 00:00:00:00:00:02 pipe \
            action skbmod set dmac 00:00:00:00:00:03 action skbedit mark 0x10/0xff continue \
            action police rate 1mbit burst 10k conform-exceed drop/pipe \
            action mirred egress mirror dev eth2 pipe action mirred egress redirect dev eth1
            """.replacingOccurrences(of: "\\\n", with: ""))
        #expect(r.actions == [
            FlowAction(.vlan(.pop), control: .pipe),
            FlowAction(.vlan(.push(id: 16, priority: 5, tpid: EtherType.qinq)), control: .pipe),
            FlowAction(.vlan(.modify(id: 7, priority: nil, tpid: EtherType.vlan)), control: .pipe),
            FlowAction(.pedit([EthernetAddressEdit(.dst, mac("00:00:00:00:00:01")),
                               EthernetAddressEdit(.src, mac("00:00:00:00:00:02"))]), control: .pipe),
            FlowAction(.skbmod(SKBMod(dstMAC: mac("00:00:00:00:00:03"))), control: .pipe),
            FlowAction(.skbeditMark(Masked(16, mask: 0xff)), control: .continue),
            FlowAction(.police(Police(bytesPerSecond: 125_000, burstBytes: 10240, exceed: .drop)), control: .pipe),
            FlowAction(.mirred(Mirred(direction: .egress, mode: .mirror, device: "eth2")), control: .pipe),
            FlowAction(.mirred(Mirred(direction: .egress, mode: .redirect, device: "eth1")), control: .stolen),
        ])
    }

    @Test func controlWordsAreGactAndActionKeywordIsOptionalBetweenSpecs() throws {
        #expect(try rule("filter add dev eth0 flower action drop").actions == [.gact(.drop)])
        #expect(try rule("filter add dev eth0 flower actions gact shot").actions == [.gact(.drop)])
        #expect(try rule("filter add dev eth0 flower action ok").actions == [.gact(.pass)])
        #expect(try rule("filter add dev eth0 flower action vlan pop drop").actions == [FlowAction(.vlan(.pop), control: .drop)])
        #expect(try rule("filter add dev eth0 flower action mirred egress redirect dev eth1 drop").actions
            == [FlowAction(.mirred(Mirred(direction: .egress, mode: .redirect, device: "eth1"))), .gact(.drop)],
            "redirect reads no control: the drop is a second action")
        #expect(try rule("filter add dev eth0 flower action goto chain 3 action jump 1 action reclassify action trap").actions
            == [.gact(.gotoChain(3)), .gact(.jump(1)), .gact(.reclassify), .gact(.trap)])
        #expect(try rule("filter add dev eth0 flower action pedit ex munge eth dst set 00:00:00:00:00:01").actions[0].control == .pass,
            "pedit's default control is pass")
        #expect(try rule("filter add dev eth0 flower action police rate 8bit burst 1").actions
            == [FlowAction(.police(Police(bytesPerSecond: 1, burstBytes: 1, exceed: .reclassify)), control: .pass)])
        let classified = try rule("filter add dev eth0 flower action drop classid 1:1")
        #expect(classified.actions == [.gact(.drop)])
        #expect(classified.classID == 0x10001)
    }

    @Test func xskIsXDPFlowsOwnActionWithAnOptionalControl() throws {
        #expect(try rule("filter add dev eth0 flower action xsk").actions == [FlowAction(.xsk, control: .pass)],
                "without a socket the frame passes, unless a control says otherwise")
        #expect(try rule("filter add dev eth0 flower action xsk drop").actions == [FlowAction(.xsk, control: .drop)])
        #expect(try rule("filter add dev eth0 flower action xsk pipe drop").actions
            == [FlowAction(.xsk, control: .pipe), .gact(.drop)])
        #expect(throws: ParseError.self) { try rule("filter add dev eth0 flower action xs") }
        #expect(FlowAction(.xsk).words == ["xsk"])
        #expect(FlowAction(.xsk, control: .continue).words == ["xsk", "continue"])
        #expect(try rule("filter add dev eth0 flower action xsk goto chain 1").xdpLimitations == [.control(.gotoChain(1), action: 1)])
    }

    @Test func policeRatesAndSizesUseTcUnits() throws {
        func police(_ rate: String, _ burst: String) throws -> Police? {
            guard case .police(let police) = try rule("filter add dev eth0 flower action police rate \(rate) burst \(burst)").actions.first?.kind
            else { return nil }
            return police
        }
        #expect(try police("1gbit", "1mb") == Police(bytesPerSecond: 125_000_000, burstBytes: 1 << 20))
        #expect(try police("8000", "1500b") == Police(bytesPerSecond: 1000, burstBytes: 1500))
        #expect(try police("1KBps", "2kbit") == Police(bytesPerSecond: 8000 / 8 * 1, burstBytes: 256))
        #expect(try police("1.5Mbit", "16K") == Police(bytesPerSecond: 187_500, burstBytes: 16384))
        #expect(try police("1mibit", "1g") == Police(bytesPerSecond: 131_072, burstBytes: 1 << 30))
    }
}

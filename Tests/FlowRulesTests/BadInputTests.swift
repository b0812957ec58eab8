import FlowRules
import Testing

/// Each bad command with the message it must give and the 0-based index of the word at
/// fault (the word count when the command ended early).
struct BadInput: CustomTestStringConvertible, Sendable {
    let line: String
    let message: String
    let index: Int
    var testDescription: String { line }

    init(_ line: String, _ message: String, at index: Int) {
        self.line = line
        self.message = message
        self.index = index
    }
}

let ip = "filter add dev eth0 protocol ip flower"
let ip6 = "filter add dev eth0 protocol ipv6 flower"
let q = "filter add dev eth0 protocol 802.1Q flower"
let arp = "filter add dev eth0 protocol arp flower"
let any = "filter add dev eth0 flower"
let supportedPedit = "xdpflow supports pedit ex munge eth dst|src set MAC"

let badInputs: [BadInput] = [
    // The filter line.
    BadInput("filter frob dev eth0", "unknown filter command 'frob'", at: 1),
    BadInput("qdisc add dev eth0 clsact", "'qdisc' is not supported; xdpflow manages filters only", at: 0),
    BadInput("filter add protocol ip flower", "filter add needs dev DEV", at: 5),
    BadInput("filter add dev eth0 protocol ip", "filter add needs 'flower'", at: 6),
    BadInput("filter add dev eth0 dev eth1 flower", "duplicate dev", at: 5),
    BadInput("filter add dev eth0/1 flower", "dev eth0/1: expected an interface name (1-15 bytes, no '/', ':' or spaces)", at: 3),
    BadInput("filter add dev eth0 egress flower", "egress: XDP sees received frames only; use ingress", at: 4),
    BadInput("filter add dev eth0 parent 1: flower", "parent 1:: XDPFlow attaches at ingress only (parent ffff:)", at: 5),
    BadInput("filter add dev eth0 prio 70000 flower", "prio 70000: expected 0-65535 (0 allocates one)", at: 5),
    BadInput("filter add dev eth0 prio 1 pref 2 flower", "duplicate prio", at: 7),
    BadInput("filter add dev eth0 handle x1 flower", "handle x1: expected a number 0-0xffffffff", at: 5),
    BadInput("filter add dev eth0 chain 0x10000000 flower", "chain 0x10000000: expected 0-0xfffffff", at: 5),
    BadInput("filter add dev eth0 protocol ipx flower",
             "protocol ipx: expected ip, ipv6, 802.1Q, 802.1ad, arp, rarp, all or a number 0-0xffff", at: 5),
    BadInput("filter add dev eth0 pr 1 flower", "ambiguous word 'pr': preference, priority or protocol", at: 4),
    BadInput("filter add dev eth0 ingres flower", "unknown word 'ingres'; did you mean 'ingress'?", at: 4),
    BadInput("filter add dev eth0 u32 match ip", "filter kind 'u32' is not supported; xdpflow runs flower rules", at: 4),
    BadInput("filter del dev eth0 handle 1", "handle needs the filter kind: add 'flower'", at: 4),
    BadInput("filter get dev eth0 prio 1 handle 1 flower", "filter get needs prio, protocol and handle", at: 9),
    BadInput("filter del dev eth0 prio 1 flower ip_proto tcp", "filter del takes no flower keys or actions", at: 7),
    // Flower keys: names.
    BadInput("\(ip) ip_proto tcp dstport 80", "unknown flower key 'dstport'; did you mean 'dst_port'?", at: 9),
    BadInput("\(ip) src 10.0.0.1", "ambiguous flower key 'src': src_mac, src_ip or src_port", at: 7),
    BadInput("\(ip) ip_proto tcp ip_proto udp", "duplicate flower key 'ip_proto'", at: 9),
    BadInput("\(any) enc_key_id 5", "flower key 'enc_key_id' is not supported by xdpflow: tunnel keys are what a tunnel device learns when it decapsulates, after XDP", at: 5),
    BadInput("\(any) ct_state +trk", "flower key 'ct_state' is not supported by xdpflow: connection tracking state is conntrack's, which runs after XDP", at: 5),
    BadInput("\(any) mpls_label 5", "flower key 'mpls_label' is not supported by xdpflow: its programs parse no MPLS label stack", at: 5),
    BadInput("\(any) num_of 1", "unknown flower key 'num_of'", at: 5),
    BadInput("\(any) skip_sw skip_hw", "skip_sw and skip_hw together: the rule would run nowhere", at: 6),
    BadInput("filter add dev eth0 protocol mpls_uc flower",
             "protocol mpls_uc: MPLS is not supported by xdpflow (its programs parse no MPLS label stack)", at: 5),
    BadInput("\(q) vlan_ethtype mpls_mc",
             "vlan_ethtype mpls_mc: MPLS is not supported by xdpflow (its programs parse no MPLS label stack)", at: 8),
    BadInput("\(ip) ip_proto tcp dst_port", "dst_port needs a value", at: 10),
    // Flower keys: dependencies.
    BadInput("\(ip) dst_port 80", "dst_port needs ip_proto tcp, udp or sctp", at: 7),
    BadInput("\(ip) ip_proto icmp src_port 80", "src_port needs ip_proto tcp, udp or sctp", at: 9),
    BadInput("\(ip) vlan_id 5", "vlan_id needs protocol 802.1Q or 802.1ad", at: 7),
    BadInput("\(q) cvlan_id 5", "cvlan_id needs vlan_ethtype 802.1Q or 802.1ad", at: 7),
    BadInput("\(q) vlan_ethtype ipv4 cvlan_prio 1", "cvlan_prio needs vlan_ethtype 802.1Q or 802.1ad", at: 9),
    BadInput("\(any) dst_ip 10.0.0.1", "dst_ip needs protocol ip or ipv6", at: 5),
    BadInput("\(arp) ip_proto tcp", "ip_proto needs protocol ip or ipv6", at: 7),
    BadInput("\(q) ip_ttl 5", "ip_ttl needs protocol ip or ipv6", at: 7),
    BadInput("\(ip) ip_proto tcp type 8", "type needs ip_proto icmp (protocol ip) or icmpv6 (protocol ipv6)", at: 9),
    BadInput("\(ip6) ip_proto 1 code 0", "code needs ip_proto icmp (protocol ip) or icmpv6 (protocol ipv6)", at: 9),
    BadInput("\(ip) ip_proto udp tcp_flags 0x2", "tcp_flags needs ip_proto tcp", at: 9),
    BadInput("\(ip) arp_tip 10.0.0.1", "arp_tip needs protocol arp or rarp", at: 7),
    BadInput("\(any) ip_flags frag", "ip_flags needs protocol ip or ipv6", at: 5),
    BadInput("\(ip) dst_ip 2001:db8::1", "dst_ip 2001:db8::1: an IPv6 address needs protocol ipv6", at: 8),
    BadInput("\(ip6) src_ip 10.0.0.1", "src_ip 10.0.0.1: an IPv4 address needs protocol ip", at: 8),
    BadInput("\(ip6) ip_proto icmp", "ip_proto icmp: icmp needs protocol ip; use icmpv6 with ipv6", at: 8),
    BadInput("\(ip) ip_proto icmpv6", "ip_proto icmpv6: icmpv6 needs protocol ipv6; use icmp with ip", at: 8),
    // Flower keys: values.
    BadInput("\(q) vlan_id 5000", "vlan_id 5000: expected 0-4095", at: 8),
    BadInput("\(q) vlan_id 0x5", "vlan_id 0x5: expected 0-4095", at: 8),
    BadInput("\(q) vlan_prio 8", "vlan_prio 8: expected 0-7", at: 8),
    BadInput("\(q) vlan_ethtype bogus",
             "vlan_ethtype bogus: expected ipv4, ipv6, 802.1Q, 802.1ad, arp, rarp or a number 0-0xffff", at: 8),
    BadInput("\(ip) ip_proto 100",
             "ip_proto 100: expected tcp, udp, sctp, icmp, icmpv6, l2tp, esp, ah or a hex number 0-ff", at: 8),
    BadInput("\(ip) ip_tos 256", "ip_tos 256: expected 0-255 (decimal, else hex) with an optional /MASK (hex)", at: 8),
    BadInput("\(ip) ip_ttl 1/100", "ip_ttl 1/100: expected 0-255 (decimal, else hex) with an optional /MASK (hex)", at: 8),
    BadInput("\(ip) dst_ip 10.0.0.0/33",
             "dst_ip 10.0.0.0/33: expected an IPv4 address with an optional /0-32 or /MASK (a prefix)", at: 8),
    // A slash with a combining mark is one Character, and no slash.
    BadInput("\(ip) dst_ip 10.0.0.0/\u{301}24",
             "dst_ip 10.0.0.0/\u{301}24: expected an IPv4 address with an optional /0-32 or /MASK (a prefix)", at: 8),
    BadInput("\(ip) dst_ip 10.0.0.0/255.0.255.0",
             "dst_ip 10.0.0.0/255.0.255.0: expected an IPv4 address with an optional /0-32 or /MASK (a prefix)", at: 8),
    BadInput("\(ip6) dst_ip 2001:db8::/129",
             "dst_ip 2001:db8::/129: expected an IPv6 address with an optional /0-128 or /MASK (a prefix)", at: 8),
    BadInput("\(ip) dst_ip 10.0.0", "dst_ip 10.0.0: expected an IPv4 address with an optional /0-32 or /MASK (a prefix)", at: 8),
    BadInput("\(ip) ip_proto tcp dst_port 70000", "dst_port 70000: expected PORT (1-65535), MIN-MAX or VALUE/MASK", at: 10),
    BadInput("\(ip) ip_proto tcp dst_port 0x50", "dst_port 0x50: expected PORT (1-65535), MIN-MAX or VALUE/MASK", at: 10),
    BadInput("\(ip) ip_proto udp dst_port 200-100", "dst_port 200-100: max value should be greater than min value", at: 10),
    BadInput("\(ip) ip_proto udp dst_port 80-80", "dst_port 80-80: max value should be greater than min value", at: 10),
    BadInput("\(ip) ip_proto udp dst_port 0", "dst_port 0: port 0 needs the masked form 0/0xffff (tc reads 0 as no port)", at: 10),
    BadInput("\(ip) ip_proto udp src_port 0-100", "src_port 0-100: a range starts at 1 (tc reads 0 as no port)", at: 10),
    BadInput("\(ip) ip_proto tcp tcp_flags 0x1000",
             "tcp_flags 0x1000: expected hex FLAGS with an optional /MASK, each at most 0xfff", at: 10),
    BadInput("\(ip) ip_proto icmp type 256", "type 256: expected 0-255 with an optional /MASK 0-255 (decimal)", at: 10),
    BadInput("\(ip) ip_proto icmp code 0x3", "code 0x3: expected 0-255 with an optional /MASK 0-255 (decimal)", at: 10),
    BadInput("\(arp) arp_op 3", "arp_op 3: expected request, reply, 0, 1 or 2 with an optional /MASK 0-255 (decimal)", at: 8),
    BadInput("\(arp) arp_sha 00:11:22:33:44",
             "arp_sha 00:11:22:33:44: expected a MAC address, optionally /MASK (a MAC address) or /0-48", at: 8),
    BadInput("\(any) dst_mac 00:11:22:33:44:55/49",
             "dst_mac 00:11:22:33:44:55/49: expected a MAC address, optionally /MASK (a MAC address) or /0-48", at: 6),
    BadInput("\(arp) arp_tip 10.0.0.1/40", "arp_tip 10.0.0.1/40: expected an IPv4 address with an optional /0-32 or /MASK", at: 8),
    BadInput("\(ip) ip_flags frag/bogus", "ip_flags frag/bogus: expected frag, nofrag, firstfrag or nofirstfrag, joined with /", at: 8),
    BadInput("\(any) indev this-name-is-too-long",
             "indev this-name-is-too-long: expected an interface name (1-15 bytes, no '/', ':' or spaces)", at: 6),
    BadInput("\(any) classid 1:10000", "classid 1:10000: expected MAJ:MIN, each hex 0-ffff", at: 6),
    // Actions.
    BadInput("\(any) action", "action needs an action: drop, pass, continue, pipe, mirred, vlan, pedit, skbmod, skbedit, police or xsk", at: 6),
    BadInput("\(any) action drop action", "action needs an action: drop, pass, continue, pipe, mirred, vlan, pedit, skbmod, skbedit, police or xsk", at: 8),
    BadInput("\(any) action dorp", "unknown action 'dorp'; did you mean 'drop'?", at: 6),
    BadInput("\(any) action frobnicate", "unknown action 'frobnicate'", at: 6),
    BadInput("\(any) action vlan psuh id 1", "unknown vlan command 'psuh'; did you mean 'push'?; expected pop, push or modify", at: 7),
    BadInput("\(any) action p", "ambiguous action 'p': pass or pipe", at: 6),
    BadInput("\(any) action ct commit", "action 'ct' is not supported by xdpflow: conntrack runs after XDP", at: 6),
    BadInput("\(any) action tunnel_key unset", "action 'tunnel_key' is not supported by xdpflow: tunnel metadata is for a tunnel device, which an XDP program cannot hand a frame with it", at: 6),
    BadInput("\(any) action drop index 5", "action option 'index' is not supported by xdpflow", at: 7),
    BadInput("\(any) action gact", "gact needs a control: continue, drop, pass, pipe, reclassify, trap, goto chain N or jump N", at: 6),
    BadInput("\(any) action goto 5", "goto needs 'chain N'", at: 7),
    BadInput("\(any) action jump 0", "jump 0: expected 1-268435455", at: 7),
    BadInput("\(any) action vlan push priority 3", "vlan push needs id N", at: 10),
    BadInput("\(any) action vlan push id 4095", "vlan push id 4095: expected 0-4094", at: 9),
    BadInput("\(any) action vlan modify id 5 priority 9", "vlan modify priority 9: expected 0-7", at: 11),
    BadInput("\(any) action vlan push id 5 protocol ip", "vlan push protocol ip: expected 802.1Q or 802.1ad", at: 11),
    BadInput("\(any) action vlan push id 5 pr 1", "ambiguous vlan push option 'pr': priority or protocol", at: 10),
    BadInput("\(any) action vlan pull", "unknown vlan command 'pull'; expected pop, push or modify", at: 7),
    BadInput("\(any) action vlan push_eth", "vlan push_eth is not supported by xdpflow", at: 7),
    BadInput("\(any) action mirred sideways redirect dev eth1", "mirred sideways: expected egress or ingress", at: 7),
    BadInput("\(any) action mirred egress steal dev eth1", "mirred egress steal: expected redirect or mirror", at: 8),
    BadInput("\(any) action mirred egress redirect eth1", "mirred egress redirect needs dev DEV", at: 9),
    BadInput("\(any) action mirred egress redirect", "mirred egress redirect needs a value", at: 9),
    BadInput("\(any) action pedit munge eth dst set 00:11:22:33:44:55", "pedit needs 'ex': \(supportedPedit)", at: 7),
    BadInput("\(any) action pedit ex munge ip ttl set 5", "pedit munge ip is not supported: \(supportedPedit)", at: 9),
    BadInput("\(any) action pedit ex munge eth type set 5", "pedit munge eth type is not supported: \(supportedPedit)", at: 10),
    BadInput("\(any) action pedit ex munge eth dst set 1:2:3", "pedit munge eth dst set 1:2:3: expected a MAC address", at: 12),
    BadInput("\(any) action pedit ex", "pedit ex needs munge: \(supportedPedit)", at: 8),
    BadInput("\(any) action skbmod swap mac", "skbmod swap is not supported by xdpflow", at: 7),
    BadInput("\(any) action skbmod set etype 0x800", "skbmod set etype is not supported: expected dmac or smac", at: 8),
    BadInput("\(any) action skbmod", "skbmod needs set dmac MAC or set smac MAC", at: 7),
    BadInput("\(any) action skbedit priority 5", "skbedit priority is not supported by xdpflow", at: 7),
    BadInput("\(any) action skbedit mark 1/x", "skbedit mark 1/x: expected MARK with an optional /MASK, each 0-0xffffffff", at: 8),
    BadInput("\(any) action police rate 1mbit", "police needs rate RATE and burst SIZE", at: 9),
    BadInput("\(any) action police rate fast burst 10k",
             "police rate fast: expected a rate of at least 8bit, e.g. 10mbit, 1gbit or 500kbps", at: 8),
    BadInput("\(any) action police rate 1mbit burst 0",
             "police burst 0: expected 1 byte to 4294967295 bytes, e.g. 1500, 16k or 1mb", at: 10),
    BadInput("\(any) action police rate 1mbit burst 4g",
             "police burst 4g: expected 1 byte to 4294967295 bytes, e.g. 1500, 16k or 1mb", at: 10),
    BadInput("\(any) action police rate 1mbit burst 10k conform-exceed explode",
             "police conform-exceed explode: expected EXCEED[/CONFORM], each drop, pass, pipe, continue, reclassify or trap", at: 12),
    BadInput("\(any) action police rate 1mbit burst 10k mtu 1500", "police mtu is not supported by xdpflow", at: 11),
]

@Suite struct BadInputTests {
    @Test(arguments: badInputs)
    func badInputGivesItsMessage(_ input: BadInput) {
        let words = input.line.split(separator: " ").map(String.init)
        #expect(throws: ParseError(index: input.index, token: input.index < words.count ? words[input.index] : nil,
                                   message: input.message)) {
            try FilterCommand.parse(words)
        }
    }

    @Test func theTableHasAtLeastFortyDistinctInputsAndMessages() {
        #expect(Set(badInputs.map(\.line)).count == badInputs.count)
        #expect(Set(badInputs.map(\.message)).count >= 40)
    }

    @Test func errorsNameTheWordAndItsPosition() {
        let error = ParseError(index: 9, token: "dstport", message: "unknown flower key 'dstport'; did you mean 'dst_port'?")
        #expect(error.description == "word 10 'dstport': unknown flower key 'dstport'; did you mean 'dst_port'?")
        let end = ParseError(index: 10, token: nil, message: "dst_port needs a value")
        #expect(end.description == "at the end of the command (after word 10): dst_port needs a value")
    }

    /// A 100 KB word (a file pasted into the command line) is shown once, cut.
    @Test func aHugeWordIsShownOnceAndCut() throws {
        let huge = String(repeating: "x", count: 100_000)
        let error = try #require(throws: ParseError.self) { try FilterCommand.parse(["filter", "add", "dev", "eth0", huge]) }
        let shown = String(repeating: "x", count: ParseError.longestWordShown) + "...(100000 bytes)"
        #expect(error.description.count < 300, "\(error.description.prefix(300))")
        #expect(error.description.hasPrefix("word 5 '\(shown)': "))
    }
}

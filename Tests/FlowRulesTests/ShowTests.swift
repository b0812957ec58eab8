import FlowRules
import Foundation
import Testing

@Suite struct ShowTests {
    let rules = [
        try! rule("filter add dev eth0 prio 1 handle 1 protocol ip flower ip_proto tcp dst_port 80 action drop"),
        try! rule("filter add dev eth0 prio 1 handle 2 protocol ip flower skip_hw ip_proto udp action vlan push id 5 action mirred egress redirect dev eth1"),
        try! rule("filter add dev eth0 prio 2 handle 1 flower classid 1:2"),
    ]

    @Test func textLooksLikeTcFilterShow() {
        let stats: (FlowRule) -> RuleStats? = { rule in
            guard rule.handle == 1, rule.prio == 1 else { return nil }
            return RuleStats(rule: rule, packets: 3, bytes: 180, lastUsed: 2, dropped: 3, police: [:])
        }
        #expect(RuleShow(device: "eth0", rules: rules, stats: stats).text == """
            filter parent ffff: protocol ip pref 1 flower chain 0
            filter parent ffff: protocol ip pref 1 flower chain 0 handle 0x1
              eth_type ipv4
              ip_proto tcp
              dst_port 80
              not_in_hw
            \tSent 180 bytes 3 pkt (dropped 3, overlimits 0 requeues 0), last used 2 sec
            \taction order 1: gact action drop

            filter parent ffff: protocol ip pref 1 flower chain 0 handle 0x2
              eth_type ipv4
              ip_proto udp
              skip_hw
              not_in_hw
            \taction order 1: vlan  push id 5 protocol 802.1Q priority 0 pipe
            \taction order 2: mirred (Egress Redirect to device eth1) stolen

            filter parent ffff: protocol all pref 2 flower chain 0
            filter parent ffff: protocol all pref 2 flower chain 0 handle 0x1
              classid 1:2
              not_in_hw

            """)
    }

    /// `-j` holds to `tc -j filter show`. This machine's kernel has no cls_flower, so the
    /// expected objects were written by hand from iproute2's print code for the same rules:
    /// print_filter (tc/tc_filter.c: parent, protocol, pref, kind, chain, options),
    /// flower_print_opt (tc/f_flower.c: handle, classid, indev, keys in its order and
    /// formats, skip_hw, not_in_hw, actions), tc_print_action and tc_print_one_action
    /// (tc/m_action.c: order, the kind's own members, stats), print_action_control,
    /// print_tm and print_tcstats2_attr (tc/tc_util.c) and print_gact, print_mirred,
    /// print_vlan, print_pedit, print_skbedit, print_skbmod, print_police (tc/m_*.c), with
    /// the attributes the kernel dumps for such a rule (for example the TOS mask always,
    /// the TCP flags mask always, the VLAN priority of a modify only when given). Left out
    /// on purpose, see docs/flower.md: action index, ref and bind, "installed" and
    /// "first_used"; police prints rate, burst and its conform control by names of its own
    /// and skbmod its kind (tc prints neither).
    @Test func jsonIsWhatTcPrints() throws {
        let rules = self.rules + [
            try rule("filter add dev eth0 prio 3 handle 7 protocol 802.1Q flower vlan_id 10 vlan_prio 3 vlan_ethtype ip "
                + "dst_mac 02:00:00:00:00:01/ff:ff:ff:00:00:00 ip_proto tcp ip_tos 16/0xfc ip_ttl 64 dst_ip 192.0.2.1 "
                + "src_ip 10.0.0.0/8 dst_port 1000-2000 src_port 0x100/0xff00 tcp_flags 0x2 ip_flags frag/nofirstfrag "
                + "action pedit ex munge eth dst set 02:00:00:00:00:20 munge eth src set 02:00:00:00:00:30 pipe "
                + "action skbedit mark 7/0xf action police rate 8kbit burst 2k conform-exceed drop/pipe "
                + "action skbmod set dmac 02:00:00:00:00:40 action vlan modify id 3 action pass"),
            try rule("filter add dev eth0 prio 4 handle 1 protocol arp flower arp_op request arp_sip 10.0.0.1 "
                + "arp_tha 02:00:00:00:00:09 action drop"),
            try rule("filter add dev eth0 prio 5 handle 0x10 protocol ipv6 flower indev eth9 ip_proto icmpv6 "
                + "dst_ip 2001:db8::/32 type 128 code 0/15 action vlan pop action goto chain 5"),
        ]
        let stats: (FlowRule) -> RuleStats? = { rule in
            switch (rule.prio, rule.handle) {
            case (1, 1): RuleStats(rule: rule, packets: 3, bytes: 180, lastUsed: 2, dropped: 3, police: [:])
            case (1, 2): RuleStats(packets: 0, bytes: 0, lastUsed: nil)
            default: nil
            }
        }
        let objects = [
            #"{"parent":"ffff:","protocol":"ip","pref":1,"kind":"flower","chain":0}"#,
            #"{"parent":"ffff:","protocol":"ip","pref":1,"kind":"flower","chain":0,"options":{"handle":1,"#
                + #""keys":{"eth_type":"ipv4","ip_proto":"tcp","dst_port":80},"not_in_hw":true,"actions":["#
                + #"{"order":1,"kind":"gact","control_action":{"type":"drop"},"#
                + #""prob":{"random_type":"none","control_action":{"type":"pass"},"val":0},"last_used":2,"#
                + #""stats":{"bytes":180,"packets":3,"drops":3,"overlimits":0,"requeues":0,"backlog":0,"qlen":0}}]}}"#,
            #"{"parent":"ffff:","protocol":"ip","pref":1,"kind":"flower","chain":0,"options":{"handle":2,"#
                + #""keys":{"eth_type":"ipv4","ip_proto":"udp"},"skip_hw":true,"not_in_hw":true,"actions":["#
                + #"{"order":1,"kind":"vlan","vlan_action":"push","id":5,"protocol":"802.1Q","priority":0,"#
                + #""control_action":{"type":"pipe"},"#
                + #""stats":{"bytes":0,"packets":0,"drops":0,"overlimits":0,"requeues":0,"backlog":0,"qlen":0}},"#
                + #"{"order":2,"kind":"mirred","mirred_action":"redirect","direction":"egress","to_dev":"eth1","#
                + #""control_action":{"type":"stolen"},"#
                + #""stats":{"bytes":0,"packets":0,"drops":0,"overlimits":0,"requeues":0,"backlog":0,"qlen":0}}]}}"#,
            #"{"parent":"ffff:","protocol":"all","pref":2,"kind":"flower","chain":0}"#,
            #"{"parent":"ffff:","protocol":"all","pref":2,"kind":"flower","chain":0,"options":{"handle":1,"#
                + #""classid":"1:2","keys":{},"not_in_hw":true}}"#,
            #"{"parent":"ffff:","protocol":"802.1Q","pref":3,"kind":"flower","chain":0}"#,
            #"{"parent":"ffff:","protocol":"802.1Q","pref":3,"kind":"flower","chain":0,"options":{"handle":7,"keys":{"#
                + #""vlan_id":10,"vlan_prio":3,"vlan_ethtype":"ip","dst_mac":"02:00:00:00:00:01/24","eth_type":"ipv4","#
                + #""ip_proto":"tcp","ip_tos":16,"ip_tos_mask":"fc","ip_ttl":64,"dst_ip":"192.0.2.1","src_ip":"10.0.0.0/8","#
                + #""src_port":256,"src_port_mask":"ff00","dst_port":{"start":1000,"end":2000},"tcp_flags":"0x2/fff","#
                + #""ip_flags":{"frag":true,"firstfrag":false}},"not_in_hw":true,"actions":["#
                + #"{"order":1,"kind":"pedit","control_action":{"type":"pipe"},"nkeys":4,"keys":["#
                + #"{"htype":"eth","offset":0,"cmd":"set","val":"2000000","mask":"0"},"#
                + #"{"htype":"eth","offset":4,"cmd":"set","val":"200000","mask":"ffff"},"#
                + #"{"htype":"eth","offset":4,"cmd":"set","val":"200","mask":"ffff0000"},"#
                + #"{"htype":"eth","offset":8,"cmd":"set","val":"30","mask":"0"}]},"#
                + #"{"order":2,"kind":"skbedit","mark":7,"mask":"f","control_action":{"type":"pipe"}},"#
                + #"{"order":3,"kind":"police","rate":1000,"burst":2048,"control_action":{"type":"drop"},"#
                + #""conform_action":{"type":"pipe"},"overhead":0},"#
                + #"{"order":4,"kind":"skbmod","control_action":{"type":"pipe"},"dmac":"02:00:00:00:00:40"},"#
                + #"{"order":5,"kind":"vlan","vlan_action":"modify","id":3,"protocol":"802.1Q","control_action":{"type":"pipe"}},"#
                + #"{"order":6,"kind":"gact","control_action":{"type":"pass"},"#
                + #""prob":{"random_type":"none","control_action":{"type":"pass"},"val":0}}]}}"#,
            #"{"parent":"ffff:","protocol":"arp","pref":4,"kind":"flower","chain":0}"#,
            #"{"parent":"ffff:","protocol":"arp","pref":4,"kind":"flower","chain":0,"options":{"handle":1,"keys":{"#
                + #""eth_type":"arp","arp_sip":"10.0.0.1","arp_op":"request","arp_tha":"02:00:00:00:00:09"},"#
                + #""not_in_hw":true,"actions":[{"order":1,"kind":"gact","control_action":{"type":"drop"},"#
                + #""prob":{"random_type":"none","control_action":{"type":"pass"},"val":0}}]}}"#,
            #"{"parent":"ffff:","protocol":"ipv6","pref":5,"kind":"flower","chain":0}"#,
            #"{"parent":"ffff:","protocol":"ipv6","pref":5,"kind":"flower","chain":0,"options":{"handle":16,"#
                + #""indev":"eth9","keys":{"eth_type":"ipv6","ip_proto":"icmpv6","dst_ip":"2001:db8::/32","#
                + #""icmp_type":"128","icmp_code":"0/15"},"not_in_hw":true,"actions":["#
                + #"{"order":1,"kind":"vlan","vlan_action":"pop","control_action":{"type":"pipe"}},"#
                + #"{"order":2,"kind":"gact","control_action":{"type":"goto","chain":5},"#
                + #""prob":{"random_type":"none","control_action":{"type":"pass"},"val":0}}]}}"#,
        ]
        let json = RuleShow(device: "eth0", rules: rules, stats: stats).json(pretty: false)
        let expected = "[" + objects.joined(separator: ",") + "]"
        #expect(json == expected)
        // Object by object, for a readable difference.
        let shown = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [Any])
        #expect(shown.count == objects.count)
        for (index, object) in objects.enumerated() where index < shown.count {
            let one = try JSONSerialization.jsonObject(with: Data(object.utf8)) as? NSDictionary
            #expect((shown[index] as? NSDictionary) == one, "object \(index)")
        }
    }

    /// tc counts per action: a police action its overlimits and the frames its control
    /// dropped, the gact drop after it the conforming frames it dropped.
    @Test func policeCountsDropsAndOverlimitsAsTcDoes() throws {
        let policed = try rule("filter add dev eth0 prio 1 handle 1 protocol ip flower "
            + "action police rate 8kbit burst 600 conform-exceed drop/pipe action drop")
        let stats = RuleStats(rule: policed, packets: 1000, bytes: 60000, lastUsed: 0, dropped: 1000,
                              police: [0: (dropped: 990, overlimits: 990)])
        #expect(stats.actionDrops == [990, 10])
        #expect(stats.actionOverlimits == [990, 0])
        let show = RuleShow(device: "eth0", rules: [policed], stats: { _ in stats })
        #expect(show.text.contains("\tSent 60000 bytes 1000 pkt (dropped 1000, overlimits 990 requeues 0), last used 0 sec\n"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(show.json(pretty: false).utf8)) as? [[String: Any]])
        let actions = try #require((json.last?["options"] as? [String: Any])?["actions"] as? [[String: Any]])
        let counts = actions.map { ($0["stats"] as? [String: Any]).map { [$0["drops"] as? Int, $0["overlimits"] as? Int] } }
        #expect(counts == [[990, 990], [10, 0]])
        // A pass after the police: only the police drops.
        let passing = try rule("filter add dev eth0 prio 1 handle 2 protocol ip flower "
            + "action police rate 8kbit burst 600 conform-exceed drop/pipe action pass")
        #expect(RuleStats(rule: passing, packets: 10, bytes: 600, lastUsed: 0, dropped: 4,
                          police: [0: (dropped: 4, overlimits: 4)]).actionDrops == [4, 0])
    }

    /// xsk is XDPFlow's own: no tc action prints it, so its text and JSON are ours.
    @Test func xskPrintsWhatAFrameGetsWithoutASocket() throws {
        let rules = [
            try rule("filter add dev eth0 prio 1 handle 1 protocol ip flower ip_proto udp dst_port 4789 action xsk"),
            try rule("filter add dev eth0 prio 1 handle 2 protocol ip flower ip_proto udp action xsk drop"),
        ]
        let show = RuleShow(device: "eth0", rules: rules)
        #expect(show.text.contains("\taction order 1: xsk (AF_XDP socket of the receive queue, else pass)\n"))
        #expect(show.text.contains("\taction order 1: xsk (AF_XDP socket of the receive queue, else drop)\n"))
        #expect(show.json(pretty: false).contains(#""actions":[{"order":1,"kind":"xsk","control_action":{"type":"pass"}}]"#))
        #expect(show.json(pretty: false).contains(#""actions":[{"order":1,"kind":"xsk","control_action":{"type":"drop"}}]"#))
        #expect(rules.map { $0.commandLine(device: "eth0") } == [
            "filter add dev eth0 ingress prio 1 handle 0x1 protocol ip flower ip_proto udp dst_port 4789 action xsk",
            "filter add dev eth0 ingress prio 1 handle 0x2 protocol ip flower ip_proto udp action xsk drop",
        ])
    }

    @Test func prettyJSONIndentsByFourSpaces() {
        let json = RuleShow(device: "eth0", rules: [rules[2]]).json(pretty: true)
        #expect(json == """
            [
                {
                    "parent": "ffff:",
                    "protocol": "all",
                    "pref": 2,
                    "kind": "flower",
                    "chain": 0
                },
                {
                    "parent": "ffff:",
                    "protocol": "all",
                    "pref": 2,
                    "kind": "flower",
                    "chain": 0,
                    "options": {
                        "handle": 1,
                        "classid": "1:2",
                        "keys": {},
                        "not_in_hw": true
                    }
                }
            ]
            """)
    }

    /// tc -j filter get: the kernel answers with the one rule, no prio head.
    @Test func getPrintsTheRuleAlone() {
        #expect(RuleShow(device: "eth0", rules: [rules[2]]).json(pretty: false, prioHeads: false)
            == #"[{"parent":"ffff:","protocol":"all","pref":2,"kind":"flower","chain":0,"options":{"handle":1,"#
            + #""classid":"1:2","keys":{},"not_in_hw":true}}]"#)
    }

    @Test func noRulesIsAnEmptyArray() {
        #expect(RuleShow(device: "eth0", rules: []).json(pretty: false) == "[]")
    }
}

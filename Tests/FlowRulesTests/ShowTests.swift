import FlowRules
import Testing

@Suite struct ShowTests {
    let rules = [
        try! rule("filter add dev eth0 prio 1 handle 1 protocol ip flower ip_proto tcp dst_port 80 action drop"),
        try! rule("filter add dev eth0 prio 1 handle 2 protocol ip flower skip_hw ip_proto udp action vlan push id 5 action mirred egress redirect dev eth1"),
        try! rule("filter add dev eth0 prio 2 handle 1 flower classid 1:2"),
    ]

    @Test func textLooksLikeTcFilterShow() {
        let stats: (FlowRule) -> RuleStats? = { $0.handle == 1 && $0.prio == 1 ? RuleStats(packets: 3, bytes: 180, lastUsed: 2) : nil }
        #expect(RuleShow(device: "eth0", rules: rules, stats: stats).text == """
            filter parent ffff: protocol ip pref 1 flower chain 0
            filter parent ffff: protocol ip pref 1 flower chain 0 handle 0x1
              eth_type ipv4
              ip_proto tcp
              dst_port 80
              not_in_hw
            \tSent 180 bytes 3 pkt, last used 2 sec
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

    @Test func jsonFollowsTheDocumentedSchema() {
        let json = RuleShow(device: "eth0", rules: Array(rules.prefix(2)),
                            stats: { _ in RuleStats(packets: 1, bytes: 60, lastUsed: nil) }).json(pretty: false)
        #expect(json == #"[{"dev":"eth0","chain":0,"prio":1,"handle":1,"protocol":"ip","match":{"ip_proto":"tcp","dst_port":"80"},"skip_hw":false,"actions":[{"order":1,"kind":"gact","control":"drop"}],"stats":{"packets":1,"bytes":60,"last_used":null}},{"dev":"eth0","chain":0,"prio":1,"handle":2,"protocol":"ip","match":{"ip_proto":"udp"},"skip_hw":true,"actions":[{"order":1,"kind":"vlan","vlan_action":"push","id":5,"priority":0,"protocol":"802.1Q","control":"pipe"},{"order":2,"kind":"mirred","direction":"egress","mode":"redirect","dev":"eth1","control":"stolen"}],"stats":{"packets":1,"bytes":60,"last_used":null}}]"#)
    }

    @Test func prettyJSONIndentsByFourSpacesAndStatsNeedACounter() {
        let json = RuleShow(device: "eth0", rules: [rules[2]]).json(pretty: true)
        #expect(json == """
            [
                {
                    "dev": "eth0",
                    "chain": 0,
                    "prio": 2,
                    "handle": 1,
                    "protocol": "all",
                    "match": {},
                    "skip_hw": false,
                    "classid": "1:2",
                    "actions": []
                }
            ]
            """)
    }

    @Test func everyActionKindHasJSON() throws {
        let r = try rule("filter add dev eth0 flower action pedit ex munge eth dst set 02:00:00:00:00:01 action skbmod set smac 02:00:00:00:00:02 action skbedit mark 7/0xf action police rate 8kbit burst 2k conform-exceed drop action vlan modify id 3")
        let json = RuleShow(device: "eth0", rules: [r]).json(pretty: false)
        #expect(json.contains(#"{"order":1,"kind":"pedit","edits":[{"field":"eth dst","set":"02:00:00:00:00:01"}],"control":"pass"}"#))
        #expect(json.contains(#"{"order":2,"kind":"skbmod","smac":"02:00:00:00:00:02","control":"pipe"}"#))
        #expect(json.contains(#"{"order":3,"kind":"skbedit","mark":7,"mask":15,"control":"pipe"}"#))
        #expect(json.contains(#"{"order":4,"kind":"police","rate_bytes_per_second":1000,"burst_bytes":2048,"exceed":"drop","control":"pass"}"#))
        #expect(json.contains(#"{"order":5,"kind":"vlan","vlan_action":"modify","id":3,"priority":null,"protocol":"802.1Q","control":"pipe"}"#))
    }
}

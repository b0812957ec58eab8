import FlowRules
import Packets

/// libFuzzer's entry point: the input is one received frame, as a capture record is
/// for `xdpflow trace --check`. It goes through the dissector and the reference
/// classifier under rule sets that read every layer and run every action that edits
/// a frame, and xsk; each edited frame is dissected again. Any trap is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrame(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let frame = Array(UnsafeBufferPointer(start: data, count: size))
    _ = FlowKeys(dissecting: frame)
    for fresh in classifiers {
        // A copy with untouched policers: buckets kept from input to input would make a
        // finding depend on the inputs before it, and not replay alone.
        var classifier = fresh
        // Queue 1 has a socket bound (below), queue 0 none: either way for an xsk action.
        let result = classifier.classify(frame, now: 0, queue: UInt32(frame.count & 1))
        _ = FlowKeys(dissecting: result.frame)
    }
    return 0
}

/// Each set's first prio edits the frame and continues, so that the next prio dissects
/// and matches the frame as edited, as tc's next filter would. Never mutated, and
/// libFuzzer calls the harness from one thread.
nonisolated(unsafe) let classifiers: [ReferenceClassifier] = [
    """
    filter add dev fz0 prio 1 protocol all flower action vlan pop continue
    filter add dev fz0 prio 2 protocol 802.1Q flower vlan_id 5 vlan_ethtype 802.1ad cvlan_prio 2 action drop
    filter add dev fz0 prio 3 protocol ip flower ip_proto tcp dst_port 80 tcp_flags 0x2/0x12 action pass
    """,
    """
    filter add dev fz0 prio 1 protocol all flower action vlan push id 5 priority 3 protocol 802.1ad continue
    filter add dev fz0 prio 2 protocol 802.1ad flower vlan_id 5 vlan_ethtype ipv6 ip_proto udp src_port 1-1024 action drop
    filter add dev fz0 prio 3 protocol 802.1ad flower vlan_ethtype 802.1Q cvlan_ethtype arp arp_op request action pass
    """,
    """
    filter add dev fz0 prio 1 protocol 802.1Q flower action vlan modify id 6 priority 1 continue
    filter add dev fz0 prio 2 protocol 802.1Q flower vlan_id 6 vlan_ethtype ip ip_flags frag/nofirstfrag action drop
    """,
    """
    filter add dev fz0 prio 1 protocol all flower action pedit ex munge eth dst set 02:00:00:00:00:01 pipe \\
        action skbmod set smac 02:00:00:00:00:02 pipe action skbedit mark 0x10/0xff0 continue
    filter add dev fz0 prio 2 protocol ip flower ip_proto icmp type 8 code 0 action police rate 1mbit burst 2k \\
        conform-exceed drop/pipe action mirred egress mirror dev fz1 action mirred egress redirect dev fz2
    filter add dev fz0 prio 3 protocol ipv6 flower ip_proto icmpv6 dst_ip 2001:db8::/32 action drop
    filter add dev fz0 prio 4 protocol arp flower arp_sip 10.0.0.0/8 arp_tha 00:00:00:00:00:00 action drop
    filter add dev fz0 prio 5 protocol ipv6 flower ip_proto sctp dst_port 0x1000/0xf000 ip_ttl 1 action drop
    filter add dev fz0 prio 6 protocol ip flower ip_tos 0x10/0xfc src_ip 192.0.2.0/24 action mirred egress redirect dev fz0
    """,
    """
    filter add dev fz0 prio 1 protocol ip flower ip_proto udp action xsk continue
    filter add dev fz0 prio 2 protocol all flower action vlan push id 9 pipe action xsk drop
    """,
].map { text in
    var set = RuleSet()
    for line in try! Batch(text: text).lines { try! line.command.apply(to: &set) }
    var classifier = try! ReferenceClassifier(rules: set, device: "fz0")
    classifier.boundQueues = [1]
    return classifier
}

import FlowCompiler
import FlowOffload
import FlowRules
import KernelTestSupport
import Packets
import Testing

/// Each action on the wire: frames from the generator in the peer's namespace, rules
/// on the live device, and what arrives captured where it should (or nothing, where
/// nothing should), byte for byte as the reference classifier says, with counters
/// equal to what was sent.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct WireTests {
    let sent = 1000

    @Test func aDroppedFrameNeverReachesTheStackAndItsRuleCountsEveryOne() throws {
        let lab = try OffloadLab()
        try lab.filter("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 53 action drop")
        let stack = try lab.captureOnDevice()
        let dropped = TestFrame.udp(port: 53), passed = TestFrame.udp(port: 54)
        try lab.send(dropped, count: sent)
        try lab.send(passed, count: 300)

        let rule = RuleID(prio: 1, handle: 1)
        let statistics = try lab.statistics(once: rule, counted: UInt64(sent))
        #expect(statistics.rules[rule]?.packets == UInt64(sent))
        #expect(statistics.rules[rule]?.bytes == UInt64(sent * dropped.count))
        #expect(try captured(stack, 300).count == 300, "the frames no rule drops reach the stack")
        #expect(statistics.misses.packets == 300)
        #expect(stack.frames(where: { $0 == dropped }).isEmpty, "no dropped frame reached the stack")
        #expect(try stack.drops() == 0)
    }

    @Test func aRedirectedFrameLeavesThroughTheTargetWithItsMACRewritten() throws {
        let lab = try OffloadLab()
        try lab.filter("filter add dev DEV protocol ip prio 1 handle 1 flower dst_ip 10.0.0.2 "
            + "action pedit ex munge eth dst set 02:00:00:00:0e:aa munge eth src set 02:00:00:00:0e:bb pipe "
            + "action mirred egress redirect dev TARGET")
        let stack = try lab.captureOnDevice(), target = try lab.captureOnTarget()
        let frame = TestFrame.udp(port: 80)
        let expected = try lab.reference(frame)
        #expect(expected.verdict == .redirect(lab.target.device))
        try lab.send(frame, count: sent)

        let arrived = try captured(target, sent)
        #expect(arrived.count == sent)
        #expect(arrived.allSatisfy { $0.bytes == expected.frame }, "\(arrived.first.map { hex($0.bytes) } ?? "none")")
        #expect(FlowKeys(dissecting: arrived.first?.bytes ?? []).dstMAC == MACAddress("02:00:00:00:0e:aa"))
        #expect(stack.frames(where: TestFrame.isTestFrame).isEmpty, "a redirected frame does not reach the stack")
        #expect(try lab.statistics(once: RuleID(prio: 1, handle: 1), counted: UInt64(sent))
            .rules[RuleID(prio: 1, handle: 1)]?.packets == UInt64(sent))
        #expect(try target.drops() == 0)
    }

    @Test func aVLANTagPushedOnARedirectedFrameIsOnTheWire() throws {
        let lab = try OffloadLab()
        try lab.filter("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 80 "
            + "action vlan push id 100 priority 3 action mirred egress redirect dev TARGET")
        let target = try lab.captureOnTarget()
        let frame = TestFrame.udp(port: 80)
        let expected = try lab.reference(frame)
        try lab.send(frame, count: sent)

        let arrived = try captured(target, sent)
        #expect(arrived.count == sent)
        #expect(arrived.allSatisfy { $0.bytes == expected.frame }, "\(arrived.first.map { hex($0.bytes) } ?? "none")")
        let keys = FlowKeys(dissecting: arrived.first?.bytes ?? [])
        #expect(keys.vlans == [VLANTag(tpid: 0x8100, priority: 3, id: 100)])
        #expect(arrived.first?.bytes.count == frame.count + 4)
    }

    @Test func aVLANTagPoppedFromARedirectedFrameIsGoneFromTheWire() throws {
        let lab = try OffloadLab()
        try lab.filter("filter add dev DEV protocol 802.1Q prio 1 handle 1 flower vlan_id 100 "
            + "action vlan pop action mirred egress redirect dev TARGET")
        let target = try lab.captureOnTarget()
        let tagged = TestFrame.udp(port: 80, vlan: 100)
        let expected = try lab.reference(tagged)
        #expect(expected.frame == Array(tagged[..<12] + tagged[16...]), "the reference pops the tag")
        try lab.send(tagged, count: sent)

        let arrived = try captured(target, sent)
        #expect(arrived.count == sent)
        #expect(arrived.allSatisfy { $0.bytes == expected.frame }, "\(arrived.first.map { hex($0.bytes) } ?? "none")")
        let keys = FlowKeys(dissecting: arrived.first?.bytes ?? [])
        #expect(keys.vlans.isEmpty && keys.etherType == 0x0800)
    }

    @Test func aFrameRedirectedToItsOwnDeviceGoesBackToTheSender() throws {
        let lab = try OffloadLab()
        let receiving = try lab.passEverythingOnPeer()
        defer { withExtendedLifetime(receiving) {} }
        try lab.filter("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 7 "
            + "action skbmod set dmac 02:00:00:00:0e:01 set smac 02:00:00:00:0e:02 "
            + "action mirred egress redirect dev DEV")
        let sender = try Capture(device: lab.peer, namespace: lab.namespace)
        let frame = TestFrame.udp(port: 7)
        let expected = try lab.reference(frame)
        #expect(expected.verdict == .tx)
        try lab.send(frame, count: sent)

        let returned = try captured(sender, sent)
        #expect(returned.count == sent)
        #expect(returned.allSatisfy { $0.bytes == expected.frame }, "\(returned.first.map { hex($0.bytes) } ?? "none")")
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

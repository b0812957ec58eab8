import FlowCompiler
import FlowOffload
import FlowRules
import KernelTestSupport
import Packets
import Testing

/// Each action on the wire: frames from the generator in the peer's namespace, rules
/// on the live device, and what arrives captured where it should (or nothing, where
/// nothing should), byte for byte as the reference classifier says, with counters
/// equal to what was sent (less what the kernel itself dropped on a full veth ring,
/// which its own counters tell).
@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct WireTests {
    let sent = 1000
    let rule = RuleID(prio: 1, handle: 1)

    @Test func aDroppedFrameNeverReachesTheStackAndItsRuleCountsEveryOne() throws {
        let lab = try OffloadLab()
        try lab.filter("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 53 action drop")
        let stack = try lab.captureOnDevice()
        let dropped = TestFrame.udp(port: 53), passed = TestFrame.udp(port: 54)
        let met = try lab.sendCounted(dropped, count: sent)
        let metPassing = try lab.sendCounted(passed, count: 300)

        let statistics = try lab.statistics(once: rule, counted: UInt64(met))
        #expect(statistics.rules[rule]?.packets == UInt64(met))
        #expect(statistics.rules[rule]?.bytes == UInt64(met * dropped.count))
        #expect(statistics.misses.packets == UInt64(metPassing))
        #expect(try captured(stack, metPassing).count == metPassing, "the frames no rule drops reach the stack")
        #expect(stack.frames(where: { $0 == dropped }).isEmpty, "no dropped frame reached the stack")
        #expect(try stack.drops() == 0 && lab.deviceStatistics().receiveDrops == 0)
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

        let (met, arrived) = try deliver(frame, lab, to: target, leaving: lab.targetStatistics)
        #expect(arrived.allSatisfy { $0.bytes == expected.frame }, "\(arrived.first.map { hex($0.bytes) } ?? "none")")
        #expect(FlowKeys(dissecting: arrived.first?.bytes ?? []).dstMAC == MACAddress("02:00:00:00:0e:aa"))
        #expect(stack.frames(where: TestFrame.isTestFrame).isEmpty, "a redirected frame does not reach the stack")
        #expect(try lab.statistics(once: rule, counted: UInt64(met)).rules[rule]?.packets == UInt64(met))
    }

    @Test func aVLANTagPushedOnARedirectedFrameIsOnTheWire() throws {
        let lab = try OffloadLab()
        try lab.filter("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 80 "
            + "action vlan push id 100 priority 3 action mirred egress redirect dev TARGET")
        let target = try lab.captureOnTarget()
        let frame = TestFrame.udp(port: 80)
        let expected = try lab.reference(frame)

        let (met, arrived) = try deliver(frame, lab, to: target, leaving: lab.targetStatistics)
        #expect(arrived.allSatisfy { $0.bytes == expected.frame }, "\(arrived.first.map { hex($0.bytes) } ?? "none")")
        let keys = FlowKeys(dissecting: arrived.first?.bytes ?? [])
        #expect(keys.vlans == [VLANTag(tpid: 0x8100, priority: 3, id: 100)])
        #expect(try lab.statistics(once: rule, counted: UInt64(met)).rules[rule]?.packets == UInt64(met))
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

        let (met, arrived) = try deliver(tagged, lab, to: target, leaving: lab.targetStatistics)
        #expect(arrived.allSatisfy { $0.bytes == expected.frame }, "\(arrived.first.map { hex($0.bytes) } ?? "none")")
        let keys = FlowKeys(dissecting: arrived.first?.bytes ?? [])
        #expect(keys.vlans.isEmpty && keys.etherType == 0x0800)
        #expect(try lab.statistics(once: rule, counted: UInt64(met)).rules[rule]?.packets == UInt64(met))
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

        let (met, returned) = try deliver(frame, lab, to: sender, leaving: lab.deviceStatistics)
        #expect(returned.allSatisfy { $0.bytes == expected.frame }, "\(returned.first.map { hex($0.bytes) } ?? "none")")
        #expect(try lab.statistics(once: rule, counted: UInt64(met)).rules[rule]?.packets == UInt64(met))
    }

    /// Live-frames test runs recycle their pages without rewriting them, and a page XDPFlow
    /// edited in place and dropped goes straight back to the generator's pool: the
    /// generator must still send the frame it was given, or every test after the first
    /// batch would send something else. Here an edited copy would miss the rule.
    @Test func theGeneratorKeepsSendingItsFrameWhenTheReceiverEditsItInPlace() throws {
        let lab = try OffloadLab()
        try lab.filter("filter add dev DEV prio 1 handle 1 flower src_mac 02:00:00:00:0e:01 "
            + "action vlan push id 5 action drop")
        let frame = TestFrame.udp(port: 9)
        let met = try lab.sendCounted(frame, count: sent)
        let statistics = try lab.statistics(once: rule, counted: UInt64(met))
        #expect(statistics.rules[rule]?.packets == UInt64(met))
        #expect(statistics.misses.packets == 0)
    }

    /// Sends `sent` copies of `frame` and returns how many XDP met and the frames that
    /// arrived in `capture`: all those, except what the device they left through says
    /// its peer's full ring refused (`leaving`'s transmit errors), and nothing more.
    func deliver(_ frame: [UInt8], _ lab: OffloadLab, to capture: Capture,
                 leaving: () throws -> VethStatistics) throws -> (met: Int, arrived: [Capture.Frame]) {
        let before = try leaving()
        let met = try lab.sendCounted(frame, count: sent)
        var refused = 0
        let arrived = try settled(at: met) {
            refused = try leaving().transmitErrors - before.transmitErrors
            return capture.frames(where: TestFrame.isTestFrame).count + refused
        }
        #expect(arrived == met, "met by XDP \(met), arrived \(arrived - refused), refused by a full ring \(refused)")
        #expect(try capture.drops() == 0 && lab.deviceStatistics().receiveDrops == 0)
        return (met, capture.frames(where: TestFrame.isTestFrame))
    }
}

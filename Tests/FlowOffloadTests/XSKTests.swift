import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import KernelTestSupport
import Testing

/// `action xsk` on a live device: frames a rule matches go into the AF_XDP socket bound
/// to the queue they arrive on (a veth has one, queue 0), through the XSKMAP the offload
/// pins; without a socket they go on to the stack, counted.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct XSKTests {
    static let rule = "filter add dev DEV protocol ip prio 1 flower ip_proto udp dst_port 4789 action xsk"

    /// Distinct frames (by source port), so that each one received can be told apart.
    static func frames(_ count: Int, port: UInt16) -> [[UInt8]] {
        (0 ..< count).map { TestFrame.udp(sourcePort: 2000 + UInt16($0), port: port) }
    }

    /// Receives in batches until `count` frames came or the wait is over.
    static func receive(_ socket: XSKSocket, count: Int, timeout: Duration = .seconds(3)) throws -> [[UInt8]] {
        var frames: [[UInt8]] = []
        let deadline = ContinuousClock.now + timeout
        while frames.count < count, ContinuousClock.now < deadline {
            frames += try socket.receive(limit: 16, timeoutMilliseconds: 50)
        }
        return frames
    }

    @Test func aBoundSocketReceivesExactlyTheFramesTheRuleMatches() throws {
        let lab = try OffloadLab()
        try lab.filter(Self.rule)
        let xsks = try BPFKernel.Map(pinnedAt: lab.offload.pins.appending(FlowMaps.xsks))
        #expect(xsks.spec.type == .xskmap && xsks.spec.maxEntries == FlowMaps.xskQueues)
        // veth: AF_XDP in copy mode (zero-copy is a driver feature).
        let socket = try XSKSocket(device: NetworkInterface(named: lab.device), queue: 0,
                                   umem: XSKUmem(XSKConfiguration(frameCount: 256, ringSize: 128, mode: .copy)))
        try socket.insert(into: xsks)

        let matching = Self.frames(40, port: 4789), other = Self.frames(20, port: 53)
        let capture = try lab.captureOnDevice()
        for frame in matching + other { try lab.send(frame, count: 1) }
        let received = try Self.receive(socket, count: matching.count)
        #expect(received.count == matching.count)
        #expect(Set(received) == Set(matching), "the socket gets the matched frames, byte for byte")
        #expect(try socket.receive(limit: 16, timeoutMilliseconds: 100).isEmpty, "and nothing else")
        let passed = try captured(capture, other.count).map(\.bytes)
        #expect(Set(passed) == Set(other), "the stack gets the others, and none of the matched")

        let stats = try lab.statistics(once: RuleID(prio: 1, handle: 1), counted: UInt64(matching.count))
        #expect(stats.rules[RuleID(prio: 1, handle: 1)]?.packets == UInt64(matching.count))
        #expect(stats.xskUnbound?.packets == 0)
        let kernel = try socket.statistics()
        #expect(kernel.rxDropped == 0 && kernel.rxRingFull == 0 && kernel.rxInvalidDescriptors == 0, "\(kernel)")

        // A batch larger than the rx ring's share: the fill ring is refilled as frames are read.
        let many = Self.frames(300, port: 4789)
        for frame in many { try lab.send(frame, count: 1) }
        let more = try Self.receive(socket, count: many.count)
        let lost = try socket.statistics()
        #expect(more.count + Int(lost.rxDropped + lost.rxRingFull) >= many.count - 1, "\(lost)")
        #expect(Set(more).isSubset(of: Set(many)))
    }

    @Test func withoutASocketTheFramesPassToTheStackCounted() throws {
        let lab = try OffloadLab()
        try lab.filter(Self.rule)
        #expect(try lab.reference(TestFrame.udp(port: 4789)).verdict == .pass)
        let frames = Self.frames(30, port: 4789)
        let capture = try lab.captureOnDevice()
        for frame in frames { try lab.send(frame, count: 1) }
        let passed = try captured(capture, frames.count).map(\.bytes)
        #expect(Set(passed) == Set(frames))
        let stats = try lab.statistics(once: RuleID(prio: 1, handle: 1), counted: UInt64(frames.count))
        #expect(stats.xskUnbound?.packets == UInt64(frames.count))
        #expect(stats.xskUnbound?.bytes == UInt64(frames.reduce(0) { $0 + $1.count }))
        #expect(try lab.xdpflow("show dev DEV").contains("  xsk, no socket bound: Sent \(frames.reduce(0) { $0 + $1.count }) bytes \(frames.count) pkt"))
        #expect(try lab.xdpflow("-j show dev DEV").contains("\"xsk_unbound\":{\"packets\":\(frames.count)"))
    }

    /// A socket bound to the queue, then dropped: its entry goes with it and frames pass again.
    @Test func aClosedSocketLeavesTheQueueUnbound() throws {
        let lab = try OffloadLab()
        try lab.filter(Self.rule)
        let xsks = try BPFKernel.Map(pinnedAt: lab.offload.pins.appending(FlowMaps.xsks))
        do {
            let socket = try XSKSocket(device: NetworkInterface(named: lab.device), queue: 0,
                                       umem: XSKUmem(XSKConfiguration(frameCount: 64, ringSize: 32, mode: .copy)))
            try socket.insert(into: xsks)
        }
        // The kernel takes a socket out of every XSKMAP when it closes.
        let frames = Self.frames(5, port: 4789)
        for frame in frames { try lab.send(frame, count: 1) }
        let stats = try lab.statistics(once: RuleID(prio: 1, handle: 1), counted: UInt64(frames.count))
        #expect(stats.xskUnbound?.packets == UInt64(frames.count))
    }

    @Test func aSocketRefusesWhatItCannotDo() throws {
        #expect(throws: BPFError.self) { try XSKUmem(XSKConfiguration(frameCount: 100)) }
        let lab = try OffloadLab()
        try lab.filter(Self.rule)
        let socket = try XSKSocket(device: NetworkInterface(named: lab.device), queue: 0,
                                   umem: XSKUmem(XSKConfiguration(frameSize: 2048, frameCount: 64, ringSize: 32, mode: .copy)))
        #expect(throws: BPFError.self) { try socket.send([[UInt8](repeating: 0, count: 4000)]) }
        let counters = try BPFKernel.Map(pinnedAt: lab.offload.pins.appending(FlowMaps.counters))
        #expect(throws: BPFError.self) { try socket.insert(into: counters) }
        // Sent frames leave through the device to its peer (copy mode: on sendto).
        #expect(try socket.send(Self.frames(4, port: 9)) == 4)
    }
}

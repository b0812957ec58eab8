import BPFKernel
import FlowCompiler
import FlowOffload
import Foundation
import KernelTestSupport
import Packets
import Testing

/// `xdpflow capture`: the frames `xsk` rules steer, received over AF_XDP and written as
/// pcapng with their rule and mark, read back by XDPFlow and by tcpdump; the others go
/// to the stack; every frame is accounted for.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct CaptureCommandTests {
    /// The lab, attached with the rule in the metadata, and two xsk rules: one marks.
    static func lab(queues: Int = 1) throws -> OffloadLab {
        let lab = try OffloadLab(attach: false, queues: queues)
        _ = try lab.offload.attach(mode: .native, metadata: .rule)
        try lab.filter("filter add dev DEV protocol ip prio 1 flower ip_proto udp dst_port 4789 action skbedit mark 5 action xsk")
        try lab.filter("filter add dev DEV protocol ip prio 2 flower ip_proto udp dst_port 4790 action xsk")
        return lab
    }

    static func frames(_ count: Int, port: UInt16) -> [[UInt8]] {
        (0 ..< count).map { TestFrame.udp(sourcePort: 3000 + UInt16($0), port: port) }
    }

    @Test func theSteeredFramesArriveInPcapngWithTheirRuleAndMark() throws {
        let lab = try Self.lab()
        let marked = Self.frames(20, port: 4789), plain = Self.frames(10, port: 4790), others = Self.frames(15, port: 53)
        let file = lab.state.path.appending("capture.pcapng").string
        let capture = try CaptureProcess(lab, "capture dev DEV -w \(file) -c \(marked.count + plain.count) --batch 8")
        defer { capture.stop() }
        let stack = try lab.captureOnDevice()
        for frame in marked + others + plain { try lab.send(frame, count: 1) }

        let result = try capture.wait()
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.errors.contains("\(marked.count + plain.count) packets captured\n0 packets dropped by kernel"),
                "\(result.errors)")
        let pcap = try PcapFile.read(path: file)
        #expect(Set(pcap.records.map(\.data)) == Set(marked + plain), "the steered frames, byte for byte")
        for record in pcap.records {
            let expected = marked.contains(record.data) ? "prio 1 handle 0x1 mark 0x5 queue 0" : "prio 2 handle 0x1 queue 0"
            #expect(record.comment == expected)
        }
        // tcpdump reads the file, and sees the same frames.
        let read = try execute(["tcpdump", "-n", "-r", file, "udp", "dst", "port", "4789"])
        #expect(read.status == 0, "\(read.errors)")
        #expect(read.output.split(separator: "\n").count == marked.count, "\(read.output)")

        let passed = try captured(stack, others.count).map(\.bytes)
        #expect(Set(passed) == Set(others), "the stack gets the others, and none of the steered")
        let stats = try lab.statistics(once: RuleID(prio: 1, handle: 1), counted: UInt64(marked.count))
        #expect(stats.rules[RuleID(prio: 2, handle: 1)]?.packets == UInt64(plain.count))
        #expect(stats.xskUnbound?.packets == 0, "every steered frame found the capture's socket")
    }

    /// Without -c the capture runs until SIGINT, prints a line a frame without -w, and
    /// says what it took; its sockets gone, the rule's frames go to the stack, counted.
    @Test func sigintEndsTheCaptureAndTheQueueIsUnboundAgain() throws {
        let lab = try Self.lab()
        let capture = try CaptureProcess(lab, "capture dev DEV")
        defer { capture.stop() }
        let steered = Self.frames(5, port: 4790)
        for frame in steered { try lab.send(frame, count: 1) }
        _ = try settled(at: steered.count) { capture.output().split(separator: "\n").count }
        capture.interrupt()
        let result = try capture.wait()
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.errors.contains("5 packets captured"), "\(result.errors)")
        let lines = result.output.split(separator: "\n")
        #expect(lines.count == steered.count)
        #expect(lines.allSatisfy { $0.hasSuffix(" prio 2 handle 0x1 queue 0, length \(steered[0].count)") }, "\(lines)")

        let after = Self.frames(3, port: 4790)
        for frame in after { try lab.send(frame, count: 1) }
        let stats = try lab.statistics(once: RuleID(prio: 2, handle: 1), counted: UInt64(steered.count + after.count))
        #expect(stats.xskUnbound?.packets == UInt64(after.count))
    }

    /// A socket on every receive queue: a veth receives an XDP frame on the queue of the
    /// CPU that sent it, so frames sent from each CPU arrive on queues of their own.
    @Test func everyReceiveQueueHasItsSocket() throws {
        let lab = try Self.lab(queues: 4)
        let cpus = min(ProcessInfo.processInfo.activeProcessorCount, 4)
        let frame = TestFrame.udp(port: 4790)
        let capture = try CaptureProcess(lab, "capture dev DEV -c \(3 * cpus)")
        defer { capture.stop() }
        #expect(capture.errors().contains("capturing on \(lab.device) (4 receive queues)"), "\(capture.errors())")
        for cpu in 0 ..< cpus {
            try lab.veths.inNamespace(["taskset", "-c", "\(cpu)", xdpflowBinary, "gen", "dev", lab.peer, "--count", "3",
                                       "--packet", hex(frame)])
        }
        let result = try capture.wait()
        #expect(result.status == 0, "\(result.errors)")
        // Each line: TIME prio P handle 0xH queue Q, length L
        let queues = result.output.split(separator: "\n").map { line in
            line.split(separator: " ").drop { $0 != "queue" }.dropFirst().first ?? ""
        }
        #expect(Set(queues) == Set((0 ..< cpus).map { Substring("\($0),") }), "\(result.output)")
    }

    @Test func aCaptureNeedsAnAttachedDeviceWithAnXskRule() throws {
        let lab = try OffloadLab()
        let none = try execute(lab.xdpflowCommand("capture dev DEV -c 1"))
        #expect(none.status == 2)
        #expect(none.errors.contains("no rule of \(lab.device) has action xsk"), "\(none.errors)")
        let bad = try execute(lab.xdpflowCommand("capture dev DEV --batch 0"))
        #expect(bad.status == 1 && bad.errors.contains("--batch 0"), "\(bad.errors)")
        try lab.filter("filter add dev DEV protocol ip prio 1 flower ip_proto udp dst_port 4789 action xsk")
        let unwritable = try execute(lab.xdpflowCommand("capture dev DEV -c 1 -w /proc/xdpflow-no-such-dir/x.pcapng"))
        #expect(unwritable.status == 2, "\(unwritable.errors)")
        #expect(unwritable.errors.contains("cannot open /proc/xdpflow-no-such-dir/x.pcapng: No such file or directory"),
                "\(unwritable.errors)")
        try lab.offload.detach()
        let detached = try execute(lab.xdpflowCommand("capture dev DEV -c 1"))
        #expect(detached.status == 2 && detached.errors.contains("is not attached"), "\(detached.errors)")
    }
}

/// `xdpflow capture` running in the background, its streams in files; ready once it says
/// what it captures on.
final class CaptureProcess {
    private let process = Process()
    private let directory: URL

    init(_ lab: OffloadLab, _ line: String) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("xft-capture-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for name in ["stdout", "stderr"] {
            _ = FileManager.default.createFile(atPath: directory.appendingPathComponent(name).path, contents: nil)
        }
        let command = lab.xdpflowCommand(line)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        process.standardOutput = try FileHandle(forWritingTo: directory.appendingPathComponent("stdout"))
        process.standardError = try FileHandle(forWritingTo: directory.appendingPathComponent("stderr"))
        try process.run()
        let ready = try settled(at: true, timeout: .seconds(5)) { errors().contains("capturing on") || !process.isRunning }
        guard ready, process.isRunning else {
            throw CaptureError("xdpflow capture did not start: \(errors())")
        }
    }

    func output() -> String { read("stdout") }
    func errors() -> String { read("stderr") }

    private func read(_ name: String) -> String {
        (try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)) ?? ""
    }

    func interrupt() { process.interrupt() }

    /// Waits for the exit (at most 10 s, then it is killed and this throws).
    func wait() throws -> CommandResult {
        let running = try settled(at: false, timeout: .seconds(10)) { process.isRunning }
        guard !running else {
            stop()
            throw CaptureError("xdpflow capture did not exit: \(errors())")
        }
        return CommandResult(status: process.terminationStatus, output: output(), errors: errors())
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }
}

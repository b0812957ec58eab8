import BPFAssembly
import CLibBPF

/// Sends real frames out of a device without pktgen: BPF_PROG_TEST_RUN in live-frames
/// mode runs a program that returns XDP_TX, so each run transmits the frame through
/// the device's transmit path (the kernel path xdp-trafficgen uses).
public struct TrafficGenerator {
    public let device: NetworkInterface

    public init(device: NetworkInterface) throws(BPFError) {
        self.device = device
        _ = try Self.program(writing: [UInt8](repeating: 0, count: 14))   // fails here, not at the first send
    }

    /// Transmits `frame` `count` times and returns the elapsed wall-clock time in
    /// nanoseconds. The frame must be at least 14 bytes (an Ethernet header).
    @discardableResult
    public func send(_ frame: [UInt8], count: Int, batchSize: Int = 64) throws(BPFError) -> UInt64 {
        guard frame.count >= 14 else { throw .invalidArgument("a frame needs at least 14 bytes, got \(frame.count)") }
        guard frame.count <= 4096 else { throw .invalidArgument("a frame must fit a page, got \(frame.count) bytes") }
        let program = try Self.program(writing: frame)
        let run = TestRun(packet: frame, context: XDPTestContext(ingressIfindex: device.index),
                          repeatCount: count, liveFrames: true, batchSize: batchSize)
        let start = monotonicNanoseconds()
        _ = try program.testRun(run)
        return monotonicNanoseconds() - start
    }

    /// A program that writes `frame` into the packet, then returns XDP_TX. Live-frames
    /// runs recycle their pages without rewriting them (Documentation/bpf/bpf_prog_run.rst),
    /// and a page comes back changed when the receiving side's XDP program edited the
    /// frame in place (a VLAN pushed or popped, a MAC rewritten): without the writes,
    /// later copies would go out with those edits instead of `frame`.
    static func program(writing frame: [UInt8]) throws(BPFError) -> Program {
        var asm = Assembler()
        asm.emit(.load(.r2, .word, from: .r1, XDPContext.data))
        asm.emit(.load(.r3, .word, from: .r1, XDPContext.dataEnd))
        asm.emit(.mov(.r4, .r2))
        asm.emit(.alu(.add, .r4, Int32(frame.count)))
        asm.emit(.jump(.greater, .r4, .r3, to: "send"))
        var offset = 0
        for size in [Size.word, .half, .byte] {
            while frame.count - offset >= size.bytes {
                let value = frame[offset..<offset + size.bytes].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                asm.emit(.store(size, to: .r2, Int16(offset), Int32(bitPattern: value)))
                offset += size.bytes
            }
        }
        asm.label("send")
        asm.emit(Instruction.return(XDPAction.tx))
        return try Program.loadXDP(name: "xdpflow_gen", instructions: try! asm.assemble())
    }
}

func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

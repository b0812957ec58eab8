import BPFAssembly
import CLibBPF

/// Sends real frames out of a device without pktgen: BPF_PROG_TEST_RUN in live-frames
/// mode runs a program that returns XDP_TX, so each run transmits the frame through
/// the device's transmit path (the kernel path xdp-trafficgen uses).
public struct TrafficGenerator {
    public let device: NetworkInterface
    private let program: Program

    public init(device: NetworkInterface) throws(BPFError) {
        self.device = device
        var asm = Assembler()
        asm.emit(Instruction.return(XDPAction.tx))
        program = try Program.loadXDP(name: "xdpflow_gen", instructions: try! asm.assemble())
    }

    /// Transmits `frame` `count` times and returns the elapsed wall-clock time in
    /// nanoseconds. The frame must be at least 14 bytes (an Ethernet header).
    @discardableResult
    public func send(_ frame: [UInt8], count: Int, batchSize: Int = 64) throws(BPFError) -> UInt64 {
        guard frame.count >= 14 else { throw .invalidArgument("a frame needs at least 14 bytes, got \(frame.count)") }
        let run = TestRun(packet: frame, context: XDPTestContext(ingressIfindex: device.index),
                          repeatCount: count, liveFrames: true, batchSize: batchSize)
        let start = monotonicNanoseconds()
        _ = try program.testRun(run)
        return monotonicNanoseconds() - start
    }
}

func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

import BPFAssembly
import CLibBPF

/// A frame for `TrafficGenerator`, and how it changes from one transmission to the next.
public struct GeneratedFrame: Hashable, Sendable {
    public var bytes: [UInt8]
    public var variation: FieldVariation?

    public init(_ bytes: [UInt8], variation: FieldVariation? = nil) {
        self.bytes = bytes
        self.variation = variation
    }
}

/// A 16-bit big-endian field (a TCP or UDP port, say) that takes `count` successive
/// values, one per turn of the frame: its value in the frame, then that plus 1, ...
/// (modulo 2^16), and again. A one's-complement checksum over it (TCP, UDP) is kept
/// valid by an incremental update (RFC 1624); a result of 0 is sent as 0xffff, the same
/// sum, so that a UDP checksum never reads as "none".
public struct FieldVariation: Hashable, Sendable {
    public var fieldOffset: Int
    public var checksumOffset: Int?
    public var count: Int

    public init(fieldOffset: Int, checksumOffset: Int?, count: Int) {
        self.fieldOffset = fieldOffset
        self.checksumOffset = checksumOffset
        self.count = count
    }
}

/// What one `TrafficGenerator.send` did.
public struct TrafficReport: Hashable, Sendable {
    /// Frames the program transmitted, as it counted them.
    public var frames: Int
    public var bytes: Int
    /// Wall-clock time from the first test run to the end of the last.
    public var nanoseconds: UInt64

    /// Frames per second achieved.
    public var rate: Double { nanoseconds > 0 ? Double(frames) * 1e9 / Double(nanoseconds) : 0 }
}

/// Sends real frames out of a device without pktgen: BPF_PROG_TEST_RUN in live-frames
/// mode runs a program that returns XDP_TX, so each run transmits the frame through
/// the device's transmit path (the kernel path xdp-trafficgen uses).
///
/// One program holds all the frames of a mix and picks the next in turn from a counter,
/// so one test run sends any mix: a test run of more than one frame costs two RCU grace
/// periods (the kernel adds the program to its XDP dispatcher and takes it out again),
/// tens of milliseconds on a busy machine, which rules out a run per frame of a mix. The
/// program writes the frame's bytes into the packet each time, and sets its length: the
/// kernel recycles the pages of a live-frames run without copying the input in again, and
/// a receiver's XDP program (a VLAN push, a MAC rewrite on the far side of a veth) edits
/// those very pages. A few stores per frame cost little next to the transmission.
public final class TrafficGenerator {
    public let device: NetworkInterface
    /// The mix `send(count:rate:duration:)` sends.
    public let frames: [GeneratedFrame]
    /// Transmissions of the current send, as the program counts them; the frame and the
    /// flow of each follow from it.
    private let counter: ArrayMap<UInt64>
    /// The program of each mix sent so far.
    private var programs: [[GeneratedFrame]: Program] = [:]

    /// The largest frame a live-frames run takes: a 4 KiB page less the XDP headroom,
    /// the runner's own header and `struct skb_shared_info`.
    public static let maximumFrameLength = 3_496
    /// The most frame bytes one program holds (about a quarter as many instructions).
    public static let maximumTotalLength = 256 << 10
    static let counterMap = "xf_gen_counter"

    /// A generator of `frames`; a mix the kernel cannot send is refused here.
    public init(device: NetworkInterface, frames: [GeneratedFrame]) throws(BPFError) {
        self.device = device
        self.frames = frames
        counter = try ArrayMap(name: Self.counterMap, maxEntries: 1)
        if !frames.isEmpty { _ = try program(for: frames) }
    }

    public convenience init(device: NetworkInterface, frame: [UInt8]) throws(BPFError) {
        try self.init(device: device, frames: [GeneratedFrame(frame)])
    }

    /// A generator for `send(_:count:)`, which names its frame each time.
    public convenience init(device: NetworkInterface) throws(BPFError) {
        try self.init(device: device, frames: [])
    }

    /// Transmits `frame` `count` times and returns the elapsed time in nanoseconds.
    @discardableResult
    public func send(_ frame: [UInt8], count: Int) throws(BPFError) -> UInt64 {
        try send([GeneratedFrame(frame)], count: count).nanoseconds
    }

    /// Transmits `count` frames of the generator's mix; see `send(_:count:rate:duration:)`.
    @discardableResult
    public func send(count: Int, rate: Double? = nil, duration: Double? = nil) throws(BPFError) -> TrafficReport {
        try send(frames, count: count, rate: rate, duration: duration)
    }

    /// Transmits `count` frames, the frames of `mix` in turn from the first (and the
    /// first flow), or fewer when `duration` (seconds) runs out first. With `rate` (frames
    /// per second), sends a tenth of a second's worth at a time, each when its tenth is
    /// over; without, runs of a quarter of a second when a duration bounds them, else
    /// as long as `longestRun`.
    @discardableResult
    public func send(_ mix: [GeneratedFrame], count: Int, rate: Double? = nil,
                     duration: Double? = nil) throws(BPFError) -> TrafficReport {
        guard count >= 0 else { throw .trafficGenerator(.negativeCount(count)) }
        if let rate, !(rate > 0) { throw .trafficGenerator(.rateNotPositive(rate)) }
        if let duration, !(duration > 0) { throw .trafficGenerator(.durationNotPositive(duration)) }
        let program = try program(for: mix)
        // The input sets the first length of every page: the longest frame, which the
        // program shortens for the others.
        let longest = mix.map(\.bytes).max { $0.count < $1.count }!
        let run = TestRun(packet: longest, context: XDPTestContext(ingressIfindex: device.index),
                          liveFrames: true, batchSize: Self.kernelBatch)
        var slice = rate.map { max(1, min(Self.longestRun, Int($0 / 10))) }
            ?? (duration == nil ? Self.longestRun : Self.firstTimedRun)
        try counter.set(0, 0)
        var sent = 0
        let start = monotonicNanoseconds()
        let deadline = duration.map { start + UInt64($0 * 1e9) }
        while sent < count {
            let copies = min(slice, count - sent)
            // A slice goes at the end of its time, so that n frames take n / rate seconds.
            let due = rate.map { start + UInt64(Double(sent + copies) / $0 * 1e9) } ?? start
            if let deadline, due > deadline { break }
            sleepUntil(due)
            let runStart = monotonicNanoseconds()
            if let deadline, rate == nil, runStart >= deadline { break }
            try transmit(copies, program, run)
            sent += copies
            if let deadline, rate == nil {
                let now = monotonicNanoseconds()
                let perFrame = Double(now - runStart) / Double(copies)
                let left = Double(deadline) - Double(now)
                slice = max(1, min(Self.longestRun, Int(min(Self.timedRunLength, left) / perFrame)))
            }
        }
        let elapsed = monotonicNanoseconds() - start
        let transmitted = try transmitted()
        return TrafficReport(frames: transmitted, bytes: Self.bytes(of: mix, transmissions: transmitted),
                             nanoseconds: elapsed)
    }

    /// Transmits `copies` frames: one test run, or for a few a run each, since a run of
    /// one frame skips the dispatcher and its grace periods.
    private func transmit(_ copies: Int, _ program: Program, _ run: TestRun) throws(BPFError) {
        var run = run
        let runs = copies < Self.shortestBatchedRun ? copies : 1
        run.repeatCount = copies / runs
        for _ in 0..<runs { _ = try program.testRun(run) }
    }

    private func program(for mix: [GeneratedFrame]) throws(BPFError) -> Program {
        if let program = programs[mix] { return program }
        let program = try Program.loadXDP(name: "xdpflow_gen", instructions: Self.program(for: mix),
                                          maps: [Self.counterMap: counter.map])
        programs[mix] = program
        return program
    }

    /// Frames per test run at most, so that a long send still returns now and then.
    static let longestRun = 1 << 20
    /// Fewer frames than this go one test run each (about 25 us apiece), which is faster
    /// than one run of them all and its two grace periods (10 to 30 ms).
    static let shortestBatchedRun = 256
    /// With a duration: the first run's frames, and how long the next ones should take
    /// (nanoseconds), long enough that grace periods cost little, short enough to stop on time.
    static let firstTimedRun = 1 << 16
    static let timedRunLength = 0.25e9
    /// Frames the kernel handles per batch (its default; at most 256).
    static let kernelBatch = 64

    /// The program's counter: frames transmitted in the current send.
    private func transmitted() throws(BPFError) -> Int {
        Int(try counter.get(0) ?? 0)
    }

    /// Bytes of `transmissions` frames of `mix`, taken in turn from the first.
    static func bytes(of mix: [GeneratedFrame], transmissions: Int) -> Int {
        let lengths = mix.map(\.bytes.count)
        return transmissions / lengths.count * lengths.reduce(0, +)
            + lengths.prefix(transmissions % lengths.count).reduce(0, +)
    }

    // MARK: - The program

    /// n = counter++; frame n % k: set its length, write its bytes, vary its field with
    /// flow n / k (its turn), transmit.
    static func program(for frames: [GeneratedFrame]) throws(BPFError) -> [Instruction] {
        guard !frames.isEmpty else { throw .trafficGenerator(.noFrames) }
        for frame in frames {
            guard frame.bytes.count >= 14 else { throw .trafficGenerator(.frameTooShort(length: frame.bytes.count)) }
            guard frame.bytes.count <= maximumFrameLength else {
                throw .trafficGenerator(.frameTooLong(length: frame.bytes.count, limit: maximumFrameLength))
            }
            if let variation = frame.variation { try variation.validate(frameLength: frame.bytes.count) }
        }
        let total = frames.reduce(0) { $0 + $1.bytes.count }
        guard total <= maximumTotalLength else {
            throw .trafficGenerator(.framesTooLarge(count: frames.count, total: total, limit: maximumTotalLength))
        }

        var asm = Assembler()
        asm.emit(.mov(.context, .r1))
        asm.emit(.loadMapValue(.r1, counterMap))
        asm.emit(.load(.number, .double, from: .r1, 0))
        asm.emit(.mov(.r2, .number))
        asm.emit(.alu(.add, .r2, 1))
        asm.emit(.store(.double, to: .r1, 0, .r2))
        asm.emit(.mov(.turn, .number))
        asm.emit(.alu(.div, .turn, Int32(frames.count)))
        asm.emit(.mov(.frameIndex, .number))
        asm.emit(.alu(.mod, .frameIndex, Int32(frames.count)))
        dispatch(frames.indices, &asm)
        for (index, frame) in frames.enumerated() {
            asm.label(Label("frame_\(index)"))
            emit(frame, index: index, &asm)
        }
        do {
            return try asm.assemble()
        } catch {
            throw .assembly(program: "xdpflow_gen", error)
        }
    }

    /// A binary search on the frame index, ending in a long jump to the frame's code.
    static func dispatch(_ range: Range<Int>, _ asm: inout Assembler) {
        guard range.count > 1 else {
            asm.emit(.jumpLong(to: Label("frame_\(range.lowerBound)")))
            return
        }
        let middle = range.lowerBound + range.count / 2
        let upper = Label("frames_\(middle)_\(range.upperBound)")
        asm.emit(.jump(.greaterOrEqual, .frameIndex, Int32(middle), to: upper))
        dispatch(range.lowerBound ..< middle, &asm)
        asm.label(upper)
        dispatch(middle ..< range.upperBound, &asm)
    }

    /// One frame's code: length, bytes, variation, XDP_TX.
    static func emit(_ frame: GeneratedFrame, index: Int, _ asm: inout Assembler) {
        let bytes = frame.bytes
        let sized = Label("sized_\(index)"), inBounds = Label("in_bounds_\(index)")
        asm.emit(.mov(.r1, .context))
        asm.emit(.call(.xdpGetBuffLen))
        asm.emit(.mov(.r2, Int32(bytes.count)))
        asm.emit(.alu(.sub, .r2, .r0))
        asm.emit(.jump(.equal, .r2, 0, to: sized))
        asm.emit(.mov(.r1, .context))
        asm.emit(.call(.xdpAdjustTail))
        asm.emit(.jump(.equal, .r0, 0, to: sized))
        asm.emit(Instruction.return(XDPAction.drop))  // the page has room: not seen
        asm.label(sized)
        let data = Register.r2, end = Register.r3, scratch = Register.r4
        asm.emit(.load(data, .word, from: .context, XDPContext.data))
        asm.emit(.load(end, .word, from: .context, XDPContext.dataEnd))
        asm.emit(.mov(scratch, data))
        asm.emit(.alu(.add, scratch, Int32(bytes.count)))
        asm.emit(.jump(.lessOrEqual, scratch, end, to: inBounds))
        asm.emit(Instruction.return(XDPAction.drop))
        asm.label(inBounds)
        asm.emit(restoring(bytes, data: data, scratch: scratch))
        if let variation = frame.variation { vary(variation, in: bytes, data: data, index: index, &asm) }
        asm.emit(Instruction.return(XDPAction.tx))
    }

    /// Stores that write `bytes` at `data`: 8 bytes at a time, then 4, 2, 1.
    static func restoring(_ bytes: [UInt8], data: Register, scratch: Register) -> [Instruction] {
        var instructions: [Instruction] = []
        var offset = 0
        while offset < bytes.count {
            let size = [Size.double, .word, .half, .byte].first { offset + $0.bytes <= bytes.count }!
            var value: UInt64 = 0
            for (index, byte) in bytes[offset ..< offset + size.bytes].enumerated() {
                value |= UInt64(byte) << (8 * UInt64(index))  // memory order on a little-endian CPU
            }
            if size == .double {  // a store's immediate has 32 bits
                instructions.append(.loadImmediate(scratch, Int64(bitPattern: value)))
                instructions.append(.store(size, to: data, Int16(offset), scratch))
            } else {
                instructions.append(.store(size, to: data, Int16(offset), Int32(truncatingIfNeeded: value)))
            }
            offset += size.bytes
        }
        return instructions
    }

    /// value = field + turn % count; checksum' = ~(~checksum + ~field + value).
    static func vary(_ variation: FieldVariation, in bytes: [UInt8], data: Register, index: Int,
                     _ asm: inout Assembler) {
        let value = Register.r4, sum = Register.r5, carry = Register.r0
        let original = bigEndian(bytes, at: variation.fieldOffset)
        asm.emit(.mov(value, .turn))
        asm.emit(.alu(.mod, value, Int32(variation.count)))
        asm.emit(.alu(.add, value, Int32(original)))
        asm.emit(.alu(.and, value, 0xffff))
        if let checksumOffset = variation.checksumOffset {
            let checksum = bigEndian(bytes, at: checksumOffset)
            let notZero = Label("checksum_not_zero_\(index)")
            asm.emit(.mov(sum, Int32(~checksum) + Int32(~original)))
            asm.emit(.alu(.add, sum, value))
            for _ in 0..<2 {  // fold the carries back in
                asm.emit([.mov(carry, sum), .alu(.rsh, carry, 16), .alu(.and, sum, 0xffff), .alu(.add, sum, carry)])
            }
            asm.emit(.alu(.xor, sum, 0xffff))
            asm.emit(.jump(.notEqual, sum, 0, to: notZero))
            asm.emit(.mov(sum, 0xffff))
            asm.label(notZero)
            asm.emit(.endian(.big, sum, bits: 16))
            asm.emit(.store(.half, to: data, Int16(checksumOffset), sum))
        }
        asm.emit(.endian(.big, value, bits: 16))
        asm.emit(.store(.half, to: data, Int16(variation.fieldOffset), value))
    }

    static func bigEndian(_ bytes: [UInt8], at offset: Int) -> UInt16 {
        UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }
}

private extension Register {
    /// What the generator keeps across helper calls: the context, the transmission's
    /// number, the index of its frame, the frame's turn (number / frames).
    static let context = Register.r6, number = Register.r7, frameIndex = Register.r8, turn = Register.r9
}

extension FieldVariation {
    func validate(frameLength: Int) throws(BPFError) {
        guard (1...65_536).contains(count) else { throw .trafficGenerator(.flowCountOutOfRange(count)) }
        for offset in [fieldOffset] + (checksumOffset.map { [$0] } ?? []) where offset < 0 || offset + 2 > frameLength {
            throw .trafficGenerator(.offsetOutsideFrame(offset: offset, frameLength: frameLength))
        }
    }
}

func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// Sleeps until the monotonic clock reads `deadline` (nanoseconds); at once when it has passed.
func sleepUntil(_ deadline: UInt64) {
    var target = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
    while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &target, nil) == EINTR {}
}

/// Why a traffic generator refuses a send or a frame mix.
public enum TrafficGeneratorError: Error, Hashable, Sendable, CustomStringConvertible {
    case negativeCount(Int)
    case rateNotPositive(Double)
    case durationNotPositive(Double)
    case noFrames
    case frameTooShort(length: Int)
    case frameTooLong(length: Int, limit: Int)
    /// The distinct frames of a mix hold more bytes than one program carries.
    case framesTooLarge(count: Int, total: Int, limit: Int)
    case flowCountOutOfRange(Int)
    case offsetOutsideFrame(offset: Int, frameLength: Int)

    public var description: String {
        switch self {
        case .negativeCount(let count): "count \(count) is negative"
        case .rateNotPositive(let rate): "rate \(rate) is not positive"
        case .durationNotPositive(let duration): "duration \(duration) is not positive"
        case .noFrames: "no frame to send"
        case .frameTooShort(let length): "a frame needs at least 14 bytes, got \(length)"
        case .frameTooLong(let length, let limit): "a frame of \(length) bytes is longer than the \(limit) a live-frames run sends"
        case .framesTooLarge(let count, let total, let limit):
            "\(count) frames of \(total) bytes in all; one generator sends at most \(limit) bytes of distinct frames"
        case .flowCountOutOfRange(let count): "flows \(count): expected 1 to 65536"
        case .offsetOutsideFrame(let offset, let length): "offset \(offset) is outside a frame of \(length) bytes"
        }
    }
}

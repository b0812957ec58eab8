import ArgumentParser
import BPFKernel
import FlowCompiler
import FlowOffload
import FoundationEssentials
import Glibc
import Packets

/// `xdpflow capture dev DEV`: the frames that `action xsk` rules steer, received over
/// AF_XDP in batches and written as pcapng, each with its rule and mark.
struct Capture: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Receive the frames that rules with action xsk steer, over AF_XDP, as pcapng.",
        usage: "xdpflow capture dev DEV [-w FILE|-] [-c COUNT] [--batch N] [--busy-poll USEC]",
        discussion: """
            Binds an AF_XDP socket to each receive queue of DEV and puts it in the device's \
            XSKMAP, where the frames of every rule with action xsk go (the device must be \
            attached and have such a rule). Frames that no xsk rule decides are not seen \
            and not disturbed: they go where the rules send them. Frames are taken from the \
            sockets' rings up to N at a time; when the rings are empty, the capture looks \
            again for USEC microseconds before it sleeps (under load, the next frames \
            come sooner than a wakeup would).

            With -w, each frame is written to FILE (- is standard output) as pcapng, which \
            tcpdump, tshark and Wireshark read, with nanosecond timestamps (when the batch \
            was received: AF_XDP gives none of its own) and a packet comment saying what \
            the program wrote in front of the frame: 'prio P handle 0xH' (the rule that \
            decided it; only when attached with metadata rule), 'mark 0xM' (when a rule \
            set one), 'queue Q'. Without -w, one line a frame, as tcpdump prints: time, \
            the same words, length.

            On SIGINT or SIGTERM, or after COUNT frames, the sockets close (their frames \
            go to the stack again, counted as xsk, no socket bound) and standard error \
            says, as tcpdump does:
              P packets captured
              D packets dropped by kernel (rx ring full R, fill ring empty F)
            where D counts what the sockets' rings could not take.

            EXIT STATUS
              0 stopped by a signal or COUNT; 1 the command could not be read; 2 refused
              (not root, DEV not attached or without an xsk rule, FILE not writable).
            """)

    @OptionGroup(visibility: .hidden) var global: GlobalOptions

    @Argument(help: ArgumentHelp("dev DEV", valueName: "dev DEV"))
    var words: [String]

    @Option(name: .customShort("w"), help: ArgumentHelp("Write pcapng to FILE ('-': standard output).",
                                                          valueName: "FILE"))
    var file: String?

    @Option(name: .customShort("c"), help: ArgumentHelp("Stop after COUNT frames.", valueName: "COUNT"))
    var count: Int?

    @Option(name: .customLong("batch"), help: ArgumentHelp("Take up to N frames from a ring at a time (default 64).",
                                                          valueName: "N"))
    var batch = 64

    @Option(name: .customLong("busy-poll"), help: ArgumentHelp(
        "Look at empty rings for USEC microseconds before sleeping (default 50; 0: sleep at once).",
        valueName: "USEC"))
    var busyPoll = 50

    func validate() throws {
        if let count, count <= 0 { throw ValidationError("capture: -c \(count): expected a positive count") }
        if !(1 ... 4096).contains(batch) { throw ValidationError("capture: --batch \(batch): expected 1 to 4096") }
        if !(0 ... 1_000_000).contains(busyPoll) {
            throw ValidationError("capture: --busy-poll \(busyPoll): expected 0 to 1000000 microseconds")
        }
    }

    func run() throws {
        let name = try DeviceWords.device(in: words, command: "capture")
        // 8,192 frames of 2 KiB lent to the kernel on each queue: 3 ms of a burst at
        // 2.5 Mpps while the output is written.
        let capture = try Offload(device: name).capture(XSKConfiguration(frameSize: 2048, frameCount: 16_384,
                                                                         ringSize: 8192))
        capture.busyPoll = .microseconds(busyPoll)
        // The file once the device is known to have something for it (tcpdump's order).
        let output = try CaptureOutput(path: file, device: name)
        // Caught before the capture says it listens: whoever waits for that may stop it.
        let stop = StopSignals()
        let queues = capture.queues == 1 ? "1 receive queue" : "\(capture.queues) receive queues"
        Self.say("capturing on \(name) (\(queues)), the frames of its xsk rules, link-type EN10MB (Ethernet)")
        if capture.metadata == .mark {
            Self.say("Warning: \(name) is attached with metadata mark: the frames carry marks, not their rules "
                     + "(for those: xdpflow detach dev \(name); xdpflow attach dev \(name) metadata rule)")
        }
        // Plain values: an @Option read costs a generic metadata lookup, every frame.
        let limit = count ?? .max, batch = batch
        var captured = 0
        while !stop.requested, captured < limit {
            let now = Self.realtimeNanoseconds()
            let taken = try capture.receive(batch: batch, timeoutMilliseconds: 250) { frame in
                guard captured < limit else { return }
                captured += 1
                output.append(frame, nanoseconds: now)
            }
            // Written when the rings ran dry, or every few hundred kilobytes under load.
            if taken < batch * capture.queues || output.pending >= CaptureOutput.flushSize { try output.flush() }
        }
        try output.flush()
        let stats = try capture.statistics()
        let dropped = stats.rxDropped + stats.rxRingFull
        Self.say("\(captured) packet\(captured == 1 ? "" : "s") captured\n"
                 + "\(dropped) packet\(dropped == 1 ? "" : "s") dropped by kernel "
                 + "(rx ring full \(stats.rxRingFull), fill ring empty \(stats.fillRingEmpty))")
    }

    static func say(_ line: String) { printError(line + "\n") }

    static func realtimeNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// The words a frame's comment and line carry: its rule, its mark, its queue.
    static func words(_ metadata: FlowMetadata?, queue: UInt32) -> String {
        var words: [String] = []
        if let rule = metadata?.rule { words.append("prio \(rule.prio) handle 0x\(String(rule.handle, radix: 16))") }
        if let mark = metadata?.mark { words.append("mark 0x\(String(mark, radix: 16))") }
        words.append("queue \(queue)")
        return words.joined(separator: " ")
    }
}

/// Where a capture's frames go: pcapng to a file or standard output, or a line a frame.
/// Bytes are gathered per batch and written with one call.
final class CaptureOutput {
    private let fd: Int32
    private let path: String
    private let pcapng: Bool
    private var buffer: [UInt8] = []

    init(path: String?, device: String) throws {
        self.path = path ?? "standard output"
        pcapng = path != nil
        if let path, path != "-" {
            fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                throw CommandError.refused(CaptureWriteError(path: path, operation: "open", errno: errno))
            }
        } else {
            fd = STDOUT_FILENO
        }
        buffer.reserveCapacity(1 << 20)
        if pcapng { buffer += PcapNGWriter.header(interfaceName: device) }
    }

    deinit { if fd != STDOUT_FILENO { close(fd) } }

    static let flushSize = 256 << 10

    /// Bytes gathered and not yet written.
    var pending: Int { buffer.count }

    /// What the metadata and queue of a frame say, as a line's words and as a pcapng
    /// comment: made once for each (a capture meets few), not for every frame.
    private struct Origin: Hashable {
        var metadata: FlowMetadata?
        var queue: UInt32
    }

    private typealias Said = (words: String, comment: PcapNGWriter.Comment)
    private var said: [Origin: Said] = [:]
    /// The last frame's: most frames in a row come from one rule.
    private var last: (origin: Origin, said: Said)?

    func append(_ frame: FlowCapture.Frame, nanoseconds: UInt64) {
        let origin = Origin(metadata: frame.metadata, queue: frame.queue)
        if origin != last?.origin {
            let made = said[origin] ?? {
                let words = Capture.words(frame.metadata, queue: frame.queue)
                return (words, PcapNGWriter.Comment(words))
            }()
            said[origin] = made
            last = (origin, made)
        }
        let (words, comment) = last!.said
        if pcapng {
            PcapNGWriter.appendPacket(frame.bytes, nanoseconds: nanoseconds, comment: comment, to: &buffer)
        } else {
            let seconds = nanoseconds / 1_000_000_000, micros = nanoseconds % 1_000_000_000 / 1000
            func digits(_ value: UInt64, _ width: Int) -> String { String(value).leftPadded(to: width) }
            let clock = "\(digits(seconds / 3600 % 24, 2)):\(digits(seconds / 60 % 60, 2)):\(digits(seconds % 60, 2))."
                + digits(micros, 6)
            buffer += Array("\(clock) \(words), length \(frame.bytes.count)\n".utf8)
        }
    }

    /// Writes what was gathered; a frame is on its way before the next batch is taken.
    func flush() throws {
        do {
            try FileBytes.write(buffer, to: fd)
        } catch {
            throw CommandError.refused(CaptureWriteError(path: path, operation: "write", errno: error.errno))
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

struct CaptureWriteError: Error, CustomStringConvertible {
    var path: String
    var operation: String
    var errno: Int32
    var description: String { "capture: cannot \(operation) \(path): \(String(cString: strerror(errno)))" }
}

/// SIGINT and SIGTERM, caught: a capture ends its loop, closes its sockets and reports,
/// as tcpdump does. The handler only sets a flag, and interrupts the poll it waits in.
final class StopSignals {
    nonisolated(unsafe) private static var caught: sig_atomic_t = 0

    init() {
        var signals = sigset_t()
        sigemptyset(&signals)
        for number in [SIGINT, SIGTERM] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in StopSignals.caught = 1 }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0   // no SA_RESTART: the poll returns at once
            sigaction(number, &action, nil)
            sigaddset(&signals, number)
        }
        // A parent may have started us with them blocked (the mask is inherited).
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
    }

    var requested: Bool { Self.caught != 0 }
}

import ArgumentParser
import BPFKernel
import FoundationEssentials
import Glibc
import Packets

/// `xdpflow gen dev DEV`: transmit frames out of a device (live-frames test runs).
struct Gen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send real frames out of a device, without pktgen.",
        usage: """
            xdpflow [-j [-p]] gen dev DEV [--pcap FILE | --packet HEX...] [--count N]
                    [--duration SECONDS] [--rate PPS] [--flows N]
            """,
        discussion: """
            Runs a program returning XDP_TX with BPF_PROG_TEST_RUN in live-frames mode, so \
            each frame leaves through DEV's transmit path; on a veth it arrives at the peer. \
            A veth peer must run an XDP program (or have GRO on) to receive such frames.

            The frames (of a pcap or pcapng file, or --packet, which may be given several \
            times) take turns in their order: one program holds them all, so a mix goes as \
            fast as a single frame. Every frame leaves exactly as given, even when a \
            receiver's XDP program edited the kernel's recycled copy of it. At the end: \
            frames sent and the rate achieved (pps); -j prints them as JSON.
            """
    )

    /// -j and -p (the usage shows them); the root command reads them wherever they stand.
    @OptionGroup(visibility: .hidden) var global: GlobalOptions

    @Argument(help: ArgumentHelp("dev DEV", valueName: "dev DEV"))
    var words: [String]

    @Option(help: ArgumentHelp("Send the frames of a pcap or pcapng file (Ethernet).", valueName: "FILE"))
    var pcap: String?

    @Option(help: ArgumentHelp(
        "A frame as hex bytes; give it again for more frames (default: a 60-byte broadcast UDP/IPv4 frame to port 9).",
        valueName: "HEX"))
    var packet: [String] = []

    @Option(help: "Frames to send in all (default: 1000, or each frame of --pcap once; with --duration, no limit).")
    var count: Int?

    @Option(help: ArgumentHelp("Stop after this many seconds (with --count, at whichever comes first).",
                               valueName: "SECONDS"))
    var duration: Double?

    @Option(help: ArgumentHelp("Pace the sending to this many frames per second (default: as fast as it goes).",
                               valueName: "PPS"))
    var rate: Double?

    @Option(help: ArgumentHelp("""
        Vary each TCP or UDP frame over N flows: its source port takes N successive values \
        (port, port+1, ..., wrapping at 65535), one per turn of the frame, and its TCP or UDP \
        checksum is updated to match. Frames without a TCP or UDP header go out unchanged.
        """, valueName: "N"))
    var flows = 1

    func validate() throws {
        if pcap != nil && !packet.isEmpty { throw ValidationError("gen: give --pcap or --packet, not both") }
        if let count, count < 0 { throw ValidationError("gen: --count \(count) is negative") }
        if let rate, !(rate > 0) { throw ValidationError("gen: --rate must be positive") }
        if let duration, !(duration > 0) { throw ValidationError("gen: --duration must be positive") }
        if !(1...65_536).contains(flows) { throw ValidationError("gen: --flows \(flows): expected 1 to 65536") }
    }

    func run() throws {
        let name = try DeviceWords.device(in: words, command: "gen")
        let frames = try loadFrames()
        let varied = frames.map { frame in
            GeneratedFrame(frame, variation: flows > 1 ? SourcePortVariation.of(frame, flows: flows) : nil)
        }
        if flows > 1 && varied.allSatisfy({ $0.variation == nil }) {
            throw CommandError.usage("gen: --flows needs a TCP or UDP frame (IPv4, or IPv6 without extension headers)")
        }
        let total = count ?? (duration != nil ? Int.max : pcap != nil ? frames.count : 1000)
        do {
            let generator = try TrafficGenerator(device: try NetworkInterface(named: name), frames: varied)
            let report = try generator.send(count: total, rate: rate, duration: duration)
            print(summary(of: report, device: name))
        } catch {
            throw CommandError.refused(error)
        }
    }

    private func loadFrames() throws -> [[UInt8]] {
        if let pcap {
            let file: PcapFile
            do {
                file = try PcapFile.read(path: pcap)
            } catch {
                throw CommandError.usage("gen: \(pcap): \(error)")
            }
            guard file.linkType == PcapFile.ethernet else {
                throw CommandError.usage("gen: \(pcap): link type \(file.linkType); only Ethernet (1) can be sent")
            }
            guard !file.records.isEmpty else { throw CommandError.usage("gen: \(pcap) holds no frame") }
            return file.records.map(\.data)
        }
        return packet.isEmpty ? [Self.defaultFrame] : try packet.map(Self.bytes(hex:))
    }

    private func summary(of report: TrafficReport, device: String) -> String {
        let seconds = Double(report.nanoseconds) / 1e9
        let pps = UInt64(max(report.rate, 0).rounded())
        if global.json {
            let object = JSON.object([("bytes", .integer(report.bytes)), ("dev", .string(device)),
                                      ("flows", .integer(flows)), ("frames", .integer(report.frames)),
                                      ("pps", .number(pps)), ("seconds", .real(seconds))]
                                     + (rate.map { [("target_pps", JSON.real($0))] } ?? []))
            return object.serialized(pretty: global.pretty)
        }
        let flowText = flows > 1 ? " over \(flows) flows" : ""
        let milliseconds = UInt64((seconds * 1000).rounded())
        return "sent \(report.frames) frames (\(report.bytes) bytes)\(flowText) on \(device) in "
            + "\(milliseconds / 1000).\(String(milliseconds % 1000).leftPadded(to: 3)) s: \(pps) pps"
    }

    static func bytes(hex: String) throws -> [UInt8] {
        let digits = hex.filter { !$0.isWhitespace && $0 != ":" }
        guard digits.count % 2 == 0, digits.allSatisfy(\.isHexDigit) else {
            throw CommandError.usage("--packet \(hex): expected an even number of hex digits")
        }
        var bytes = [UInt8]()
        var index = digits.startIndex
        while index < digits.endIndex {
            let next = digits.index(index, offsetBy: 2)
            bytes.append(UInt8(digits[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    /// Broadcast Ethernet, IPv4 192.0.2.1 -> 192.0.2.2 (documentation range), UDP 9 -> 9.
    static let defaultFrame = FrameBuilder()
        .ethernet(dst: MACAddress(rawValue: 0xffff_ffff_ffff), src: MACAddress(rawValue: 0x0200_0000_0001))
        .ipv4(src: IPv4Address(rawValue: 0xc000_0201), dst: IPv4Address(rawValue: 0xc000_0202))
        .udp(src: 9, dst: 9)
        .padded()
        .bytes
}

/// Where `--flows` varies a frame: the TCP or UDP source port, and the checksum that
/// covers it (none for IPv4 UDP sent without a checksum).
enum SourcePortVariation {
    static func of(_ frame: [UInt8], flows: Int) -> FieldVariation? {
        let keys = FlowKeys(dissecting: frame)
        guard keys.srcPort != nil, let proto = keys.ipProto,
              proto == IPProtocolNumber.tcp || proto == IPProtocolNumber.udp, let source = keys.srcIP
        else { return nil }
        let network = 14 + 4 * keys.vlans.count
        let transport: Int
        switch source {
        case .v4: transport = network + Int(frame[network] & 0x0f) * 4
        case .v6:
            guard frame[network + 6] == proto else { return nil }  // extension headers are not walked here
            transport = network + 40
        }
        var checksum: Int? = transport + (proto == IPProtocolNumber.tcp ? 16 : 6)
        if case .v4 = source, proto == IPProtocolNumber.udp, frame[transport + 6] == 0, frame[transport + 7] == 0 {
            checksum = nil
        }
        return FieldVariation(fieldOffset: transport, checksumOffset: checksum, count: flows)
    }
}

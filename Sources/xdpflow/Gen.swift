import ArgumentParser
import BPFKernel
import Packets

/// `xdpflow gen dev DEV`: transmit frames out of a device (live-frames test runs).
struct Gen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send real frames out of a device, without pktgen.",
        discussion: """
            Runs a program returning XDP_TX with BPF_PROG_TEST_RUN in live-frames mode, so \
            each frame leaves through DEV's transmit path; on a veth it arrives at the peer. \
            A veth peer must run an XDP program (or have GRO on) to receive such frames.
            """
    )

    @Argument(help: ArgumentHelp("dev DEV", valueName: "dev DEV"))
    var words: [String]

    @Option(help: "Frames to send.")
    var count = 1000

    @Option(help: "The frame, as hex bytes (default: a 60-byte broadcast UDP/IPv4 frame to port 9).")
    var packet: String?

    func run() throws {
        let device = try NetworkInterface(named: try DeviceWords.device(in: words, command: "gen"))
        let frame = try packet.map(Self.bytes(hex:)) ?? Self.defaultFrame
        let generator = try TrafficGenerator(device: device)
        let elapsed = try generator.send(frame, count: count)
        let rate = elapsed > 0 ? Double(count) / (Double(elapsed) / 1e9) : 0
        print("sent \(count) frames of \(frame.count) bytes on \(device) in \(elapsed / 1000) us (\(Int(rate)) pps)")
    }

    static func bytes(hex: String) throws -> [UInt8] {
        let digits = hex.filter { !$0.isWhitespace && $0 != ":" }
        guard digits.count % 2 == 0, digits.allSatisfy(\.isHexDigit) else {
            throw ValidationError("--packet \(hex): expected an even number of hex digits")
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

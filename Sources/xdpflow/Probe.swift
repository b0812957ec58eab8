import ArgumentParser
import BPFAssembly
import BPFKernel

/// `xdpflow probe`: can this kernel run XDPFlow? Assembles a small XDP program,
/// has the verifier check it, and runs it on a frame with BPF_PROG_TEST_RUN.
struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that this kernel can load and run XDPFlow's programs.",
        discussion: """
            Mounts bpffs if needed, assembles a program that counts frames by EtherType and \
            drops IPv6, loads it through the kernel verifier, runs it on an IPv4 and an IPv6 \
            frame with BPF_PROG_TEST_RUN and prints the verdicts, the counters and the \
            program's disassembly. Needs root (or CAP_BPF and CAP_NET_ADMIN).
            """
    )

    @Flag(name: .customLong("dump"), help: "Print the program's disassembly.")
    var dump = false

    func run() throws {
        try BPFFS.mountIfNeeded()
        print("bpffs: mounted at \(BPFFS.defaultMountPoint)")
        let counters = try Map(MapSpec(name: "probe_counts", type: .perCPUArray, keySize: 4, valueSize: 8, maxEntries: 2))
        let instructions = try Self.program()
        let program = try Program.loadXDP(name: "xdpflow_probe", instructions: instructions, maps: ["probe_counts": counters])
        print("verifier: accepted \(program.name) (\(program.slotCount) instructions, id \(program.id))")
        if dump { print(instructions.disassembly()) }
        for (name, etherType) in [("IPv4", UInt16(0x0800)), ("IPv6", UInt16(0x86dd))] {
            var frame = [UInt8](repeating: 0, count: 60)
            frame[12] = UInt8(etherType >> 8)
            frame[13] = UInt8(etherType & 0xff)
            let result = try program.testRun(TestRun(packet: frame, repeatCount: 1000))
            print("test run: \(name) frame -> \(result.action.map(String.init(describing:)) ?? "\(result.returnValue)")"
                + " (\(result.duration) ns per run over 1000 runs)")
        }
        for (index, name) in ["other", "IPv6"].enumerated() {
            let total = try counters.lookupPerCPU(withUnsafeBytes(of: UInt32(index), Array.init))?.summedWords().first ?? 0
            print("counter \(name): \(total)")
        }
    }

    /// Counts each frame in slot 1 if it is IPv6 (and drops it), else slot 0 (and passes it).
    static func program() throws -> [Instruction] {
        var asm = Assembler()
        asm.emit(.load(.r2, .word, from: .r1, XDPContext.data))
        asm.emit(.load(.r3, .word, from: .r1, XDPContext.dataEnd))
        asm.emit(.mov(.r4, .r2))
        asm.emit(.alu(.add, .r4, 14))
        asm.emit(.mov(.r6, Int32(XDPAction.pass.rawValue)))
        asm.emit(.store(.word, to: .fp, -4, 0))
        asm.emit(.jump(.greater, .r4, .r3, to: "count"))
        asm.emit(.load(.r5, .half, from: .r2, 12))
        asm.emit(.endian(.big, .r5, bits: 16))
        asm.emit(.jump(.notEqual, .r5, 0x86dd, to: "count"))
        asm.emit(.store(.word, to: .fp, -4, 1))
        asm.emit(.mov(.r6, Int32(XDPAction.drop.rawValue)))
        asm.label("count")
        asm.emit(.loadMap(.r1, "probe_counts"))
        asm.emit(.mov(.r2, .fp))
        asm.emit(.alu(.add, .r2, -4))
        asm.emit(.call(.mapLookupElem))
        asm.emit(.jump(.equal, .r0, 0, to: "out"))
        asm.emit(.mov(.r1, 1))
        asm.emit(.atomic(.add, .double, to: .r0, 0, .r1))
        asm.label("out")
        asm.emit(.mov(.r0, .r6))
        asm.emit(.exit)
        return try asm.assemble()
    }
}

/// `xdpflow features dev DEV`: what the device's driver can do with XDP.
struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a device's driver supports for XDP.",
        discussion: "Reads the netdev netlink family's xdp-features; on kernels without it, probes with a native attach."
    )

    @Argument(help: ArgumentHelp("dev DEV", valueName: "dev DEV"))
    var words: [String]

    @Flag(name: [.customShort("j"), .customLong("json")], help: "Print JSON.")
    var json = false

    func run() throws {
        let device = try NetworkInterface(named: try DeviceWords.device(in: words, command: "features"))
        let (features, source) = try device.xdpFeatures()
        let attached = XDPLink.attachedProgramID(device)
        if json {
            let list = features.names.map { "\"\($0)\"" }.joined(separator: ",")
            print("{\"dev\":\"\(device.name)\",\"ifindex\":\(device.index),\"xdp_features\":[\(list)],"
                + "\"source\":\"\(source.rawValue)\",\"native\":\(features.contains(.basic)),"
                + "\"prog_id\":\(attached.map(String.init) ?? "null")}")
        } else {
            print("\(device.name): xdp-features \(features) (from \(source.rawValue))")
            print("  native XDP: \(features.contains(.basic) ? "yes" : "no (generic mode only)")")
            print("  redirect target: \(features.contains(.redirectTarget) ? "yes" : "no")")
            print("  attached program: \(attached.map { "id \($0)" } ?? "none")")
        }
    }
}

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
    static let defaultFrame: [UInt8] = {
        var frame: [UInt8] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]
        var ip: [UInt8] = [0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]
        var sum = stride(from: 0, to: ip.count, by: 2).reduce(UInt32(0)) { $0 + (UInt32(ip[$1]) << 8 | UInt32(ip[$1 + 1])) }
        sum = (sum & 0xffff) + (sum >> 16)
        let checksum = ~UInt16(sum & 0xffff)
        ip[10] = UInt8(checksum >> 8)
        ip[11] = UInt8(checksum & 0xff)
        frame += ip
        frame += [0, 9, 0, 9, 0, 26, 0, 0]
        return frame + [UInt8](repeating: 0, count: 60 - frame.count)
    }()
}

/// The `dev DEV` words of tc-style commands.
enum DeviceWords {
    static func device(in words: [String], command: String) throws -> String {
        guard words.count == 2, words[0] == "dev" || words[0] == "device" else {
            throw ValidationError("\(command): expected 'dev DEV', got '\(words.joined(separator: " "))'")
        }
        return words[1]
    }
}

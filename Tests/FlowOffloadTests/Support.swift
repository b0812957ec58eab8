import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import KernelTestSupport
import Packets
import SystemPackage
import Testing

/// Kernel suites run only where BPF is usable, and always under CI=true.
let kernelAvailable = Kernel.isAvailable
let kernelUnavailable = Comment(rawValue: Kernel.unavailableReason ?? "")

/// The xdpflow binary built next to the test bundle.
let xdpflowBinary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("xdpflow").path

/// A lab for one end-to-end test: the device under test (`device`, root namespace) with
/// its peer in the lab's namespace sending, a redirect target (`target.device`) whose
/// peer in the namespace receives, and an offload with its own state directory and pin
/// root (names start with xft, as everything a test creates). All of it is removed when
/// the lab goes away, also when the test fails.
final class OffloadLab {
    let veths: VethLab
    let target: VethPair
    let state: StateDirectory
    let pinRoot: FilePath

    var device: String { veths.deviceName }
    var peer: String { veths.peerName }
    var namespace: String { veths.namespace }
    var offload: Offload { Offload(device: device, state: state, pinRoot: pinRoot) }

    /// The state directory goes in `stateRoot` (a test run by another user needs one it
    /// can reach).
    init(attach: Bool = true, stateRoot: FilePath = FilePath(NSTemporaryDirectory()), queues: Int = 1) throws {
        veths = try VethLab(queues: queues)
        state = StateDirectory(stateRoot.appending(veths.namespace))
        pinRoot = FilePath("/sys/fs/bpf").appending(veths.namespace)
        target = try veths.addPair()
        if attach { _ = try offload.attach(mode: .native) }
    }

    deinit {
        try? offload.detach()
        _ = try? run(["rm", "-rf", pinRoot.string, state.path.string])
    }

    /// Runs one filter command on the live device through the library, as the CLI does;
    /// `DEV` and `TARGET` in `line` stand for the device and the redirect target.
    @discardableResult
    func filter(_ line: String) throws -> Offload.Change? {
        let command = try FilterCommand.parse(words(line))
        return try offload.run(command).change
    }

    /// Runs the xdpflow binary with this lab's state directory and pin root.
    @discardableResult
    func xdpflow(_ line: String) throws -> String {
        try run(xdpflowCommand(line))
    }

    /// The command line that runs `xdpflow` + `line` on this lab.
    func xdpflowCommand(_ line: String) -> [String] {
        ["env", "XDPFLOW_STATE_DIR=\(state.path)", "XDPFLOW_PIN_DIR=\(pinRoot)", xdpflowBinary] + words(line)
    }

    func words(_ line: String) -> [String] {
        line.split(separator: " ").map {
            switch $0 {
            case "DEV": device
            case "TARGET": target.device
            default: String($0)
            }
        }
    }

    /// What the rules stored for the device do with `frame`, by the reference classifier.
    func reference(_ frame: [UInt8]) throws -> Classification {
        var classifier = try ReferenceClassifier(rules: FileRuleSetStore(state: state).rules(of: device), device: device)
        return classifier.classify(frame, now: 0)
    }

    /// Sends `frame` `count` times from the peer, so that the device receives it.
    func send(_ frame: [UInt8], count: Int) throws {
        try veths.send(frame, count: count)
    }

    /// Sends like `send`, and returns how many of the frames the device's XDP program met
    /// once all are accounted for. Normally that is all of them; the others the kernel
    /// dropped on the way in, before XDP, because the peer found the device's receive
    /// ring full (a busy machine), and its counters say so. Tests hold XDPFlow to the
    /// frames it met.
    func sendCounted(_ frame: [UInt8], count: Int) throws -> Int {
        try sendCounted(count: count) { try send(frame, count: count) }
    }

    /// `sendCounted` for frames `send` sends.
    func sendCounted(count: Int, _ send: () throws -> Void) throws -> Int {
        let device = try deviceStatistics(), peer = try peerStatistics()
        try send()
        var met = 0
        let accounted = try settled(at: count) {
            met = try deviceStatistics().xdpPackets - device.xdpPackets
            return met + (try peerStatistics().transmitErrors - peer.transmitErrors)
        }
        #expect(accounted == count, "sent \(count), met by XDP \(met), lost before XDP \(accounted - met)")
        #expect(met > count / 2, "most frames reach XDP")
        return met
    }

    /// Sends `frame` `count` times from the peer with `xdpflow gen`, run in the namespace.
    func gen(_ frame: [UInt8], count: Int) throws {
        try veths.inNamespace([xdpflowBinary, "gen", "dev", peer, "--count", "\(count)", "--packet", hex(frame)])
    }

    func deviceStatistics() throws -> VethStatistics { VethStatistics(ethtool: try run(["ethtool", "-S", device])) }
    func peerStatistics() throws -> VethStatistics { VethStatistics(ethtool: try veths.inNamespace(["ethtool", "-S", peer])) }
    func targetStatistics() throws -> VethStatistics { VethStatistics(ethtool: try run(["ethtool", "-S", target.device])) }

    /// The device's counters, once the rule (or misses, for nil) has counted `expected`
    /// frames or the wait is over: the receiving side handles frames asynchronously.
    func statistics(once rule: RuleID?, counted expected: UInt64) throws -> Offload.Statistics {
        var last: Offload.Statistics?
        _ = try settled(at: expected) {
            last = try offload.statistics()
            return rule.map { last?.rules[$0]?.packets ?? 0 } ?? last?.misses.packets ?? 0
        }
        return try #require(last)
    }

    /// Attaches an XDP program that passes everything to the sender's side of the pair, so
    /// that frames XDP_TX sends back out of the device arrive there: for XDP_TX a veth
    /// wakes its peer's receive path only when the peer has an XDP program (GRO, enough
    /// for redirects, is not). The program stays while the link lives.
    func passEverythingOnPeer() throws -> XDPLink {
        var asm = Assembler()
        asm.emit(Instruction.return(XDPAction.pass))
        let program = try Program.loadXDP(name: "xft_pass", instructions: try asm.assemble())
        let peer = peer
        return try NetworkNamespace.run(in: namespace) {
            try XDPLink(attaching: program, to: NetworkInterface(named: peer), mode: .native)
        }
    }

    /// A capture on the device (the frames its kernel stack receives: those XDP passed).
    func captureOnDevice() throws -> Capture { try Capture(device: device) }

    /// A capture at the redirect target's far end (the frames redirected into it).
    func captureOnTarget() throws -> Capture { try Capture(device: target.peer, namespace: namespace) }
}

/// Loads an nftables script with `nft -f`, all or nothing, from a temporary file that is
/// removed again.
func loadNFTables(_ script: String) throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("xft-\(UUID().uuidString).nft")
    try script.write(to: file, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: file) }
    try run(["nft", "-f", file.path])
}

/// A veth's own counters (ethtool -S), which tell frames XDPFlow lost from frames the
/// kernel lost around it.
struct VethStatistics {
    /// Frames the device's XDP program ran on (rx_queue_N_xdp_packets).
    var xdpPackets = 0
    /// Frames lost after XDP: a redirect that failed, no skb (rx_queue_N_drops).
    var receiveDrops = 0
    /// XDP frames (redirected, XDP_TX, generated) sent through the device that the peer's
    /// full receive ring refused (tx_queue_N_xdp_xmit_errors).
    var transmitErrors = 0

    init(ethtool output: String) {
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: ":").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, let value = Int(parts[1]) else { continue }
            if parts[0].hasPrefix("rx_queue_") && parts[0].hasSuffix("_xdp_packets") { xdpPackets += value }
            if parts[0].hasPrefix("rx_queue_") && parts[0].hasSuffix("_drops") && !parts[0].hasSuffix("xdp_drops") {
                receiveDrops += value
            }
            if parts[0].hasPrefix("tx_queue_") && parts[0].hasSuffix("_xdp_xmit_errors") { transmitErrors += value }
        }
    }
}

/// The frames the tests send: UDP over IPv4 between documentation-style addresses, from
/// a MAC that nothing else in a lab uses, so captures pick them out exactly.
enum TestFrame {
    static let source = MACAddress("02:00:00:00:0e:01")!
    static let destination = MACAddress("02:00:00:00:0e:02")!

    static func udp(from src: String = "10.0.0.1", to dst: String = "10.0.0.2", sourcePort: UInt16 = 1000,
                    port: UInt16, vlan: UInt16? = nil) -> [UInt8] {
        var frame = FrameBuilder().ethernet(dst: destination, src: source)
        if let vlan { frame = frame.vlan(id: vlan, priority: 0) }
        return frame.ipv4(src: IPv4Address(src)!, dst: IPv4Address(dst)!).udp(src: sourcePort, dst: port).padded().bytes
    }

    /// Whether a captured frame is one of the tests' (an IPv4 source in 10.0.0.0/24,
    /// wherever the actions put the MACs and tags).
    static func isTestFrame(_ bytes: [UInt8]) -> Bool {
        guard case .v4(let source)? = FlowKeys(dissecting: bytes).srcIP else { return false }
        return source.rawValue >> 8 == 0x0a_00_00
    }
}

/// Waits until `capture` holds `expected` frames that satisfy `isWanted` (or the wait is
/// over) and returns them; frames arrive asynchronously.
func captured(_ capture: Capture, _ expected: Int, timeout: Duration = .seconds(2),
              where isWanted: @escaping ([UInt8]) -> Bool = TestFrame.isTestFrame) throws -> [Capture.Frame] {
    var frames: [Capture.Frame] = []
    _ = try settled(at: expected, timeout: timeout) {
        frames = capture.frames(where: isWanted)
        return frames.count
    }
    return frames
}

/// Bytes as hex digits, as `xdpflow gen --packet` reads them.
func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

/// The xdpflow command servers (`xdpflow --command-server`) that serve `state`: those
/// whose environment names it.
func commandServers(of state: StateDirectory) -> [pid_t] {
    let processes = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return processes.compactMap { name -> pid_t? in
        guard let pid = pid_t(name),
              let command = FileManager.default.contents(atPath: "/proc/\(name)/cmdline"),
              command.split(separator: 0).map({ String(decoding: $0, as: UTF8.self) }).last == "--command-server",
              let environment = FileManager.default.contents(atPath: "/proc/\(name)/environ")
        else { return nil }
        let variables = environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return variables.contains("XDPFLOW_STATE_DIR=\(state.path)") ? pid : nil
    }
}

import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import KernelTestSupport
import Packets
import Testing

/// `xdpflow compile` and `xdpflow trace`, run as built, as an operator runs them.

/// One rule per kind of outcome: drop, a redirect that edits and marks, `continue` into
/// a rule that sends the frame back out (XDP_TX), and an array subtable (prio 5).
let sampleRules = [
    "filter add dev xft0 protocol ip prio 1 flower ip_proto udp dst_port 53 action drop",
    "filter add dev xft0 protocol ip prio 2 flower dst_ip 198.51.100.0/24 action skbedit mark 42 pipe"
        + " action pedit ex munge eth dst set 02:00:00:00:00:99 pipe action mirred egress redirect dev xft9",
    "filter add dev xft0 protocol ip prio 3 flower ip_proto icmp action continue",
    "filter add dev xft0 protocol all prio 4 flower dst_mac 02:00:00:00:00:fe action mirred egress redirect dev xft0",
    "filter add dev xft0 protocol arp prio 5 flower action pass",
]

let otherMAC = MACAddress(rawValue: 0x0200_0000_00aa)
let elsewhere = IPv4Address(rawValue: 0xcb00_7105)  // 203.0.113.5

/// What `sampleRules` do with each frame, in `sampleFrames` order.
let sampleFrames: [[UInt8]] = [
    udp4(dst: 53).padded().bytes,                                                               // drop
    FrameBuilder().ethernet(dst: otherMAC, src: hostMAC).ipv4(src: client, dst: elsewhere)
        .udp(src: 1, dst: 54).padded().bytes,                                                   // no rule
    udp4(dst: 9).padded().bytes,                                                                // prio 2
    ether().ipv4(src: client, dst: elsewhere).icmp(type: 8, code: 0).padded().bytes,            // prio 3, 4
    malformed(udp4(dst: 9).padded().bytes),                                                     // unparsed
]

/// `frame` with an IPv4 header length below 5 words: no rule reading IPv4 can be decided.
func malformed(_ frame: [UInt8]) -> [UInt8] {
    var frame = frame
    frame[14] = 0x44
    return frame
}

/// Frame 2 as prio 2 leaves it.
let readdressed = [0x02, 0, 0, 0, 0, 0x99] + sampleFrames[2].dropFirst(6)

/// The built `xdpflow`, next to the test bundle.
enum XDPFlowCommand {
    static let path = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("xdpflow").path

    static func run(_ arguments: [String]) throws -> CommandResult {
        try execute([path] + arguments)
    }
}

/// A directory for one test's files, removed with everything in it when the test is done.
final class ScratchDirectory {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("xft-cli-\(UInt32.random(in: 0 ... .max))")

    init() throws { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// Writes `lines` to `name`, one per line, and returns its path.
    func write(_ lines: [String], to name: String) throws -> String {
        try (lines.joined(separator: "\n") + "\n").write(toFile: path(name), atomically: true, encoding: .utf8)
        return path(name)
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}

func jsonObject(_ text: String) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(text.utf8))
}

@Suite struct CompileCommandTests {
    let plan: Plan
    let slots: Int

    init() throws {
        plan = try Plan(ruleSet(sampleRules), device: "xft0")
        slots = try CodeGenerator.generate(plan).reduce(0) { $0 + $1.slots }
    }

    @Test func printsTheSubtablesInLookupOrderAndTheTotals() throws {
        let scratch = try ScratchDirectory()
        let result = try XDPFlowCommand.run(["compile", "-batch", try scratch.write(sampleRules, to: "rules")])
        #expect(result.status == 0, "\(result.errors)")
        let maps = plan.subtables.map(\.mapName)
        #expect(result.output == """
            prio  map             storage      entries  key
            1     \(maps[0])  array 65536        1  2 bytes  protocol=0800 ip_proto=11 dst_port/ffff
            2     \(maps[1])  hash 1024          1  3 bytes  protocol=0800 dst_ip/ffffff00
            3     \(maps[2])  array 1            1  0 bytes  protocol=0800 ip_proto=01
            4     \(maps[3])  hash 1024          1  6 bytes  dst_mac/ffffffffffff
            5     \(maps[4])  array 1            1  0 bytes  protocol=0806
            dev xft0  rules 5  entries 5  subtables 5  instructions \(slots)
            layers: ipv4 ipv4-l4
            redirects: xft9

            """)
    }

    @Test func printsOneJSONObjectWithKeysInSchemaOrder() throws {
        let scratch = try ScratchDirectory()
        let result = try XDPFlowCommand.run(["compile", "-j", "-batch", try scratch.write(sampleRules, to: "rules")])
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.output.hasPrefix("""
            {"dev":"xft0","subtables":[{"prio":1,"map":"\(plan.subtables[0].mapName)","storage":"array",\
            "capacity":65536,"entries":1,"key_bytes":2,"guards":[{"field":"protocol","value":"0800"},\
            {"field":"ip_proto","value":"11"}],"fields":[{"field":"dst_port","mask":"ffff"}]},
            """))
        let object = try #require(try jsonObject(result.output) as? [String: Any])
        #expect(object["rules"] as? Int == 5)
        #expect(object["entries"] as? Int == 5)
        #expect(object["instructions"] as? Int == slots)
        #expect(object["layers"] as? [String] == ["ipv4", "ipv4-l4"])
        #expect(object["redirect_targets"] as? [String] == ["xft9"])
        let subtables = try #require(object["subtables"] as? [[String: Any]])
        #expect(subtables.map { $0["prio"] as? Int } == [1, 2, 3, 4, 5])
        #expect(subtables[4]["storage"] as? String == "array")
        #expect(subtables[4]["capacity"] as? Int == 1, "protocol arp alone: a guard and a one-entry array")
        #expect(object["disassembly"] == nil)
    }

    @Test func dumpAddsTheDisassembly() throws {
        let scratch = try ScratchDirectory()
        let result = try XDPFlowCommand.run(["-j", "compile", "--dump", "-batch", try scratch.write(sampleRules, to: "rules")])
        #expect(result.status == 0, "\(result.errors)")
        let object = try #require(try jsonObject(result.output) as? [String: Any])
        let lines = try #require(object["disassembly"] as? [String])
        let listing = try CodeGenerator.listing(plan)
        let labelLines = Set(listing.labels.keys).count
        #expect(lines.count == listing.instructions.count + labelLines, "one line per instruction and per label")
        #expect(lines.contains("parse:") && lines.contains("hit:") && lines.contains("miss_counted:"))
        #expect(lines.contains { $0.contains("map[\(plan.subtables[0].mapName)]") })
    }

    @Test func aBadLineIsNamedAndNothingIsCompiled() throws {
        let scratch = try ScratchDirectory()
        let file = try scratch.write(["# two good rules, then a bad one"] + sampleRules.prefix(2)
            + ["filter add dev xft0 protocol ip flower ip_proto udp dst_port 5x action drop"], to: "rules")
        let result = try XDPFlowCommand.run(["compile", "-batch", file])
        #expect(result.status == 1)
        #expect(result.output == "")
        #expect(result.errors.hasPrefix("Error: \(file): line 4: word 11 '5x'"), "\(result.errors)")
    }

    @Test func aRuleXDPCannotRunIsNamedByItsLine() throws {
        let scratch = try ScratchDirectory()
        let file = try scratch.write([sampleRules[0], "",
                                      "filter add dev xft0 protocol ip prio 9 flower action mirred ingress redirect dev xft1"],
                                     to: "rules")
        let result = try XDPFlowCommand.run(["compile", "-batch", file])
        #expect(result.status == 2)
        #expect(result.errors.hasPrefix("Error: \(file): line 3: cannot run at XDP: prio 9 handle 0x1: "), "\(result.errors)")
    }

    @Test func aFileForTwoDevicesNeedsDev() throws {
        let scratch = try ScratchDirectory()
        let file = try scratch.write([sampleRules[0], sampleRules[0].replacingOccurrences(of: "xft0", with: "xft1")],
                                     to: "rules")
        let neither = try XDPFlowCommand.run(["compile", "-batch", file])
        #expect(neither.status == 1)
        #expect(neither.errors == "Error: \(file) names devices xft0, xft1: choose one with dev DEV\n")
        let chosen = try XDPFlowCommand.run(["compile", "-batch", file, "dev", "xft1"])
        #expect(chosen.status == 0, "\(chosen.errors)")
        #expect(chosen.output.contains("dev xft1  rules 1"))
    }
}

@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct TraceCommandTests {
    @Test func verifyLoadsTheProgram() throws {
        let scratch = try ScratchDirectory()
        let result = try XDPFlowCommand.run(["compile", "--verify", "-batch", try scratch.write(sampleRules, to: "rules")])
        #expect(result.status == 0, "\(result.errors)")
        let slots = try CodeGenerator.generate(Plan(ruleSet(sampleRules), device: "xft0")).reduce(0) { $0 + $1.slots }
        #expect(result.output.hasSuffix("verifier: accepted, \(slots) instructions\n"), "\(result.output)")
    }

    @Test func printsOneLinePerFrame() throws {
        let scratch = try ScratchDirectory()
        let capture = scratch.path("frames.pcap")
        try PcapFile(records: sampleFrames.map { PcapRecord(data: $0) }).write(path: capture)
        let result = try XDPFlowCommand.run(["trace", "-batch", try scratch.write(sampleRules, to: "rules"),
                                             "--pcap", capture, "--check"])
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.output == """
            frame  verdict   rule
            0      drop      prio 1 handle 0x1
            1      pass      -
            2      redirect  prio 2 handle 0x1  dev xft9  mark 42
                             output \(hex(readdressed))
            3      tx        prio 3 handle 0x1, prio 4 handle 0x1
            4      pass      unparsed
            5 frames: 1 drop, 2 pass, 1 tx, 1 redirect
            check: every frame as the reference classifier

            """)
    }

    /// Frames a real device received, captured by tcpdump, then traced with the
    /// reference classifier checking every verdict.
    @Test func tracesACaptureWrittenByTcpdump() throws {
        let lab = try VethLab()
        // veth hands frames sent with XDP_TX to a peer only when the peer runs XDP.
        var asm = Assembler()
        asm.emit(Instruction.return(XDPAction.pass))
        let pass = try Program.loadXDP(name: "xft_pass", instructions: try asm.assemble())
        let link = try XDPLink(attaching: pass, to: lab.device, mode: .native)
        defer { try? link.detach() }

        let scratch = try ScratchDirectory()
        let capture = scratch.path("capture.pcap")
        let tcpdump = try Tcpdump(device: lab.deviceName, frames: sampleFrames.count, file: capture)
        for frame in sampleFrames {
            try lab.inNamespace([XDPFlowCommand.path, "gen", "dev", lab.peerName, "--count", "1", "--packet", hex(frame)])
        }
        try tcpdump.finish()

        let result = try XDPFlowCommand.run(["trace", "-batch", try scratch.write(sampleRules, to: "rules"),
                                             "--pcap", capture, "-j", "--check"])
        #expect(result.status == 0, "\(result.errors)")
        let frames = try #require(try jsonObject(result.output) as? [[String: Any]])
        try #require(frames.count == sampleFrames.count, "\(result.output)")
        #expect(frames.map { $0["index"] as? Int } == [0, 1, 2, 3, 4])
        #expect(frames.map { $0["verdict"] as? String } == ["drop", "pass", "redirect", "tx", "pass"])
        #expect(frames.map { $0["prio"] as? Int } == [1, nil, 2, 4, nil])
        #expect(frames.map { $0["handle"] as? Int } == [1, nil, 1, 1, nil])
        #expect(frames[1]["prio"] is NSNull)
        let matched = frames.map { ($0["matched"] as? [[String: Int]])?.map { [$0["prio"], $0["handle"]] } }
        #expect(matched == [[[1, 1]], [], [[2, 1]], [[3, 1], [4, 1]], []])
        #expect(frames.map { $0["unparsed"] as? Bool } == [false, false, false, false, true])
        #expect(frames.map { $0["redirect_dev"] as? String } == [nil, nil, "xft9", nil, nil])
        #expect(frames.map { $0["mark"] as? Int } == [nil, nil, 42, nil, nil])
        #expect(frames.map { $0["output"] as? String } == [nil, nil, hex(readdressed), nil, nil])
    }

    @Test func checkListsEachFrameThatDiffers() throws {
        // The reference runs police on a stopped clock (every frame at time 0); the kernel's
        // clock moves, and at 10 Gbit/s a 100-byte bucket refills between two test runs.
        // So the second frame conforms in the program and exceeds in the reference.
        let scratch = try ScratchDirectory()
        let police = ["filter add dev xft0 protocol ip prio 1 flower action police rate 10gbit burst 100 conform-exceed drop/pass"]
        let capture = scratch.path("frames.pcap")
        try PcapFile(records: [PcapRecord(data: sampleFrames[0]), PcapRecord(data: sampleFrames[0])]).write(path: capture)
        let result = try XDPFlowCommand.run(["trace", "-batch", try scratch.write(police, to: "rules"),
                                             "--pcap", capture, "--check"])
        #expect(result.status == 1)
        #expect(result.errors.hasPrefix("Error: 1 of 2 frames differ from the reference classifier:\n  frame 1: verdict pass, reference drop"),
                "\(result.errors)")
        #expect(result.output.hasSuffix("2 frames: 2 pass\n"), "no claim that the check agreed")
    }
}

/// tcpdump writing the frames a device receives to a pcap file; stopped if the test
/// ends before it has them all.
final class Tcpdump {
    let process = Process()
    let frames: Int

    /// Returns once tcpdump listens.
    init(device: String, frames: Int, file: String) throws {
        self.frames = frames
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // -Z root: write the file as root (tcpdump drops to its own user by default).
        process.arguments = ["tcpdump", "-i", device, "-Q", "in", "-n", "-U", "-c", String(frames), "-w", file, "-Z", "root"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        var said = ""
        while !said.contains("listening on") {
            let data = errors.fileHandleForReading.availableData
            guard !data.isEmpty else { throw TcpdumpFailure(text: "tcpdump exited before listening: \(said)") }
            said += String(decoding: data, as: UTF8.self)
        }
    }

    /// Waits for tcpdump to have written every frame (it exits after `-c`).
    func finish(timeout: Duration = .seconds(5)) throws {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            throw TcpdumpFailure(text: "tcpdump: fewer than \(frames) frames arrived within \(timeout)")
        }
        guard process.terminationStatus == 0 else {
            throw TcpdumpFailure(text: "tcpdump exited \(process.terminationStatus)")
        }
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}

struct TcpdumpFailure: Error, CustomStringConvertible {
    var text: String
    var description: String { text }
}

import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowOffload
import Foundation
import KernelTestSupport
import Packets
import SystemPackage
import Testing

/// The built `xdpflow`, run as an operator runs it, with a state directory and a pin
/// directory of its own so that tests never meet the machine's offloads. Whatever it
/// attached is detached, and both directories removed, when it goes (also when a test
/// fails).
final class OperatorSession {
    static let binary = URL(fileURLWithPath: CommandLine.arguments[0])
        .deletingLastPathComponent().appendingPathComponent("xdpflow").path

    let stateDirectory: String
    let pinDirectory: String

    init() {
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        stateDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("xft-state-\(tag)").path
        pinDirectory = "/sys/fs/bpf/xft-\(tag)"
    }

    var environment: [String: String] {
        ProcessInfo.processInfo.environment.merging(
            ["XDPFLOW_STATE_DIR": stateDirectory, "XDPFLOW_PIN_DIR": pinDirectory]) { $1 }
    }

    /// The same device seen through the library, for what the CLI does not print.
    func offload(_ device: String) -> Offload {
        Offload(device: device, state: StateDirectory(FilePath(stateDirectory)), pinRoot: FilePath(pinDirectory))
    }

    struct Failed: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs `xdpflow arguments`, or `prefix xdpflow arguments` (setpriv, unshare ...).
    @discardableResult
    func run(_ arguments: [String], prefix: [String] = []) throws -> CommandResult {
        try execute(prefix + [Self.binary] + arguments, environment: environment)
    }

    /// Runs a command that must succeed; returns its standard output.
    @discardableResult
    func succeed(_ arguments: [String]) throws -> String {
        let result = try run(arguments)
        guard result.status == 0 else {
            throw Failed(description: "xdpflow \(arguments.joined(separator: " ")) exited \(result.status): \(result.errors)")
        }
        return result.output
    }

    /// `xdpflow -j ...` parsed.
    func json(_ arguments: [String]) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(try succeed(["-j"] + arguments).utf8))
    }

    deinit {
        let state = StateDirectory(FilePath(stateDirectory))
        for device in (try? Offload.devices(state: state, pinRoot: FilePath(pinDirectory))) ?? [] {
            _ = try? run(["detach", "dev", device])
        }
        try? FileManager.default.removeItem(atPath: pinDirectory)
        try? FileManager.default.removeItem(atPath: stateDirectory)
    }
}

/// `xdpflow show`, `save`, `trace dev`, `-s filter show`, redirect target checks and the
/// errors an operator meets, on a veth lab, through the built binary.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct OperatorCommandTests {
    let dropPort9 = ["filter", "add", "dev", "DEV", "protocol", "ip", "prio", "1", "handle", "1", "flower",
                     "ip_proto", "udp", "dst_port", "9", "action", "drop"]

    func words(_ line: String, device: String) -> [String] {
        line.split(separator: " ").map { $0 == "DEV" ? device : String($0) }
    }

    /// Frames from the peer's namespace into the device under test.
    func send(_ lab: VethLab, _ frame: FrameBuilder, count: Int) throws {
        let hex = frame.padded().bytes.map { String(format: "%02x", $0) }.joined()
        try lab.inNamespace([OperatorSession.binary, "gen", "dev", lab.peerName, "--count", "\(count)", "--packet", hex])
    }

    func deviceObject(_ json: Any, _ device: String) -> [String: Any]? {
        (json as? [[String: Any]])?.first { $0["dev"] as? String == device }
    }

    @Test func showSaysWhatRunsWhereAndCountsMisses() throws {
        let lab = try VethLab()
        let xdpflow = OperatorSession()
        try withExtendedLifetime((lab, xdpflow)) {
            let device = lab.deviceName
            #expect(try xdpflow.succeed(["show"]) == "", "nothing attached: nothing to say")
            #expect(try xdpflow.succeed(["show", "dev", device]) == "\(device): not attached\n")

            try xdpflow.succeed(["attach", "dev", device])
            try xdpflow.succeed(words("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 9 action drop", device: device))
            try xdpflow.succeed(words("filter add dev DEV protocol ip prio 1 handle 2 flower ip_proto udp dst_port 10 action drop", device: device))
            try xdpflow.succeed(words("filter add dev DEV protocol ip prio 2 flower dst_ip 198.51.100.0/24 ip_proto tcp action pass", device: device))
            let programID = try #require(xdpflow.offload(device).programID)

            try send(lab, udp4(dst: 9), count: 30)
            try send(lab, udp4(dst: 53), count: 20)  // no rule: a miss
            let misses = try settled(at: 20) {
                deviceObject(try xdpflow.json(["show"]), device)
                    .flatMap { ($0["stats"] as? [String: Any])?["miss"] as? [String: Any] }?["packets"] as? Int
            }
            #expect(misses == 20)

            let text = try xdpflow.succeed(["show", "dev", device])
            #expect(text.hasPrefix("\(device): attached in native mode, program id \(programID), "
                + "3 rules in 2 subtables, 3 entries\n"))
            #expect(text.contains("  miss: Sent 1200 bytes 20 pkt, last used"))
            #expect(text.contains("  unparsed (passed): Sent 0 bytes 0 pkt, never used"))
            #expect(!text.contains("needs repair"))

            let object = try #require(deviceObject(try xdpflow.json(["show", "dev", device]), device))
            #expect(object["attached"] as? Bool == true)
            #expect(object["mode"] as? String == "native")
            #expect(object["prog_id"] as? Int == Int(programID))
            #expect(object["rules"] as? Int == 3)
            #expect(object["subtables"] as? Int == 2)
            #expect(object["entries"] as? Int == 3)
            #expect(object["needs_repair"] as? Bool == false)

            // -s filter show: the rules, then the device's own counters; its JSON stays rules only.
            let stats = try xdpflow.succeed(["-s", "filter", "show", "dev", device])
            #expect(stats.contains("\tSent 1800 bytes 30 pkt"))
            #expect(stats.contains("\n\ndev \(device) miss: Sent 1200 bytes 20 pkt, last used "))
            #expect(stats.hasSuffix("\ndev \(device) unparsed: Sent 0 bytes 0 pkt, never used\n"))
            // tc's schema: the rules are the objects with options (the others head a prio).
            let objects = try #require(try xdpflow.json(["-s", "filter", "show", "dev", device]) as? [[String: Any]])
            #expect(objects.compactMap { $0["options"] }.count == 3)
        }
    }

    @Test func saveThenBatchRestoresTheRules() throws {
        let lab = try VethLab()
        let xdpflow = OperatorSession()
        try withExtendedLifetime((lab, xdpflow)) {
            let device = lab.deviceName
            try xdpflow.succeed(["attach", "dev", device])
            for line in [
                "filter add dev DEV protocol ip prio 3 flower ip_proto udp dst_port 1000-1003 action drop",
                "filter add dev DEV protocol ip prio 3 flower ip_proto tcp tcp_flags 0x2/0x12 action skbedit mark 7 pipe action pass",
                "filter add dev DEV protocol 802.1Q prio 5 flower vlan_id 10 action vlan pop action mirred egress redirect dev DEV",
                "filter add dev DEV protocol ipv6 flower src_ip 2001:db8::/32 action police rate 1mbit burst 10k conform-exceed drop/pass",
            ] {
                try xdpflow.succeed(words(line, device: device))
            }
            let saved = try xdpflow.succeed(["save"])
            #expect(saved.hasPrefix("# xdpflow save, "))
            #expect(saved.contains("# dev \(device): 4 rules, attached\n"))
            let before = try xdpflow.succeed(["filter", "show", "dev", device])

            // Detach forgets the rules; the batch brings them back, the same.
            try xdpflow.succeed(["detach", "dev", device])
            #expect(try xdpflow.succeed(["filter", "show", "dev", device]) == "")
            try xdpflow.succeed(["attach", "dev", device])
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("xft-save-\(UInt32.random(in: 0...UInt32.max))")
            try saved.write(to: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: file) }
            try xdpflow.succeed(["-batch", file.path])
            #expect(try xdpflow.succeed(["filter", "show", "dev", device]) == before)
            #expect(try xdpflow.succeed(["save", "dev", device]).contains("# dev \(device): 4 rules, attached\n"))
            let lines = { (text: String) in text.split(separator: "\n").filter { !$0.hasPrefix("#") } }
            #expect(lines(try xdpflow.succeed(["save"])) == lines(saved))
            #expect(try xdpflow.succeed(["show", "dev", device]).contains("4 rules in 4 subtables"))
        }
    }

    /// tc's -force: the lines that fail are reported in order and skipped, the others
    /// land; without it the same file changes nothing.
    @Test func forceGoesOnPastTheLinesThatFail() throws {
        let lab = try VethLab()
        let xdpflow = OperatorSession()
        try withExtendedLifetime((lab, xdpflow)) {
            let device = lab.deviceName
            try xdpflow.succeed(["attach", "dev", device])
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("xft-force-\(UInt32.random(in: 0...UInt32.max))")
            defer { try? FileManager.default.removeItem(at: file) }
            try """
                filter add dev \(device) protocol ip prio 5 handle 1 flower dst_ip 10.5.0.1 action drop
                filter add dev \(device) protocol ip prio 5 handle 2 flower dstport 80 action drop
                filter add dev \(device) protocol ip prio 5 handle 1 flower dst_ip 10.5.0.9 action drop
                filter add dev xft-none protocol ip prio 5 handle 1 flower dst_ip 10.5.0.9 action drop
                filter add dev \(device) protocol ip prio 5 handle 3 flower dst_ip 10.5.0.3 action drop

                """.write(to: file, atomically: true, encoding: .utf8)

            let strict = try xdpflow.run(["-batch", file.path])
            #expect(strict.status == 1 && strict.errors.contains("line 2: word 12 'dstport'"), "\(strict.errors)")
            #expect(try xdpflow.succeed(["filter", "show", "dev", device]) == "")

            let forced = try xdpflow.run(["-force", "-batch", file.path])
            #expect(forced.status == 1, "the first failed line's: a word that cannot be read")
            let reported = forced.errors.split(separator: "\n")
            #expect(reported.count == 3 && zip(reported, 2...).allSatisfy { $0.hasPrefix("Error: \(file.path): line \($1): ") },
                    "\(forced.errors)")
            let shown = try xdpflow.succeed(["filter", "show", "dev", device])
            #expect(shown.contains("handle 0x1\n") && shown.contains("10.5.0.1") && shown.contains("handle 0x3\n"))
            #expect(!shown.contains("handle 0x2") && !shown.contains("10.5.0.9"))
            #expect(try xdpflow.run(["check", "dev", device]).status == 0)
            // Run again, every line fails: the first failed line (1) is a refusal, exit 2.
            #expect(try xdpflow.run(["-f", "-batch", file.path]).status == 2)
        }
    }

    @Test func traceRunsTheAttachedRulesWithoutTouchingTheirCounters() throws {
        let lab = try VethLab()
        let xdpflow = OperatorSession()
        try withExtendedLifetime((lab, xdpflow)) {
            let device = lab.deviceName
            try xdpflow.succeed(["attach", "dev", device])
            try xdpflow.succeed(words("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 9 action drop", device: device))
            try xdpflow.succeed(words("filter add dev DEV protocol ip prio 2 handle 1 flower ip_proto udp action vlan push id 5 action skbedit mark 7 pipe action pass", device: device))
            try xdpflow.succeed(words("filter add dev DEV protocol ip prio 3 handle 1 flower ip_proto tcp action police rate 8bit burst 100 conform-exceed drop/pass", device: device))
            let tcp = ether().ipv4(src: client, dst: server).tcp(src: 1, dst: 80).padded()
            try send(lab, udp4(dst: 9), count: 10)
            try send(lab, tcp, count: 5)  // empties the live police bucket
            let offload = xdpflow.offload(device)
            let dropping = RuleID(prio: 1, handle: 1), policed = RuleID(prio: 3, handle: 1)
            #expect(try settled(at: 10) { try offload.statistics()?.rules[dropping]?.packets } == 10)
            #expect(try settled(at: 5) { try offload.statistics()?.rules[policed]?.packets } == 5)

            let capture = FileManager.default.temporaryDirectory.appendingPathComponent("xft-trace-\(UInt32.random(in: 0...UInt32.max)).pcap")
            defer { try? FileManager.default.removeItem(at: capture) }
            // The tracer's police bucket (100 bytes) is its own and full: one 60-byte
            // frame conforms, the next exceeds. The live bucket would drop both.
            try PcapFile(records: [udp4(dst: 9), udp4(dst: 53), ether(type: 0x88b5), tcp, tcp].map {
                PcapRecord(data: $0.padded().bytes)
            }).write(path: capture.path)

            let text = try xdpflow.succeed(["trace", "dev", device, "--pcap", capture.path])
            let pushed = udp4(dst: 53).padded().bytes
            let expectedOutput = Array(pushed[0 ..< 12]) + [0x81, 0x00, 0x00, 0x05] + Array(pushed[12...])
            #expect(text == """
                frame  verdict  rule
                0      drop     prio 1 handle 0x1
                1      pass     prio 2 handle 0x1  mark 7
                                output \(expectedOutput.map { String(format: "%02x", $0) }.joined())
                2      pass     -
                3      pass     prio 3 handle 0x1
                4      drop     prio 3 handle 0x1
                5 frames: 2 drop, 3 pass

                """)

            // Exactly what the offline trace prints for the same rules, text and JSON.
            let rules = FileManager.default.temporaryDirectory.appendingPathComponent("xft-rules-\(UInt32.random(in: 0...UInt32.max))")
            defer { try? FileManager.default.removeItem(at: rules) }
            try xdpflow.succeed(["save", "dev", device]).write(to: rules, atomically: true, encoding: .utf8)
            #expect(try xdpflow.succeed(["trace", "-batch", rules.path, "--pcap", capture.path]) == text)
            let json = try xdpflow.succeed(["-j", "trace", "dev", device, "--pcap", capture.path])
            #expect(try xdpflow.succeed(["-j", "trace", "-batch", rules.path, "--pcap", capture.path]) == json)
            let frames = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
            #expect(frames.map { $0["verdict"] as? String } == ["drop", "pass", "pass", "pass", "drop"])
            #expect(frames[2]["prio"] is NSNull && (frames[2]["matched"] as? [Any])?.isEmpty == true)
            #expect(frames[1]["mark"] as? Int == 7)
            #expect(try xdpflow.succeed(["trace", "dev", device, "--pcap", capture.path, "--check"])
                .hasSuffix("check: every frame as the reference classifier\n"))

            // The live counters did not move: not the rule's, not the misses, not the policer's rule.
            let after = try #require(try offload.statistics())
            #expect(after.rules[dropping]?.packets == 10)
            #expect(after.misses.packets == 0)
            #expect(after.rules[policed]?.packets == 5)
            // As tc counts them: the drop rule's drops; the police action's overlimits
            // (the 4 frames past its 100 bytes) and drops (its exceed control is drop).
            #expect(after.rules[dropping]?.dropped == 10)
            let bucket = after.policers[PolicerKey(rule: policed, action: 0)]
            #expect(bucket?.overlimits == 4 && bucket?.dropped == 4)
            #expect(try xdpflow.succeed(["-s", "filter", "show", "dev", device])
                .contains("\tSent 300 bytes 5 pkt (dropped 4, overlimits 4 requeues 0), last used "))

            // tc's verbose: the verifier's log of the program the device then runs.
            let verbose = try xdpflow.run(words("filter add dev DEV protocol ip prio 4 handle 1 flower ip_proto udp "
                + "dst_port 7 verbose action drop", device: device))
            #expect(verbose.status == 0 && verbose.output.isEmpty)
            #expect(verbose.errors.hasPrefix("verifier log of the program on \(device):\n"))
            #expect(verbose.errors.contains("processed ") && verbose.errors.contains(" insns (limit "))
            try xdpflow.succeed(words("filter del dev DEV protocol ip prio 4 handle 1 flower", device: device))

            // The tracer reads the device's own subtable maps, not copies: a rule added
            // to an existing subtable (one map write, same program) decides at once what
            // an earlier tracer sees (which knows its verdict, not its name).
            let tracer = try offload.tracer()
            let subtables = tracer.datapath.maps.filter { $0.key.hasPrefix("xf_st_") }
            #expect(subtables.count == 3)
            for (name, map) in subtables {
                #expect(map.id == (try BPFKernel.Map(pinnedAt: xdpflow.offload(device).pins.appending(name))).id)
            }
            let counters = try BPFKernel.Map(pinnedAt: xdpflow.offload(device).pins.appending(FlowMaps.counters))
            #expect(tracer.datapath.maps[FlowMaps.counters]?.id != counters.id)
            let program = xdpflow.offload(device).programID
            try xdpflow.succeed(words("filter add dev DEV protocol ip prio 1 handle 2 flower ip_proto udp dst_port 53 action drop", device: device))
            #expect(xdpflow.offload(device).programID == program, "a map write, not a new program")
            #expect(try tracer.datapath.trace(udp4(dst: 53).padded().bytes).verdict == .drop)
        }
    }

    @Test func redirectTargetsAreCheckedWhenARuleIsAdded() throws {
        let lab = try VethLab()
        let target = try VethLab()
        let xdpflow = OperatorSession()
        try withExtendedLifetime((lab, target, xdpflow)) {
            let device = lab.deviceName
            try xdpflow.succeed(["attach", "dev", device])
            func redirect(port: Int, to name: String) throws -> CommandResult {
                try xdpflow.run(words("filter add dev DEV protocol ip prio 1 flower ip_proto udp dst_port \(port) "
                    + "action mirred egress redirect dev \(name)", device: device))
            }
            let missing = try redirect(port: 9, to: "xft-none")
            #expect(missing.status == 1)
            #expect(missing.errors == "Error: redirect target xft-none does not exist (rule pref 1 handle 0x1 on \(device)): create the device first\n")
            #expect(try xdpflow.succeed(["filter", "show", "dev", device]) == "", "the rule was not added")

            // The target's peer (in its own namespace) has no XDP program and GRO off.
            let peerReceived = {
                Int(try target.inNamespace(["cat", "/sys/class/net/\(target.peerName)/statistics/rx_packets"])
                    .trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
            }
            let warned = try redirect(port: 9, to: target.deviceName)
            #expect(warned.status == 0)
            #expect(warned.errors.hasPrefix("Warning: frames redirected to \(target.deviceName) will be dropped: "
                + "it is a veth whose peer has no XDP program and GRO off"))
            #expect(warned.errors.contains("another network namespace"))
            #expect(warned.errors.contains("ethtool -K PEER gro on"))
            try send(lab, udp4(dst: 9), count: 20)
            Thread.sleep(forTimeInterval: 0.2)
            #expect(try peerReceived() == 0, "as warned, the frames were dropped")

            // With GRO on the peer they arrive, and the next rule to that target is not warned about.
            try target.inNamespace(["ethtool", "-K", target.peerName, "gro", "on"])
            let quiet = try redirect(port: 10, to: target.deviceName)
            #expect(quiet.status == 0 && quiet.errors == "")
            try send(lab, udp4(dst: 10), count: 20)
            #expect(try settled(at: 20, peerReceived) == 20)
        }
    }

    @Test func aVethPeerInThisNamespaceIsNamedInTheFix() throws {
        let lab = try VethLab()
        let xdpflow = OperatorSession()
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let (near, far) = ("xft\(tag)c", "xft\(tag)d")
        try run(["ip", "link", "add", near, "type", "veth", "peer", "name", far])
        defer { _ = try? run(["ip", "link", "del", near]) }
        try withExtendedLifetime((lab, xdpflow)) {
            try xdpflow.succeed(["attach", "dev", lab.deviceName])
            let result = try xdpflow.run(words("filter add dev DEV protocol ip flower action mirred egress redirect dev \(near)",
                                               device: lab.deviceName))
            #expect(result.status == 0)
            #expect(result.errors.contains("(peer \(far)). Fix: ethtool -K \(far) gro on, or xdpflow attach dev \(far)"))

            // Mirrored copies go out the same way (a devmap broadcast).
            let mirror = "filter add dev DEV protocol ip prio 2 flower action mirred egress mirror dev TARGET action drop"
            let missing = try xdpflow.run(words(mirror.replacingOccurrences(of: "TARGET", with: "xft-none"), device: lab.deviceName))
            #expect(missing.status == 1)
            #expect(missing.errors.contains("Error: mirror target xft-none does not exist"))
            let warned = try xdpflow.run(words(mirror.replacingOccurrences(of: "TARGET", with: near), device: lab.deviceName))
            #expect(warned.status == 0)
            #expect(warned.errors.hasPrefix("Warning: copies mirrored to \(near) will be dropped"))
        }
    }

    @Test func errorsSayWhatToDo() throws {
        let lab = try VethLab()
        let xdpflow = OperatorSession()
        try withExtendedLifetime((lab, xdpflow)) {
            let device = lab.deviceName
            func fails(_ arguments: [String], _ status: Int32, _ message: String, prefix: [String] = [],
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
                let result = try xdpflow.run(arguments, prefix: prefix)
                #expect(result.status == status, "\(arguments)", sourceLocation: sourceLocation)
                #expect(result.errors.contains(message), "\(result.errors)", sourceLocation: sourceLocation)
            }
            let nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            for command in [["attach", "dev", device], ["detach", "dev", device], ["check", "dev", device],
                            ["trace", "dev", device, "--pcap", "/dev/null"]] {
                try fails(command, 2, "needs root (CAP_BPF and CAP_NET_ADMIN", prefix: nobody)
            }
            // The warning comes before anything is tried; as nobody, nothing is attached to lo.
            try fails(["attach", "dev", "lo"], 2, "Warning: lo carries this host's own traffic", prefix: nobody)
            try fails(["attach", "dev", "xft-none"], 1, "Error: device xft-none does not exist")
            try fails(["filter", "show", "dev", "xft-none"], 1, "Error: device xft-none does not exist")
            try fails(["detach", "dev", device], 2, "Error: \(device) is not attached by xdpflow (xdpflow show lists what is)")
            try fails(["trace", "dev", device, "--pcap", "/dev/null"], 2, "Error: \(device) is not attached")

            try xdpflow.succeed(["attach", "dev", device])
            try fails(["attach", "dev", device], 2, "Error: \(device) is already attached")
            try fails(["trace", "dev", device, "--pcap", "/dev/null"], 1, "Error: /dev/null")
            // Anyone may read the rules (UnprivilegedTests); only root changes them.
            try fails(words("filter add dev DEV protocol ip flower action drop", device: device), 2,
                      "Error: xdpflow filter add needs root (CAP_BPF and CAP_NET_ADMIN", prefix: nobody)
            try xdpflow.succeed(["detach", "dev", device])
            #expect(XDPLink.attachedProgramID(lab.device) == nil)

            // Another tool's program holds the device.
            let program = try Program.loadXDP(name: "other", instructions: Instruction.return(XDPAction.pass))
            let link = try XDPLink(attaching: program, to: lab.device)
            try fails(["attach", "dev", device], 2,
                      "Error: another XDP program (id \(program.id)) is attached to \(device); remove it first")
            try link.detach()

            // Usage errors exit 1, as tc's parse errors.
            try fails(["attach"], 1, "Usage: xdpflow attach")
            try fails(["show", "dev"], 1, "show: expected 'dev DEV'")
            try fails(["save", "dev", device, "extra"], 1, "save: expected 'dev DEV'")
            try fails(["trace", "dev", device], 1, "Missing expected argument '--pcap <CAPTURE>'")
        }
    }

    @Test func attachMountsBpffsAndAGoneLinkIsRepaired() throws {
        let lab = try VethLab()
        let xdpflow = OperatorSession()
        try withExtendedLifetime((lab, xdpflow)) {
            let device = lab.deviceName
            // In a mount namespace of its own without bpffs, attach mounts one. Its pins
            // die with that namespace, and so does the link: the state on disk outlives them.
            let script = "umount /sys/fs/bpf 2>/dev/null; grep -q ' /sys/fs/bpf bpf ' /proc/mounts && exit 9; "
                + "\"$0\" \"$@\" && grep ' /sys/fs/bpf bpf ' /proc/mounts"
            let attach = try xdpflow.run(["attach", "dev", device], prefix: ["unshare", "--mount", "sh", "-c", script])
            #expect(attach.status == 0, "\(attach.errors)")
            #expect(attach.output.contains("\(device): attached in native mode"))
            #expect(attach.output.contains("bpf /sys/fs/bpf bpf"), "attach mounted bpffs")
            #expect(try settled(at: nil) { XDPLink.attachedProgramID(lab.device) } == nil)

            let show = try xdpflow.succeed(["show", "dev", device])
            #expect(show.contains("\(device): no program running, 0 rules"), "\(show)")
            #expect(show.contains("needs repair: \(device)'s link is gone"), "\(show)")
            #expect(show.contains("xdpflow attach dev \(device) loads its 0 stored rules again"))
            #expect(deviceObject(try xdpflow.json(["show"]), device)?["needs_repair"] as? Bool == true)
            let refused = try xdpflow.run(words("filter add dev DEV protocol ip flower ip_proto udp action drop", device: device))
            #expect(refused.status == 2 && refused.errors.contains("link is gone"), "\(refused.errors)")

            let repaired = try xdpflow.run(["attach", "dev", device])
            #expect(repaired.status == 0)
            #expect(repaired.errors.contains("its link was gone"), "\(repaired.errors)")
            #expect(!(try xdpflow.succeed(["show", "dev", device])).contains("needs repair"))
            #expect(XDPLink.attachedProgramID(lab.device) != nil)
            try xdpflow.succeed(words("filter add dev DEV protocol ip flower ip_proto udp dst_port 9 action drop", device: device))
            #expect(try xdpflow.succeed(["check", "dev", device]) == "\(device): ok\n")

            // Pins without state (an attach whose record is gone).
            let namespace = try NamespaceID.current().directoryName
            try FileManager.default.removeItem(atPath: "\(xdpflow.stateDirectory)/\(namespace)/\(device).offload.json")
            try FileManager.default.removeItem(atPath: "\(xdpflow.stateDirectory)/\(namespace)/\(device).journal")
            #expect(try xdpflow.succeed(["show"]).contains("needs repair: pins at"))
            try xdpflow.succeed(["detach", "dev", device])
            #expect(XDPLink.attachedProgramID(lab.device) == nil)
            #expect(try xdpflow.succeed(["show"]) == "")
            #expect(!FileManager.default.fileExists(atPath: "\(xdpflow.pinDirectory)/\(device)"))
        }
    }

    @Test func aDeviceThatIsGoneIsShownAndDetached() throws {
        let xdpflow = OperatorSession()
        var lab: VethLab? = try VethLab()
        let device = lab!.deviceName
        try xdpflow.succeed(["attach", "dev", device])
        lab = nil  // deletes the veth pair
        #expect(try xdpflow.succeed(["show"]).contains("needs repair: the device is gone"))
        try xdpflow.succeed(["detach", "dev", device])
        #expect(try xdpflow.succeed(["show"]) == "")
        #expect(!FileManager.default.fileExists(atPath: "\(xdpflow.pinDirectory)/\(device)"))
    }
}

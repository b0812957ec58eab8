import BPFKernel
import FlowCompiler
import FlowOffload
import Foundation
import KernelTestSupport
import SystemPackage
import Testing

/// The xdpflow binary as an operator runs it (XDPFLOW_STATE_DIR and XDPFLOW_PIN_DIR
/// point into the lab): attach, rules, traffic from `xdpflow gen` in the peer's
/// namespace, counters, detach; and eight writers at once.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct SessionTests {
    @Test func aSessionFromAttachToDetachCountsTheTrafficAndLeavesNothingBehind() throws {
        let lab = try OffloadLab(attach: false)
        let attached = try lab.xdpflow("attach dev DEV")
        #expect(attached.hasPrefix("\(lab.device): attached in native mode, program id "), "\(attached)")
        try lab.xdpflow("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 53 action drop")
        try lab.xdpflow("filter add dev DEV protocol ip prio 2 handle 1 flower dst_ip 10.0.0.2 "
            + "action pedit ex munge eth dst set 02:00:00:00:0e:aa pipe action mirred egress redirect dev TARGET")
        let target = try lab.captureOnTarget()
        let dns = TestFrame.udp(port: 53), web = TestFrame.udp(port: 80)
        let targetBefore = try lab.targetStatistics()
        let droppedCount = try lab.sendCounted(count: 500) { try lab.gen(dns, count: 500) }
        let redirectedCount = try lab.sendCounted(count: 300) { try lab.gen(web, count: 300) }

        // -s -j filter show: each rule's counters as JSON.
        var counted: [Int: (packets: Int, bytes: Int)] = [:]
        _ = try settled(at: droppedCount + redirectedCount) {
            counted = try Self.counters(lab.xdpflow("-s -j filter show dev DEV"))
            return counted.values.reduce(0) { $0 + $1.packets }
        }
        #expect(counted[1]?.packets == droppedCount && counted[1]?.bytes == droppedCount * dns.count)
        #expect(counted[2]?.packets == redirectedCount && counted[2]?.bytes == redirectedCount * web.count)
        #expect(try lab.xdpflow("-s filter show dev DEV")
            .contains("Sent \(droppedCount * dns.count) bytes \(droppedCount) pkt"))
        let refused = try lab.targetStatistics().transmitErrors - targetBefore.transmitErrors
        let arrived = try captured(target, redirectedCount - refused)
        #expect(arrived.count == redirectedCount - refused)
        let expected = try lab.reference(web).frame
        #expect(arrived.allSatisfy { $0.bytes == expected })

        // What attach left, and what detach must take away.
        let pins = lab.offload.pins
        let pinned = try FileManager.default.contentsOfDirectory(atPath: pins.string)
        #expect(Set(pinned).isSuperset(of: ["link", "entry", "slot", "owner", "xf_counters", "xf_actions", "xf_redirect",
                                             "tc-link", "tc-entry"]), "\(pinned)")
        let programID = try #require(XDPLink.attachedProgramID(lab.veths.device))
        let companionID = try #require(TCXLink.ingressProgramIDs(lab.veths.device).first)
        let programs: Set = ["link", "entry", "tc-link", "tc-entry"]
        let mapIDs = try pinned.filter { !programs.contains($0) }.map { try Self.id(pinnedAt: pins.appending($0), "map") }
        let linkID = try Self.id(pinnedAt: pins.appending("link"), "link")
        let companionLinkID = try Self.id(pinnedAt: pins.appending("tc-link"), "link")

        try lab.xdpflow("detach dev DEV")
        #expect(!FileManager.default.fileExists(atPath: lab.pinRoot.string), "no pins, not even the root")
        #expect(XDPLink.attachedProgramID(lab.veths.device) == nil, "no XDP program on the device")
        #expect(TCXLink.ingressProgramIDs(lab.veths.device).isEmpty, "no tc program on the device")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: lab.offload.files.path.string)) ?? []
        #expect(files.filter { $0.hasPrefix(lab.device) }.isEmpty, "no state: \(files)")
        // Freed once the last reference is gone (RCU): the link, the program, every map.
        #expect(try !settled(at: false) { try Self.exists("link", linkID) }, "link \(linkID) freed")
        #expect(try !settled(at: false) { try Self.exists("prog", programID) }, "program \(programID) freed")
        #expect(try !settled(at: false) { try Self.exists("link", companionLinkID) }, "link \(companionLinkID) freed")
        #expect(try !settled(at: false) { try Self.exists("prog", companionID) }, "program \(companionID) freed")
        for id in mapIDs {
            #expect(try !settled(at: false) { try Self.exists("map", id) }, "map \(id) freed")
        }
        #expect(try lab.xdpflow("filter show dev DEV").isEmpty, "the rules went with the device's state")
    }

    @Test func eightWritersAddingRulesAtOnceAllKeepEveryRule() throws {
        let lab = try OffloadLab()
        let rounds = 8
        // Half the writers add rules to a subtable of their own (map writes after the
        // first), the others a new subtable with every rule (program swaps); all through
        // the lock, at once.
        func lines(_ writer: Int) -> [(line: String, frame: [UInt8], rule: RuleID)] {
            (1...rounds).map { round in
                if writer % 2 == 0 {
                    let port = UInt16(1000 + 100 * writer + round)
                    return ("filter add dev DEV protocol ip prio \(1 + writer) handle \(round) flower ip_proto udp "
                        + "dst_port \(port) action drop", TestFrame.udp(port: port),
                        RuleID(prio: UInt16(1 + writer), handle: UInt32(round)))
                }
                let prio = UInt16(100 + writer * rounds + round)
                return ("filter add dev DEV protocol ip prio \(prio) handle 1 flower src_ip 10.\(writer).\(round).0/24 "
                    + "action drop", TestFrame.udp(from: "10.\(writer).\(round).5", port: 7), RuleID(prio: prio, handle: 1))
            }
        }
        let work = (0..<8).map(lines)
        let writers = try work.map { lines in try Writer(lines.map { lab.xdpflowCommand($0.line) }) }
        for writer in writers {
            let failures = writer.wait()
            #expect(failures.isEmpty, "\(failures)")
        }

        let shown = try lab.xdpflow("filter show dev DEV").split(separator: "\n").filter { $0.contains(" handle ") }
        #expect(shown.count == 8 * rounds, "every rule stored")
        #expect(try lab.xdpflow("check dev DEV") == "\(lab.device): ok\n")
        let statistics = try #require(try lab.offload.statistics())
        #expect(statistics.rules.count == 8 * rounds, "every rule has its counters")

        // And every rule acts in the kernel: frames for each are counted by it alone.
        var expected: [RuleID: UInt64] = [:]
        for (_, frame, rule) in work.joined() {
            expected[rule] = UInt64(try lab.sendCounted(frame, count: 3))
            _ = try lab.statistics(once: rule, counted: expected[rule]!)
        }
        let counted = try #require(try lab.offload.statistics())
        #expect(counted.rules.mapValues(\.packets) == expected)
        #expect(counted.misses.packets == 0)
    }

    /// Per prio: packets and bytes from `-s -j filter show`, in tc's schema: the rule's
    /// objects (those with "options"; the others head a prio) carry the counters in each
    /// action's "stats".
    static func counters(_ json: String) throws -> [Int: (packets: Int, bytes: Int)] {
        let objects = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
        var counters: [Int: (packets: Int, bytes: Int)] = [:]
        for object in objects {
            guard let prio = object["pref"] as? Int, let options = object["options"] as? [String: Any],
                  let actions = options["actions"] as? [[String: Any]],
                  let stats = actions.first?["stats"] as? [String: Any] else { continue }
            counters[prio] = (stats["packets"] as? Int ?? -1, stats["bytes"] as? Int ?? -1)
        }
        return counters
    }

    /// The id of the `kind` (map, link) pinned at `path`, as bpftool reads it.
    static func id(pinnedAt path: FilePath, _ kind: String) throws -> Int {
        let object = try JSONSerialization.jsonObject(with: Data(run(["bpftool", "-j", kind, "show", "pinned", path.string]).utf8))
        return try #require((object as? [String: Any])?["id"] as? Int)
    }

    /// Whether the kernel still holds the `kind` (prog, map, link) with this id.
    static func exists(_ kind: String, _ id: some BinaryInteger) throws -> Bool {
        (try? run(["bpftool", kind, "show", "id", "\(id)"])) != nil
    }
}

/// Runs commands one after another in a process of its own (a shell), started at once.
private final class Writer {
    private let process = Process()
    private let errors = Pipe()

    init(_ commands: [[String]]) throws {
        let script = commands.map { $0.map { "'\($0)'" }.joined(separator: " ") + " || echo \"failed: $?\" >&2" }
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script.joined(separator: "\n")]
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    /// Waits for the last command; returns what went to standard error (failures,
    /// repairs), line by line.
    func wait() -> [String] {
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}

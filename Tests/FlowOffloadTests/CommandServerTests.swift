import FlowOffload
import Foundation
import KernelTestSupport
import SystemPackage
import Testing

/// Root's filter commands go to a command server once one runs (`xdpflow --command-server`,
/// started by the first of them). What an operator sees must not depend on it: the same
/// output, errors and statuses, the same state on disk and in the kernel, also when another
/// writer changed the device in between; and it leaves when its state directory does.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct CommandServerTests {
    @Test func commandsThroughTheServerDoWhatTheyDoAlone() throws {
        let lab = try OffloadLab()
        try lab.xdpflow("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 53 action drop")
        // The first command started a server (one that lost the race for the address exits).
        _ = try settled(at: 1) { commandServers(of: lab.state).count }
        try lab.xdpflow("filter show dev DEV")
        let server = try #require(commandServers(of: lab.state).first, "the first command started a server")

        func both(_ line: String) throws -> (served: CommandResult, alone: CommandResult) {
            (try execute(lab.xdpflowCommand(line)), try execute(alone(lab, line)))
        }
        // Served and alone, one after the other: each sees what the other did.
        try lab.xdpflow("filter add dev DEV protocol ip prio 2 handle 1 flower dst_ip 10.0.0.2 action drop")
        try run(alone(lab, "filter add dev DEV protocol ip prio 2 handle 2 flower dst_ip 10.0.0.3 action pass"))
        try lab.xdpflow("filter add dev DEV protocol ip prio 3 flower ip_proto tcp dst_port 80 action drop")
        try run(alone(lab, "filter del dev DEV prio 2 handle 1 flower"))
        try lab.xdpflow("filter add dev DEV protocol ip prio 2 handle 1 flower dst_ip 10.0.0.4 action drop")

        for line in ["-s -j filter show dev DEV", "filter show dev DEV", "filter get dev DEV prio 2 handle 2 flower",
                     // Refused (2), unreadable (1), a device that does not exist.
                     "filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 53 action drop",
                     "filter add dev DEV protocol ip prio 1 flower dst_port 53", "filter show dev xftnosuchdev"] {
            let (served, alone) = try both(line)
            #expect(served == alone, "\(line)")
        }
        let rules = try lab.xdpflow("filter show dev DEV")
        for rule in ["pref 1 flower chain 0 handle 0x1", "pref 2 flower chain 0 handle 0x1", "dst_ip 10.0.0.4",
                     "pref 2 flower chain 0 handle 0x2", "pref 3 flower chain 0 handle 0x1"] {
            #expect(rules.contains(rule), "\(rule): \(rules)")
        }
        #expect(!rules.contains("10.0.0.2"))

        // A batch from standard input, and one named relative to the working directory.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("xft-batch-\(lab.namespace)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "filter add dev \(lab.device) protocol ip prio 4 flower dst_ip 10.0.4.1 action drop\n"
            .write(to: directory.appendingPathComponent("a.batch"), atomically: true, encoding: .utf8)
        try "filter add dev \(lab.device) protocol ip prio 5 flower dst_ip 10.0.5.1 action drop\n"
            .write(to: directory.appendingPathComponent("b.batch"), atomically: true, encoding: .utf8)
        let command = lab.xdpflowCommand("-batch -").map { "'\($0)'" }.joined(separator: " ")
        try run(["sh", "-c", "cd \(directory.path) && \(command) < a.batch"])
        try run(["env", "-C", directory.path] + lab.xdpflowCommand("-batch b.batch").dropFirst())
        #expect(try lab.xdpflow("filter show dev DEV prio 4").contains("dst_ip 10.0.4.1"))
        #expect(try lab.xdpflow("filter show dev DEV prio 5").contains("dst_ip 10.0.5.1"))

        #expect(try lab.xdpflow("check dev DEV") == "\(lab.device): ok\n")
        #expect(commandServers(of: lab.state) == [server], "one server served them all")
        // It holds no kernel object between commands: a detach frees them as it would alone.
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(server)/fd").compactMap {
            try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(server)/fd/\($0)")
        }
        #expect(!descriptors.contains { $0.hasPrefix("anon_inode:bpf") }, "\(descriptors)")
    }

    @Test func aServerLeavesWithItsStateDirectory() throws {
        let lab = try OffloadLab(attach: false)
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("xft-server-\(lab.namespace)").path
        let command = ["env", "XDPFLOW_STATE_DIR=\(state)", "XDPFLOW_PIN_DIR=\(lab.pinRoot)", xdpflowBinary,
                       "filter", "show", "dev", lab.device]
        try run(command)
        let directory = StateDirectory(FilePath(state))
        #expect(try settled(at: 1) { commandServers(of: directory).count } == 1)
        try FileManager.default.removeItem(atPath: state)
        #expect(try settled(at: 0, timeout: .seconds(5)) { commandServers(of: directory).count } == 0)
    }

    /// `line` run with the server turned off.
    func alone(_ lab: OffloadLab, _ line: String) -> [String] {
        ["env", "XDPFLOW_COMMAND_SERVER=off"] + lab.xdpflowCommand(line).dropFirst()
    }
}

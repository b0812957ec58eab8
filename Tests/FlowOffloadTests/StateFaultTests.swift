import FlowOffload
import Foundation
import KernelTestSupport
import SystemPackage
import Testing

/// The state directory refuses a write (full, read-only): the command fails naming the
/// file and the errno, and nothing changes, in the kernel or on disk. And two network
/// namespaces with a device of the same name never touch each other's offload.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct StateFaultTests {
    /// A lab whose state directory is a small tmpfs of its own.
    final class SmallStateLab {
        let lab: OffloadLab
        let mount: String

        init() throws {
            lab = try OffloadLab(attach: false)
            mount = lab.state.path.string
            try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
            try run(["mount", "-t", "tmpfs", "-o", "size=256k", "xft-state", mount])
        }

        deinit {
            _ = try? run(["mount", "-o", "remount,rw", mount])
            try? lab.offload.detach()
            _ = try? run(["umount", mount])
        }

        /// Attaches with one drop rule; returns the stored files, by name.
        func attachWithOneRule() throws -> [String: Data] {
            try lab.xdpflow("attach dev DEV")
            try lab.xdpflow("filter add dev DEV protocol ip prio 1 flower ip_proto udp dst_port 53 action drop")
            return try StateFaultTests.storedFiles(lab)
        }

        /// Fills the tmpfs; returns the filler's path.
        func fill() throws -> String {
            let filler = mount + "/filler"
            _ = try? execute(["dd", "if=/dev/zero", "of=\(filler)", "bs=4k"])
            return filler
        }
    }

    func batch(_ lab: OffloadLab, rules: Int) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(lab.namespace).batch").path
        let lines = (0..<rules).map {
            "filter add dev \(lab.device) protocol ip prio 5 flower dst_ip 10.9.\($0 / 250).\($0 % 250) action drop"
        }
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func storedFiles(_ lab: OffloadLab) throws -> [String: Data] {
        var files: [String: Data] = [:]
        let directory = lab.offload.files.path.string
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            files[name] = FileManager.default.contents(atPath: directory + "/" + name)
        }
        return files
    }

    @Test func aFullStateDirectoryChangesNothing() throws {
        let small = try SmallStateLab()
        let lab = small.lab
        let before = try small.attachWithOneRule()
        let filler = try small.fill()
        defer { unlink(filler) }
        let path = try batch(lab, rules: 50)
        defer { unlink(path) }

        let result = try execute(lab.xdpflowCommand("-batch \(path)"))
        #expect(result.status == 2, "the system refused it, as tc's kernel refusals")
        #expect(result.errors.contains("ENOSPC (No space left on device)"), "\(result.errors)")
        #expect(result.errors.contains(lab.offload.files.path.string), "names the file: \(result.errors)")
        #expect(try Self.storedFiles(lab) == before, "nothing changed on disk")
        unlink(filler)
        let check = try execute(lab.xdpflowCommand("check dev DEV"))
        #expect(check.output == "\(lab.device): ok\n", "the kernel holds the stored rules: \(check.output)")
        #expect(try lab.offload.statistics()?.rules.count == 1)
    }

    @Test func aReadOnlyStateDirectoryChangesNothing() throws {
        let small = try SmallStateLab()
        let lab = small.lab
        let before = try small.attachWithOneRule()
        try run(["mount", "-o", "remount,ro", small.mount])

        let result = try execute(lab.xdpflowCommand("filter add dev DEV protocol ip prio 2 flower ip_proto tcp action drop"))
        #expect(result.status == 2, "the system refused it, as tc's kernel refusals")
        #expect(result.errors.contains("EROFS (Read-only file system)"), "\(result.errors)")
        #expect(result.errors.contains(small.mount), "names the directory: \(result.errors)")
        try run(["mount", "-o", "remount,rw", small.mount])
        #expect(try Self.storedFiles(lab) == before)
        #expect(try execute(lab.xdpflowCommand("check dev DEV")).output == "\(lab.device): ok\n")
        #expect(try lab.offload.statistics()?.rules.count == 1)
    }

    @Test func devicesOfOneNameInTwoNamespacesKeepApart() throws {
        let lab = try OffloadLab(attach: false)
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        let spaces = ["xft-\(tag)-1", "xft-\(tag)-2"]
        let device = "xft\(tag)n"
        defer { for space in spaces { _ = try? run(["ip", "netns", "del", space]) } }
        for space in spaces {
            try run(["ip", "netns", "add", space])
            try run(["ip", "-n", space, "link", "add", device, "type", "veth", "peer", "name", device + "p"])
            try run(["ip", "-n", space, "link", "set", device, "up"])
            try run(["ip", "-n", space, "link", "set", device + "p", "up"])
        }
        func xdpflow(_ space: String, _ line: String) throws -> CommandResult {
            try execute(lab.xdpflowCommand("-n \(space) " + line.replacingOccurrences(of: "NDEV", with: device)))
        }
        for (index, space) in spaces.enumerated() {
            #expect(try xdpflow(space, "attach dev NDEV").status == 0)
            #expect(try xdpflow(space, "filter add dev NDEV protocol ip prio \(index + 1) flower ip_proto udp "
                + "action drop").status == 0)
        }
        #expect(try xdpflow(spaces[0], "filter show dev NDEV").output.contains("pref 1 "))
        #expect(!(try xdpflow(spaces[1], "filter show dev NDEV").output.contains("pref 1 ")))
        #expect(try xdpflow(spaces[0], "detach dev NDEV").status == 0)
        let other = try xdpflow(spaces[1], "check dev NDEV")
        #expect(other.status == 0 && other.output == "\(device): ok\n", "\(other.output) \(other.errors)")
        #expect(try xdpflow(spaces[1], "filter show dev NDEV").output.contains("pref 2 "))
        #expect(try xdpflow(spaces[1], "detach dev NDEV").status == 0)

        // `ip netns exec` mounts a /sys of its own, without bpffs: the pins still go where
        // the next command finds them, and the offload outlives the command.
        // The default pin root, whatever XDPFLOW_PIN_DIR the tests were started with.
        let exec = ["ip", "netns", "exec", spaces[0], "env", "-u", "XDPFLOW_PIN_DIR",
                    "XDPFLOW_STATE_DIR=\(lab.state.path)", xdpflowBinary]
        let attached = try execute(exec + ["attach", "dev", device])
        #expect(attached.status == 0, "\(attached.errors)")
        let checked = try execute(["env", "-u", "XDPFLOW_PIN_DIR", "XDPFLOW_STATE_DIR=\(lab.state.path)", xdpflowBinary,
                                   "-n", spaces[0], "check", "dev", device])
        #expect(checked.output == "\(device): ok\n", "\(checked.output) \(checked.errors)")
        #expect(try execute(exec + ["detach", "dev", device]).status == 0)
        #expect(try execute(lab.xdpflowCommand("-n xft-none show")).errors.contains("network namespace xft-none does not exist"))
    }
}

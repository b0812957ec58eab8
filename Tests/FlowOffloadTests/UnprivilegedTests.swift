import FlowOffload
import Foundation
import KernelTestSupport
import SystemPackage
import Testing

/// Whether `setpriv` (util-linux) is here to run a command as nobody.
let setprivAvailable = ["/usr/bin/setpriv", "/bin/setpriv"].contains { FileManager.default.isExecutableFile(atPath: $0) }

/// The commands that only show rules, run by another user (nobody) against the state of
/// an offload root made, through the built binary: they print what root's print, without
/// what needs root, which they name; they write nothing, leave a pending change to root,
/// and wait for a writer. A command that changes rules is refused.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable),
       .enabled(if: Kernel.isCI || setprivAvailable, "setpriv (util-linux) runs the commands as nobody"),
       .serialized)
struct UnprivilegedTests {
    /// A lab whose state directory and binary nobody can reach: both under /tmp (mode
    /// 1777 on Linux), whatever TMPDIR and the build directory's modes are. All of it goes
    /// when the lab goes, also when a test fails.
    final class Lab {
        let offload: OffloadLab
        /// A directory of its own with a copy of the binary, mode 0755.
        let scratch: String
        let binary: String

        init() throws {
            scratch = "/tmp/xft-nobody-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
            binary = scratch + "/xdpflow"
            offload = try OffloadLab(stateRoot: "/tmp")
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: false)
            try FileManager.default.copyItem(atPath: xdpflowBinary, toPath: binary)
            chmod(scratch, 0o755)
            chmod(binary, 0o755)
        }

        deinit {
            try? FileManager.default.removeItem(atPath: scratch)
        }

        var device: String { offload.device }

        /// The words after /usr/bin/env that run `xdpflow` + `line` on the lab, as root or as nobody.
        func command(_ line: String, asNobody: Bool) -> [String] {
            let nobody = asNobody ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] : []
            return nobody + ["env", "XDPFLOW_STATE_DIR=\(offload.state.path)", "XDPFLOW_PIN_DIR=\(offload.pinRoot)",
                             binary] + offload.words(line)
        }

        func run(_ line: String, asNobody: Bool) throws -> CommandResult {
            try execute(command(line, asNobody: asNobody))
        }

        /// Runs a command as root that must succeed; its standard output.
        @discardableResult
        func root(_ line: String) throws -> String {
            let result = try run(line, asNobody: false)
            guard result.status == 0 else { throw Failed(description: "xdpflow \(line) exited \(result.status): \(result.errors)") }
            return result.output
        }

        struct Failed: Error, CustomStringConvertible {
            var description: String
        }

        func nobody(_ line: String) throws -> CommandResult { try run(line, asNobody: true) }

        /// Every file and directory in the state directory: mode and contents.
        func stateFiles() throws -> [String: StateFile] {
            let root = offload.state.path.string
            var files: [String: StateFile] = [:]
            for name in ["."] + (FileManager.default.subpaths(atPath: root) ?? []) {
                let path = root + "/" + name
                let attributes = try FileManager.default.attributesOfItem(atPath: path)
                let isDirectory = attributes[.type] as? FileAttributeType == .typeDirectory
                files[name] = StateFile(mode: (attributes[.posixPermissions] as? Int) ?? -1,
                                        contents: isDirectory ? nil : FileManager.default.contents(atPath: path))
            }
            return files
        }
    }

    struct StateFile: Equatable {
        var mode: Int
        var contents: Data?
    }

    @Test func showingCommandsPrintWhatRootsPrintAndChangeNothing() throws {
        let lab = try Lab()
        let device = lab.device
        try lab.root("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 53 action drop")
        try lab.root("filter add dev DEV protocol ip prio 1 handle 2 flower ip_proto tcp dst_port 1000-1003 action drop")
        try lab.root("filter add dev DEV protocol ip prio 2 flower dst_ip 198.51.100.0/24 action pass")

        // Every file world-readable, every directory open to all, whatever the umask.
        let before = try lab.stateFiles()
        for (name, file) in before {
            #expect(file.mode == (file.contents == nil ? 0o755 : 0o644), "\(name): \(String(file.mode, radix: 8))")
        }

        // filter show and get, text and JSON: root's output, status 0.
        for line in ["filter show dev DEV", "-j filter show dev DEV", "-j -p filter show dev DEV",
                     "filter get dev DEV protocol ip prio 1 handle 2 flower"] {
            let shown = try lab.nobody(line)
            #expect(shown.status == 0, "\(line): \(shown.errors)")
            #expect(shown.output == (try lab.root(line)), "\(line)")
            #expect(shown.errors == "", "\(line)")
        }
        let rules = try lab.root("filter show dev DEV")
        #expect(rules.contains("dst_port 1000-1003"))

        // -s: the rules without counters (never zeros), one line naming root, status 2.
        let stats = try lab.nobody("-s filter show dev DEV")
        #expect(stats.status == 2)
        #expect(stats.output == rules)
        #expect(!stats.output.contains("Sent"))
        #expect(stats.errors == "Error: counters need root (CAP_BPF, to read the pinned maps): run xdpflow as root for -s\n")
        let statsJSON = try lab.nobody("-s -j filter show dev DEV")
        #expect(statsJSON.status == 2)
        #expect(statsJSON.output == (try lab.root("-j filter show dev DEV")), "valid JSON, without stats")
        #expect((try? JSONSerialization.jsonObject(with: Data(statsJSON.output.utf8))) != nil)
        #expect(try lab.root("-s filter show dev DEV").contains("Sent"), "root's has them")

        // save: root's file, but for the date.
        let saved = try lab.nobody("save dev DEV")
        #expect(saved.status == 0, "\(saved.errors)")
        #expect(saved.output.split(separator: "\n").dropFirst() == (try lab.root("save dev DEV")).split(separator: "\n").dropFirst())

        // show: what the state directory says, without program id or counters; status 2.
        let programID = try #require(lab.offload.offload.programID)
        let rootShow = try lab.root("show dev DEV")
        let shown = try lab.nobody("show dev DEV")
        #expect(shown.status == 2)
        let stored = rootShow.split(separator: "\n")[0].replacingOccurrences(of: ": attached", with: ": stored as attached")
            .replacingOccurrences(of: "program id \(programID), ", with: "")
        #expect(shown.output == stored + "\n", "\(rootShow)")
        #expect(shown.errors.hasPrefix("Error: program ids, counters and the audit of the kernel need root (CAP_BPF)"))
        let showJSON = try lab.nobody("-j show dev DEV")
        #expect(showJSON.status == 2)
        let object = try #require((try JSONSerialization.jsonObject(with: Data(showJSON.output.utf8)) as? [[String: Any]])?.first)
        #expect(object["dev"] as? String == device && object["mode"] as? String == "native" && object["rules"] as? Int == 3)
        for unread in ["attached", "prog_id", "mark_companion", "stats", "needs_repair", "problems"] {
            #expect(object[unread] is NSNull, "\(unread) was not read: null")
        }

        // Changes are refused before anything is touched.
        let add = try lab.nobody("filter add dev DEV protocol ip prio 3 flower action drop")
        #expect(add.status == 2)
        #expect(add.errors.hasPrefix("Error: xdpflow filter add needs root (CAP_BPF and CAP_NET_ADMIN"), "\(add.errors)")
        let batch = lab.scratch + "/rules"
        try "filter add dev \(device) protocol ip prio 3 flower action drop\n".write(toFile: batch, atomically: true, encoding: .utf8)
        chmod(batch, 0o644)
        let batched = try lab.nobody("-batch \(batch)")
        #expect(batched.status == 2)
        #expect(batched.errors.contains("xdpflow -batch needs root"), "\(batched.errors)")
        for line in ["filter del dev DEV protocol ip prio 1 handle 1 flower", "attach dev TARGET", "detach dev DEV",
                     "check dev DEV"] {
            let refused = try lab.nobody(line)
            #expect(refused.status == 2, "\(line)")
            #expect(refused.errors.contains("needs root"), "\(line): \(refused.errors)")
        }

        #expect(try lab.stateFiles() == before, "nobody wrote nothing")
        #expect(lab.offload.offload.programID == programID, "the kernel is as it was")
        #expect(try lab.root("filter show dev DEV") == rules)
    }

    @Test func aReaderWaitsForAWriterAndLeavesAPendingChangeToRoot() throws {
        let lab = try Lab()
        let device = lab.device
        try lab.root("filter add dev DEV protocol ip prio 1 handle 1 flower ip_proto udp dst_port 53 action drop")
        let rules = try lab.root("filter show dev DEV")

        // A writer holds the lock exclusively: the reader waits, and reads once it is
        // released; beside another reader it reads at once.
        let lock = try FileDescriptor.open(lab.offload.state.path.appending("lock"), .readOnly)
        defer { try? lock.close() }
        #expect(flock(lock.rawValue, LOCK_EX) == 0)
        let reader = Process(), output = Pipe()
        reader.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        reader.arguments = lab.command("filter show dev DEV", asNobody: true)
        reader.standardOutput = output
        try reader.run()
        // Its signals come blocked from Process, SIGTERM among them: only SIGKILL ends it.
        defer { if reader.isRunning { kill(reader.processIdentifier, SIGKILL) } }
        Thread.sleep(forTimeInterval: 0.5)
        #expect(reader.isRunning, "waits while a writer holds the lock")
        #expect(flock(lock.rawValue, LOCK_UN) == 0)
        #expect(try settled(at: false, timeout: .seconds(10)) { reader.isRunning } == false)
        reader.waitUntilExit()
        #expect(reader.terminationStatus == 0)
        #expect(String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) == rules)
        #expect(flock(lock.rawValue, LOCK_SH) == 0)
        #expect(try lab.nobody("filter show dev DEV").output == rules, "beside another reader")
        #expect(flock(lock.rawValue, LOCK_UN) == 0)

        // A change a command that died left pending: shown as before it, left to root.
        let journal = lab.offload.offload.files.path.appending("\(device).journal").string
        let records = try String(contentsOfFile: journal, encoding: .utf8)
        let last = records.split(separator: "\n").compactMap { line -> UInt64? in
            let words = line.split(separator: " ")
            return words.first == "begin" ? UInt64(words[1]) : nil
        }.max() ?? 0
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: journal))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(("begin \(last + 1) change\n"
            + "+ filter add dev \(device) ingress prio 9 handle 0x1 protocol ip flower action drop\n").utf8))
        try handle.close()
        let before = try lab.stateFiles()

        let pending = "Warning: a change to \(device) is pending (a command stopped halfway): shown are the rules "
            + "before it; run xdpflow as root (xdpflow check dev \(device)) to finish or roll it back\n"
        let shown = try lab.nobody("filter show dev DEV")
        #expect(shown.status == 0)
        #expect(shown.output == rules)
        #expect(shown.errors == pending)
        let saved = try lab.nobody("save dev DEV")
        #expect(saved.status == 0)
        #expect(saved.errors == pending)
        #expect(!saved.output.contains("prio 9"))
        #expect(try lab.nobody("show dev DEV").errors.hasPrefix(pending))
        #expect(try lab.stateFiles() == before, "the pending record is left as it is")

        // Root's next command rolls it back, and says so.
        let check = try lab.run("check dev DEV", asNobody: false)
        #expect(check.status == 0)
        #expect(check.errors.hasPrefix("Warning: rolled back a change of \(device) that did not finish"), "\(check.errors)")
        #expect(try lab.nobody("filter show dev DEV").errors == "")
    }
}

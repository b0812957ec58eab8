import Foundation
import Testing

/// The `xdpflow` executable, run as an operator would: bad rules are refused with
/// the word, its position and what was expected, before any device is involved.
@Suite struct CLITests {
    static let xdpflow = URL(fileURLWithPath: CommandLine.arguments[0])
        .deletingLastPathComponent().appendingPathComponent("xdpflow")

    func run(_ arguments: [String]) throws -> (status: Int32, errors: String) {
        let process = Process()
        process.executableURL = Self.xdpflow
        process.arguments = arguments
        process.environment = ["XDPFLOW_STATE_DIR": FileManager.default.temporaryDirectory
            .appendingPathComponent("xft-cli-\(UInt32.random(in: 0...UInt32.max))").path]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = Pipe()
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    @Test func aMisspelledKeyIsAUsageError() throws {
        let result = try run(["filter", "add", "dev", "xft-none", "protocol", "ip", "flower",
                              "ip_proto", "tcp", "dstport", "80", "action", "drop"])
        #expect(result.status == 1, "as tc's parse errors")
        #expect(result.errors == "Error: word 10 'dstport': unknown flower key 'dstport'; did you mean 'dst_port'?\n")
    }

    @Test func aDependencyIsNamed() throws {
        let result = try run(["filter", "add", "dev", "xft-none", "protocol", "ip", "flower", "dst_port", "80"])
        #expect(result.status == 1)
        #expect(result.errors.contains("dst_port needs ip_proto tcp, udp or sctp"))
    }

    @Test func aMissingDeviceExitsAsTcs() throws {
        // tc: "Cannot find device", exit 1, for add and show alike.
        let result = try run(["filter", "add", "dev", "xft-none", "protocol", "ip", "flower", "action", "drop"])
        #expect(result.status == 1)
        #expect(result.errors == "Error: device xft-none does not exist\n")
    }

    @Test func aBadBatchNamesItsLine() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("xft-batch-\(UInt32.random(in: 0...UInt32.max))")
        try "# two rules\nfilter add dev xft-none protocol ip flower action drop\nfilter add dev xft-none flower vlan_id 5000\n"
            .write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try run(["-batch", file.path])
        #expect(result.status == 1)
        #expect(result.errors.contains("line 3"))
    }

    @Test func aShowOfAMissingDeviceFails() throws {
        let result = try run(["filter", "show", "dev", "xft-none"])
        #expect(result.status == 1)
        #expect(result.errors == "Error: device xft-none does not exist\n")
    }

    /// The table of docs/runtime.md, "Exit status": read errors 1, refusals 2, as tc's.
    @Test func aRefusalExits2() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("xft-batch-\(UInt32.random(in: 0...UInt32.max))")
        defer { try? FileManager.default.removeItem(at: file) }
        let rule = "filter add dev xft-none protocol ip prio 1 handle 1 flower action drop\n"
        for (text, message) in [(rule + rule, "line 2: "),
                                ("filter add dev xft-none protocol ip flower action mirred ingress redirect dev xft-none\n",
                                 "cannot run at XDP")] {
            try text.write(to: file, atomically: true, encoding: .utf8)
            let result = try run(["compile", "-batch", file.path])
            #expect(result.status == 2, "\(result.errors)")
            #expect(result.errors.contains(message), "\(result.errors)")
        }
        let usage = try run(["compile", "-batch", file.path, "dev"])
        #expect(usage.status == 1, "\(usage.errors)")
    }

    @Test func attachWithoutDevSaysWhatItExpected() throws {
        let result = try run(["attach", "xop2"])
        #expect(result.status == 1)
        #expect(result.errors == "Error: attach: unknown word 'xop2'; expected dev DEV, mode, unparsed or metadata\n")
    }

    @Test func aBatchThatIsNoFileOfTextSaysWhy() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("xft-dir-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let folder = try run(["-batch", directory.path])
        #expect(folder.status == 1)
        #expect(folder.errors == "Error: cannot read batch file \(directory.path): it is a directory, not a file of commands\n")

        let file = directory.appendingPathComponent("rules")
        try Data("filter show dev xft-none\n\u{ff}\u{fe} bad\n".utf8.map { $0 } + [0xff, 0x0a]).write(to: file)
        let binary = try run(["-batch", file.path])
        #expect(binary.status == 1)
        #expect(binary.errors == "Error: cannot read batch file \(file.path): line 3 is not UTF-8 text\n")
    }

    @Test func helpOfNoCommandFails() throws {
        let result = try run(["help", "bogus"])
        #expect(result.status == 1)
        #expect(result.errors.hasPrefix("Error: help: no command 'bogus'; commands: filter, attach"))
        #expect(try run(["help", "filter"]).status == 0)
    }
}

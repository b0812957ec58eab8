import ArgumentParser
import BPFAssembly
import FlowCompiler
import FlowOffload
import FlowRules
import FoundationEssentials
import Glibc
import Packets

/// `xdpflow trace -batch FILE --pcap CAPTURE`: what the compiled program does with each
/// frame of a capture, run in the kernel with BPF_PROG_TEST_RUN (nothing is attached);
/// `xdpflow trace dev DEV --pcap CAPTURE`: the same for the rules DEV runs now
/// (TraceDevice.swift).
struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the frames of a capture through the program of a rule file or of a device.",
        usage: """
            xdpflow trace -batch FILE --pcap CAPTURE [-j [-p]] [--check] [dev DEV]
            xdpflow trace dev DEV --pcap CAPTURE [-j [-p]] [--check]
            """,
        discussion: """
            Compiles the rules as 'xdpflow compile' does, loads the program through the \
            kernel verifier (needs root) with no device attached, and runs every frame of \
            CAPTURE (pcap or pcapng, Ethernet) once with BPF_PROG_TEST_RUN, in order. \
            Redirect targets need not exist: the devmap sends them all to lo, and the \
            target is reported from the rule. Police buckets start full and see the \
            frames back to back, not at their capture times.

            OUTPUT
              One line per frame: its index (from 0), the verdict (drop, pass, tx,
              redirect, aborted), the rules that counted it (the last one decided), then
              the redirect device, the mark the rules set, 'unparsed' when the program
              could not classify the frame, and on a second line the frame as the
              actions left it, in hex, when they changed it. Then a count by verdict.
              -j prints a JSON array (schema in docs/compiler.md).

            OPTIONS (also accepted before 'trace', as iproute2's global options)
              -batch FILE  the rules: filter commands, one per line ('-': standard
                           input), as 'xdpflow -batch' reads them
              -j, -json    print JSON; -p, -pretty indents it

            EXIT STATUS
              0 done; 1 the capture or the file cannot be read, the kernel failed, or
              --check found a difference (each is listed); 2 the rules cannot be
              compiled (the message names the line).
            """ + "\n\n" + deviceManual)

    /// Hidden: the discussion lists the ones that apply (-s does not).
    @OptionGroup(visibility: .hidden) var global: GlobalOptions

    @Argument(help: deviceHelp)
    var words: [String] = []

    @Option(help: ArgumentHelp("The frames: a pcap or pcapng file of Ethernet frames.", valueName: "CAPTURE"))
    var pcap: String

    @Flag(help: "Also classify each frame with the reference classifier; list every difference and exit 1 if any.")
    var check = false

    /// Without -batch, the rules are a device's: `dev DEV` is required.
    var onDevice: Bool { global.batch == nil && !words.isEmpty }

    func validate() throws {
        if onDevice {
            guard !global.stats else { throw ValidationError("-s: trace has no counters to show") }
            _ = try DeviceWords.device(in: words, command: "trace")
        } else {
            _ = try global.ruleSource(deviceWords: words, command: "trace")
        }
    }

    func run() throws {
        if onDevice {
            let live = try DeviceTrace(device: try DeviceWords.device(in: words, command: "trace"), check: check)
            try report(Self.capture(pcap), through: live.datapath, reference: live.reference)
            return
        }
        let file = try RuleFile(global.ruleSource(deviceWords: words, command: "trace"))
        let plan = try file.plan()
        let capture = try Self.capture(pcap)
        let datapath = try file.load(plan, options: CompileOptions(recordMatches: true))
        let reference = try check ? ReferenceClassifier(rules: file.rules, device: file.device) : nil
        try report(capture, through: datapath, reference: reference)
    }

    static func capture(_ path: String) throws -> PcapFile {
        let capture: PcapFile
        do {
            capture = try PcapFile.read(path: path)
        } catch {
            // An I/O error names the file already.
            if case .io = error { throw CommandError.unreadable(error) }
            throw CommandError.at(path, .unreadable(error))
        }
        guard capture.linkType == PcapFile.ethernet else {
            throw CommandError.notEthernet(path: path, linkType: capture.linkType)
        }
        return capture
    }

    /// Runs every frame through `datapath` (built with `recordMatches`), prints the trace
    /// and, with a reference, fails listing the frames where the two differ.
    func report(_ capture: PcapFile, through datapath: Datapath, reference: ReferenceClassifier?) throws {
        var reference = reference
        var traces: [FrameTrace] = []
        var differences: [String] = []
        for (index, record) in capture.records.enumerated() {
            let trace: FrameTrace
            do {
                trace = FrameTrace(index: index, input: record.data, record: try datapath.trace(record.data))
            } catch {
                throw CommandError.at("frame \(index)", .refused(error))
            }
            traces.append(trace)
            if let expected = reference?.classify(record.data, now: 0) {
                let found = trace.record.differences(from: expected)
                if !found.isEmpty { differences.append("frame \(index): " + found.joined(separator: "; ")) }
            }
        }
        global.print(json: .array(traces.map(\.json)), text: Self.text(traces, agreed: check && differences.isEmpty))
        if !differences.isEmpty {
            throw CommandError.differences(differences, frames: traces.count)
        }
    }

    /// `agreed`: --check found no difference.
    static func text(_ traces: [FrameTrace], agreed: Bool) -> String {
        var lines: [String] = []
        if !traces.isEmpty {
            let table = Table(rows: [["frame", "verdict", "rule"]] + traces.map(\.columns))
            // The output of a frame goes on the next line, under its rules.
            let indent = String(repeating: " ", count: table.offset(of: 2))
            let rows = table.lines
            lines.append(rows[0])
            for (row, trace) in zip(rows.dropFirst(), traces) {
                lines.append(row)
                if let output = trace.changedOutput { lines.append(indent + "output " + hex(output)) }
            }
        }
        let counts = XDPAction.allCases.compactMap { verdict in
            let count = traces.count { $0.record.verdict == verdict }
            return count == 0 ? nil : "\(count) \(verdict)"
        }
        lines.append("\(traces.count) frame\(traces.count == 1 ? "" : "s")" + (counts.isEmpty ? "" : ": " + counts.joined(separator: ", ")))
        if agreed { lines.append("check: every frame as the reference classifier") }
        return lines.map { $0 + "\n" }.joined()
    }
}

/// One frame of a capture and what the program did with it.
struct FrameTrace {
    var index: Int
    var input: [UInt8]
    var record: TraceRecord

    var mark: UInt32? { FlowMetadata(endingAt: record.metadata)?.mark }
    var changedOutput: [UInt8]? { record.output == input ? nil : record.output }

    var columns: [String] {
        var notes: [String] = []
        if record.unparsed { notes.append("unparsed") }
        if let device = record.redirectDevice { notes.append("dev \(device)") }
        if !record.mirrorDevices.isEmpty { notes.append("mirror " + record.mirrorDevices.joined(separator: " ")) }
        if let mark { notes.append("mark \(mark)") }
        let cells = (record.matched.isEmpty ? [] : [record.matched.text]) + notes
        return [String(index), record.verdict.description, cells.isEmpty ? "-" : cells.joined(separator: "  ")]
    }

    var json: JSON {
        let deciding = record.decidingRule
        var fields: [(String, JSON)] = [
            ("index", .integer(index)),
            ("verdict", .string(record.verdict.description)),
            ("prio", .optional(deciding?.prio)),
            ("handle", .optional(deciding?.handle)),
            ("matched", .array(record.matched.map { .object([("prio", .integer($0.prio)), ("handle", .integer($0.handle))]) })),
            ("unparsed", .bool(record.unparsed)),
        ]
        if let device = record.redirectDevice { fields.append(("redirect_dev", .string(device))) }
        if !record.mirrorDevices.isEmpty { fields.append(("mirror_devs", .array(record.mirrorDevices.map(JSON.string)))) }
        if let mark { fields.append(("mark", .integer(mark))) }
        if let output = changedOutput { fields.append(("output", .string(hex(output)))) }
        return .object(fields)
    }
}

extension [RuleID] {
    var text: String { isEmpty ? "none" : map(\.description).joined(separator: ", ") }
}

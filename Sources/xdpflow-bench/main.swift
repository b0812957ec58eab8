import BPFKernel
import Foundation
import SystemPackage

/// Prints progress to standard error, so that standard output is the report alone.
func progress(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

func run(_ options: Options) throws {
    progress("loading the packet cases...")
    let packetCases = try PacketCases.all()
    for packetCase in packetCases { try packetCase.check() }
    if let directory = options.pinDirectory {
        try BPFFS.mountIfNeeded()
        try BPFFS.makeDirectories(FilePath(directory))
        for packetCase in packetCases {
            try packetCase.program.pin(at: FilePath(directory).appending(packetCase.slug))
        }
        progress("pinned the programs in \(directory)")
    }
    progress("timing \(packetCases.count) packet cases, \(options.rounds) rounds of \(options.repeatCount) runs...")
    let packetResults = try Benchmark.alternate(packetCases.map { $0.benchmark(repeatCount: options.repeatCount) },
                                                rounds: options.rounds)
    progress("parsing the compile cases...")
    let compileCases = try CompileCases.all()
    progress("timing \(compileCases.count) compile cases, \(options.compileRounds) rounds...")
    let compileResults = try Benchmark.alternate(compileCases.map(\.benchmark), rounds: options.compileRounds)

    let floor = packetResults[0][PacketCase.metric].median
    let packets = zip(packetCases, packetResults).map { packetCase, result in
        Report.PacketRow(slug: packetCase.slug, name: packetCase.name, rules: packetCase.rules,
                         subtables: packetCase.subtables, verdict: "\(packetCase.verdict)",
                         instructions: packetCase.program.slotCount, nsPerPacket: result[PacketCase.metric],
                         ratioToFloor: result[PacketCase.metric].median / floor)
    }
    let compile = zip(compileCases, compileResults).map { compileCase, result in
        Report.CompileRow(slug: compileCase.slug, name: compileCase.name, rules: compileCase.rules.count,
                          phases: result.metrics)
    }
    let targets = zip(packetCases, packets).compactMap { packetCase, row in
        packetCase.target.map { Target(goal: "\(row.name): within \($0)x the floor", measured: row.ratioToFloor,
                                       limit: $0, unit: "x floor") }
    } + zip(compileCases, compile).compactMap { compileCase, row in
        compileCase.targetMilliseconds.map {
            Target(goal: "compile \(row.rules.grouped) rules (Plan+CodeGenerator) under \($0.formatted(0)) ms",
                   measured: row.phases[CompileCase.Phase.compile.rawValue]!.median, limit: $0, unit: "ms")
        }
    }
    let report = Report(setup: .current(options), packets: packets, compile: compile, targets: targets)
    print(report.markdown)
    if let path = options.jsonPath {
        try report.write(to: path)
        progress("wrote \(path)")
    }
}

extension Report.Setup {
    static func current(_ options: Options) -> Self {
        var load = [Double](repeating: 0, count: 3)
        _ = getloadavg(&load, 3)
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return Self(kernel: "Linux " + release,
                    cpus: ProcessInfo.processInfo.activeProcessorCount, loadAverage: load, rounds: options.rounds,
                    repeatCount: options.repeatCount, compileRounds: options.compileRounds)
    }
}

extension Report {
    var markdown: String {
        var packetTable = MarkdownTable([("case", .left), ("rules", .right), ("subtables", .right), ("insns", .right),
                                         ("verdict", .left), ("ns/packet median (min-max)", .right),
                                         ("over floor", .right), ("x floor", .right)])
        let floor = packets.first?.nsPerPacket.median ?? 0
        for row in packets {
            packetTable.append([row.name, row.rules.grouped, "\(row.subtables)", "\(row.instructions)", row.verdict,
                                row.nsPerPacket.summary(1), (row.nsPerPacket.median - floor).formatted(1),
                                row.ratioToFloor.formatted(2)])
        }
        let phases = CompileCase.Phase.allCases.map(\.rawValue)
        var compileTable = MarkdownTable([("case", .left), ("rules", .right)] + phases.map { ($0, .right) })
        for row in compile {
            compileTable.append([row.name, row.rules.grouped] + phases.map { row.phases[$0]!.summary(1) })
        }
        var targetTable = MarkdownTable([("goal", .left), ("measured", .right), ("limit", .right), ("", .left)])
        for target in targets {
            targetTable.append([target.goal, "\(target.measured.formatted(2)) \(target.unit)",
                                "\(target.limit.formatted(2)) \(target.unit)", target.verdict])
        }
        let load = setup.loadAverage.map { $0.formatted(2) }.joined(separator: " ")
        return """
            ## XDPFlow benchmarks

            \(setup.kernel); \(setup.cpus) CPUs; load average \(load) at the end.
            BPF_PROG_TEST_RUN, \(setup.repeatCount.grouped) runs per sample, \(setup.rounds) rounds alternating \
            the cases (after a warm-up round); 60-byte UDP/IPv4 frames.

            ### Packets (ns/packet: the kernel's mean per run, test-run loop included)

            \(packetTable)

            ### Compiler (ms, \(setup.compileRounds) rounds; from parsed FlowRule values)

            \(compileTable)

            ### Targets

            \(targetTable)
            """
    }
}

do {
    try run(Options(Array(CommandLine.arguments.dropFirst())))
} catch is Options.Help {
    print(Options.usage)
} catch {
    progress("xdpflow-bench: \(error)")
    exit(1)
}

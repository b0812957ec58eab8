import Foundation

/// Prints progress to standard error, so that standard output is the report alone.
func progress(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

func run(_ options: Options) throws {
    if let unknown = options.only?.first(where: { name in !Suite.all.contains { $0.name == name } }) {
        throw BenchError("--only \(unknown): expected one of \(Options.suiteNames)")
    }
    let chosen = Suite.all.filter { options.only?.contains($0.name) ?? true }
    var sections: [Section] = []
    for suite in chosen {
        progress("== \(suite.name)")
        sections += try suite.run(options)
    }
    let report = Report(setup: .current(options), sections: sections)
    print(report.markdown)
    if let path = options.jsonPath {
        try report.writeJSON(to: path)
        progress("wrote \(path)")
    }
    if let directory = options.resultsDirectory {
        try report.writeResults(in: directory)
    }
}

extension Report.Setup {
    static func current(_ options: Options) -> Self {
        var load = [Double](repeating: 0, count: 3)
        _ = getloadavg(&load, 3)
        var name = utsname()
        uname(&name)
        func text<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        let date = Date().ISO8601Format(.iso8601.year().month().day())
        return Self(date: date, host: text(name.nodename), kernel: "Linux " + text(name.release),
                    cpus: ProcessInfo.processInfo.activeProcessorCount, commit: options.commit, loadAverage: load,
                    quick: options.quick)
    }
}

extension Report {
    /// bench/results/<date>-<host>.json, .md and .svg (the curves).
    func writeResults(in directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let base = "\(directory)/\(setup.date)-\(setup.host)"
        try writeJSON(to: base + ".json")
        try Data(markdown.utf8).write(to: URL(fileURLWithPath: base + ".md"))
        let curves = sections.flatMap(\.curves)
        if !curves.isEmpty {
            try Data(Plot(curves).svg.utf8).write(to: URL(fileURLWithPath: base + ".svg"))
        }
        progress("wrote \(base).json, .md\(curves.isEmpty ? "" : " and .svg")")
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

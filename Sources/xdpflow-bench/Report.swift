import Foundation

/// A markdown table with its columns padded, so it also reads as plain text.
struct MarkdownTable: CustomStringConvertible {
    enum Alignment { case left, right }

    var columns: [(title: String, alignment: Alignment)]
    var rows: [[String]] = []

    init(_ columns: [(String, Alignment)]) {
        self.columns = columns.map { (title: $0.0, alignment: $0.1) }
    }

    mutating func append(_ row: [String]) {
        precondition(row.count == columns.count, "one cell per column")
        rows.append(row)
    }

    var description: String {
        let widths = columns.indices.map { column in
            ([columns[column].title] + rows.map { $0[column] }).map(\.count).max()!
        }
        func line(_ cells: [String]) -> String {
            "| " + zip(cells, zip(widths, columns)).map { cell, layout in
                let padding = String(repeating: " ", count: layout.0 - cell.count)
                return layout.1.alignment == .left ? cell + padding : padding + cell
            }.joined(separator: " | ") + " |"
        }
        let rule = "|" + zip(widths, columns).map { width, column in
            column.alignment == .left ? ":" + String(repeating: "-", count: width + 1)
                : String(repeating: "-", count: width + 1) + ":"
        }.joined(separator: "|") + "|"
        return ([line(columns.map(\.title)), rule] + rows.map(line)).joined(separator: "\n")
    }
}

/// Everything one run measured: the machine, then each suite's sections.
struct Report: Encodable {
    struct Setup: Encodable {
        var date: String
        var host: String
        var kernel: String
        var cpus: Int
        var commit: String
        /// 1, 5 and 15 minute load averages when the run ended.
        var loadAverage: [Double]
        var quick: Bool
    }

    var setup: Setup
    var sections: [Section]

    var targets: [Target] { sections.flatMap(\.targets) }

    var markdown: String {
        let load = setup.loadAverage.map { $0.formatted(2) }.joined(separator: " ")
        let parts = ["""
            ## XDPFlow benchmarks\(setup.quick ? " (quick)" : "")

            \(setup.date) on \(setup.host): \(setup.kernel), \(setup.cpus) CPUs, commit \(setup.commit); \
            load average \(load) at the end.

            ### Targets

            \(Target.table(targets))
            """] + sections.map(\.markdown)
        return parts.joined(separator: "\n\n") + "\n"
    }

    func writeJSON(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: URL(fileURLWithPath: path))
    }
}

/// Numbers as the tables print them.
extension Double {
    func formatted(_ digits: Int) -> String { String(format: "%.\(digits)f", self) }
}

extension Samples {
    /// "12.0 (11.0-14.0)".
    func summary(_ digits: Int) -> String {
        "\(median.formatted(digits)) (\(min.formatted(digits))-\(max.formatted(digits)))"
    }
}

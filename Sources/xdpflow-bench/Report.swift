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

/// A goal from the issues, and how the measurement compares with it.
struct Target: Encodable {
    var goal: String
    var measured: Double
    var limit: Double
    var unit: String
    var met: Bool { measured <= limit }

    var verdict: String { met ? "met" : "MISSED" }

    enum CodingKeys: String, CodingKey { case goal, measured, limit, unit, met }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(goal, forKey: .goal)
        try container.encode(measured, forKey: .measured)
        try container.encode(limit, forKey: .limit)
        try container.encode(unit, forKey: .unit)
        try container.encode(met, forKey: .met)
    }
}

/// Everything one run measured, as `--json` writes it.
struct Report: Encodable {
    struct Setup: Encodable {
        var kernel: String
        var cpus: Int
        var loadAverage: [Double]
        var rounds: Int
        var repeatCount: Int
        var compileRounds: Int
    }

    struct PacketRow: Encodable {
        var slug: String
        var name: String
        var rules: Int
        var subtables: Int
        var verdict: String
        var instructions: Int
        var nsPerPacket: Samples
        /// Median over the floor's median.
        var ratioToFloor: Double
    }

    struct CompileRow: Encodable {
        var slug: String
        var name: String
        var rules: Int
        /// Milliseconds, by phase.
        var phases: [String: Samples]
    }

    var setup: Setup
    var packets: [PacketRow]
    var compile: [CompileRow]
    var targets: [Target]

    func write(to path: String) throws {
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

/// One part of the report: what was measured and how, a table, the targets it checks
/// and the curves it contributes to the plot. Every suite returns sections; the report
/// prints them as markdown and writes them as JSON, each row an object keyed by column.
struct Section: Encodable {
    /// The JSON key and anchor: "packets", "live", "update", ...
    var slug: String
    var title: String
    /// Markdown: how the figures were measured (peers, rounds, what counts).
    var method: String
    var columns: [Column]
    var rows: [[Cell]] = []
    var targets: [Target] = []
    var curves: [Curve] = []

    init(slug: String, title: String, method: String, columns: [Column]) {
        self.slug = slug
        self.title = title
        self.method = method
        self.columns = columns
    }

    mutating func append(_ row: [Cell]) {
        precondition(row.count == columns.count, "\(slug): one cell per column")
        rows.append(row)
    }

    var table: MarkdownTable {
        var table = MarkdownTable(columns.map { ($0.title, $0.alignment) })
        for row in rows { table.append(row.map(\.text)) }
        return table
    }

    var markdown: String {
        var text = "### \(title)\n\n\(method)\n\n\(table)"
        if !targets.isEmpty { text += "\n\n" + Target.table(targets).description }
        return text
    }

    enum CodingKeys: String, CodingKey { case slug, title, method, rows, targets, curves }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(slug, forKey: .slug)
        try container.encode(title, forKey: .title)
        try container.encode(method, forKey: .method)
        try container.encode(rows.map { Row(columns: columns, cells: $0) }, forKey: .rows)
        try container.encode(targets, forKey: .targets)
        try container.encode(curves, forKey: .curves)
    }

    /// A row as a JSON object: column key -> cell.
    private struct Row: Encodable {
        var columns: [Column]
        var cells: [Cell]

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: ColumnKey.self)
            for (column, cell) in zip(columns, cells) {
                try container.encode(cell, forKey: ColumnKey(stringValue: column.key))
            }
        }
    }

    private struct ColumnKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
}

struct Column {
    var title: String
    /// The JSON key: snake_case, with the unit ("ns_per_packet", "mpps", "ratio_to_nftables").
    var key: String
    var alignment: MarkdownTable.Alignment

    init(_ title: String, key: String, _ alignment: MarkdownTable.Alignment = .right) {
        self.title = title
        self.key = key
        self.alignment = alignment
    }
}

/// A table cell: printed with its digits, encoded as a JSON string, number, object or null.
enum Cell: Encodable {
    case text(String)
    case count(Int)
    case number(Double, digits: Int)
    /// Printed "median (min-max)"; encoded with every value.
    case samples(Samples, digits: Int)
    /// Not measured or not applicable; `why` is printed in the table ("n/a: cannot express").
    case absent(String)

    var text: String {
        switch self {
        case .text(let text): text
        case .count(let count): count.grouped
        case .number(let value, let digits): value.formatted(digits)
        case .samples(let samples, let digits): samples.summary(digits)
        case .absent(let why): why
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .text(let text): try container.encode(text)
        case .count(let count): try container.encode(count)
        case .number(let value, _): try container.encode(value)
        case .samples(let samples, _): try container.encode(samples)
        case .absent: try container.encodeNil()
        }
    }
}

/// One line of the plot: y against x, each point with its spread.
struct Curve: Encodable {
    var name: String
    var xLabel: String
    var yLabel: String
    var points: [Point]

    struct Point: Encodable {
        var x: Double
        var y: Samples
    }
}

/// A goal from the issues, and how the measurement compares with it.
struct Target: Encodable {
    enum Bound: String, Encodable {
        case atMost = "at most", atLeast = "at least"
    }

    var goal: String
    var measured: Double
    var bound: Bound
    var limit: Double
    var unit: String
    var met: Bool { bound == .atMost ? measured <= limit : measured >= limit }

    init(_ goal: String, measured: Double, _ bound: Bound, _ limit: Double, unit: String) {
        self.goal = goal
        self.measured = measured
        self.bound = bound
        self.limit = limit
        self.unit = unit
    }

    var verdict: String { met ? "met" : "MISSED" }

    static func table(_ targets: [Target]) -> MarkdownTable {
        var table = MarkdownTable([("target", .left), ("measured", .right), ("goal", .right), ("", .left)])
        for target in targets {
            table.append([target.goal, "\(target.measured.formatted(2)) \(target.unit)",
                          "\(target.bound.rawValue) \(target.limit.formatted(2)) \(target.unit)", target.verdict])
        }
        return table
    }

    enum CodingKeys: String, CodingKey { case goal, measured, bound, limit, unit, met }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(goal, forKey: .goal)
        try container.encode(measured, forKey: .measured)
        try container.encode(bound, forKey: .bound)
        try container.encode(limit, forKey: .limit)
        try container.encode(unit, forKey: .unit)
        try container.encode(met, forKey: .met)
    }
}

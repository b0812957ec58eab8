import FlowRules

/// A rule set two ways: the `filter add` lines of an `xdpflow -batch` file, and the
/// `RuleSet` those lines build when the project's own parser reads them (so a workload
/// cannot hold a rule the grammar would refuse).
public struct RuleSetWorkload: Sendable {
    /// Where the lines came from (a file, a generator and its seed), for errors and reports.
    public let name: String
    /// One command a line.
    public let lines: [String]
    public let rules: RuleSet

    /// The device the lines name unless told otherwise.
    public static let defaultDevice = "eth0"

    /// Parses `lines` as a batch and runs them on an empty rule set.
    public init(name: String, lines: [String]) throws(WorkloadError) {
        let batch: Batch
        do {
            batch = try Batch(text: lines.joined(separator: "\n"))
        } catch {
            throw WorkloadError(file: name, line: error.line, reason: error.reasonText)
        }
        var rules = RuleSet()
        for line in batch.lines {
            do {
                try line.command.apply(to: &rules)
            } catch {
                throw WorkloadError(file: name, line: line.number, reason: error.description)
            }
        }
        self.name = name
        self.lines = lines
        self.rules = rules
    }

    /// The lines as the text of a batch file.
    public var batch: String { lines.map { $0 + "\n" }.joined() }
}

/// A line of a workload that could not be read or run.
public struct WorkloadError: Error, Hashable, Sendable, CustomStringConvertible {
    public var file: String
    /// 1-based; nil when the file itself could not be read.
    public var line: Int?
    public var reason: String

    public init(file: String, line: Int?, reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }

    public var description: String {
        line.map { "\(file): line \($0): \(reason)" } ?? "\(file): \(reason)"
    }
}

extension BatchError {
    /// The description without its "line N: ", which `WorkloadError` gives with the file.
    fileprivate var reasonText: String {
        switch reason {
        case .parse(let error): error.description
        case .rules(let error): error.description
        case .store(let error): "\(error)"
        case .unterminatedQuote: "unterminated quote"
        case .trailingBackslash: "the command ends in '\\' at the end of the file"
        }
    }
}

/// A `-batch` file: one command per line, as iproute2 reads one.
///
/// - `#` at the start of a word comments out the rest of the line.
/// - A line ending in `\` continues on the next one.
/// - Words are separated by white space; "double" or 'single' quotes keep spaces.
/// - A batch is all or nothing: every command is parsed, then run in order on copies of
///   the rule sets it touches; only when all succeed are the new rule sets written to
///   the store, one device at a time, each by replaying its commands on the stored set
///   inside `RuleSetStore.update` (so a writer that got in between is not overwritten).
public struct Batch {
    public struct Line: Hashable, Sendable {
        /// 1-based; for a continued command, the number of its first line.
        public var number: Int
        public var command: FilterCommand
    }

    public let lines: [Line]

    /// Parses every line; the first bad line is the error.
    public init(text: String) throws(BatchError) {
        var lines: [Line] = []
        for (number, words) in try Self.commandWords(text) {
            do {
                lines.append(Line(number: number, command: try FilterCommand.parse(words)))
            } catch {
                throw BatchError(line: number, reason: .parse(error))
            }
        }
        self.lines = lines
    }

    /// Runs the batch on `store`. `output` receives, in order and only once everything
    /// has been written, each command with the rules it named (see `FilterCommand.apply`).
    public func run(on store: any RuleSetStore, output: (Line, [FlowRule]) -> Void) throws(BatchError) {
        var sets: [String: RuleSet] = [:]
        var results: [(Line, [FlowRule])] = []
        for line in lines {
            let device = line.command.device
            do {
                // Out of the dictionary while it changes: with a second reference there,
                // every line would copy the whole rule set (copy on write), O(n^2) a batch.
                var set = try sets.removeValue(forKey: device) ?? store.rules(of: device)
                results.append((line, try line.command.apply(to: &set)))
                sets[device] = set
            } catch let error as RuleSetError {
                throw BatchError(line: line.number, reason: .rules(error))
            } catch {
                throw BatchError(line: line.number, reason: .store(error))
            }
        }
        var written: Set<String> = []
        for line in lines where line.command.changesRules && !written.contains(line.command.device) {
            let device = line.command.device
            written.insert(device)
            let commands = lines.filter { $0.command.device == device && $0.command.changesRules }
            var failedLine = line.number
            do {
                try store.update(device: device) { set, change in
                    for command in commands {
                        failedLine = command.number
                        try command.command.apply(to: &set, recording: &change)
                    }
                }
            } catch let error as RuleSetError {
                throw BatchError(line: failedLine, reason: .rules(error))
            } catch {
                throw BatchError(line: failedLine, reason: .store(error))
            }
        }
        for (line, rules) in results { output(line, rules) }
    }

    /// The words of each command with the number of its first line.
    static func commandWords(_ text: String) throws(BatchError) -> [(Int, [String])] {
        var commands: [(Int, [String])] = []
        var pending: (start: Int, text: String.UnicodeScalarView)?
        var lines = Self.lines(text)
        // The file's last newline ends its last line; it starts no line a `\` continues into.
        if lines.count > 1, lines.last!.isEmpty { lines.removeLast() }
        for (index, line) in lines.enumerated() {
            let start = pending?.start ?? index + 1
            if line.last == "\\" {
                var joined = pending?.text ?? String.UnicodeScalarView()
                joined.append(contentsOf: line.dropLast())
                joined.append(" ")
                pending = (start, joined)
                continue
            }
            var whole = pending?.text ?? String.UnicodeScalarView()
            whole.append(contentsOf: line)
            pending = nil
            let words = try Self.words(whole, line: start)
            if !words.isEmpty { commands.append((start, words)) }
        }
        if let pending {
            // Applying the command cut short would apply another rule than the one written.
            throw BatchError(line: pending.start, reason: .trailingBackslash)
        }
        return commands
    }

    /// The lines of `text`, split where `Character.isNewline` would split them ("\r\n" is
    /// one newline), but scalar by scalar: a batch of 100,000 rules is read without
    /// breaking it into grapheme clusters first.
    static func lines(_ text: String) -> [Substring.UnicodeScalarView] {
        var lines: [Substring.UnicodeScalarView] = []
        let scalars = Substring(text).unicodeScalars
        var start = scalars.startIndex, position = start
        while position < scalars.endIndex {
            let scalar = scalars[position]
            guard Self.isNewline(scalar) else {
                position = scalars.index(after: position)
                continue
            }
            lines.append(scalars[start ..< position])
            position = scalars.index(after: position)
            if scalar == "\r", position < scalars.endIndex, scalars[position] == "\n" {
                position = scalars.index(after: position)
            }
            start = position
        }
        lines.append(scalars[start...])
        return lines
    }

    static func isNewline(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x0A ... 0x0D, 0x85, 0x2028, 0x2029: true
        default: false
        }
    }

    /// `Character.isWhitespace`, asked of a scalar, without Unicode's tables for ASCII.
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.isASCII ? scalar == " " || (0x09 ... 0x0D).contains(scalar.value) : scalar.properties.isWhitespace
    }

    private static func words<Scalars: Collection<Unicode.Scalar>>(_ text: Scalars, line: Int) throws(BatchError)
        -> [String] {
        var words: [String] = []
        var current: String.UnicodeScalarView?
        var quote: Unicode.Scalar?
        for scalar in text {
            if let open = quote {
                if scalar == open { quote = nil } else { current!.append(scalar) }
            } else if scalar == "\"" || scalar == "'" {
                quote = scalar
                current = current ?? String.UnicodeScalarView()
            } else if Self.isWhitespace(scalar) {
                if let word = current { words.append(String(word)) }
                current = nil
            } else if scalar == "#", current == nil {
                break
            } else {
                if current == nil { current = String.UnicodeScalarView() }
                current!.append(scalar)
            }
        }
        guard quote == nil else { throw BatchError(line: line, reason: .unterminatedQuote) }
        if let word = current { words.append(String(word)) }
        return words
    }
}

public struct BatchError: Error, CustomStringConvertible {
    public enum Reason: Sendable {
        case parse(ParseError)
        case rules(RuleSetError)
        /// What the store threw (it cannot be read or written, the device is not attached...).
        case store(any Error)
        case unterminatedQuote
        /// The last line ends in `\`: the command continues into nothing.
        case trailingBackslash
    }

    public var line: Int
    public var reason: Reason

    /// Parse errors are usage errors (exit 1, as tc); the others are refusals (exit 2).
    public var isUsageError: Bool {
        switch reason {
        case .parse, .unterminatedQuote, .trailingBackslash: true
        case .rules, .store: false
        }
    }

    public var description: String {
        switch reason {
        case .parse(let error): "line \(line): \(error)"
        case .rules(let error): "line \(line): \(error)"
        case .store(let error): "line \(line): \(error)"
        case .unterminatedQuote: "line \(line): unterminated quote"
        case .trailingBackslash: "line \(line): the command ends in '\\' at the end of the file; is a line missing?"
        }
    }
}

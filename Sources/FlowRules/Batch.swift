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

    public init(lines: [Line]) {
        self.lines = lines
    }

    /// Parses every line; the first bad line is the error.
    public init(text: String) throws(BatchError) {
        lines = try Self.parsed(text).map { line throws(BatchError) in try line.get() }
    }

    /// tc's `-force`: the lines that parse, and an error for each that does not.
    public static func forced(_ text: String) -> (batch: Batch, errors: [BatchError]) {
        var lines: [Line] = [], errors: [BatchError] = []
        for line in parsed(text) {
            switch line {
            case .success(let line): lines.append(line)
            case .failure(let error): errors.append(error)
            }
        }
        return (Batch(lines: lines), errors)
    }

    /// Each command read and parsed, on every core for a long batch.
    private static func parsed(_ text: String) -> [Result<Line, BatchError>] {
        let (commands, unfinished) = commandTexts(text)
        var parsed = commands.concurrentMap { start, text -> Result<Line, BatchError>? in
            do throws(BatchError) {
                let words = try Self.words(text, line: start)
                guard !words.isEmpty else { return nil }
                do throws(ParseError) {
                    return .success(Line(number: start, command: try FilterCommand.parse(words)))
                } catch {
                    return .failure(BatchError(line: start, reason: .parse(error)))
                }
            } catch {
                return .failure(error)
            }
        }.compactMap { $0 }
        // Applying the command cut short would apply another rule than the one written.
        if let unfinished { parsed.append(.failure(BatchError(line: unfinished, reason: .trailingBackslash))) }
        return parsed
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
            try Self.write(lines.filter { $0.command.device == device && $0.command.changesRules }, to: store)
        }
        for (line, rules) in results { output(line, rules) }
    }

    /// tc's `-force`: every line that can be carried out is, and each that cannot is
    /// given to `failed` and skipped. Lines are tried on copies of the rule sets first
    /// (a rule set that refuses an operation is left as it was), then each device's
    /// lines that held are written in one update; if that is refused (by the kernel, the
    /// disk), they are written one line at a time so the others still land.
    public func runForced(on store: any RuleSetStore, output: (Line, [FlowRule]) -> Void,
                          failed: (BatchError) -> Void) {
        var sets: [String: RuleSet] = [:]
        var held: [Line] = []
        var results: [Int: [FlowRule]] = [:]
        for (index, line) in lines.enumerated() {
            let device = line.command.device
            do {
                var set = try sets.removeValue(forKey: device) ?? store.rules(of: device)
                defer { sets[device] = set }
                results[index] = try line.command.apply(to: &set)
                held.append(line)
            } catch let error as RuleSetError {
                failed(BatchError(line: line.number, reason: .rules(error)))
            } catch {
                failed(BatchError(line: line.number, reason: .store(error)))
            }
        }
        var refused: Set<Int> = []
        var written: Set<String> = []
        for line in held where line.command.changesRules && !written.contains(line.command.device) {
            written.insert(line.command.device)
            let commands = held.filter { $0.command.device == line.command.device && $0.command.changesRules }
            guard (try? Self.write(commands, to: store)) == nil else { continue }
            for command in commands {
                do throws(BatchError) {
                    try Self.write([command], to: store)
                } catch {
                    refused.insert(command.number)
                    failed(error)
                }
            }
        }
        for (index, line) in lines.enumerated() where !refused.contains(line.number) {
            if let rules = results[index] { output(line, rules) }
        }
    }

    /// One device's commands in one `RuleSetStore.update`; the error names the line.
    private static func write(_ commands: [Line], to store: any RuleSetStore) throws(BatchError) {
        var failedLine = commands[0].number
        do {
            try store.update(device: commands[0].command.device) { set, change in
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

    /// The text of each command (continued lines joined) with the number of its first
    /// line; and the first line of a command the file's end cut short, if one did.
    static func commandTexts(_ text: String) -> (commands: [(Int, Substring.UnicodeScalarView)], unfinished: Int?) {
        var commands: [(Int, Substring.UnicodeScalarView)] = []
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
            // Only a continued command is copied; a line is read where it lies.
            var whole = line
            if var joined = pending?.text {
                joined.append(contentsOf: line)
                whole = Substring(String(joined)).unicodeScalars
            }
            pending = nil
            commands.append((start, whole))
        }
        return (commands, pending?.start)
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

    /// `word` as the reader reads it back, one word: as it is when nothing in it is
    /// syntax, else in single quotes, each `'` in it written `'"'"'` (quoted runs that
    /// touch join into one word).
    static func quoted(_ word: String) -> String {
        let plain = !word.isEmpty && !word.unicodeScalars.contains {
            Self.isWhitespace($0) || $0 == "\"" || $0 == "'" || $0 == "#" || $0 == "\\"
        }
        return plain ? word : "'" + word.replacing("'", with: "'\"'\"'") + "'"
    }

    /// The words of one command: runs of text between white space, quoted runs (which
    /// keep white space) joined to what touches them, up to a `#` that starts a word.
    /// A word without quotes is one copy of its slice.
    private static func words(_ text: Substring.UnicodeScalarView, line: Int) throws(BatchError) -> [String] {
        var words: [String] = []
        var position = text.startIndex
        while position < text.endIndex {
            if Self.isWhitespace(text[position]) {
                position = text.index(after: position)
                continue
            }
            if text[position] == "#" { break }
            var word: String?
            var run = position
            while position < text.endIndex, !Self.isWhitespace(text[position]) {
                let quote = text[position]
                guard quote == "\"" || quote == "'" else {
                    position = text.index(after: position)
                    continue
                }
                let opening = text.index(after: position)
                guard let closing = text[opening...].firstIndex(of: quote) else {
                    throw BatchError(line: line, reason: .unterminatedQuote)
                }
                var joined = word ?? ""
                joined.unicodeScalars.append(contentsOf: text[run ..< position])
                joined.unicodeScalars.append(contentsOf: text[opening ..< closing])
                word = joined
                position = text.index(after: closing)
                run = position
            }
            if var joined = word {
                joined.unicodeScalars.append(contentsOf: text[run ..< position])
                words.append(joined)
            } else {
                words.append(String(Substring(text[run ..< position])))
            }
        }
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

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

    /// The bytes of each command (continued lines joined) with the number of its first
    /// line; and the first line of a command the file's end cut short, if one did. Read
    /// as UTF-8 bytes: a batch of 100,000 rules is split without decoding its scalars
    /// (or grapheme clusters) one by one.
    static func commandTexts(_ text: String) -> (commands: [(Int, ArraySlice<UInt8>)], unfinished: Int?) {
        let bytes = Array(text.utf8)
        var commands: [(Int, ArraySlice<UInt8>)] = []
        var pending: (start: Int, bytes: [UInt8])?
        var lines = Self.lines(bytes)
        // The file's last newline ends its last line; it starts no line a `\` continues into.
        if lines.count > 1, lines.last!.isEmpty { lines.removeLast() }
        for (index, line) in lines.enumerated() {
            let start = pending?.start ?? index + 1
            if line.last == UInt8(ascii: "\\") {
                pending = (start, (pending?.bytes ?? []) + line.dropLast() + [UInt8(ascii: " ")])
                continue
            }
            // Only a continued command is copied; a line is read where it lies.
            commands.append((start, pending.map { ArraySlice($0.bytes + line) } ?? line))
            pending = nil
        }
        return (commands, pending?.start)
    }

    /// The lines of `bytes`, split where `Character.isNewline` would split them ("\r\n"
    /// is one newline).
    static func lines(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var start = 0, position = 0
        while position < bytes.count {
            let (scalar, length) = Self.scalar(bytes, at: position)
            guard isNewline(scalar) else {
                position += length
                continue
            }
            lines.append(bytes[start ..< position])
            position += scalar == "\r" && position + 1 < bytes.count && bytes[position + 1] == 0x0A ? 2 : length
            start = position
        }
        lines.append(bytes[start...])
        return lines
    }

    /// The length of the white space at `position`, nil for none.
    private static func whitespaceLength(_ bytes: ArraySlice<UInt8>, at position: Int) -> Int? {
        let (scalar, length) = Self.scalar(bytes, at: position)
        return isWhitespace(scalar) ? length : nil
    }

    /// The scalar whose UTF-8 sequence starts at `position`, and the sequence's length.
    private static func scalar<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes, at position: Int)
        -> (Unicode.Scalar, Int) where Bytes.Index == Int {
        let first = bytes[position]
        guard first >= 0x80 else { return (Unicode.Scalar(first), 1) }
        let length = first < 0xE0 ? 2 : first < 0xF0 ? 3 : 4
        var value = UInt32(first) & (0x7F >> length)
        for index in position + 1 ..< position + length { value = value << 6 | UInt32(bytes[index] & 0x3F) }
        return (Unicode.Scalar(value)!, length)
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
    /// A word without quotes is decoded from where it lies.
    private static func words(_ text: ArraySlice<UInt8>, line: Int) throws(BatchError) -> [String] {
        var words: [String] = []
        // Always at a scalar's first byte: a scalar is stepped over whole.
        var position = text.startIndex
        while position < text.endIndex {
            if let length = Self.whitespaceLength(text, at: position) {
                position += length
                continue
            }
            if text[position] == UInt8(ascii: "#") { break }
            var joined: [UInt8]?
            var run = position
            while position < text.endIndex, Self.whitespaceLength(text, at: position) == nil {
                let quote = text[position]
                guard quote == UInt8(ascii: "\"") || quote == UInt8(ascii: "'") else {
                    position += Self.scalar(text, at: position).1
                    continue
                }
                guard let closing = text[(position + 1)...].firstIndex(of: quote) else {
                    throw BatchError(line: line, reason: .unterminatedQuote)
                }
                joined = (joined ?? []) + text[run ..< position] + text[position + 1 ..< closing]
                position = closing + 1
                run = position
            }
            let word = joined.map { $0 + text[run ..< position] }
            words.append(word.map { String(decoding: $0, as: UTF8.self) }
                ?? String(decoding: text[run ..< position], as: UTF8.self))
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

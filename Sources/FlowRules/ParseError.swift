/// A command that cannot be read: the word at fault, where it is, and what was wrong.
public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
    /// 0-based index of the offending word; the word count when the command ended early.
    public var index: Int
    /// nil when the command ended where more was needed.
    public var token: String?
    public var message: String

    public init(index: Int, token: String?, message: String) {
        self.index = index
        self.token = token
        self.message = message
    }

    public var description: String {
        guard let token else { return "at the end of the command (after word \(index)): \(message)" }
        guard token.count > Self.longestWordShown else { return "word \(index + 1) '\(token)': \(message)" }
        // A word pasted by mistake (a whole file, say) is shown once, and cut.
        let shown = String(token.prefix(Self.longestWordShown)) + "...(\(token.utf8.count) bytes)"
        return "word \(index + 1) '\(shown)': \(message.replacing(token, with: "it"))"
    }

    public static let longestWordShown = 64
}

/// The words of one command, read front to back.
struct Words {
    let all: [String]
    private(set) var index = 0

    init(_ words: [String]) { all = words }

    var current: String? { index < all.count ? all[index] : nil }
    var isAtEnd: Bool { index >= all.count }

    mutating func advance() { index += 1 }

    /// The current word, consumed.
    mutating func take() -> String? {
        defer { advance() }
        return current
    }

    /// The value after `keyword` (whose word was just consumed), consumed.
    mutating func value(of keyword: String) throws(ParseError) -> String {
        guard let word = take() else { throw endError("\(keyword) needs a value") }
        return word
    }

    func error(_ message: String, at index: Int) -> ParseError {
        ParseError(index: index, token: index < all.count ? all[index] : nil, message: message)
    }

    /// An error about the word just consumed.
    func errorAtPrevious(_ message: String) -> ParseError { error(message, at: index - 1) }

    func endError(_ message: String) -> ParseError { ParseError(index: all.count, token: nil, message: message) }
}

/// A set of keywords read as tc's `matches()` reads them: a word names the keyword it
/// equals, or else the one keyword it is a prefix of. Where tc takes the first keyword
/// in its own order, XDPFlow refuses to guess and reports the ambiguity.
struct Keywords<Meaning: Equatable & Sendable>: Sendable {
    struct Entry: Sendable {
        let word: String
        let meaning: Meaning
        /// tc compares these with strcmp.
        let exactOnly: Bool
    }

    let entries: [Entry]

    init(_ entries: [(String, Meaning)], exactOnly: Set<String> = []) {
        self.entries = entries.map { Entry(word: $0.0, meaning: $0.1, exactOnly: exactOnly.contains($0.0)) }
    }

    /// The meaning of `word`; nil when it names none or several (see `complaint`).
    func resolve(_ word: String) -> Meaning? {
        if let exact = entries.first(where: { $0.word == word }) { return exact.meaning }
        let candidates = prefixed(by: word)
        guard let first = candidates.first, candidates.allSatisfy({ $0.meaning == first.meaning }) else { return nil }
        return first.meaning
    }

    /// Why `resolve(word)` gave nil, for a keyword of the given kind (`flower key`, ...).
    func complaint(about word: String, kind: String) -> String {
        let candidates = prefixed(by: word)
        if candidates.count > 1 {
            return "ambiguous \(kind) '\(word)': \(listing(candidates.map(\.word), conjunction: "or"))"
        }
        guard let suggestion = suggestion(for: word) else { return "unknown \(kind) '\(word)'" }
        return "unknown \(kind) '\(word)'; did you mean '\(suggestion)'?"
    }

    func prefixed(by word: String) -> [Entry] {
        word.isEmpty ? [] : entries.filter { !$0.exactOnly && $0.word.hasPrefix(word) }
    }

    /// The closest keyword within a small edit distance, for "did you mean".
    private func suggestion(for word: String) -> String? {
        let scored = entries.map { ($0.word, editDistance(word, $0.word)) }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(1, min(2, best.0.count / 3)) else {
            return nil
        }
        return best.0
    }
}

/// "a", "a or b", "a, b or c".
func listing(_ words: [String], conjunction: String) -> String {
    guard words.count > 1 else { return words.first ?? "" }
    return words.dropLast().joined(separator: ", ") + " \(conjunction) " + words.last!
}

/// Edit distance counting an insertion, a deletion, a substitution or a swap of two
/// neighbours as one edit (optimal string alignment), so that "dorp" is one from "drop".
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
    var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0 ... a.count { d[i][0] = i }
    for j in 0 ... b.count { d[0][j] = j }
    for i in 1 ... a.count {
        for j in 1 ... b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
            }
        }
    }
    return d[a.count][b.count]
}

import FlowRules
import FoundationEssentials
import Glibc
import SystemPackage

/// Rule sets on disk, one snapshot per device (`DEV.rules`) in a namespace's directory
/// of the state directory: the rules as `filter add` lines with their prio and handle,
/// in lookup order, as `xdpflow save` prints them and `-batch` reads them, after a
/// comment that names the last journal record they include. The changes since are in
/// the device's journal (`Journal`); reading replays them.
public struct FileRuleSetStore: RuleSetStore {
    /// The state directory; its lock serialises every access.
    public let state: StateDirectory
    /// The namespace's directory in it.
    public let files: StateDirectory

    /// The store of `namespace` (the current one when nil) in `state`.
    public init(state: StateDirectory = .default, namespace: NamespaceID? = nil) {
        let namespace = namespace ?? (try? NamespaceID.current()) ?? NamespaceID(inode: 0)
        self.state = state
        files = StateDirectory(state.path.appending(namespace.directoryName))
    }

    public init(directory: FilePath) { self.init(state: StateDirectory(directory)) }

    /// The device's rules: snapshot and journal, read under the shared lock.
    public func rules(of device: String) throws -> RuleSet {
        try state.reading {
            var (rules, sequence) = try read(device)
            let journal = Journal(path: files.path.appending("\(device).journal"))
            for record in try journal.records()
            where record.finished && !record.aborted && record.sequence > sequence {
                do {
                    try rules.apply(record.change)
                } catch {
                    throw StoreError.badRecord(journal.path, sequence: record.sequence, reason: error)
                }
            }
            return rules
        }
    }

    /// Changes the snapshot of a device that has no journal (tests, and a state
    /// directory of rules only); the runtime's changes go through `Offload.update`.
    public func update<T>(device: String, _ body: (inout RuleSet, inout RuleChange) throws -> T) throws -> T {
        try state.locked {
            try makeDirectory()
            var (set, sequence) = try read(device)
            let before = set
            var change = RuleChange()
            let result = try body(&set, &change)
            if set != before { try write(set, sequence: sequence, for: device) }
            return result
        }
    }

    public func update<T>(device: String, _ body: (inout RuleSet) throws -> T) throws -> T {
        try update(device: device) { set, _ in try body(&set) }
    }

    /// Creates the namespace's directory, durably; the caller holds the lock.
    func makeDirectory() throws(StoreError) {
        guard !FileManager.default.fileExists(atPath: files.path.string) else { return }
        guard mkdir(files.path.string, StateDirectory.directoryMode) == 0 else {
            guard errno == EEXIST else { throw .createDirectory(files.path, Errno(rawValue: errno)) }
            return
        }
        chmod(files.path.string, StateDirectory.directoryMode)
        try StateDirectory.syncDirectory(state.path)
    }

    /// The file of `device`'s rules.
    public static func file(of device: String) -> String { "\(device).rules" }
    func fileName(_ device: String) -> String { Self.file(of: device) }

    static let header = "# xdpflow rules as of journal record "

    /// The snapshot of `device`'s rules and the journal record it includes; the caller
    /// holds the lock.
    func read(_ device: String) throws(StoreError) -> (RuleSet, UInt64) {
        guard let bytes = try files.bytes(of: Self.file(of: device)) else { return (RuleSet(), 0) }
        return try Self.rules(String(decoding: bytes, as: UTF8.self), device: device,
                              file: files.path.appending(Self.file(of: device)))
    }

    /// Writes `device`'s snapshot; the caller holds the lock.
    /// `printed`: lines of some of the rules (a journal record's), not printed again.
    func write(_ set: RuleSet, sequence: UInt64, for device: String,
               printed: [(rule: FlowRule, line: String)] = []) throws(StoreError) {
        try files.write(bytes: Data(Self.text(of: set, sequence: sequence, device: device, printed: printed).utf8),
                        to: Self.file(of: device))
    }

    /// Removes `device`'s snapshot; the caller holds the lock.
    func remove(_ device: String) throws(StoreError) {
        try files.remove(Self.file(of: device))
    }

    /// One `filter add` line per rule.
    static func text(of set: RuleSet, sequence: UInt64, device: String,
                     printed: [(rule: FlowRule, line: String)] = []) -> String {
        func place(_ rule: FlowRule) -> RuleSelector { RuleSelector(chain: rule.chain, prio: rule.prio, handle: rule.handle) }
        let known = Dictionary(printed.map { (place($0.rule), $0.line) }, uniquingKeysWith: { first, _ in first })
        let rules = set.rules
        var lines = rules.map { known[place($0)] }
        let missing = lines.indices.filter { lines[$0] == nil }
        for (index, line) in zip(missing, missing.map { rules[$0] }.commandLineList(device: device)) {
            lines[index] = line
        }
        return header + "\(sequence)\n" + lines.map { $0! }.joinedLines()
    }

    /// The rules of `text`, added in order. Its words hold no white space (names are
    /// checked for it, the other words are numbers and keywords), so a line splits on
    /// spaces, without `-batch`'s quoting and comments. `file` is where `text` came from.
    static func rules(_ text: String, device: String, file: FilePath) throws(StoreError) -> (RuleSet, UInt64) {
        var set = RuleSet()
        var sequence: UInt64 = 0
        for (index, line) in text.utf8.split(separator: UInt8(ascii: "\n")).enumerated() {
            if line.first == UInt8(ascii: "#") {
                let comment = String(Substring(line))
                if comment.hasPrefix(header) { sequence = UInt64(comment.dropFirst(header.count)) ?? 0 }
                continue
            }
            let command: FilterCommand
            do {
                command = try FilterCommand.parse(Self.words(line))
            } catch {
                throw .badRule(file, line: index + 1, device: device, reason: error)
            }
            guard case .add(let rule) = command.operation, command.device == device else {
                throw .badRule(file, line: index + 1, device: device, reason: nil)
            }
            do {
                try set.add(rule)
            } catch {
                throw .badRule(file, line: index + 1, device: device, reason: error)
            }
        }
        return (set, sequence)
    }

    /// The words of a line of ASCII separated by single spaces, split as bytes: a
    /// String's own split would break the line into grapheme clusters first.
    static func words(_ line: Substring.UTF8View) -> [String] {
        line.split(separator: UInt8(ascii: " ")).map { String(Substring($0)) }
    }

    /// The devices with rules on disk, by name; none when the namespace has no directory.
    /// A directory that cannot be read fails, rather than look empty to a user it is
    /// closed to.
    public func devices() throws(StoreError) -> [String] {
        let names: [String]
        do {
            // Opened first for the errno, which FileManager's errors do not carry.
            try FileDescriptor.open(files.path, .readOnly).close()
            names = try FileManager.default.contentsOfDirectory(atPath: files.path.string)
        } catch Errno.noSuchFileOrDirectory {
            return []
        } catch {
            throw .unreadable(files.path, Errno(error))
        }
        let suffixes = [Self.file(of: ""), ".journal", ".offload.json"]
        return Set(names.compactMap { name in
            suffixes.first { name.hasSuffix($0) && !name.hasPrefix(".") }.map { String(name.dropLast($0.count)) }
        }).sorted()
    }
}

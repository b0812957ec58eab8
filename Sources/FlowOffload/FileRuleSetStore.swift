import FlowRules
import Foundation
import SystemPackage

/// Rule sets on disk, one file per device (`DEV.rules`) in the state directory, so rules
/// outlive the command that added them: the device's rules as `filter add` lines with
/// their prio and handle, in lookup order, as `xdpflow save` prints them and `-batch`
/// reads them. Every change rewrites the file, so its format is on the path of every
/// `filter` command: reading and writing 1,000 rules as lines takes about 17 ms of CPU,
/// as JSON it took 60 (xdpflow-bench, section cli-breakdown). Each access holds the
/// directory's lock; each change is written atomically.
public struct FileRuleSetStore: RuleSetStore {
    public let state: StateDirectory
    public var directory: FilePath { state.path }

    public init(state: StateDirectory = .default) { self.state = state }

    public init(directory: FilePath) { self.init(state: StateDirectory(directory)) }

    public func rules(of device: String) throws -> RuleSet {
        try state.locked { try read(device) }
    }

    public func update<T>(device: String, _ body: (inout RuleSet) throws -> T) throws -> T {
        try state.locked {
            var set = try read(device)
            let before = set
            let result = try body(&set)
            if set != before { try write(set, for: device) }
            return result
        }
    }

    /// The file of `device`'s rules in the state directory.
    public static func file(of device: String) -> String { "\(device).rules" }

    /// Where earlier versions kept the rules, as JSON: read while there is no
    /// `file(of:)`, and removed when the rules are next written.
    public static func jsonFile(of device: String) -> String { "\(device).rules.json" }

    /// Reads `device`'s rules; the caller holds the lock.
    func read(_ device: String) throws -> RuleSet {
        guard let bytes = try state.bytes(of: Self.file(of: device)) else {
            return try state.read(RuleSet.self, from: Self.jsonFile(of: device)) ?? RuleSet()
        }
        do {
            return try Self.rules(String(decoding: bytes, as: UTF8.self), device: device)
        } catch {
            throw StoreError("\(directory.appending(Self.file(of: device))) cannot be read: \(error)")
        }
    }

    /// Writes `device`'s rules; the caller holds the lock.
    func write(_ set: RuleSet, for device: String) throws {
        try state.write(bytes: Data(Self.text(of: set, device: device).utf8), to: Self.file(of: device))
        if state.contains(Self.jsonFile(of: device)) { try state.remove(Self.jsonFile(of: device)) }
    }

    /// Removes `device`'s rules, in either format; the caller holds the lock.
    func remove(_ device: String) throws {
        try state.remove(Self.file(of: device))
        try state.remove(Self.jsonFile(of: device))
    }

    /// One `filter add` line per rule.
    static func text(of set: RuleSet, device: String) -> String {
        set.rules.map { $0.commandLine(device: device) + "\n" }.joined()
    }

    /// The rules of `text`, added in order. Its words hold no white space (names are
    /// checked for it, the other words are numbers and keywords), so a line splits on
    /// spaces, without `-batch`'s quoting and comments.
    static func rules(_ text: String, device: String) throws -> RuleSet {
        var set = RuleSet()
        for (index, line) in text.split(separator: "\n").enumerated() {
            do {
                let command = try FilterCommand.parse(line.split(separator: " ").map(String.init))
                guard case .add(let rule) = command.operation, command.device == device else {
                    throw StoreError("not a filter add on \(device)")
                }
                try set.add(rule)
            } catch {
                throw StoreError("line \(index + 1): \(error)")
            }
        }
        return set
    }
}

import FlowRules
import SystemPackage

/// Rule sets on disk, one JSON file per device (`DEV.rules.json`) in the state
/// directory, so rules outlive the command that added them. Each access holds the
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
    public static func file(of device: String) -> String { "\(device).rules.json" }

    /// Reads `device`'s rules; the caller holds the lock.
    func read(_ device: String) throws -> RuleSet {
        try state.read(RuleSet.self, from: Self.file(of: device)) ?? RuleSet()
    }

    /// Writes `device`'s rules; the caller holds the lock.
    func write(_ set: RuleSet, for device: String) throws {
        try state.write(set, to: Self.file(of: device))
    }
}

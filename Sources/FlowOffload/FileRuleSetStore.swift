import FlowRules
import Foundation
import SystemPackage

/// Rule sets on disk, one JSON file per device under `directory`, so rules outlive
/// the command that added them.
///
/// Every access takes an exclusive lock on `directory/lock` (flock), so two
/// `xdpflow` processes changing rules at once are serialised and neither change is
/// lost. A change is written to a temporary file, synced, and renamed over the old
/// one, and the directory is synced: after a crash the file holds the old rules or
/// the new ones, never a mix.
public struct FileRuleSetStore: RuleSetStore {
    public let directory: FilePath

    /// `XDPFLOW_STATE_DIR`, or /var/lib/xdpflow.
    public static var defaultDirectory: FilePath {
        FilePath(ProcessInfo.processInfo.environment["XDPFLOW_STATE_DIR"] ?? "/var/lib/xdpflow")
    }

    public init(directory: FilePath = FileRuleSetStore.defaultDirectory) {
        self.directory = directory
    }

    public func rules(of device: String) throws -> RuleSet {
        try locked { try read(device) }
    }

    public func update<T>(device: String, _ body: (inout RuleSet) throws -> T) throws -> T {
        try locked {
            var set = try read(device)
            let before = set
            let result = try body(&set)
            if set != before { try write(set, for: device) }
            return result
        }
    }

    private func file(_ device: String) -> FilePath { directory.appending("\(device).rules.json") }

    private func read(_ device: String) throws -> RuleSet {
        let path = file(device)
        guard FileManager.default.fileExists(atPath: path.string) else { return RuleSet() }
        do {
            return try JSONDecoder().decode(RuleSet.self, from: Data(contentsOf: URL(fileURLWithPath: path.string)))
        } catch {
            throw StoreError("\(path) cannot be read as a rule set: \(error)")
        }
    }

    private func write(_ set: RuleSet, for device: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let bytes = try encoder.encode(set)
        let target = file(device)
        let temporary = directory.appending(".\(device).rules.json.tmp")
        let fd = try FileDescriptor.open(temporary, .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite])
        try fd.closeAfter {
            _ = try fd.writeAll(bytes)
            try sync(fd)
        }
        guard rename(temporary.string, target.string) == 0 else {
            throw StoreError("cannot replace \(target): \(Errno(rawValue: errno))")
        }
        let directoryFD = try FileDescriptor.open(directory, .readOnly)
        try directoryFD.closeAfter { try sync(directoryFD) }
    }

    private func sync(_ fd: FileDescriptor) throws {
        guard fsync(fd.rawValue) == 0 else { throw StoreError("fsync in \(directory): \(Errno(rawValue: errno))") }
    }

    /// Runs `body` holding the store's lock; creates the directory on first use.
    private func locked<T>(_ body: () throws -> T) throws -> T {
        do {
            try FileManager.default.createDirectory(atPath: directory.string, withIntermediateDirectories: true)
        } catch {
            throw StoreError("cannot create the state directory \(directory): \(error.localizedDescription)")
        }
        let lock = try FileDescriptor.open(directory.appending("lock"), .readWrite, options: [.create],
                                           permissions: [.ownerReadWrite])
        return try lock.closeAfter {
            guard flock(lock.rawValue, LOCK_EX) == 0 else {
                throw StoreError("cannot lock \(directory): \(Errno(rawValue: errno))")
            }
            return try body()   // closing the descriptor releases the lock
        }
    }
}

public struct StoreError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

import Foundation
import SystemPackage

/// XDPFlow's state on disk: JSON files in one directory (`XDPFLOW_STATE_DIR`, or
/// /var/lib/xdpflow), written atomically and accessed under one lock.
///
/// Every access takes an exclusive lock on `directory/lock` (flock), so two `xdpflow`
/// processes are serialised and neither change is lost. A file is written to a
/// temporary file, synced, and renamed over the old one, and the directory is synced:
/// after a crash a file holds its old content or its new one, never a mix.
public struct StateDirectory: Sendable {
    public let path: FilePath

    public static var `default`: StateDirectory {
        StateDirectory(FilePath(ProcessInfo.processInfo.environment["XDPFLOW_STATE_DIR"] ?? "/var/lib/xdpflow"))
    }

    public init(_ path: FilePath) { self.path = path }

    /// Runs `body` holding the directory's lock; creates the directory on first use.
    public func locked<T>(_ body: () throws -> T) throws -> T {
        do {
            try FileManager.default.createDirectory(atPath: path.string, withIntermediateDirectories: true)
        } catch {
            throw StoreError("cannot create the state directory \(path): \(error.localizedDescription)")
        }
        let lock: FileDescriptor
        do {
            lock = try FileDescriptor.open(path.appending("lock"), .readWrite, options: [.create],
                                           permissions: [.ownerReadWrite])
        } catch .permissionDenied {
            throw StoreError("cannot lock the state directory \(path): permission denied "
                + "(run as root or with sudo, or set XDPFLOW_STATE_DIR)")
        }
        return try lock.closeAfter {
            guard flock(lock.rawValue, LOCK_EX) == 0 else {
                throw StoreError("cannot lock \(path): \(Errno(rawValue: errno))")
            }
            return try body()   // closing the descriptor releases the lock
        }
    }

    /// The value in `file` (JSON), or nil when there is no such file.
    public func read<T: Decodable>(_ type: T.Type, from file: String) throws -> T? {
        guard let bytes = try bytes(of: file) else { return nil }
        do {
            return try JSONDecoder().decode(T.self, from: bytes)
        } catch {
            throw StoreError("\(path.appending(file)) cannot be read: \(error)")
        }
    }

    /// The contents of `file`, or nil when there is no such file.
    public func bytes(of file: String) throws -> Data? {
        let target = path.appending(file)
        guard contains(file) else { return nil }
        do {
            return try Data(contentsOf: URL(fileURLWithPath: target.string))
        } catch {
            throw StoreError("\(target) cannot be read: \(error)")
        }
    }

    public func contains(_ file: String) -> Bool {
        FileManager.default.fileExists(atPath: path.appending(file).string)
    }

    /// Writes `value` as JSON.
    public func write<T: Encodable>(_ value: T, to file: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try write(bytes: try encoder.encode(value), to: file)
    }

    public func write(bytes: Data, to file: String) throws {
        let target = path.appending(file)
        let temporary = path.appending(".\(file).tmp")
        let fd = try FileDescriptor.open(temporary, .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite])
        try fd.closeAfter {
            _ = try fd.writeAll(bytes)
            try sync(fd)
        }
        guard rename(temporary.string, target.string) == 0 else {
            throw StoreError("cannot replace \(target): \(Errno(rawValue: errno))")
        }
        try syncDirectory()
    }

    public func remove(_ file: String) throws {
        let target = path.appending(file)
        guard unlink(target.string) == 0 || errno == ENOENT else {
            throw StoreError("cannot remove \(target): \(Errno(rawValue: errno))")
        }
        try syncDirectory()
    }

    private func syncDirectory() throws {
        let directory = try FileDescriptor.open(path, .readOnly)
        try directory.closeAfter { try sync(directory) }
    }

    private func sync(_ fd: FileDescriptor) throws {
        guard fsync(fd.rawValue) == 0 else { throw StoreError("fsync in \(path): \(Errno(rawValue: errno))") }
    }
}

public struct StoreError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

import BPFKernel
import FoundationEssentials
import Glibc
import SystemPackage

/// XDPFlow's state on disk: one directory (`XDPFLOW_STATE_DIR`, or /var/lib/xdpflow),
/// a subdirectory per network namespace, accessed under one lock.
///
/// A command that may write takes an exclusive lock on `directory/lock` (flock), so two
/// `xdpflow` processes are serialised and neither change is lost; one that only reads
/// takes it shared (`reading`), beside other readers and never beside a writer. A whole
/// file is written to a temporary file, synced, and renamed over the old one, and the
/// directory is synced: after a crash a file holds its old content or its new one,
/// never a mix. Journals (`Journal`) are appended to and synced instead.
///
/// What xdpflow creates here is readable by every user (`fileMode`, `directoryMode`,
/// whatever the umask), as /var/lib of other daemons and as tc shows rules to anyone:
/// the commands that only show rules work without root. Only root writes.
public struct StateDirectory: Sendable {
    public let path: FilePath

    public static var `default`: StateDirectory {
        StateDirectory(FilePath(getenv("XDPFLOW_STATE_DIR").map { String(cString: $0) } ?? "/var/lib/xdpflow"))
    }

    public init(_ path: FilePath) { self.path = path }

    /// The modes of the files and directories xdpflow creates: world-readable, set
    /// explicitly because a umask of 077 (sudo keeps the caller's) would hide the rules
    /// from the users who may read them.
    static let fileMode: mode_t = 0o644
    static let directoryMode: mode_t = 0o755

    /// Runs `body` holding the directory's lock exclusively, for a command that may
    /// write; creates the directory and the lock on first use.
    public func locked<T>(_ body: () throws -> T) throws -> T {
        if !FileManager.default.fileExists(atPath: path.string) {
            do {
                try FileManager.default.createDirectory(atPath: path.string, withIntermediateDirectories: true)
            } catch {
                throw StoreError.createDirectory(path, Errno(error))
            }
            chmod(path.string, Self.directoryMode)
        }
        let lock: FileDescriptor
        do {
            lock = try openLockForWriting()
        } catch {
            throw StoreError.lock(path, Errno(error))
        }
        return try lock.closeAfter {
            guard flock(lock.rawValue, LOCK_EX) == 0 else { throw StoreError.lock(path, Errno(rawValue: errno)) }
            return try body()   // closing the descriptor releases the lock
        }
    }

    /// Runs `body` holding the directory's lock shared, for a command that only reads:
    /// readers run side by side, and never while a writer holds it. Nothing is created,
    /// and the lock is opened read-only (flock needs no more), so any user who can read
    /// the directory may call it. Without a lock file no command has written here yet:
    /// `body` runs unlocked, and what a first writer adds meanwhile it reads whole (files
    /// come by rename) or as a pending journal record.
    public func reading<T>(_ body: () throws -> T) throws -> T {
        let lock: FileDescriptor
        do {
            lock = try FileDescriptor.open(path.appending("lock"), .readOnly)
        } catch Errno.noSuchFileOrDirectory {
            return try body()
        } catch {
            throw StoreError.lock(path, Errno(error))
        }
        return try lock.closeAfter {
            guard flock(lock.rawValue, LOCK_SH) == 0 else { throw StoreError.lock(path, Errno(rawValue: errno)) }
            return try body()
        }
    }

    /// The lock, opened for writing; made world-readable when this creates it, so that
    /// readers can open it.
    private func openLockForWriting() throws -> FileDescriptor {
        let file = path.appending("lock")
        do {
            return try FileDescriptor.open(file, .readWrite)
        } catch Errno.noSuchFileOrDirectory {
            let lock = try FileDescriptor.open(file, .readWrite, options: [.create],
                                               permissions: FilePermissions(rawValue: Self.fileMode))
            fchmod(lock.rawValue, Self.fileMode)
            return lock
        }
    }

    /// The value in `file` (JSON), or nil when there is no such file.
    public func read<T: Decodable>(_ type: T.Type, from file: String) throws(StoreError) -> T? {
        guard let bytes = try bytes(of: file) else { return nil }
        do {
            return try JSONDecoder().decode(T.self, from: bytes)
        } catch {
            throw .corrupt(path.appending(file), line: 0, reason: "\(error)")
        }
    }

    /// The contents of `file`, or nil when there is no such file.
    public func bytes(of file: String) throws(StoreError) -> Data? {
        try Self.contents(of: path.appending(file))
    }

    /// The contents of the file at `path`, or nil when there is none; a file that
    /// cannot be read (EACCES, for a user it is not readable by) is `.unreadable`, with
    /// the errno.
    static func contents(of path: FilePath) throws(StoreError) -> Data? {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path, .readOnly)
        } catch Errno.noSuchFileOrDirectory {
            return nil
        } catch {
            throw .unreadable(path, Errno(error))
        }
        defer { try? fd.close() }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count: Int
            do {
                count = try buffer.withUnsafeMutableBytes { try fd.read(into: $0) }
            } catch {
                throw .unreadable(path, Errno(error))
            }
            guard count > 0 else { return data }
            data.append(contentsOf: buffer[..<count])
        }
    }

    public func contains(_ file: String) -> Bool {
        FileManager.default.fileExists(atPath: path.appending(file).string)
    }

    /// Writes `value` as JSON.
    public func write<T: Encodable>(_ value: T, to file: String) throws(StoreError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do {
            data = try encoder.encode(value)
        } catch {
            preconditionFailure("state values always encode: \(error)")
        }
        try write(bytes: data, to: file)
    }

    /// Writes `bytes` whole: a temporary file, synced, renamed over `file`. A failure
    /// leaves `file` as it was and no temporary file behind.
    public func write(bytes: Data, to file: String) throws(StoreError) {
        let target = path.appending(file)
        let temporary = target.removingLastComponent().appending(".\(target.lastComponent!.string).tmp")
        do {
            let fd = try FileDescriptor.open(temporary, .writeOnly, options: [.create, .truncate],
                                             permissions: FilePermissions(rawValue: Self.fileMode))
            try fd.closeAfter {
                guard fchmod(fd.rawValue, Self.fileMode) == 0 else { throw Errno(rawValue: errno) }
                _ = try fd.writeAll(bytes)
                try fd.sync()
            }
            guard rename(temporary.string, target.string) == 0 else { throw Errno(rawValue: errno) }
        } catch {
            unlink(temporary.string)
            throw .write(target, Errno(error))
        }
        try Self.syncDirectory(target.removingLastComponent())
    }

    public func remove(_ file: String) throws(StoreError) {
        let target = path.appending(file)
        guard unlink(target.string) == 0 || errno == ENOENT else { throw .remove(target, Errno(rawValue: errno)) }
        try Self.syncDirectory(target.removingLastComponent())
    }

    /// Makes a rename, a new file or a removal in `directory` durable.
    static func syncDirectory(_ directory: FilePath) throws(StoreError) {
        do {
            let fd = try FileDescriptor.open(directory, .readOnly)
            try fd.closeAfter { try fd.sync() }
        } catch {
            throw .write(directory, Errno(error))
        }
    }
}

/// A failure of the state on disk, naming the file and the errno.
public enum StoreError: Error, Sendable, CustomStringConvertible {
    case createDirectory(FilePath, Errno)
    case lock(FilePath, Errno)
    case unreadable(FilePath, Errno)
    case write(FilePath, Errno)
    case remove(FilePath, Errno)
    /// A file that xdpflow wrote cannot be read back; `line` is 0 for a whole file.
    case corrupt(FilePath, line: Int, reason: String)
    /// A line of a device's rules file that is not one of its rules: `reason` is why (a
    /// `ParseError`, a `RuleSetError`); nil for a command other than a filter add on it.
    case badRule(FilePath, line: Int, device: String, reason: (any Error)?)
    /// A journal record whose change does not apply to the rules before it.
    case badRecord(FilePath, sequence: UInt64, reason: any Error)

    public var description: String {
        switch self {
        case .createDirectory(let path, let errno):
            "cannot create the state directory \(path): \(Self.text(errno))\(Self.hint(errno))"
        case .lock(let path, let errno):
            "cannot lock the state directory \(path): \(Self.text(errno))\(Self.hint(errno))"
        case .unreadable(let path, let errno): "cannot read \(path): \(Self.text(errno))\(Self.hint(errno))"
        case .write(let path, let errno): "cannot write \(path): \(Self.text(errno)); nothing was changed"
        case .remove(let path, let errno): "cannot remove \(path): \(Self.text(errno))"
        case .corrupt(let path, let line, let reason):
            "\(path)\(line > 0 ? " line \(line)" : "") cannot be read: \(reason)"
        case .badRule(let path, let line, let device, let reason):
            "\(path) cannot be read: line \(line): \(reason.map { "\($0)" } ?? "not a filter add on \(device)")"
        case .badRecord(let path, let sequence, let reason):
            "\(path) cannot be read: record \(sequence): \(reason)"
        }
    }

    /// As `ENOSPC (No space left on device)`.
    static func text(_ errno: Errno) -> String { "\(errno.name) (\(errno.description))" }

    static func hint(_ errno: Errno) -> String {
        errno == .permissionDenied || errno == .readOnlyFileSystem
            ? " (run as root or with sudo, or set XDPFLOW_STATE_DIR)" : ""
    }
}

extension Errno {
    /// The errno an error of swift-system or Foundation carries; EIO when it carries none.
    init(_ error: any Error) {
        if let errno = error as? Errno {
            self = errno
        } else if let cocoa = error as? CocoaError, let underlying = cocoa.underlying as? POSIXError {
            self = Errno(rawValue: underlying.code.rawValue)
        } else {
            self = .ioError
        }
    }
}

extension FileDescriptor {
    /// fsync(2): the file's data and metadata on stable storage.
    func sync() throws(Errno) {
        guard fsync(rawValue) == 0 else { throw Errno(rawValue: errno) }
    }
}

import FlowRules
import Dispatch
import FoundationEssentials
import Glibc
import SystemPackage

/// A device's journal (`DEV.journal`): the changes made since its snapshot (`DEV.rules`,
/// `DEV.offload.json`), appended and synced before the device runs them, so that a
/// command costs one append instead of a rewrite of every rule, and a command that dies
/// halfway leaves a record of what it was doing.
///
/// A record is written in two appends:
///
///     begin 12 change           synced before the device runs any of it
///     - 0 10 1                  a rule that goes: chain prio handle
///     + filter add dev ...      a rule that comes, as `xdpflow save` prints it
///     commit 12 prog 3921       once the kernel holds it (and the program then running)
///
/// The commit is not synced: the page cache keeps it through anything that kills a
/// command, and whatever loses the page cache (a power cut, a kernel crash) loses the
/// kernel's BPF objects too; the record is then pending with no link left, and the next
/// command keeps the change stored (`attach` loads it). One fsync a command, not two.
///
/// or `abort 12 prog 3922` when the change was rolled back (the kernel rebuilt without it).
///
/// A `begin` without its `commit` (or a torn last line) is pending: the kernel may hold
/// any part of it, and the next command rolls it back (`Offload.recover`).
struct Journal {
    let path: FilePath

    enum Kind: String, Sendable {
        /// Rules came or went.
        case change
        /// `attach`: the kernel objects are being made.
        case attach
        /// `detach`: the kernel objects are being removed.
        case detach
    }

    struct Record: Sendable {
        var sequence: UInt64
        var kind: Kind
        var change: RuleChange
        /// Committed, or aborted: its change never reached the kernel, or was taken back.
        var finished: Bool
        var aborted = false
        /// The program in the device's slot once the record finished, when it changed.
        var programID: UInt32?
    }

    /// The records in the file, oldest first; none when there is no file. A record
    /// after a pending one cannot exist (every command recovers first).
    func records() throws(StoreError) -> [Record] {
        guard let data = try StateDirectory.contents(of: path) else { return [] }
        var records: [Record] = []
        var removed: [FlowRule] = [], added: [FlowRule] = []
        // Lines split by hand: only a line that ends in "\n" was written whole.
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).dropLast()
        for (index, line) in lines.enumerated() {
            let number = index + 1
            let words = FileRuleSetStore.words(Substring(decoding: line, as: UTF8.self).utf8)
            guard let first = words.first else { continue }
            switch first {
            case "begin":
                guard words.count == 3, let sequence = UInt64(words[1]), let kind = Kind(rawValue: words[2]) else {
                    throw .corrupt(path, line: number, reason: "a begin line must be 'begin SEQ KIND'")
                }
                removed = []
                added = []
                records.append(Record(sequence: sequence, kind: kind, change: RuleChange(), finished: false))
            case "-", "+":
                guard records.last?.finished == false else {
                    throw .corrupt(path, line: number, reason: "a rule outside a record")
                }
                if first == "-" {
                    guard words.count == 4, let chain = UInt32(words[1]), let prio = UInt16(words[2]),
                          let handle = UInt32(words[3]) else {
                        throw .corrupt(path, line: number, reason: "a removal must be '- CHAIN PRIO HANDLE'")
                    }
                    removed.append(FlowRule(chain: chain, prio: prio, handle: handle))
                } else {
                    do {
                        guard case .add(let rule) = try FilterCommand.parse(Array(words.dropFirst())).operation else {
                            throw StoreError.corrupt(path, line: number, reason: "not a filter add")
                        }
                        added.append(rule)
                    } catch let error as StoreError {
                        throw error
                    } catch {
                        throw .corrupt(path, line: number, reason: "\(error)")
                    }
                }
                records[records.count - 1].change = RuleChange(removed: removed, added: added)
            case "commit", "abort":
                guard let last = records.last, !last.finished, words.count >= 2, UInt64(words[1]) == last.sequence
                else {
                    throw .corrupt(path, line: number, reason: "a \(first) without its begin")
                }
                records[records.count - 1].finished = true
                records[records.count - 1].aborted = first == "abort"
                if words.count == 4, words[2] == "prog" { records[records.count - 1].programID = UInt32(words[3]) }
            default:
                throw .corrupt(path, line: number, reason: "unknown word '\(first)'")
            }
        }
        return records
    }

    /// The first append of a record: what is about to change, synced before it returns.
    func begin(_ sequence: UInt64, _ kind: Kind, _ change: RuleChange, device: String) throws(StoreError) {
        try beginSyncing(sequence, kind, change, added: change.added.commandLineList(device: device)).wait()
    }

    /// `begin`, its fsync left running on another thread while the change is prepared
    /// (planned, its program generated and verified, new maps filled); the caller waits
    /// for it before the device runs anything of the change. `added`: the change's added
    /// rules, printed (`commandLineList`).
    func beginSyncing(_ sequence: UInt64, _ kind: Kind, _ change: RuleChange,
                      added: [String]) throws(StoreError) -> PendingSync {
        var text = "begin \(sequence) \(kind.rawValue)\n"
        for rule in change.removed { text += "- \(rule.chain) \(rule.prio) \(rule.handle)\n" }
        text += added.joinedLines(prefix: "+ ")
        return try append(text)
    }

    /// The second: the kernel holds the change.
    func commit(_ sequence: UInt64, programID: UInt32?) throws(StoreError) {
        try finish("commit", sequence, programID: programID)
    }

    /// Closes a pending record as rolled back (or, for a detach, finished), with the
    /// program the slot holds now.
    func abort(_ sequence: UInt64, programID: UInt32?) throws(StoreError) {
        try finish("abort", sequence, programID: programID)
    }

    /// Not synced (see above).
    private func finish(_ word: String, _ sequence: UInt64, programID: UInt32?) throws(StoreError) {
        let written = try write("\(word) \(sequence)" + (programID.map { " prog \($0)" } ?? "") + "\n")
        try? written.fd.close()
        if written.created { try StateDirectory.syncDirectory(path.removingLastComponent()) }
    }

    /// Appends `text` and starts its sync (`PendingSync`).
    private func append(_ text: String) throws(StoreError) -> PendingSync {
        let written = try write(text)
        return PendingSync(path, written.fd, newFile: written.created)
    }

    /// Appends `text`, the file left open; a failed write is cut off again, so the file
    /// never ends in a record half written by a command that is still running.
    private func write(_ text: String) throws(StoreError) -> (fd: FileDescriptor, created: Bool) {
        let created = !FileManager.default.fileExists(atPath: path.string)
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path, .writeOnly, options: [.create, .append],
                                         permissions: FilePermissions(rawValue: StateDirectory.fileMode))
        } catch {
            throw .write(path, Errno(error))
        }
        if created { fchmod(fd.rawValue, StateDirectory.fileMode) }
        let end = (try? fd.seek(offset: 0, from: .end)) ?? 0
        do {
            _ = try fd.writeAll(text.utf8)
        } catch {
            _ = ftruncate(fd.rawValue, off_t(end))
            try? fd.close()
            throw .write(path, Errno(error))
        }
        return (fd, created)
    }

    var size: Int { Int(FileStamp(path).size) }
}

/// A journal append being synced on another thread: its fsync, and its directory's for a
/// new file. `wait()` returns once the append is durable, or names the file and the
/// errno. A record whose sync failed stays in the file as written: the device runs none
/// of its change, and the next command finds it pending and rolls it back (the kernel
/// rebuilt from the stored rules), whatever reached the disk. `wait()` closes the file.
final class PendingSync {
    private let fd: FileDescriptor
    private let sync = Sync()
    private var outcome: Result<Void, StoreError>?

    /// What the syncing thread hands back, through the semaphore.
    private final class Sync: @unchecked Sendable {
        let done = DispatchSemaphore(value: 0)
        /// Written before `done` is signalled, read after it is waited for.
        var failure: StoreError?
    }

    fileprivate init(_ path: FilePath, _ fd: FileDescriptor, newFile: Bool) {
        self.fd = fd
        let sync = self.sync
        DispatchQueue.global().async {
            do {
                try fd.sync()
                if newFile { try StateDirectory.syncDirectory(path.removingLastComponent()) }
            } catch let error as StoreError {
                sync.failure = error
            } catch {
                sync.failure = .write(path, Errno(error))
            }
            sync.done.signal()
        }
    }

    func wait() throws(StoreError) {
        if outcome == nil {
            sync.done.wait()
            try? fd.close()
            outcome = sync.failure.map { .failure($0) } ?? .success(())
        }
        try outcome!.get()
    }
}

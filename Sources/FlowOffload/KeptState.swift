import Glibc
import SystemPackage

/// What a process that runs many commands (xdpflow's command server) keeps of each device
/// between them: the state as its last change left it, with the plan of its rules, so
/// that the next change reads and plans nothing but itself. Pure values only: the kernel
/// objects are opened from their pins by each command and closed after it, so a detach
/// frees them as it would without a server. It is used only while the device's files
/// and pins are exactly as that change left them: another writer changes at least one
/// of them (a journal record, a snapshot, an attach or detach, pins made or removed),
/// and the next command reads them again. So does a change that fails once it has
/// touched the kernel: its journal record was written first.
struct KeptState {
    var stored: Offload.Stored
    var stamps: [FileStamp]

    /// Per device of a state directory, namespace and pin root. The server runs one
    /// command at a time, on one thread.
    nonisolated(unsafe) static var devices: [String: KeptState] = [:]
}

/// What changes when a file is written, replaced, created or removed, or a directory's
/// entries change: its identity, size and status-change time (zero when absent).
struct FileStamp: Equatable {
    var device: UInt64 = 0
    var inode: UInt64 = 0
    var size: Int64 = 0
    var changed = timespec()

    init(_ path: FilePath) {
        var info = stat()
        guard stat(path.string, &info) == 0 else { return }
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        changed = info.st_ctim
    }

    static func == (a: FileStamp, b: FileStamp) -> Bool {
        a.device == b.device && a.inode == b.inode && a.size == b.size
            && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
    }
}

extension Offload {
    /// Set by a process that serves many commands: each device's state is kept from one
    /// change to the next (`KeptState`). Off by default: every command reads the disk.
    nonisolated(unsafe) public static var keepsState = false

    private var keptKey: String { "\(state.path)\u{0}\(namespace.directoryName)\u{0}\(pinRoot)\u{0}\(device)" }

    /// The files and pins a change leaves behind, as they are now.
    var stamps: [FileStamp] {
        guard Self.keepsState else { return [] }
        return [files.path.appending(store.fileName(device)), journal.path, files.path.appending(offloadFile), pins]
            .map(FileStamp.init)
    }

    /// The kept state, if the disk and pins are still as it left them (`stamps` now),
    /// left kept: for what only reads, under the shared lock.
    func kept(stamped stamps: [FileStamp]) -> Stored? {
        guard let kept = KeptState.devices[keptKey], kept.stamps == stamps else { return nil }
        return kept.stored
    }

    /// The kept state as `kept(stamped:)` gives it, taken: the caller holds the lock and
    /// keeps it again (`keep`) once done, so that a change owns the only copy.
    func takeKept(stamped stamps: [FileStamp]) -> Stored? {
        defer { KeptState.devices[keptKey] = nil }
        return kept(stamped: stamps)
    }

    /// Keeps `stored` for the next command, stamped with the files and pins as its change
    /// left them; the caller holds the lock and has written everything the change writes.
    func keep(_ stored: Stored) {
        guard Self.keepsState, stored.keptPlan != nil else { return }
        KeptState.devices[keptKey] = KeptState(stored: stored, stamps: stamps)
    }

    /// Keeps `stored` (with its plan) when the files and pins still carry `stamps`, those
    /// it was read or kept with: what a command that changed nothing leaves.
    func keep(_ stored: Stored, ifStill stamps: [FileStamp]) {
        guard Self.keepsState, stored.keptPlan != nil, KeptState.devices[keptKey] == nil, self.stamps == stamps
        else { return }
        KeptState.devices[keptKey] = KeptState(stored: stored, stamps: stamps)
    }
}

extension Offload.Stored {
    /// Takes back the rules and plan that `adopt` moved into `live`.
    mutating func take(_ live: LiveRuleSet) {
        rules = live.rules
        keptPlan = live.datapath.plan
    }
}

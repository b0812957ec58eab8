import BPFKernel
import Foundation
import KernelTestSupport

/// The bench's own network: a namespace for the far ends of veth pairs whose near ends
/// (the devices under test) stay in the root namespace, where bpffs pins are visible,
/// and XDPFlow state and pins in directories of its own (XDPFLOW_STATE_DIR and
/// XDPFLOW_PIN_DIR, set for this process and the commands it starts). Every name starts
/// with `xfb`; everything is removed by `remove()`, also when the run is interrupted.
final class Lab {
    static let prefix = "xfb"

    let tag: String
    let namespace: String
    let stateDirectory: String
    let pinDirectory: String
    private(set) var pairs: [Veth] = []
    /// Commands that undo what the lab made besides its devices (nft tables), last first.
    private var undo: [[String]] = []
    private var removed = false

    init() throws {
        tag = String(UInt32.random(in: 0 ... UInt32.max), radix: 16)
        namespace = "\(Lab.prefix)-\(tag)"
        stateDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("\(Lab.prefix)-\(tag)-state").path
        pinDirectory = "/sys/fs/bpf/\(Lab.prefix)-\(tag)"
        Interrupts.register(self)
        do {
            try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
            setenv("XDPFLOW_STATE_DIR", stateDirectory, 1)
            setenv("XDPFLOW_PIN_DIR", pinDirectory, 1)
            try run(["ip", "netns", "add", namespace])
        } catch {
            remove()
            throw error
        }
    }

    /// A veth pair, `device` here and `peer` in the namespace, both up, without IPv6 (so
    /// no neighbour discovery frames). With `gro`, `device` takes the XDP frames the
    /// traffic generator sends from `peer` without an XDP program of its own.
    func addPair(gro: Bool = false) throws -> Veth {
        let index = pairs.count
        let pair = Veth(device: "\(Lab.prefix)\(tag)\(index)a", peer: "\(Lab.prefix)\(tag)\(index)b")
        pairs.append(pair)
        try run(["ip", "link", "add", pair.device, "type", "veth", "peer", "name", pair.peer, "netns", namespace])
        try run(["sysctl", "-qw", "net.ipv6.conf.\(pair.device).disable_ipv6=1"])
        try run(["ip", "netns", "exec", namespace, "sysctl", "-qw", "net.ipv6.conf.\(pair.peer).disable_ipv6=1"])
        try run(["ip", "link", "set", pair.device, "up"])
        try run(["ip", "-n", namespace, "link", "set", pair.peer, "up"])
        if gro { try run(["ethtool", "-K", pair.device, "gro", "on"]) }
        return pair
    }

    /// Runs `command` when the lab is removed (before its devices go).
    func onRemove(_ command: [String]) { undo.append(command) }

    /// Sends `frame` once out of `pair.peer`, so that it arrives at `pair.device`.
    func send(_ frame: [UInt8], to pair: Veth) throws {
        _ = try NetworkNamespace.run(in: namespace) {
            try TrafficGenerator(device: NetworkInterface(named: pair.peer)).send(frame, count: 1)
        }
    }

    /// Removes everything; safe to call more than once.
    func remove() {
        Interrupts.lock.withLock {
            guard !removed else { return }
            removed = true
            for command in undo.reversed() { _ = try? execute(command) }
            // A deleted device takes its XDP link, clsact filters and peer with it.
            for pair in pairs { _ = try? execute(["ip", "link", "del", pair.device]) }
            _ = try? execute(["ip", "netns", "del", namespace])
            try? FileManager.default.removeItem(atPath: stateDirectory)
            _ = try? execute(["rm", "-rf", pinDirectory])
            Interrupts.unregister(self)
        }
    }

    deinit { remove() }
}

/// Two ends of a veth: `device` in the root namespace, `peer` in the lab's.
struct Veth {
    let device: String
    let peer: String
}

/// Labs alive right now, removed when the run is interrupted (SIGINT, SIGTERM, SIGHUP).
enum Interrupts {
    nonisolated(unsafe) private static var labs: [ObjectIdentifier: Lab] = [:]
    /// Held while labs are removed. An interrupt removes them all and exits without
    /// letting go, so the main thread, failing as its devices vanish, waits in its own
    /// `remove()` instead of exiting while the removal is half done.
    static let lock = NSRecursiveLock()
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    static func register(_ lab: Lab) {
        lock.withLock {
            if sources.isEmpty { install() }
            labs[ObjectIdentifier(lab)] = lab
        }
    }

    static func unregister(_ lab: Lab) {
        _ = lock.withLock { labs.removeValue(forKey: ObjectIdentifier(lab)) }
    }

    private static func install() {
        for number in [SIGINT, SIGTERM, SIGHUP] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                lock.lock()
                progress("interrupted: removing the bench's devices, namespaces and pins")
                for lab in Array(labs.values) { lab.remove() }
                exit(128 + number)
            }
            source.resume()
            sources.append(source)
        }
    }
}

/// What a command cost, in milliseconds: wall time from just before it is spawned until
/// its exit is reaped (what an operator waits for), and the CPU time it used (user and
/// system, from wait4), which other load on the machine changes much less.
struct CommandTime {
    var wall: Double
    var cpu: Double
}

/// Runs a command to its end and times it. Its output goes to /dev/null, its errors to
/// a file that a failure quotes.
func timedCommand(_ arguments: [String]) throws -> CommandTime {
    let errors = FileManager.default.temporaryDirectory.appendingPathComponent("\(Lab.prefix)-\(UUID().uuidString).err").path
    defer { unlink(errors) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, errors, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    let argv = arguments.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid: pid_t = 0
    var status: Int32 = 0
    var usage = rusage()
    let ((spawned, reaped), nanoseconds) = timed {
        let spawned = posix_spawnp(&pid, argv[0]!, &actions, nil, argv, environ)
        return (spawned, spawned == 0 ? wait4(pid, &status, 0, &usage) : -1)
    }
    guard spawned == 0, reaped == pid else {
        throw BenchError("cannot run \(arguments[0]): \(String(cString: strerror(spawned == 0 ? errno : spawned)))")
    }
    // A normal exit with status 0: WIFEXITED and WEXITSTATUS, which Swift does not import.
    guard status == 0 else {
        let message = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
        throw BenchError("\(arguments.joined(separator: " ")) failed (wait status \(status)): \(message)")
    }
    return CommandTime(wall: nanoseconds / 1e6, cpu: (usage.ru_utime.milliseconds + usage.ru_stime.milliseconds))
}

/// Wall and CPU time (this thread's) of `body`, in milliseconds, with its result.
func timedWithCPU<T>(_ body: () throws -> T) rethrows -> (T, CommandTime) {
    func threadCPU() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return Double(now.tv_sec) * 1e3 + Double(now.tv_nsec) / 1e6
    }
    let cpu = threadCPU()
    let (result, nanoseconds) = try timed(body)
    return (result, CommandTime(wall: nanoseconds / 1e6, cpu: threadCPU() - cpu))
}

extension timeval {
    var milliseconds: Double { Double(tv_sec) * 1e3 + Double(tv_usec) / 1e3 }
}

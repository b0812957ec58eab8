import BPFKernel
import Foundation
import KernelTestSupport

/// The bench's own network: a namespace for the far ends of veth pairs whose near ends
/// (the devices under test) stay in the root namespace, where bpffs pins are visible,
/// and XDPFlow state and pins in directories of its own (XDPFLOW_STATE_DIR and
/// XDPFLOW_PIN_DIR, set for this process and the commands it starts). Every name starts
/// with `xfb`. `Undo` removes it all: the suite runs `Undo.shared.all()` when it ends or
/// throws, and a signal does. (Not `Undo.done` from here: on the main thread it would race
/// a signal's removal, which exits as soon as it finds no steps left.)
final class Lab {
    static let prefix = "xfb"

    let tag: String
    let namespace: String
    let stateDirectory: String
    let pinDirectory: String
    private(set) var pairs: [Veth] = []

    init() throws {
        tag = String(UInt32.random(in: 0 ... UInt32.max), radix: 16)
        namespace = "\(Lab.prefix)-\(tag)"
        stateDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("\(Lab.prefix)-\(tag)-state").path
        pinDirectory = "/sys/fs/bpf/\(Lab.prefix)-\(tag)"
        // Deleting the namespace deletes the peers, and with them the pairs; a deleted
        // device takes its XDP link and its clsact filters with it.
        _ = Undo.shared.push("the lab \(namespace)") { [namespace, stateDirectory, pinDirectory] in
            Shell.attempt(["ip", "netns", "del", namespace])
            try? FileManager.default.removeItem(atPath: stateDirectory)
            Shell.attempt(["rm", "-rf", pinDirectory])
        }
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        setenv("XDPFLOW_STATE_DIR", stateDirectory, 1)
        setenv("XDPFLOW_PIN_DIR", pinDirectory, 1)
        try Shell.run(["ip", "netns", "add", namespace])
    }

    /// A veth pair, `device` here and `peer` in the namespace, both up, without IPv6 (so
    /// no neighbour discovery frames). With `gro`, `device` takes the XDP frames the
    /// traffic generator sends from `peer` without an XDP program of its own.
    func addPair(gro: Bool = false) throws -> Veth {
        let index = pairs.count
        let pair = Veth(device: "\(Lab.prefix)\(tag)\(index)a", peer: "\(Lab.prefix)\(tag)\(index)b")
        pairs.append(pair)
        try Shell.run(["ip", "link", "add", pair.device, "type", "veth", "peer", "name", pair.peer, "netns", namespace])
        try Shell.run(["sysctl", "-qw", "net.ipv6.conf.\(pair.device).disable_ipv6=1"])
        try Shell.run(["ip", "netns", "exec", namespace, "sysctl", "-qw", "net.ipv6.conf.\(pair.peer).disable_ipv6=1"])
        try Shell.run(["ip", "link", "set", pair.device, "up"])
        try Shell.run(["ip", "-n", namespace, "link", "set", pair.peer, "up"])
        if gro { try Shell.run(["ethtool", "-K", pair.device, "gro", "on"]) }
        return pair
    }

    /// Runs `command` when the lab is removed, before the lab's own removal.
    func onRemove(_ what: String, _ command: [String]) {
        _ = Undo.shared.push(what) { Shell.attempt(command) }
    }

    /// Sends `frame` once out of `pair.peer`, so that it arrives at `pair.device`.
    func send(_ frame: [UInt8], to pair: Veth) throws {
        _ = try NetworkNamespace.run(in: namespace) {
            try TrafficGenerator(device: NetworkInterface(named: pair.peer)).send(frame, count: 1)
        }
    }
}

/// Two ends of a veth: `device` in the root namespace, `peer` in the lab's.
struct Veth {
    let device: String
    let peer: String
}

/// What a command cost, in milliseconds: wall time from just before it is spawned until
/// its exit is reaped (what an operator waits for), and the CPU time it used (user and
/// system, from wait4), which other load on the machine changes much less.
struct CommandTime {
    var wall: Double
    var cpu: Double
}

/// Runs a command to its end and times it, with `environment` added to this process's.
/// Its output goes to /dev/null, its errors to a file without a name (unlinked at once,
/// so that nothing is left behind however the run ends) that a failure quotes.
func timedCommand(_ arguments: [String], environment: [String: String] = [:]) throws -> CommandTime {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(Lab.prefix)-\(UUID().uuidString).err").path
    let errors = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    guard errors >= 0 else { throw BenchError("cannot create \(path): \(String(cString: strerror(errno)))") }
    unlink(path)
    defer { close(errors) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, errors, 2)
    let argv = arguments.map { strdup($0) } + [nil]
    let envp = environment.isEmpty ? nil
        : ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { strdup("\($0)=\($1)") } + [nil]
    defer { (argv + (envp ?? [])).forEach { free($0) } }
    var pid: pid_t = 0
    var status: Int32 = 0
    var usage = rusage()
    let ((spawned, reaped), nanoseconds) = timed {
        let spawned = envp.map { posix_spawnp(&pid, argv[0]!, &actions, nil, argv, $0) }
            ?? posix_spawnp(&pid, argv[0]!, &actions, nil, argv, environ)
        return (spawned, spawned == 0 ? wait4(pid, &status, 0, &usage) : -1)
    }
    guard spawned == 0, reaped == pid else {
        throw BenchError("cannot run \(arguments[0]): \(String(cString: strerror(spawned == 0 ? errno : spawned)))")
    }
    // 0: a normal exit with status 0. (WIFEXITED and friends are macros Swift does not import.)
    guard status == 0 else {
        let how = status & 0x7f == 0 ? "exited \(status >> 8)" : "was killed by signal \(status & 0x7f)"
        var bytes = [UInt8](repeating: 0, count: 4096)
        let count = max(0, pread(errors, &bytes, bytes.count, 0))
        let message = String(decoding: bytes.prefix(count), as: UTF8.self)
        throw BenchError("\(arguments.joined(separator: " ")) \(how): \(message)")
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

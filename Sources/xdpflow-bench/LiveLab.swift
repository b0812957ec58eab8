import Foundation

/// What a benchmark's lab must take down again, newest first: at the end of a step, when
/// a step throws, and on SIGINT, SIGTERM or SIGHUP (then the process exits).
final class Undo: @unchecked Sendable {
    static let shared = Undo()

    private let lock = NSLock()
    private var steps: [(id: Int, what: String, run: () -> Void)] = []
    private var nextID = 0
    private var signalSources: [any DispatchSourceSignal] = []

    struct Token { fileprivate var id: Int }

    /// Remembers `step` until `done(_:)` runs it (or a signal does).
    func push(_ what: String, _ step: @escaping () -> Void) -> Token {
        lock.withLock {
            nextID += 1
            steps.append((nextID, what, step))
            return Token(id: nextID)
        }
    }

    /// Runs the step of `token` now, once. A signal's teardown waits for it to finish.
    func done(_ token: Token) {
        waitIfSignalled()
        let step = lock.withLock { () -> (() -> Void)? in
            guard let index = steps.firstIndex(where: { $0.id == token.id }) else { return nil }
            running += 1
            return steps.remove(at: index).run
        }
        guard let step else { return }
        step()
        lock.withLock { running -= 1 }
    }

    /// Drops the step of `token` without running it: what it would undo is gone already.
    func forget(_ token: Token) {
        lock.withLock { steps.removeAll { $0.id == token.id } }
    }

    /// Set when a signal is taking the lab down: the main thread then waits for the exit
    /// instead of racing the signal's cleanup (or exiting before it is done).
    private var signalled = false
    /// Steps `done(_:)` is running: the process must not exit under them.
    private var running = 0

    private func waitIfSignalled() {
        if Thread.isMainThread, lock.withLock({ signalled }) {
            while true { Thread.sleep(forTimeInterval: 60) }
        }
    }

    /// Runs every step left, newest first.
    func all() {
        waitIfSignalled()
        while let step = lock.withLock({ steps.popLast() }) {
            progress("removing \(step.what)")
            step.run()
        }
    }

    /// While `body` runs, a signal that would end the process takes the lab down first.
    func onSignals<T>(_ body: () throws -> T) rethrows -> T {
        let signals = [SIGINT, SIGTERM, SIGHUP]
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                progress("signal \(number): taking the lab down")
                Undo.shared.lock.withLock { Undo.shared.signalled = true }
                Shell.stop()
                Undo.shared.all()
                while Undo.shared.lock.withLock({ Undo.shared.running > 0 }) {
                    Thread.sleep(forTimeInterval: 0.01)
                }
                exit(128 + number)
            }
            source.resume()
            lock.withLock { signalSources.append(source) }
        }
        defer {
            lock.withLock {
                for source in signalSources { source.cancel() }
                signalSources = []
            }
            for number in signals { signal(number, SIG_DFL) }
        }
        return try body()
    }
}

/// The live lab: a veth pair whose `device` (under test) sits in the root namespace, where
/// bpffs, nft and xdp-filter see it, and whose `sender` end sits in a namespace of its own
/// for `xdpflow gen`. Names are `xfb` + a random tag; deleting the namespace deletes the pair.
///
/// The sender is pinned to `senderCPU`. Where the device receives is its `placement`.
final class LiveLab {
    let tag: String
    let namespace: String
    let device: String
    let sender: String
    /// A directory for the rule files handed to the tools (/tmp/xfb-TAG-work).
    let scratch: String
    private var token: Undo.Token?

    static let senderCPU = 0
    static let receiverCPU = 1

    /// Where the device under test does its receiving.
    enum Placement: CaseIterable {
        /// As a veth does by default: in the softirq the sender raises on its own CPU at the
        /// end of each batch it transmits. One CPU sends and receives, frame by frame in turn.
        case senderCPU
        /// In a NAPI thread of its own (threaded NAPI) pinned to `receiverCPU`: sender and
        /// receiver run at once, and a full ring refuses what the receiver cannot take.
        case ownCPU
    }

    private(set) var placement = Placement.senderCPU

    init() throws {
        tag = Self.unusedTag()
        namespace = "xfb-\(tag)-src"
        device = "xfb\(tag)a"
        sender = "xfb\(tag)s"
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("xfb-\(tag)-work").path
        token = Undo.shared.push("the lab \(device)") { [namespace, device, scratch] in
            Shell.attempt(["ip", "link", "del", device])
            Shell.attempt(["ip", "netns", "del", namespace])
            try? FileManager.default.removeItem(atPath: scratch)
        }
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: false)
        try Shell.run(["ip", "netns", "add", namespace])
        try Shell.run(["ip", "link", "add", device, "type", "veth", "peer", "name", sender, "netns", namespace])
        // No IPv6: no neighbour discovery or MLD frames besides the benchmark's own.
        try Shell.run(["sysctl", "-qw", "net.ipv6.conf.\(device).disable_ipv6=1"])
        try inNamespace(["sysctl", "-qw", "net.ipv6.conf.\(sender).disable_ipv6=1"])
        try Shell.run(["ip", "link", "set", device, "up"])
        try inNamespace(["ip", "link", "set", sender, "up"])
        // The sender's frames are XDP frames: a veth takes them only with an XDP program
        // or GRO on. GRO keeps the device's NAPI (and its thread) while programs come and go.
        try Shell.run(["ethtool", "-K", device, "gro", "on"])
    }

    func place(_ placement: Placement) throws {
        try write(placement == .ownCPU ? "1" : "0", to: "/sys/class/net/\(device)/threaded")
        self.placement = placement
        try pinReceiver()
    }

    /// A tag no device, namespace or directory of this machine carries yet, so that the
    /// undo steps remove only what this lab made.
    private static func unusedTag() -> String {
        let pinned = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/bpf")) ?? []
        while true {
            let tag = String(format: "%04x", UInt16.random(in: 0 ... .max))
            let paths = ["/var/run/netns/xfb-\(tag)-src", "/sys/class/net/xfb\(tag)a",
                         FileManager.default.temporaryDirectory.appendingPathComponent("xfb-\(tag)-work").path]
            // Pins go under xfb-TAG-... (each XDPFlow peer's, libxdp's).
            if !paths.contains(where: FileManager.default.fileExists(atPath:)),
               !pinned.contains(where: { $0.hasPrefix("xfb-\(tag)-") }) { return tag }
        }
    }

    func remove() {
        if let token { Undo.shared.done(token) }
        token = nil
    }

    deinit { remove() }

    @discardableResult
    func inNamespace(_ arguments: [String]) throws -> String {
        try Shell.run(["ip", "netns", "exec", namespace] + arguments)
    }

    /// With its own CPU, pins the device's NAPI thread (`napi/DEVICE-ID`) to it. Done
    /// before every sample: the thread would be new if NAPI were re-created.
    func pinReceiver() throws {
        guard placement == .ownCPU else { return }
        let prefix = "napi/\(device)-"
        let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc").compactMap { entry -> Int32? in
            guard let pid = Int32(entry),
                  let name = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8),
                  name.hasPrefix(prefix) else { return nil }
            return pid
        }
        guard threads.count == 1, let pid = threads.first else {
            throw BenchError("\(device): expected one NAPI thread (\(prefix)*), found \(threads.count); "
                + "threaded NAPI on veth needs Linux 5.13 or later")
        }
        try Shell.run(["taskset", "-pc", "\(Self.receiverCPU)", "\(pid)"])
    }

    /// The device's receive counters: frames its NAPI took off the veth ring (to an XDP
    /// program, or into the stack), and frames the ring refused because it was full.
    struct Ring {
        var received: Int
        var refused: Int
        var nanoseconds: UInt64

        static func - (after: Ring, before: Ring) -> Ring {
            Ring(received: after.received - before.received, refused: after.refused - before.refused,
                 nanoseconds: after.nanoseconds - before.nanoseconds)
        }

        /// Frames that reached the ring: taken off it or refused.
        var arrived: Int { received + refused }

        /// Frames per second taken off the ring, and offered to it (taken or refused).
        var receivedRate: Double { Double(received) * 1e9 / Double(nanoseconds) }
        var offeredRate: Double { Double(arrived) * 1e9 / Double(nanoseconds) }
    }

    /// Read from sysfs, in-process: cheap enough to read during a run. For a veth,
    /// rx_packets counts the frames its NAPI received (XDP or not) and rx_dropped adds the
    /// frames its peer failed to put into its ring.
    func ring() throws -> Ring {
        func read(_ name: String) throws -> Int {
            let path = "/sys/class/net/\(device)/statistics/\(name)"
            guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                  let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw BenchError("cannot read \(path)")
            }
            return value
        }
        let received = try read("rx_packets")
        let refused = try read("rx_dropped")
        return Ring(received: received, refused: refused, nanoseconds: monotonicNanoseconds())
    }

    /// Frames XDP programs dropped on the device: the veth's own XDP statistics
    /// (`ethtool -S`, rx_queue_N_xdp_drops), whichever program ran.
    func xdpDrops() throws -> Int {
        try Shell.run(["ethtool", "-S", device]).split(separator: "\n").reduce(0) { sum, line in
            let parts = line.split(separator: ":").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, parts[0].hasPrefix("rx_queue_"), parts[0].hasSuffix("_xdp_drops"),
                  let value = Int(parts[1]) else { return sum }
            return sum + value
        }
    }

    private func write(_ text: String, to path: String) throws {
        do {
            try text.write(toFile: path, atomically: false, encoding: .utf8)
        } catch {
            throw BenchError("cannot write \(text) to \(path): \(error)")
        }
    }
}

func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import KernelTestSupport
import Packets
import Testing

/// Rules of new shapes come and go while the generator sends (in runs with short
/// pauses, so that the captures keep up): every change is a new program swapped into the
/// device's slot. Every frame must get what
/// the rule set of its moment says (the reference classifier's verdict and bytes, for
/// one of the rule sets live around the time the stack received it), and none may be
/// lost to a swap: each flow's frames are all accounted for, on the wire and in the
/// counters.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct LiveChangeTests {
    /// Frames of `passing` are passed or redirected by every rule set, so each must be
    /// captured; those of `dropped` are dropped by the base rule in every rule set.
    let passing = TestFrame.udp(from: "10.0.0.1", to: "10.0.0.2", sourcePort: 1000, port: 80)
    let dropped = TestFrame.udp(from: "10.0.0.9", to: "10.0.1.2", sourcePort: 2000, port: 53)
    let base = "filter add dev DEV protocol ip prio 100 handle 1 flower ip_proto udp dst_port 53 action drop"

    /// Each in a subtable of its own (its own prio and mask), each matching `passing` and
    /// not `dropped` (or only after the base rule), each leaving its own source MAC.
    let shapes = [
        Shape(prio: 10, mark: "02:00:00:00:0c:0a", "protocol ip flower src_ip 10.0.0.1 action pedit ex munge eth src set MARK"),
        Shape(prio: 20, mark: "02:00:00:00:0c:14",
              "protocol ip flower ip_proto udp dst_port 80 action pedit ex munge eth src set MARK"),
        Shape(prio: 30, mark: "02:00:00:00:0c:1e", "protocol ip flower dst_ip 10.0.0.0/24 ip_proto udp src_port 1000 "
            + "action pedit ex munge eth src set MARK pipe action mirred egress redirect dev TARGET"),
        Shape(prio: 40, mark: "02:00:00:00:0c:28", "protocol ip flower ip_ttl 64 ip_proto udp dst_port 80 "
            + "action pedit ex munge eth src set MARK pipe action vlan push id 7 action mirred egress redirect dev TARGET"),
        Shape(prio: 110, mark: "02:00:00:00:0c:6e", "flower dst_mac 02:00:00:00:0e:02 action pedit ex munge eth src set MARK"),
    ]

    struct Shape {
        var prio: UInt16
        var mark: [UInt8]
        var rule: String

        init(prio: UInt16, mark: String, _ rule: String) {
            self.prio = prio
            self.mark = withUnsafeBytes(of: MACAddress(mark)!.rawValue.bigEndian) { Array($0.suffix(6)) }
            self.rule = rule.replacing("MARK", with: mark)
        }

        var add: String { "filter add dev DEV prio \(prio) handle 1 \(rule)" }
        var delete: String { "filter del dev DEV prio \(prio) handle 1 flower" }
    }

    /// How long each rule set stays (seconds), and how long before its timestamp the stack's
    /// receive a frame may have met the program (same NAPI poll; generous for a noisy VM).
    let epoch = 0.12
    let slack: UInt64 = 20_000_000

    @Test func rulesOfNewShapesComeAndGoWhileTrafficRunsAndEveryFrameGetsTheVerdictOfItsMoment() throws {
        let lab = try OffloadLab()
        try lab.filter(base)
        let stack = try lab.captureOnDevice(), target = try lab.captureOnTarget()
        let device = try lab.deviceStatistics(), peer = try lab.peerStatistics(), out = try lab.targetStatistics()
        var epochs = [Epoch(start: 0, end: .max, rules: try FileRuleSetStore(state: lab.state).rules(of: lab.device))]
        var lastRemoval: [UInt16: UInt64] = [:]
        var swaps = 0

        let traffic = Traffic(lab: lab, passing: passing, dropped: dropped)
        var order: [String] = []
        var present = Set<UInt16>()
        for step in 0..<24 {
            Thread.sleep(forTimeInterval: epoch)
            traffic.waitUntilArriving(at: lab.device)
            // Every shape comes once in the first steps, then at random.
            let shape = step < shapes.count ? shapes[step] : shapes.randomElement()!
            let adding = !present.contains(shape.prio)
            let line = adding ? shape.add : shape.delete
            order.append(line)
            let start = realtime()
            var after = RuleSet()
            let command = try FilterCommand.parse(lab.words(line))
            let change = try lab.offload.update { rules, recorded in
                try command.apply(to: &rules, recording: &recorded)
                after = rules
            }.change
            let end = realtime()
            if case .newProgram = change { swaps += 1 }
            if adding { present.insert(shape.prio) } else { present.remove(shape.prio); lastRemoval[shape.prio] = end }
            epochs[epochs.count - 1].end = end
            epochs.append(Epoch(start: start, end: .max, rules: after))
        }
        Thread.sleep(forTimeInterval: epoch)
        let sent = try traffic.stop()
        #expect(swaps == 24, "each change of shape swaps the program: \(order)")
        #expect(sent.passing > 10_000 && sent.dropped > 1_000, "traffic ran throughout: \(sent)")

        // None lost: every frame met XDP (a swap that left the device without a program
        // would show as frames the peer could not hand over), and each one was dropped by
        // the base rule or captured (a frame the target's ring refused would show there).
        let droppedRule = RuleID(prio: 100, handle: 1)
        var met = 0, refused = 0, baseCounted = 0, arrived = 0
        _ = try settled(at: 0, timeout: .seconds(10)) {
            met = try lab.deviceStatistics().xdpPackets - device.xdpPackets
            refused = try lab.targetStatistics().transmitErrors - out.transmitErrors
            baseCounted = Int(try lab.offload.statistics()?.rules[droppedRule]?.packets ?? 0)
            arrived = stack.frames(where: isPassing).count + target.frames(where: isPassing).count
            return sent.passing + sent.dropped - baseCounted - arrived
        }
        stack.stop()
        target.stop()
        arrived = stack.frames(where: isPassing).count + target.frames(where: isPassing).count
        let refusedOnTheWayIn = try lab.peerStatistics().transmitErrors - peer.transmitErrors
        let accounting = "sent \(sent), met by XDP \(met), refused on the way in \(refusedOnTheWayIn), "
            + "dropped by the base rule \(baseCounted), captured \(arrived), refused by the target \(refused)"
        #expect(met == sent.passing + sent.dropped && refusedOnTheWayIn == 0, "\(accounting)")
        #expect(baseCounted == sent.dropped && arrived == sent.passing && refused == 0, "\(accounting)")
        #expect(try stack.drops() == 0 && target.drops() == 0, "the captures saw every frame")
        #expect(try lab.deviceStatistics().receiveDrops == device.receiveDrops, "no redirect failed")
        #expect((stack.frames + target.frames).filter { isDropped($0.bytes) }.isEmpty, "no dropped frame arrived")
        #expect((stack.frames + target.frames).allSatisfy { $0.time != 0 }, "every frame has its receive time")

        // Each frame as the reference says for a rule set live when the program met it.
        let outcomes = try epochs.map { epoch in
            (epoch, try Outcome(lab, epoch.rules, passing))
        }
        var misjudged: [String] = []
        for (capture, place) in [(stack, Place.stack), (target, Place.redirect(lab.target.device))] {
            for frame in capture.frames(where: isPassing) {
                let live = outcomes.filter { $0.0.start <= frame.time && frame.time - slack <= $0.0.end }
                if !live.contains(where: { $0.1 == Outcome(place: place, bytes: frame.bytes) }) {
                    misjudged.append("\(place) at \(frame.time): \(hex(frame.bytes)); live: \(live.map(\.1))")
                }
            }
        }
        #expect(misjudged.isEmpty, "\(misjudged.count) frames misjudged, first: \(misjudged.prefix(2)); changes: \(order)")

        // The swaps happened under traffic: frames arrived while most changes were made.
        let times = (stack.frames + target.frames).map(\.time).sorted()
        let busy = zip(epochs, epochs.dropFirst()).filter { previous, next in
            let first = times.partitioningIndex { $0 >= next.start }
            return first < times.count && times[first] <= previous.end
        }.count
        #expect(busy >= (epochs.count - 1) * 3 / 4, "\(busy) of \(epochs.count - 1) changes made while frames arrived")

        // The counters: misses are the passing frames no rule touched; a rule present now
        // counted the frames with its mark since it came (and any the target refused).
        let statistics = try #require(try lab.offload.statistics())
        #expect(statistics.misses.packets == UInt64(stack.frames(where: { $0 == passing }).count))
        for shape in shapes where present.contains(shape.prio) {
            let since = lastRemoval[shape.prio] ?? 0
            let marked = (stack.frames + target.frames).filter { $0.time > since && $0.bytes[6..<12].elementsEqual(shape.mark) }
            let counted = Int(statistics.rules[RuleID(prio: shape.prio, handle: 1)]?.packets ?? 0)
            #expect(counted >= marked.count && counted <= marked.count + refused,
                    "prio \(shape.prio): \(counted) counted, \(marked.count) captured, \(refused) refused")
        }

        // After all the swaps, the pins are the maps of the rules now, no more; detach
        // takes them and the program away.
        let pins = lab.offload.pins
        let plan = try Plan(epochs.last!.rules, device: lab.device)
        let pinned = Set(try FileManager.default.contentsOfDirectory(atPath: pins.string))
        #expect(pinned == Set(Datapath.mapSpecs(for: plan).map(\.name) + ["link", "entry", "slot", "owner", "tc-link", "tc-entry"]))
        try lab.offload.detach()
        #expect(!FileManager.default.fileExists(atPath: lab.pinRoot.string))
        #expect(XDPLink.attachedProgramID(lab.veths.device) == nil)
    }

    // Read from fixed offsets (one VLAN tag at most): there are hundreds of thousands.
    func isPassing(_ bytes: [UInt8]) -> Bool { ipv4Source(bytes) == [10, 0, 0, 1] }
    func isDropped(_ bytes: [UInt8]) -> Bool { ipv4Source(bytes) == [10, 0, 0, 9] }

    func ipv4Source(_ bytes: [UInt8]) -> ArraySlice<UInt8> {
        let tagged = bytes.count > 13 && bytes[12] == 0x81 && bytes[13] == 0x00
        let offset = tagged ? 30 : 26
        return bytes.count >= offset + 4 ? bytes[offset..<offset + 4] : []
    }
}

/// A rule set and when it was live: from the start of the change that made it to the
/// end of the change that replaced it (CLOCK_REALTIME nanoseconds, as frame timestamps).
private struct Epoch {
    var start: UInt64
    var end: UInt64
    var rules: RuleSet
}

private enum Place: Hashable, CustomStringConvertible {
    case stack
    case redirect(String)
    case dropped

    var description: String {
        switch self {
        case .stack: "stack"
        case .redirect(let device): "redirect to \(device)"
        case .dropped: "dropped"
        }
    }
}

/// Where a frame goes and what it looks like when it gets there.
private struct Outcome: Hashable, CustomStringConvertible {
    var place: Place
    var bytes: [UInt8]

    init(place: Place, bytes: [UInt8]) {
        self.place = place
        self.bytes = bytes
    }

    init(_ lab: OffloadLab, _ rules: RuleSet, _ frame: [UInt8]) throws {
        var classifier = try ReferenceClassifier(rules: rules, device: lab.device)
        let result = classifier.classify(frame, now: 0)
        bytes = result.frame
        switch result.verdict {
        case .pass: place = .stack
        case .redirect(let device): place = .redirect(device)
        // These rules bind no AF_XDP socket: an xsk verdict would be a frame the stack never sees.
        case .drop, .aborted, .tx, .xsk: place = .dropped
        }
    }

    var description: String { "\(place) \(hex(bytes))" }
}

/// The generator sending in the lab's namespace until stopped: `passing` and `dropped`
/// frames alternately, counted.
private final class Traffic {
    private let stopping = Flag()
    private let running: NetworkNamespace.Running<(passing: Int, dropped: Int)>

    init(lab: OffloadLab, passing: [UInt8], dropped: [UInt8]) {
        let peer = lab.peer, stopping = stopping
        running = NetworkNamespace.start(in: lab.namespace) {
            // One program sends both, eight passing frames to one dropped, in turn: a
            // live-frames run costs tens of milliseconds to set up, and one run for both
            // halves the gaps in the traffic. Runs stay short enough for the captures.
            let mix = Array(repeating: GeneratedFrame(passing), count: 8) + [GeneratedFrame(dropped)]
            let generator = try TrafficGenerator(device: NetworkInterface(named: peer), frames: mix)
            let rounds = 2_048
            var sent = (passing: 0, dropped: 0)
            while !stopping.isSet {
                let start = DispatchTime.now().uptimeNanoseconds
                try generator.send(mix, count: rounds * mix.count)
                sent.passing += rounds * 8
                sent.dropped += rounds
                // A pause of a third of the run: on 2 CPUs the captures' reader, not
                // the program, was what could not keep up (the stack's socket dropped
                // frames while XDP's counts were exact), at commits old and new alike.
                let elapsed = DispatchTime.now().uptimeNanoseconds - start
                Thread.sleep(forTimeInterval: Double(elapsed) / 3e9)
            }
            return sent
        }
    }

    deinit { stopping.set() }

    /// Waits (at most a second) until frames arrive at `device`: its receive counter
    /// moves within a millisecond. A change made then meets traffic; the sender pauses
    /// between runs (a run's setup, and a third of a run for the captures), and a
    /// change made in a pause would not.
    func waitUntilArriving(at device: String) {
        let path = "/sys/class/net/\(device)/statistics/rx_packets"
        func received() -> Int {
            (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int($0.filter(\.isNumber)) } ?? 0
        }
        let deadline = DispatchTime.now().uptimeNanoseconds + 1_000_000_000
        var before = received()
        while DispatchTime.now().uptimeNanoseconds < deadline {
            Thread.sleep(forTimeInterval: 0.001)
            let now = received()
            if now > before { return }
            before = now
        }
    }

    /// Stops sending; returns how many frames of each kind went out.
    func stop() throws -> (passing: Int, dropped: Int) {
        stopping.set()
        return try running.join()
    }
}

private final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}

extension Array where Element == UInt64 {
    /// The index of the first element that satisfies `isAfter`, in a sorted array.
    fileprivate func partitioningIndex(where isAfter: (UInt64) -> Bool) -> Int {
        var low = 0, high = count
        while low < high {
            let middle = (low + high) / 2
            if isAfter(self[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}

/// CLOCK_REALTIME in nanoseconds: the clock of SO_TIMESTAMPNS.
private func realtime() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

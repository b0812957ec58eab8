import Foundation
import Packets

/// Live throughput over a veth: 64-byte frames from `xdpflow gen` in the lab's sender
/// namespace, counted where the device under test receives them, for each rule set and
/// each peer, peers alternated round by round.
enum LiveCases {
    struct Timing {
        /// Traffic before the measured window, once frames arrive.
        var warm: Double
        var window: Double
        var rounds: Int
        /// Source ports the sender cycles through (`gen --flows`).
        var flows = 1024

        static let full = Timing(warm: 0.5, window: 1.5, rounds: 4)
        static let quick = Timing(warm: 0.25, window: 0.8, rounds: 2)
    }

    /// One peer's run: the measured window, and what the sender sent in all.
    struct Sample {
        var window: LiveLab.Ring
        var sent: Int
    }

    static func sections(_ options: Options) throws -> [Section] {
        let timing = options.quick ? Timing.quick : Timing.full
        let ruleSets = try LiveWorkload.all(quick: options.quick)
        // Quick runs keep the default placement, whose figures carry the targets.
        let placements: [LiveLab.Placement] = options.quick ? [.senderCPU] : LiveLab.Placement.allCases
        let xdpflow = try Shell.xdpflowBinary()
        return try Undo.shared.onSignals {
            defer { Undo.shared.all() }
            let lab = try LiveLab()
            progress("live: lab \(lab.device) <- \(lab.sender) in \(lab.namespace)")
            let peers: [any LivePeer] = [try FloorPeer(lab), try XDPFlowPeer(lab, xdpflow: xdpflow), XDPFilterPeer(lab),
                                         NFTablesPeer(lab)]
            var runs: [LiveReport.Run] = []
            for placement in placements {
                try lab.place(placement)
                var run = LiveReport.Run(placement: placement)
                for ruleSet in ruleSets {
                    let runnable = peers.filter { $0.cannot(ruleSet) == nil }
                    var samples: [String: [Sample]] = [:]
                    for round in 1 ... timing.rounds {
                        for peer in runnable {
                            let sample = try measure(peer, ruleSet, lab: lab, xdpflow: xdpflow, timing: timing)
                            progress("live (\(placement)): \(ruleSet.short), round \(round), \(peer.name): "
                                + "\((sample.window.receivedRate / 1e6).formatted(2)) Mpps received, "
                                + "\((sample.window.offeredRate / 1e6).formatted(2)) offered")
                            samples[peer.name, default: []].append(sample)
                        }
                    }
                    run.results.append(samples)
                }
                runs.append(run)
            }
            return LiveReport(ruleSets: ruleSets, peers: peers, runs: runs, timing: timing).sections
        }
    }

    /// Each rule set's samples of every peer, by peer name: `timing.rounds` rounds, the
    /// peers in turn within each, so that the machine's drift falls on all alike.
    static func alternated(_ peers: [any LivePeer], _ ruleSets: [LiveWorkload], lab: LiveLab, xdpflow: String,
                           timing: Timing, suite: String) throws -> [[String: [Sample]]] {
        try ruleSets.map { ruleSet in
            var results: [String: [Sample]] = [:]
            for round in 1 ... timing.rounds {
                for peer in peers {
                    let sample = try measure(peer, ruleSet, lab: lab, xdpflow: xdpflow, timing: timing)
                    progress("\(suite): \(ruleSet.short), round \(round), \(peer.name): "
                        + "\((sample.window.receivedRate / 1e6).formatted(4)) Mpps received")
                    results[peer.name, default: []].append(sample)
                }
            }
            return results
        }
    }

    /// Attaches `peer`, sends for warm-up plus the window, checks that every frame was
    /// counted where it should be, and detaches the peer again.
    static func measure(_ peer: any LivePeer, _ ruleSet: LiveWorkload, lab: LiveLab, xdpflow: String,
                        timing: Timing) throws -> Sample {
        try peer.attach(ruleSet)
        do {
            let sample = try send(through: peer, ruleSet, lab: lab, xdpflow: xdpflow, timing: timing)
            try peer.detach()
            return sample
        } catch {
            try? peer.detach()
            throw error
        }
    }

    private static func send(through peer: any LivePeer, _ ruleSet: LiveWorkload, lab: LiveLab, xdpflow: String,
                             timing: Timing) throws -> Sample {
        try lab.pinReceiver()
        let dropsBefore = try lab.xdpDrops()
        let before = try lab.ring()
        let hex = ruleSet.frame.map { String(format: "%02x", $0) }.joined()
        let seconds = timing.warm + timing.window + 0.2
        let sender = try Shell.start(["ip", "netns", "exec", lab.namespace, "taskset", "-c", "\(LiveLab.senderCPU)",
                                      xdpflow, "-j", "gen", "dev", lab.sender, "--duration", "\(seconds)",
                                      "--flows", "\(timing.flows)", "--packet", hex])
        // The window starts a warm-up after the first frames arrive, not after the process starts.
        let deadline = monotonicNanoseconds() + 5_000_000_000
        while try lab.ring().arrived == before.arrived, monotonicNanoseconds() < deadline {
            Thread.sleep(forTimeInterval: 0.005)
        }
        Thread.sleep(forTimeInterval: timing.warm)
        let start = try lab.ring()
        Thread.sleep(forTimeInterval: timing.window)
        let end = try lab.ring()
        let report = try sender.wait()
        guard let sent = (try JSONSerialization.jsonObject(with: Data(report.utf8)) as? [String: Any])?["frames"] as? Int
        else { throw BenchError("xdpflow gen: no frame count in \(report)") }

        // What the counters must say, or the figure is of something else: every frame sent
        // reached the ring, and every frame the receiver took was dropped where the peer drops.
        var total = try lab.ring() - before
        let settle = monotonicNanoseconds() + 2_000_000_000
        while total.arrived < sent, monotonicNanoseconds() < settle {
            Thread.sleep(forTimeInterval: 0.01)
            total = try lab.ring() - before
        }
        let context = "\(ruleSet.name), \(peer.name)"
        guard total.arrived == sent else {
            throw BenchError("\(context): sent \(sent) frames, the device received \(total.received) and refused \(total.refused)")
        }
        let drops = try lab.xdpDrops() - dropsBefore
        guard drops == (peer.isXDP ? total.received : 0) else {
            throw BenchError("\(context): the veth counted \(drops) XDP drops of \(total.received) frames received")
        }
        if let counted = try peer.counted() {
            guard counted.total == total.received, counted.lastRule ?? counted.total == counted.total else {
                throw BenchError("\(context): its counters say \(counted.total) dropped "
                    + "(\(counted.lastRule.map(String.init) ?? "?") by the last rule) of \(total.received) received")
            }
        }
        return Sample(window: end - start, sent: sent)
    }
}

/// The live benchmark's sections: rates and ratios per placement of the receiver (the
/// default one carries the targets), then what each peer costs per frame and which side
/// was the bottleneck.
struct LiveReport {
    var ruleSets: [LiveRuleSet]
    var peers: [any LivePeer]
    var runs: [Run]
    var timing: LiveCases.Timing

    /// The samples of one placement: per rule set, each runnable peer's by name, one per round.
    struct Run {
        var placement: LiveLab.Placement
        var results: [[String: [LiveCases.Sample]]] = []

        func received(_ index: Int, _ peer: String) -> Samples? {
            results[index][peer].map { Samples($0.map { $0.window.receivedRate / 1e6 }) }
        }

        /// XDPFlow's rate over a peer's, round by round (both ran in the same round).
        func ratio(_ index: Int, over peer: String) -> Samples? {
            guard let mine = results[index][LiveReport.xdpflow], let theirs = results[index][peer] else { return nil }
            return Samples(zip(mine, theirs).map { $0.window.receivedRate / $1.window.receivedRate })
        }
    }

    static let xdpflow = "XDPFlow"
    static let floor = "floor"
    /// The peers XDPFlow is divided by, in column order.
    var others: [any LivePeer] { peers.filter { $0.name != Self.xdpflow } }

    var sections: [Section] { runs.map(rates) + [costs] }

    func rates(_ run: Run) -> Section {
        let (slug, title, method) = run.placement == .senderCPU
            ? ("live", "Live throughput over veth (Mpps received; sender and receiver on one CPU)", method)
            : ("live-own-cpu", "Live throughput over veth (Mpps received; the receiver on a CPU of its own)",
               ownCPUMethod)
        var section = Section(slug: slug, title: title, method: method,
                              columns: [Column("rule set", key: "rule_set", .left), Column("subtables", key: "subtables")]
                                  + peers.map { Column("\($0.name) Mpps", key: "\(key($0.name))_mpps") }
                                  + others.map { Column("\(Self.xdpflow) / \($0.name)", key: "ratio_to_\(key($0.name))") })
        for (index, ruleSet) in ruleSets.enumerated() {
            let rates = peers.map { peer -> Cell in
                run.received(index, peer.name).map(Self.cell) ?? .absent(peer.cannot(ruleSet) ?? "n/a")
            }
            let ratios = others.map { peer -> Cell in
                run.ratio(index, over: peer.name).map { .samples($0, digits: 2) } ?? .absent("n/a")
            }
            section.append([.text(ruleSet.name), .count(ruleSet.subtables)] + rates + ratios)
            guard run.placement == .senderCPU else { continue }
            for target in ruleSet.targets {
                guard let ratio = run.ratio(index, over: target.peer) else { continue }
                section.targets.append(Target("\(ruleSet.short), live: \(Self.xdpflow) / \(target.peer)",
                                              measured: ratio.median, .atLeast, target.limit, unit: "x"))
            }
        }
        return section
    }

    var costs: Section {
        var section = Section(
            slug: "live-cost", title: "Live: cost per frame, and which side was the bottleneck",
            method: """
                Offered: frames per second that reached the device's veth ring in the window (taken off \
                it or refused); received: taken off it; refused: the ring was full. ns/frame: \
                1 / received rate (medians); over floor: that less the floor's, what the peer's \
                receiving costs beyond XDP_DROP alone. With the receiver on the sender's CPU the ring \
                never fills, one CPU does both in turn, and the floor's rate is the sender's own \
                ceiling with the cheapest receiver: the bottleneck is the side that takes more of \
                each frame's time (the sender ~ the floor's ns/frame, the receiver ~ the excess). \
                With a CPU of its own, the receiver is the bottleneck when the ring refuses frames.
                """,
            columns: [Column("receiver", key: "placement", .left), Column("rule set", key: "rule_set", .left),
                      Column("peer", key: "peer", .left), Column("offered Mpps", key: "offered_mpps"),
                      Column("received Mpps", key: "received_mpps"), Column("refused %", key: "refused_percent"),
                      Column("ns/frame", key: "ns_per_frame"), Column("over floor ns", key: "ns_over_floor"),
                      Column("bottleneck", key: "bottleneck", .left)])
        for run in runs {
            for (index, ruleSet) in ruleSets.enumerated() {
                let floorNanoseconds = run.received(index, Self.floor).map { 1e3 / $0.median }
                for peer in peers {
                    guard let samples = run.results[index][peer.name], let received = run.received(index, peer.name)
                    else { continue }
                    let refused = Samples(samples.map { 100 * Double($0.window.refused) / Double($0.window.arrived) })
                    let nanoseconds = 1e3 / received.median
                    let overFloor = floorNanoseconds.map { nanoseconds - $0 }
                    let bottleneck = switch run.placement {
                    case .senderCPU: (overFloor ?? 0) > (floorNanoseconds ?? .infinity) ? "receiver" : "sender"
                    case .ownCPU: refused.median > 1 ? "receiver" : "sender"
                    }
                    section.append([.text(run.placement == .senderCPU ? "sender's CPU" : "own CPU"),
                                    .text(ruleSet.short), .text(peer.name),
                                    Self.cell(Samples(samples.map { $0.window.offeredRate / 1e6 })),
                                    Self.cell(received), .samples(refused, digits: 1),
                                    .number(nanoseconds, digits: 0),
                                    overFloor.map { .number($0, digits: 0) } ?? .absent("n/a"), .text(bottleneck)])
                }
            }
        }
        return section
    }

    var method: String {
        """
        A veth pair: the device under test in the root namespace, the sender's end in a namespace \
        of its own. `xdpflow gen` (BPF_PROG_TEST_RUN in live-frames mode, XDP_TX) sends 64-byte \
        frames (60 + FCS, UDP/IPv4) over \(timing.flows) flows (source ports; a veth picks its \
        receive queue by the sending CPU, not by a hash, so the flows vary only the keys); every \
        frame hits the rule set's last rule, a drop, so each peer does its full classification. \
        The sender is pinned to CPU \(LiveLab.senderCPU) (taskset); the veth receives in the \
        softirq the sender raises on that same CPU after each batch of 64 frames, so each figure \
        is the rate at which one CPU both sends and receives: a receiver's cost shows diluted by \
        the sender's (the floor's rate is the sender's ceiling with the cheapest receiver; the \
        next sections give each peer's cost per frame, and the rates with a CPU per side).

        Rate: the device's rx_packets (frames its NAPI took off the veth ring, the same counter \
        for every peer) over a \(timing.window.formatted(1)) s window after \
        \(timing.warm.formatted(1)) s of traffic. Checked for every sample over the whole send: \
        frames sent (gen's count) = received + refused by the ring; for the XDP peers the veth's \
        XDP drops (`ethtool -S`, rx_queue_N_xdp_drops) = received, for nftables none; XDPFlow's \
        rule counters (`xdpflow -s filter show`), nftables' rule counters and xdp-filter's \
        XDP_DROP counter = received, all of it in the last rule where they count by rule.

        Peers, each attached before its sample and detached after, in native XDP mode: the floor \
        (XDP_DROP only); XDPFlow (`xdpflow attach`, `xdpflow -batch` of the rules); xdp-filter \
        from xdp-tools (`load --features` udp for the port, ipv4 for the addresses, policy \
        allow; `port`/`ip --mode dst`; it has no prefixes); nftables in the netdev ingress hook \
        (`nft -f`, one rule per flower rule in classification order, each with a counter; GRO on, \
        so the veth takes frames without an XDP program). \(timing.rounds) rounds, the peers \
        alternated in each (A B C D A B C D ...); median (min-max); ratios are per round. `gen` \
        sends in test runs of ~0.25 s, each with ~20 ms of RCU grace periods (the kernel adds and \
        removes its program from the XDP dispatcher) in which nothing is sent: rates are ~7% \
        below a continuous sender's, alike for every peer.
        """
    }

    var ownCPUMethod: String {
        """
        As above, but the device receives in a NAPI thread of its own (threaded NAPI) pinned to \
        CPU \(LiveLab.receiverCPU), while the sender keeps CPU \(LiveLab.senderCPU): both run at \
        once, and a full ring refuses what the receiver cannot take. Frames now cross CPUs: each \
        dropped frame's page goes back to the sender's page pool from the other CPU, the ring's \
        cache lines move between them, and the sender wakes the thread. On a 2-CPU VM that \
        overhead, the same for every peer, is most of the receiver's time, and the thread shares \
        its CPU with everything else the machine runs, so these rates are lower and noisier than \
        on one CPU; no target is read from them.
        """
    }

    /// Mpps with two decimals, or four below 0.1 (nftables with 10,000 rules).
    static func cell(_ mpps: Samples) -> Cell {
        .samples(mpps, digits: mpps.median < 0.1 ? 4 : 2)
    }

    private func key(_ name: String) -> String {
        name.lowercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
    }
}

import FlowCompiler
import FlowOffload
import Packets

/// How the cost of a hit grows with the number of subtables it is looked up through:
/// N prios of dst_ip /32 rules, the frame hitting the last. Two placements of the
/// entries bound what the prefilter can do: each prio in its own /16 (it skips every
/// subtable but the one that hits), and every prio holding an entry in the frame's /16
/// (it skips none: a hash lookup per subtable).
enum SubtableCurve {
    /// Rules per prio.
    static let rulesPerSubtable = 64

    /// Up to the most a program takes with its prefilter.
    static func counts(quick: Bool) -> [Int] {
        quick ? [1, 4, 16, Plan.maxSubtables - 1] : [1, 2, 4, 8, 16, 32, Plan.maxSubtables - 1]
    }

    enum Placement: String, CaseIterable {
        case apart = "entries apart (one /16 per prio)"
        case together = "entries together (every prio in the frame's /16)"

        /// The destination of prio `prio`'s `entry`-th rule.
        func address(prio: Int, entry: Int) -> IPv4Address {
            switch self {
            case .apart: IPv4Address(rawValue: 0x0a00_0000 | UInt32(prio) << 16 | UInt32(entry))  // 10.prio.0.entry
            case .together: IPv4Address(rawValue: 0x0a00_0000 | UInt32(prio) << 8 | UInt32(entry))  // 10.0.prio.entry
            }
        }

        func lines(subtables: Int) -> [String] {
            (1 ... subtables).flatMap { prio in
                (0 ..< SubtableCurve.rulesPerSubtable).map { entry in
                    "filter add dev \(RuleLines.device) prio \(prio) protocol ip flower dst_ip "
                        + "\(address(prio: prio, entry: entry)) action drop"
                }
            }
        }
    }

    static func sections(_ options: Options) throws -> [Section] {
        let counts = counts(quick: options.quick)
        progress("loading \(counts.count * Placement.allCases.count) programs of 1 to \(counts.last!) subtables...")
        var cases = [try PacketCase.floor()]
        for count in counts {
            for placement in Placement.allCases {
                let datapath = try Datapath.load(placement.lines(subtables: count), subtables: count)
                let frame = Frames.udp(dst: placement.address(prio: count, entry: rulesPerSubtable - 1), dstPort: 9)
                cases.append(.xdpflow("\(count) subtables, \(placement.rawValue)", slug: "subtables\(count)-\(placement)",
                                      datapath, frame: frame, verdict: .drop, matchedPrio: UInt16(count)))
            }
        }
        for packetCase in cases { try packetCase.check() }
        progress("timing \(cases.count) cases, \(options.rounds) rounds of \(options.repeatCount.grouped) runs...")
        let results = try Benchmark.alternate(cases.map { $0.benchmark(repeatCount: options.repeatCount) },
                                              rounds: options.rounds).map { $0[PacketCase.metric] }
        let floor = results[0]
        var section = Section(
            slug: "subtables", title: "Cost against subtables (BPF_PROG_TEST_RUN)",
            method: """
                N prios of \(rulesPerSubtable) dst_ip /32 rules each (N hash subtables); the frame hits a rule \
                of the last prio, so every subtable before it is considered. *Apart*: each prio's entries in \
                their own /16, so the prefilter skips all but the subtable that hits. *Together*: every prio \
                holds entries in the frame's /16, so no subtable is skipped: one hash lookup each. Timed as \
                the packet cases (the floor alongside, \(options.rounds) rounds alternated). \
                \(Plan.maxSubtables - 1) is the most subtables a program looks up with its prefilter (a \
                program may use 64 maps).
                """,
            columns: [Column("subtables", key: "subtables"),
                      Column("apart ns/packet", key: "apart_ns_per_packet"), Column("x floor", key: "apart_ratio_to_floor"),
                      Column("together ns/packet", key: "together_ns_per_packet"),
                      Column("x floor", key: "together_ratio_to_floor")])
        var curves = Placement.allCases.map {
            Curve(name: $0 == .apart ? "apart (prefilter skips)" : "together (no skip)", xLabel: "subtables",
                  yLabel: "ns/packet", points: [])
        }
        for (row, count) in counts.enumerated() {
            let apart = results[1 + 2 * row], together = results[2 + 2 * row]
            section.append([.count(count), .samples(apart, digits: 1), .number(apart.median / floor.median, digits: 2),
                            .samples(together, digits: 1), .number(together.median / floor.median, digits: 2)])
            curves[0].points.append(Curve.Point(x: Double(count), y: apart))
            curves[1].points.append(Curve.Point(x: Double(count), y: together))
        }
        curves.append(Curve(name: "floor (XDP_DROP)", xLabel: "subtables", yLabel: "ns/packet",
                            points: counts.map { Curve.Point(x: Double($0), y: floor) }))
        section.curves = curves
        return [section]
    }
}

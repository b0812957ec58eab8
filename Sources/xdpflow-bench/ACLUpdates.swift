import BPFAssembly
import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Foundation
import Packets
import RuleSetWorkloads

/// Rule updates in a loaded 10,000-rule ACL (ClassBench acl1_10000, classified by the
/// table classifier) through the library, as suite update does: a rule added, checked
/// to act, and deleted again, one call at a time, into an existing prio or a new one,
/// with a mask some table has or one that needs a new table.
enum ACLUpdates {
    /// What an added rule is made of: prefix lengths (multiples of the tables' step of 8,
    /// so that a shape is one table mask), and which of ip_proto, src_port and dst_port
    /// it names (ports exactly).
    struct Shape: Hashable, CustomStringConvertible {
        var src: Int
        var dst: Int
        var proto: Bool
        var srcPort: Bool
        var dstPort: Bool

        static let all: [Shape] = [0, 8, 16, 24, 32].flatMap { src in
            [0, 8, 16, 24, 32].flatMap { dst in
                [Shape(src: src, dst: dst, proto: false, srcPort: false, dstPort: false)]
                    + [false, true].flatMap { srcPort in
                        [false, true].map { Shape(src: src, dst: dst, proto: true, srcPort: srcPort, dstPort: $0) }
                    }
            }
        }

        var description: String {
            "/\(src) /\(dst)\(proto ? " proto" : "")\(srcPort ? " sport" : "")\(dstPort ? " dport" : "")"
        }
    }

    /// The keys of a trace frame that a shape can name.
    struct Fields {
        var src, dst: IPv4Address
        var proto: UInt8
        var srcPort, dstPort: UInt16

        init?(_ frame: [UInt8]) {
            let keys = FlowKeys(dissecting: frame)
            guard case .v4(let src)? = keys.srcIP, case .v4(let dst)? = keys.dstIP, let proto = keys.ipProto,
                  proto == IPProtocolNumber.tcp || proto == IPProtocolNumber.udp, keys.vlans.isEmpty,
                  let srcPort = keys.srcPort, let dstPort = keys.dstPort, srcPort > 0, dstPort > 0 else { return nil }
            (self.src, self.dst, self.proto, self.srcPort, self.dstPort) = (src, dst, proto, srcPort, dstPort)
        }
    }

    /// The flower line of a rule of `shape` that matches a frame with `fields`.
    static func line(_ fields: Fields, _ shape: Shape, prio: UInt16, handle: UInt32, action: String) -> String {
        var words = ["filter add dev \(RuleLines.device) ingress protocol ip prio \(prio) handle \(handle) flower"]
        if shape.src > 0 { words.append("src_ip \(Masked(fields.src, prefixLength: shape.src)!.key)/\(shape.src)") }
        if shape.dst > 0 { words.append("dst_ip \(Masked(fields.dst, prefixLength: shape.dst)!.key)/\(shape.dst)") }
        if shape.proto {
            words.append("ip_proto \(fields.proto == IPProtocolNumber.tcp ? "tcp" : "udp")")
            if shape.srcPort { words.append("src_port \(fields.srcPort)") }
            if shape.dstPort { words.append("dst_port \(fields.dstPort)") }
        }
        return (words + ["action", action]).joined(separator: " ")
    }

    enum Kind: CaseIterable {
        case existingPrioExistingMask, newPrioExistingMask, existingPrioNewMask, newPrioNewMask

        var newPrio: Bool { self == .newPrioExistingMask || self == .newPrioNewMask }
        var newMask: Bool { self == .existingPrioNewMask || self == .newPrioNewMask }
        var name: String {
            "\(newPrio ? "new prio" : "existing prio (handle 2)"), \(newMask ? "new mask (a new table)" : "existing mask")"
        }
    }

    struct Latencies {
        /// Wall and thread CPU time of each call, us.
        var adds: [(wall: Double, cpu: Double)] = []
        var deletes: [(wall: Double, cpu: Double)] = []
        var newPrograms = 0
        var tablesAdded = 0
    }

    /// Wall time and this thread's CPU time (user and system) of `body`, in us: on a
    /// machine others load, a call preempted for a time slice costs milliseconds of wall
    /// time and no more CPU time.
    static func timedCall<T>(_ body: () throws -> T) rethrows -> (T, (wall: Double, cpu: Double)) {
        func cpuNanoseconds() -> Double {
            var now = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
            return Double(now.tv_sec) * 1e9 + Double(now.tv_nsec)
        }
        let cpu = cpuNanoseconds()
        let (result, wall) = try timed(body)
        return (result, (wall / 1e3, (cpuNanoseconds() - cpu) / 1e3))
    }

    static func section(_ sizes: ACLCases.Sizes) throws -> Section {
        progress("acl: loading ClassBench acl1_10000 (prios doubled) through LiveRuleSet, attached...")
        let workload = try ClassBench.load("acl1_10000", device: RuleLines.device)
        // Prio 2, 4, ...: the same rules in the same order, with room for a new prio
        // between any two.
        let rules = try RuleSet(workload.rules.rules.map { rule in
            var rule = rule
            rule.prio *= 2
            return rule
        })
        let veth = try AttachVeth()
        defer { veth.remove() }
        let live = try LiveRuleSet(rules, device: RuleLines.device, attachingTo: veth.interface, mode: .native,
                                   targetIndex: { _ in 1 })
        guard let tables = live.datapath.plan.tables else { throw BenchError("acl1_10000 was planned inline, not in tables") }
        let baseTables = tables.tables.count
        let existingMasks = Set(tables.tables.keys)

        // Which shapes need a new table: each shape's mask, from a plan of one such rule.
        let sample = Fields(Frames.udp(dst: Frames.nowhere, dstPort: 9))!
        var existingShapes: [(Shape, Int)] = [], newShapes: [Shape] = []
        for shape in Shape.all {
            let rule = try RuleLines.rules([line(sample, shape, prio: 1, handle: 1, action: "drop")])
            guard let mask = try Plan(RuleSet(rule), device: RuleLines.device, inlineLimit: 0).tables?.tables.keys.first
            else { throw BenchError("a rule of shape \(shape) got no table") }
            if existingMasks.contains(mask) {
                existingShapes.append((shape, tables.tables[mask]!.ruleCount))
            } else {
                newShapes.append(shape)
            }
        }
        // The tables with the most rules first: the masks an ACL's new rules most likely have.
        let existing = existingShapes.sorted { $0.1 > $1.1 }.map(\.0)
        guard !existing.isEmpty, !newShapes.isEmpty else {
            throw BenchError("acl update: \(existing.count) shapes with an existing mask, \(newShapes.count) with a new one")
        }

        // Frames from the ACL's own rules (and some random), each with the rule it ends in.
        progress("acl: drawing frames for \(Kind.allCases.count) x \(sizes.updates) updates...")
        var generator = TraceGenerator(rules: rules, seed: 12)
        var reference = try ReferenceClassifier(rules: rules, device: RuleLines.device)
        var targets: [(frame: [UInt8], fields: Fields, prio: UInt16, verdict: XDPAction)] = []
        let needed = Kind.allCases.count * sizes.updates
        var drawn = 0
        while targets.count < needed {
            drawn += 1
            guard drawn < 20 * needed else { throw BenchError("acl update: too few usable frames in \(drawn)") }
            let frame = generator.frames(count: 1, missShare: Trace.missShare)[0]
            guard let fields = Fields(frame) else { continue }
            let classified = reference.classify(frame, now: 0)
            // Room for a rule before the one it ends in: prio 2 has none.
            guard let first = classified.matchedRules.first, first.prio > 2 else { continue }
            let verdict: XDPAction = classified.verdict == .drop ? .drop : .pass
            targets.append((frame, fields, first.prio, verdict))
        }

        progress("acl: \(needed) adds and deletes in \(rules.count.grouped) rules (\(baseTables) tables)...")
        var latencies = Dictionary(uniqueKeysWithValues: Kind.allCases.map { ($0, Latencies()) })
        for (index, target) in targets.enumerated() {
            let kind = Kind.allCases[index % Kind.allCases.count]
            let turn = index / Kind.allCases.count
            let shape = kind.newMask ? newShapes[turn % newShapes.count] : existing[turn % existing.count]
            // Before the rule the frame ends in: the prio just before it (a new prio), or
            // the rule before it (an existing prio, which does not match the frame).
            let prio = kind.newPrio ? target.prio - 1 : target.prio - 2
            let verdict: XDPAction = target.verdict == .drop ? .pass : .drop
            let rule = try RuleLines.rules([line(target.fields, shape, prio: prio, handle: kind.newPrio ? 1 : 2,
                                                 action: verdict == .drop ? "drop" : "pass")])[0]
            let before = live.datapath.plan.tables?.tables.count ?? 0
            let (added, addTime) = try timedCall { try live.add(rule) }
            let after = live.datapath.plan.tables?.tables.count ?? 0
            try UpdateCases.expect(live, target.frame, verdict)
            let (deleted, deleteTime) = try timedCall {
                try live.delete(RuleSelector(prio: added.rule.prio, handle: added.rule.handle))
            }
            try UpdateCases.expect(live, target.frame, target.verdict)
            guard (after - before == 1) == kind.newMask else {
                throw BenchError("acl update: a rule of shape \(shape) (\(kind.name)) took the tables from \(before) to \(after)")
            }
            latencies[kind]!.adds.append(addTime)
            latencies[kind]!.deletes.append(deleteTime)
            if case .newProgram = added.change { latencies[kind]!.newPrograms += 1 }
            if case .newProgram = deleted.change { latencies[kind]!.newPrograms += 1 }
            latencies[kind]!.tablesAdded += after - before
        }

        var section = Section(
            slug: "acl-update", title: "Updates in a loaded 10,000-rule ACL (library call, attached datapath)",
            method: """
                ClassBench acl1_10000 (\(rules.count.grouped) rules, one prio each, prios 2, 4, 6, ... so that \
                a new prio fits between any two) in `LiveRuleSet`, attached in native mode to a veth \
                (\(veth.name)): \(baseTables) tables. Each update adds a rule, which must then give a trace \
                frame its verdict (BPF_PROG_TEST_RUN through the attached program, untimed), and deletes it \
                again, after which the frame must get its old verdict back: \(sizes.updates) of each kind, the \
                kinds interleaved. The frame is drawn from the set as in acl-classbench (~10% random); the rule \
                is made to match it, before the rule the frame ends in, with the other verdict: in a new prio \
                (the odd prio just before) or in the existing prio of the rule before it (handle 2, a rule \
                that does not match the frame). Its mask is one of the \(existing.count) shapes (prefix \
                lengths in steps of 8, ip_proto, exact ports) whose table the set has, most populated first, \
                or one of the \(newShapes.count) whose table it lacks, which must then add a table. Wall time \
                of each `add` and `delete` call (RuleSet, plan, map writes; a new program only if the change \
                needs one, counted), and the CPU time of the calling thread in it (user and system: \
                CLOCK_THREAD_CPUTIME_ID), which time slices lost to other load on the machine leave out. \
                p50, p99 and max over the calls; the goals are read from the wall times.
                """,
            columns: [Column("update", key: "update", .left), Column("calls", key: "calls"),
                      Column("p50 us", key: "p50_us"), Column("p99 us", key: "p99_us"), Column("max us", key: "max_us"),
                      Column("CPU p50 us", key: "cpu_p50_us"), Column("CPU p99 us", key: "cpu_p99_us"),
                      Column("CPU max us", key: "cpu_max_us"), Column("tables added", key: "tables_added"),
                      Column("new programs", key: "new_programs")])
        func cells(_ calls: [(wall: Double, cpu: Double)]) -> [Cell] {
            let wall = calls.map(\.wall), cpu = calls.map(\.cpu)
            return [.count(calls.count), .number(percentile(wall, 50), digits: 1), .number(percentile(wall, 99), digits: 1),
                    .number(wall.max()!, digits: 1), .number(percentile(cpu, 50), digits: 1),
                    .number(percentile(cpu, 99), digits: 1), .number(cpu.max()!, digits: 1)]
        }
        var all: [(wall: Double, cpu: Double)] = []
        for kind in Kind.allCases {
            let latency = latencies[kind]!
            for (verb, calls) in [("add", latency.adds), ("delete", latency.deletes)] {
                section.append([.text("\(verb), \(kind.name)")] + cells(calls)
                    + [verb == "add" ? .count(latency.tablesAdded) : .text(""),
                       verb == "add" ? .count(latency.newPrograms) : .text("")])
            }
            all += latency.adds + latency.deletes
        }
        let programs = latencies.values.map(\.newPrograms).reduce(0, +)
        section.append([.text("all updates")] + cells(all)
            + [.count(latencies.values.map(\.tablesAdded).reduce(0, +)), .count(programs)])
        let wall = all.map(\.wall)
        section.targets = [
            Target("update in a 10,000-rule ACL (library, add and delete): p50", measured: percentile(wall, 50),
                   .atMost, 100, unit: "us"),
            Target("update in a 10,000-rule ACL (library, add and delete): p99", measured: percentile(wall, 99),
                   .atMost, 1_000, unit: "us"),
        ]
        progress("acl: \(programs) of \(all.count) updates loaded a program")
        return section
    }

    /// The nearest-rank percentile.
    static func percentile(_ values: [Double], _ percent: Double) -> Double {
        let sorted = values.sorted()
        let rank = Int((percent / 100 * Double(sorted.count)).rounded(.up))
        return sorted[max(rank, 1) - 1]
    }
}

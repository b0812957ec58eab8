import BPFKernel
import FlowCompiler
import FlowOffload
import FlowRules
import Foundation

/// Suite "memory": the kernel memory a datapath holds, per flow, per subtable and fixed,
/// as the kernel accounts it for each map and the program (`memlock` in
/// /proc/self/fdinfo/FD, which `bpftool map show` prints as bytes_memlock; for hash
/// maps this kernel reports what the buckets and the elements in use take, so an entry
/// added is memory added).
enum MemoryCases {
    static func sections(_ options: Options) throws -> [Section] {
        // 1 and 500 share a capacity (1,024): the step between them is the element alone.
        let flowCounts = [0, 1, 500, 1_000, 10_000] + (options.quick ? [] : [100_000])
        progress("memory: datapaths of \(flowCounts.map(\.grouped).joined(separator: ", ")) 5-tuple flows...")
        let flows = try flowCounts.map(FlowsMemory.init)
        let subtableCounts = [1, 2, 4, 8, 16]
        progress("memory: \(subtableCounts.map(String.init).joined(separator: ", ")) subtables, direct and hash...")
        let subtables = try SubtableShape.allCases.map { shape in
            (shape, try subtableCounts.map { try SubtablesMemory(shape, count: $0) })
        }
        return [fixedSection(flows[1]), flowSection(flows), subtableSection(subtables)]
    }

    /// What one rule's datapath holds besides its subtable: the shared maps sized by the
    /// rule capacity, and the program.
    static func fixedSection(_ one: FlowsMemory) -> Section {
        var section = Section(
            slug: "memory-fixed", title: "Kernel memory: fixed cost of a device",
            method: """
                A datapath with one exact 5-tuple rule: each map's and the program's `memlock` from \
                /proc/self/fdinfo/FD (what `bpftool map show` calls bytes_memlock). The counters and \
                actions maps are sized by the plan's rule capacity (\(one.plan.ruleCapacity.grouped) rules), \
                not by the rules present; the counters are per CPU (\(Map.possibleCPUs) possible CPUs here).
                """,
            columns: [Column("part", key: "part", .left), Column("map type", key: "type", .left),
                      Column("entries", key: "max_entries"), Column("value bytes", key: "value_size"),
                      Column("bytes", key: "bytes")])
        for map in one.maps where map.isShared {
            section.append([.text(map.name), .text("\(map.spec.type)"), .count(map.spec.maxEntries),
                            .count(map.spec.valueSize), .count(map.bytes)])
        }
        section.append([.text("program"), .text("xdp"), .absent(""), .absent(""), .count(one.programBytes)])
        let fixed = one.maps.filter(\.isShared).reduce(one.programBytes) { $0 + $1.bytes }
        section.append([.text("fixed total"), .absent(""), .absent(""), .absent(""), .count(fixed)])
        return section
    }

    static func flowSection(_ flows: [FlowsMemory]) -> Section {
        var section = Section(
            slug: "memory-flows", title: "Kernel memory per flow (exact IPv4/UDP 5-tuples, one subtable)",
            method: """
                Datapaths (FlowOffload.Datapath, as the runtime loads them) with N exact 5-tuple drop rules in \
                one prio: one hash subtable (12-byte key, \(SubtableValue.byteCount)-byte value, BPF_F_NO_PREALLOC) \
                with room for at least twice its entries (at least 1,024, a power of two). Bytes are the \
                subtable map's `memlock`; the step is the growth from the previous row over the flows added: \
                between rows of one capacity (1 and 500 flows) that is an element alone, across a larger \
                capacity it includes the new buckets; the last but one column is the map over its flows. \
                The last column is \
                every map and the program; with more rules than the default rule capacity (65,536) the \
                plan's capacity is raised to the next power of two, which grows the counters and actions \
                maps too.
                """,
            columns: [Column("flows", key: "flows"), Column("capacity", key: "capacity"),
                      Column("subtable bytes", key: "subtable_bytes"), Column("bytes/flow (step)", key: "bytes_per_flow_step"),
                      Column("subtable bytes/flow", key: "subtable_bytes_per_flow"),
                      Column("all maps + program", key: "total_bytes")])
        var previous: FlowsMemory?
        for flow in flows {
            // From no subtable to one flow is the empty subtable itself: no step.
            let step = previous.flatMap { $0.flows == 0 ? nil
                : Double(flow.subtableBytes - $0.subtableBytes) / Double(flow.flows - $0.flows) }
            section.append([.count(flow.flows), .count(flow.capacity), .count(flow.subtableBytes),
                            step.map { .number($0, digits: 1) } ?? .absent(""),
                            flow.flows == 0 ? .absent("") : .number(Double(flow.subtableBytes) / Double(flow.flows), digits: 1),
                            .count(flow.totalBytes)])
            previous = flow
        }
        return section
    }

    static func subtableSection(_ shapes: [(SubtableShape, [SubtablesMemory])]) -> Section {
        var section = Section(
            slug: "memory-subtables", title: "Kernel memory per subtable",
            method: """
                Datapaths with K prios of one rule each, so K subtables of one entry: \
                \(SubtableShape.allCases.map { "\($0.rawValue): `\($0.example)`" }.joined(separator: "; ")). \
                Bytes are the sum of the subtable maps' `memlock`; per subtable is the slope of a \
                least-squares line over K (one entry each, so it is the cost of an all but empty subtable). \
                From two hash subtables on, the plan may add a prefilter, an array of \
                \(Prefilter.entries.grouped) u64 bit sets: its bytes are the last column, at K=16.
                """,
            columns: [Column("subtable kind", key: "kind", .left)]
                + [1, 2, 4, 8, 16].map { Column("K=\($0) bytes", key: "bytes_k\($0)") }
                + [Column("bytes/subtable", key: "bytes_per_subtable"), Column("prefilter bytes", key: "prefilter_bytes")])
        for (shape, counts) in shapes {
            let slope = leastSquaresSlope(counts.map { (Double($0.count), Double($0.subtableBytes)) })
            section.append([.text(shape.rawValue)] + counts.map { .count($0.subtableBytes) }
                           + [.count(Int(slope.rounded())), .count(counts.last!.prefilterBytes)])
        }
        return section
    }

    static func leastSquaresSlope(_ points: [(x: Double, y: Double)]) -> Double {
        let n = Double(points.count)
        let meanX = points.map(\.x).reduce(0, +) / n, meanY = points.map(\.y).reduce(0, +) / n
        let covariance = points.map { ($0.x - meanX) * ($0.y - meanY) }.reduce(0, +)
        let variance = points.map { ($0.x - meanX) * ($0.x - meanX) }.reduce(0, +)
        return covariance / variance
    }
}

/// A map of a loaded datapath and the memory the kernel accounts for it.
struct MapMemory {
    var name: String
    var spec: MapSpec
    var bytes: Int

    /// A map every datapath with rules has, whatever their shape (counters, actions).
    var isShared: Bool { !name.hasPrefix("xf_st_") && !name.hasPrefix("xf_pf_") }
}

extension Datapath {
    var mapMemory: [MapMemory] {
        get throws {
            try maps.values.sorted { $0.name < $1.name }.map { map in
                MapMemory(name: map.name, spec: map.spec, bytes: try memlock(of: map.descriptor.rawValue))
            }
        }
    }
}

/// The `memlock` line of /proc/self/fdinfo/FD: the bytes the kernel charges a BPF map or program.
func memlock(of fd: Int32) throws -> Int {
    let text = try String(contentsOfFile: "/proc/self/fdinfo/\(fd)", encoding: .utf8)
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("memlock:") }),
          let bytes = Int(line.dropFirst("memlock:".count).trimmingCharacters(in: .whitespaces))
    else { throw BenchError("/proc/self/fdinfo/\(fd) has no memlock line") }
    return bytes
}

/// A datapath of `flows` exact 5-tuples in one prio, measured and closed.
struct FlowsMemory {
    var flows: Int
    var plan: Plan
    var maps: [MapMemory]
    var programBytes: Int

    init(flows: Int) throws {
        var capacity = Plan.defaultRuleCapacity
        while capacity < flows { capacity *= 2 }
        let plan = try Plan(RuleSet(RuleLines.rules(RuleLines.fiveTuples(flows))), device: RuleLines.device,
                            ruleCapacity: capacity)
        guard plan.subtables.count == min(flows, 1) else { throw BenchError("\(flows) 5-tuples planned \(plan.subtables.count) subtables") }
        let datapath = try Datapath(plan: plan, options: CompileOptions(), targetIndex: { _ in 1 })
        self.flows = flows
        self.plan = plan
        maps = try datapath.mapMemory
        programBytes = try memlock(of: datapath.program!.descriptor.rawValue)
    }

    /// None without flows.
    var subtable: MapMemory? { maps.first { $0.name.hasPrefix("xf_st_") } }
    var subtableBytes: Int { subtable?.bytes ?? 0 }
    var capacity: Int { subtable?.spec.maxEntries ?? 0 }
    var totalBytes: Int { maps.reduce(programBytes) { $0 + $1.bytes } }
}

/// The kinds of subtable storage, each with a rule whose key selects it.
enum SubtableShape: String, CaseIterable {
    case direct2 = "direct array, 2-byte key (dst_port)"
    case direct1 = "direct array, 1-byte key (ip_tos)"
    case hash = "hash, 4-byte key (dst_ip)"

    var example: String { line(device: "DEV", prio: 1) }

    /// The rule of prio `prio`: the same shape in every prio, so one subtable each.
    func line(device: String, prio: Int) -> String {
        let match = switch self {
        case .direct2: "ip_proto udp dst_port \(1000 + prio)"
        case .direct1: "ip_tos \(prio)"
        case .hash: "dst_ip 10.0.0.\(prio)"
        }
        return "filter add dev \(device) prio \(prio) protocol ip flower \(match) action drop"
    }
}

/// A datapath of `count` subtables of one shape, one entry each.
struct SubtablesMemory {
    var count: Int
    var subtableBytes: Int
    var prefilterBytes: Int

    init(_ shape: SubtableShape, count: Int) throws {
        let lines = (1 ... count).map { shape.line(device: RuleLines.device, prio: $0) }
        let plan = try Plan(RuleSet(RuleLines.rules(lines)), device: RuleLines.device)
        let subtables = plan.subtables
        let expectDirect = shape != .hash
        guard subtables.count == count,
              subtables.allSatisfy({ ($0.storage == .direct) == expectDirect })
        else { throw BenchError("\(shape.rawValue): \(count) rules planned \(subtables.map(\.storage))") }
        let datapath = try Datapath(plan: plan, options: CompileOptions(), targetIndex: { _ in 1 })
        self.count = count
        let maps = try datapath.mapMemory
        subtableBytes = maps.filter { $0.name.hasPrefix("xf_st_") }.reduce(0) { $0 + $1.bytes }
        prefilterBytes = maps.filter { $0.name == plan.prefilter?.mapName }.reduce(0) { $0 + $1.bytes }
    }
}

import BPFAssembly
import BPFKernel
import CLibBPF
import FlowCompiler
import FlowRules

/// A plan in the kernel: its maps created (or reused) and filled, and its program
/// loaded through the verifier. Attaching it is the runtime's business; a datapath can
/// also run frames through BPF_PROG_TEST_RUN without any device.
public final class Datapath {
    public let plan: Plan
    public let options: CompileOptions
    public let instructions: [Instruction]
    public let program: Program
    /// By name: the shared maps (FlowMaps) and one per subtable.
    public let maps: [String: BPFKernel.Map]

    /// `targetIndex` gives the ifindex a redirect target device has; `reuse` holds maps
    /// to keep (same name and spec), so that a new program shares their entries.
    public init(plan: Plan, options: CompileOptions = CompileOptions(),
                targetIndex: (String) throws(BPFError) -> UInt32,
                reuse: [String: BPFKernel.Map] = [:]) throws(OffloadError) {
        self.plan = plan
        self.options = options
        do {
            instructions = try CodeGenerator.generate(plan, options: options)
        } catch {
            throw .assembly(error)
        }
        var maps: [String: BPFKernel.Map] = [:]
        do {
            var specs = Self.mapSpecs(for: plan)
            if options.recordMatches {
                specs.append(MapSpec(name: FlowMaps.trace, type: .array, keySize: 4, valueSize: TraceLog.size, maxEntries: 1))
            }
            for spec in specs {
                if let kept = reuse[spec.name], kept.spec == spec {
                    maps[spec.name] = kept
                } else {
                    maps[spec.name] = try BPFKernel.Map(spec)
                }
            }
            self.maps = maps
            try Self.fill(maps, from: plan, targetIndex: targetIndex)
            program = try Program.loadXDP(name: "xdpflow", instructions: instructions, maps: maps)
        } catch {
            throw .kernel(error)
        }
    }

    /// The maps a plan's program uses.
    public static func mapSpecs(for plan: Plan) -> [MapSpec] {
        var specs = [MapSpec(name: FlowMaps.counters, type: .perCPUArray, keySize: 4, valueSize: RuleCounters.size,
                             maxEntries: plan.ruleCapacity + Int(RuleSlots.firstRule))]
        guard !plan.subtables.isEmpty else { return specs }
        specs.append(MapSpec(name: FlowMaps.actions, type: .array, keySize: 4, valueSize: ActionProgram.size,
                             maxEntries: plan.ruleCapacity))
        if plan.stepKinds.contains(.redirect) {
            specs.append(MapSpec(name: FlowMaps.redirect, type: .devmap, keySize: 4, valueSize: 4,
                                 maxEntries: Plan.maxRedirectTargets))
        }
        if plan.stepKinds.contains(.police) {
            specs.append(MapSpec(name: FlowMaps.policers, type: .array, keySize: 4, valueSize: PolicerConfig.size,
                                 maxEntries: max(plan.policers.count, 1024)))
        }
        for subtable in plan.subtables {
            switch subtable.storage {
            case .direct:
                specs.append(MapSpec(name: subtable.mapName, type: .array, keySize: 4, valueSize: SubtableValue.size,
                                     maxEntries: 1 << (8 * subtable.keySize)))
            case .hash(let capacity):
                specs.append(MapSpec(name: subtable.mapName, type: .hash, keySize: subtable.keySize,
                                     valueSize: SubtableValue.size, maxEntries: capacity,
                                     flags: UInt32(BPF_F_NO_PREALLOC)))
            }
        }
        return specs
    }

    /// Writes every entry the plan holds.
    static func fill(_ maps: [String: BPFKernel.Map], from plan: Plan,
                     targetIndex: (String) throws(BPFError) -> UInt32) throws(BPFError) {
        if let actions = maps[FlowMaps.actions] {
            try actions.updateBatch(plan.actions.enumerated().map { (UInt32($0.offset).bytes, $0.element.bytes) })
        }
        if let redirect = maps[FlowMaps.redirect] {
            for (index, name) in plan.redirectTargets.enumerated() {
                try redirect.update(UInt32(index).bytes, try targetIndex(name).bytes)
            }
        }
        if let policers = maps[FlowMaps.policers] {
            try policers.updateBatch(plan.policers.enumerated().map { (UInt32($0.offset).bytes, $0.element.bytes) })
        }
        for subtable in plan.subtables {
            guard let map = maps[subtable.mapName] else { continue }
            try map.updateBatch(subtable.entries.map { key, value in (Self.mapKey(key, in: subtable), value.bytes) })
        }
    }

    /// The map key of a subtable entry: the key bytes, or for a direct subtable the
    /// array index they spell (big-endian).
    public static func mapKey(_ key: [UInt8], in subtable: Subtable) -> [UInt8] {
        switch subtable.storage {
        case .hash: key
        case .direct: key.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }.bytes
        }
    }

    /// Per-rule counters summed over CPUs, by slot.
    public func counters() throws(BPFError) -> [UInt32: RuleStatistics] {
        guard let map = maps[FlowMaps.counters] else { return [:] }
        var result: [UInt32: RuleStatistics] = [:]
        let slots = [RuleSlots.miss, RuleSlots.unparsed] + plan.slots.slots.values
        for slot in slots {
            guard let perCPU = try map.lookupPerCPU(slot.bytes) else { continue }
            result[slot] = RuleStatistics(perCPU: perCPU)
        }
        return result
    }
}

/// A rule's counters, summed over CPUs; `lastHit` is the latest CPU's.
public struct RuleStatistics: Hashable, Sendable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    /// CLOCK_MONOTONIC nanoseconds; 0 if never hit.
    public var lastHit: UInt64 = 0

    public init() {}

    init(perCPU: [[UInt8]]) {
        for value in perCPU {
            packets &+= value.littleEndian(at: Int(RuleCounters.packetsOffset))
            bytes &+= value.littleEndian(at: Int(RuleCounters.bytesOffset))
            lastHit = max(lastHit, value.littleEndian(at: Int(RuleCounters.lastHitOffset)))
        }
    }
}

public enum OffloadError: Error, CustomStringConvertible {
    case compile(CompileError)
    case assembly(AssemblyError)
    case kernel(BPFError)

    public var description: String {
        switch self {
        case .compile(let error): "\(error)"
        case .assembly(let error): "internal error: the generated program does not assemble: \(error)"
        case .kernel(let error): "\(error)"
        }
    }
}

extension UInt32 {
    var bytes: [UInt8] { (0 ..< 4).map { UInt8(truncatingIfNeeded: self >> ($0 * 8)) } }
}

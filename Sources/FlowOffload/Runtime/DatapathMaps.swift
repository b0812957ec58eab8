import BPFKernel
import FlowCompiler

/// The maps of a datapath whose key and value types are fixed, each opened once as its
/// typed view (map type and sizes checked then), so writes and reads go through the
/// values' codec. Subtable maps are not here: their key size is the subtable's, known
/// only at run time, so they stay raw `Map`s (their values are `SubtableValue`s).
struct DatapathMaps {
    /// `FlowMaps.counters`: u32 slot -> one `RuleCounters` per CPU.
    var counters: PerCPUArray<RuleCounters>?
    /// `FlowMaps.actions`: u32 action index -> `ActionProgram`.
    var actions: ArrayMap<ActionProgram>?
    /// `FlowMaps.redirect`: a devmap, u32 key -> ifindex.
    var redirect: ArrayMap<UInt32>?
    /// `FlowMaps.broadcast(group)` by name: devmaps, u32 index -> ifindex.
    var broadcast: [String: ArrayMap<UInt32>] = [:]
    /// `FlowMaps.policers`: u32 index -> `PolicerBucket`.
    var policers: ArrayMap<PolicerBucket>?
    /// The prefilter's map by name: u16 (as u32) -> u64 bit set.
    var prefilters: [String: ArrayMap<UInt64>] = [:]
    /// `FlowMaps.trace`: one `TraceLog`, in programs compiled to record matches.
    var trace: ArrayMap<TraceLog>?

    init() {}

    /// Views the maps in `maps` that `plan` gives fixed types; refused (a `BPFError`
    /// naming the map) when one does not have the type and sizes its view needs.
    init(_ maps: [String: BPFKernel.Map], plan: Plan) throws(BPFError) {
        func view<View>(_ name: String, _ make: (BPFKernel.Map) throws(BPFError) -> View) throws(BPFError) -> View? {
            guard let map = maps[name] else { return nil }
            return try make(map)
        }
        counters = try view(FlowMaps.counters) { map throws(BPFError) in try PerCPUArray(map) }
        actions = try view(FlowMaps.actions) { map throws(BPFError) in try ArrayMap(map) }
        redirect = try view(FlowMaps.redirect) { map throws(BPFError) in try ArrayMap(map) }
        policers = try view(FlowMaps.policers) { map throws(BPFError) in try ArrayMap(map) }
        trace = try view(FlowMaps.trace) { map throws(BPFError) in try ArrayMap(map) }
        for group in plan.broadcastIndex.indexes.values {
            let name = FlowMaps.broadcast(group)
            broadcast[name] = try view(name) { map throws(BPFError) in try ArrayMap(map) }
        }
        if let name = plan.prefilter?.mapName {
            prefilters[name] = try view(name) { map throws(BPFError) in try ArrayMap(map) }
        }
    }
}

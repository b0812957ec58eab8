import BPFAssembly
import FlowRules
import Packets

/// The maps every program uses besides its subtables, by name.
public enum FlowMaps {
    /// Per-CPU array, u32 slot -> `RuleCounters` (slots 0 and 1: miss and unparsed).
    public static let counters = "xf_counters"
    /// Array, u32 action index -> `ActionProgram`.
    public static let actions = "xf_actions"
    /// Devmap, u32 key -> ifindex of a redirect target.
    public static let redirect = "xf_redirect"
    /// Array, u32 index -> `PolicerBucket`.
    public static let policers = "xf_policers"
    /// Array of one `TraceLog`, in programs compiled to record matches.
    public static let trace = "xf_trace"
    /// Devmap of one broadcast group's devices (mirrors and their redirect).
    public static func broadcast(_ index: UInt32) -> String { "xf_bcast_\(index)" }
    /// The table classifier's maps (`TupleTables`). Array, u32 position -> `TableEntry`:
    /// the tables list, two halves of `tableCapacity` entries, then at 2 x
    /// `tableCapacity` the `TableListHead` (in the same map: a new list is a new head),
    /// then the filtered tables' entries, 64 for each filter word.
    public static let tables = "xf_tables"
    /// Hash, table index and fingerprint of the masked words -> the first slot of the
    /// bucket's chain.
    public static let buckets = "xf_buckets"
    /// Array, u32 slot -> `RuleCheck`.
    public static let rules = "xf_rules"
    /// Array, u32 `TableFilter` key -> table bits, `TupleTables.filterWords` u64s.
    public static let tableFilter = "xf_table_filter"
    public static let tableMaps: Set<String> = [tables, buckets, rules, tableFilter]
    /// XSKMAP, u32 receive queue -> AF_XDP socket, for `xsk` actions; the sockets'
    /// owners write it, never the plan.
    public static let xsks = "xf_xsks"
    /// Per-CPU array of one `RuleCounters`: frames an `xsk` action found no socket for.
    public static let xskUnbound = "xf_xsk_unbound"
    /// Entries of `xsks`: receive queues 0-63 (a frame on a queue past them finds no socket).
    public static let xskQueues = 64
}

/// What a program compiled with `recordMatches` writes for each frame: the counter
/// slots it counted, in order (rules, or the miss and unparsed slots).
///
///     0 count (u32)   4 slots (capacity x u32)
public struct TraceLog: Hashable, Sendable, MapCodable {
    /// Room for every slot a frame can be counted in: one rule per prio (continue moves
    /// on to the next prio; there are at most `Plan.maxSubtables` prios), then a miss.
    public static let capacity = 64
    public static let byteCount = 4 + 4 * capacity

    /// At most `capacity`: the program stops logging when the log is full.
    public var slots: [UInt32]

    public init(slots: [UInt32] = []) {
        self.slots = slots
    }

    public func encode(into writer: inout ByteWriter) {
        writer.write(UInt32(slots.count))
        for slot in slots.prefix(Self.capacity) { writer.write(slot) }
        writer.writeZeros(4 * (Self.capacity - min(slots.count, Self.capacity)))
    }

    public init(from reader: inout ByteReader) throws(ByteDecodingError) {
        let count = Int(try reader.read(UInt32.self))
        var slots: [UInt32] = []
        for _ in 0 ..< Self.capacity { slots.append(try reader.read()) }
        self.slots = Array(slots.prefix(count))
    }
}

/// One rule's per-CPU counters: packets, bytes, last hit (jiffies: `bpf_jiffies64` is
/// inlined by the verifier, where `bpf_ktime_get_ns` would cost tens of ns a packet).
public struct RuleCounters: Hashable, Sendable, MapCodable {
    public var packets: UInt64
    public var bytes: UInt64
    public var lastHit: UInt64
    /// Frames the rule's actions dropped (the `dropped` of tc's action statistics).
    public var dropped: UInt64

    public init(packets: UInt64 = 0, bytes: UInt64 = 0, lastHit: UInt64 = 0, dropped: UInt64 = 0) {
        self.packets = packets
        self.bytes = bytes
        self.lastHit = lastHit
        self.dropped = dropped
    }

    public static let byteCount = 32
    public static let packetsOffset: Int16 = 0, bytesOffset: Int16 = 8, lastHitOffset: Int16 = 16, droppedOffset: Int16 = 24

    public func encode(into writer: inout ByteWriter) {
        writer.write(packets)
        writer.write(bytes)
        writer.write(lastHit)
        writer.write(dropped)
    }

    public init(from reader: inout ByteReader) throws(ByteDecodingError) {
        packets = try reader.read()
        bytes = try reader.read()
        lastHit = try reader.read()
        dropped = try reader.read()
    }
}

/// Options that change the program but not the rules.
public struct CompileOptions: Hashable, Sendable {
    /// What a frame the program cannot classify with certainty gets: pass (the default)
    /// or drop.
    public var unparsedVerdict: XDPAction = .pass
    /// Log every counted slot in `FlowMaps.trace` (for `trace`; never attached).
    public var recordMatches = false
    /// What the program writes in the metadata area (`FlowMetadata`).
    public var metadata: FlowMetadata.Layout = .mark

    public init(unparsedVerdict: XDPAction = .pass, recordMatches: Bool = false,
                metadata: FlowMetadata.Layout = .mark) {
        self.unparsedVerdict = unparsedVerdict
        self.recordMatches = recordMatches
        self.metadata = metadata
    }
}

/// Turns a plan into an XDP program: parse the headers the plan needs into a key record,
/// look the subtables up in priority order, run the winning rule's actions.
public struct CodeGenerator {
    /// Returned by the `hit` function for `continue`: classification goes on.
    static let continueClassification: Int32 = 0x100
    /// BPF_F_BROADCAST: bpf_redirect_map sends to every device of the map.
    static let broadcastFlag: Int32 = 1 << 3

    // Main's stack frame, its slots in the order the program first writes them: the
    // verifier copies a state's stack down to its deepest slot written, and the parser,
    // where most states branch off, runs before the keys are built.
    /// The context, while an inlined parser has r6.
    static let context: Int16 = -8
    static let length: Int16 = -16
    static let scratch: Int16 = -24
    /// The action index of the best entry in a prio looked up in several subtables.
    static let bestAction: Int16 = -28
    static let record: Int16 = -136
    static let key: Int16 = -240
    /// The prefilter's bits for the frame, the subtables worth a lookup, while main looks
    /// them up (hit and parse save it or are done with the frame).
    static let prefilterBits = Register.r7
    // Main's stack frame with tables, past the slots above: the search's state lives on
    // the stack, where the calls in the loop leave it.
    /// A bucket's place in the heads array.
    static let tableKey: Int16 = -352
    static let tablePosition: Int16 = -360
    static let tableCount: Int16 = -368
    /// The first position of the current half of the tables list.
    static let tableBase: Int16 = -376
    /// The slot of the next rule of a bucket's chain to check; 0: probe the next table.
    static let candidate: Int16 = -384
    static let bestRank: Int16 = -392
    static let bestSlot: Int16 = -400
    /// In `hit`'s own frame: the deciding rule's rank, for the rule metadata.
    static let hitRank: Int16 = -32
    /// Ranks below it were decided before a `continue`.
    static let floorRank: Int16 = -408
    /// The filtered tables of the current filter word still to visit, that word, and the
    /// words after it, each moved down one as the search moves to the next: a fixed
    /// offset for each (a variable one needs root). In the room of a subtable's key,
    /// which a plan in tables has no use for (the combined stack of main and its calls
    /// has 512 bytes).
    static let candidates: Int16 = key
    static let candidateWord: Int16 = key + 8
    static func laterWord(_ word: Int) -> Int16 { key + 8 + Int16(8 * word) }
    /// The head's address and the address of each dimension's filter value, from the
    /// search's start, for the filter words.
    static let headAddress: Int16 = tableKey + 8
    static func filterAddress(_ position: Int) -> Int16 { tableKey + 16 + Int16(8 * position) }

    let plan: Plan
    let options: CompileOptions
    var asm = Assembler()
    /// Prefilter lookups emitted so far (one per parse), for their labels.
    var filterLookups = 0
    /// Without `continue` the frame is parsed once and a hit ends the program, so parse
    /// and hit are inlined into main: with the kernel's return thunks (SRSO) a
    /// BPF-to-BPF call costs ~8 ns. With `continue` they are functions, called again.
    var inline: Bool { !plan.usesContinue }

    public static func generate(_ plan: Plan, options: CompileOptions = CompileOptions()) throws(AssemblyError)
        -> [Instruction] {
        try listing(plan, options: options).instructions
    }

    /// The program with its labels, for a disassembly that shows them.
    public static func listing(_ plan: Plan, options: CompileOptions = CompileOptions()) throws(AssemblyError)
        -> (instructions: [Instruction], labels: [Label: Int]) {
        var generator = CodeGenerator(plan: plan, options: options)
        generator.main()
        if !generator.inline { generator.parseFunction() }
        if plan.classifies { generator.hitFunction() }
        if options.recordMatches { generator.logFunction() }
        return (try generator.asm.assemble(), generator.asm.labels)
    }

    // MARK: - main

    private mutating func main() {
        asm.emit(.mov(.r6, .r1))
        // The received length, for counters and police.
        asm.emit([.load(.r2, .word, from: .r6, XDPContext.data), .load(.r3, .word, from: .r6, XDPContext.dataEnd),
                  .alu(.sub, .r3, .r2), .store(.double, to: .fp, Self.length, .r3)])
        if inline {
            asm.emit([.store(.double, to: .fp, Self.context, .r6), .mov(.r1, .r6), .mov(.r2, .fp),
                      .alu(.add, .r2, Int32(Self.record))])
            parseFunction()
            filterSubtables()
        } else {
            if plan.tables != nil { classificationLoop() }
            callParse()
        }
        if let tables = plan.tables {
            search(tables)
        } else {
            lookUp(Array(plan.prioGroups.enumerated())[...])
        }
        asm.emit(.store(.word, to: .fp, Self.scratch, Int32(RuleSlots.miss)))
        count(slotAt: Self.scratch, lengthAt: Self.length, using: .r7, done: "miss_counted")
        asm.emit(Instruction.return(XDPAction.pass))
        // A parser that reads no layer a dissection failure can hide never gives up.
        guard isReferenced("unparsed") else { return }
        asm.label("unparsed")
        asm.emit(.store(.word, to: .fp, Self.scratch, Int32(RuleSlots.unparsed)))
        count(slotAt: Self.scratch, lengthAt: Self.length, using: .r7, done: "unparsed_counted")
        asm.emit(Instruction.return(options.unparsedVerdict))
    }

    /// With tables, `continue` starts classification again from here, parse included:
    /// one call of `parse`, at the head of a loop whose later turns the verifier finds
    /// within the first (they differ from it only in slots the first has not written,
    /// and in the floor rank, unknown from the start) and so prunes. A second call site
    /// inside the search loop made it verify every way through the parser once per
    /// state the search could be in, past its million instructions with IPv6
    /// extension headers.
    private mutating func classificationLoop() {
        unknownZero()
        storeZero(at: Self.floorRank)
        asm.label("classify")
        asm.emit(.mayGoto("search_budget"))
    }

    private mutating func callParse() {
        asm.emit([.mov(.r1, .r6), .mov(.r2, .fp), .alu(.add, .r2, Int32(Self.record)), .call(Label("parse")),
                  .jump(.notEqual, .r0, 0, to: "unparsed")])
        filterSubtables()
    }

    /// Looks the parsed record up in the prefilter: its bits name the subtables worth a
    /// lookup (all of them, should the lookup fail).
    private mutating func filterSubtables() {
        guard let prefilter = plan.prefilter else { return }
        let label = Label("filtered_\(filterLookups)")
        filterLookups += 1
        asm.emit([.load(.r1, .half, from: .fp, Self.record + Int16(prefilter.offset)),
                  .store(.word, to: .fp, Self.scratch, .r1), .loadMap(.r1, prefilter.mapName), .mov(.r2, .fp),
                  .alu(.add, .r2, Int32(Self.scratch)), .call(.mapLookupElem), .mov(.r1, -1),
                  .jump(.equal, .r0, 0, to: label), .load(.r1, .double, from: .r0, 0)])
        asm.label(label)
        asm.emit(.mov(Self.prefilterBits, .r1))
    }

    /// Adds a frame of the length at fp+`length` to the counters of the slot at fp+`slot`
    /// (per CPU: packets, bytes, last hit) in `map`, `FlowMaps.counters` unless told;
    /// with `kept`, leaves the counters' address at fp+`kept`. Clobbers r0-r5 and
    /// `pointer`. A rule's slot (in `FlowMaps.counters`) is logged for `trace`.
    private mutating func count(in map: String = FlowMaps.counters, slotAt slot: Int16, lengthAt length: Int16,
                                using pointer: Register, done: Label, keepingAt kept: Int16? = nil) {
        asm.emit([.loadMap(.r1, map), .mov(.r2, .fp), .alu(.add, .r2, Int32(slot)), .call(.mapLookupElem),
                  .jump(.equal, .r0, 0, to: done), .mov(pointer, .r0)])
        if let kept { asm.emit(.store(.double, to: .fp, kept, pointer)) }
        asm.emit([.load(.r1, .double, from: pointer, RuleCounters.packetsOffset), .alu(.add, .r1, 1),
                  .store(.double, to: pointer, RuleCounters.packetsOffset, .r1),
                  .load(.r1, .double, from: pointer, RuleCounters.bytesOffset), .load(.r2, .double, from: .fp, length),
                  .alu(.add, .r1, .r2), .store(.double, to: pointer, RuleCounters.bytesOffset, .r1),
                  .call(.jiffies64), .store(.double, to: pointer, RuleCounters.lastHitOffset, .r0)])
        if options.recordMatches && map == FlowMaps.counters {
            asm.emit([.load(.r2, .word, from: .fp, slot), .call(Label("log"))])
        }
        asm.label(done)
    }

    /// Prio groups in order. A run of groups whose every subtable the prefilter covers is
    /// searched by halves: a half without a bit for the frame is skipped with one test,
    /// so a hit in the last of 16 groups takes 8 tests, not 16.
    private mutating func lookUp(_ groups: ArraySlice<(offset: Int, element: [Subtable])>) {
        var run: [(offset: Int, element: [Subtable])] = []
        for group in groups {
            if filterBits(group.element) != nil {
                run.append(group)
                continue
            }
            descend(run[...])
            run = []
            lookUp(group.element, index: group.offset)
        }
        descend(run[...])
    }

    private mutating func descend(_ run: ArraySlice<(offset: Int, element: [Subtable])>) {
        guard run.count > 1 else {
            if let group = run.first { lookUp(group.element, index: group.offset) }
            return
        }
        let bits = run.reduce(UInt64(0)) { $0 | filterBits($1.element)! }
        let inside = Label("groups_\(run.first!.offset)_\(run.last!.offset)")
        let end = Label("groups_end_\(run.first!.offset)_\(run.last!.offset)")
        jump(ifAny: bits, to: inside)
        asm.emit(.jump(to: end))
        asm.label(inside)
        let middle = run.startIndex + run.count / 2
        descend(run[..<middle])
        descend(run[middle...])
        asm.label(end)
    }

    /// The prefilter bits of a group, when it covers every subtable of it.
    private func filterBits(_ group: [Subtable]) -> UInt64? {
        guard let prefilter = plan.prefilter else { return nil }
        return group.reduce(UInt64(0)) { bits, subtable in
            guard let bits, let bit = prefilter.bits[subtable.mapName] else { return nil }
            return bits | UInt64(1) << bit
        }
    }

    /// Jumps when the frame's prefilter bits include one of `bits`. Jump immediates are
    /// sign-extended: masks reaching bit 31 need a register.
    private mutating func jump(ifAny bits: UInt64, to label: Label) {
        if bits < 1 << 31 {
            asm.emit(.jump(.bitsSet, Self.prefilterBits, Int32(bits), to: label))
        } else {
            asm.emit([.loadImmediate(.r1, Int64(bitPattern: bits)), .jump(.bitsSet, Self.prefilterBits, .r1, to: label)])
        }
    }

    /// One prio: every subtable is looked up; the entry with the lowest handle wins (one
    /// subtable: its hit wins at once). r8 = winning value, r9 = its handle.
    private mutating func lookUp(_ group: [Subtable], index: Int) {
        let hit = Label("hit_\(index)"), end = Label("group_end_\(index)")
        let single = group.count == 1
        if !single { asm.emit([.mov(.r8, 0), .mov(.r9, -1, .bits32)]) }
        for (position, subtable) in group.enumerated() {
            let next = Label("next_\(index)_\(position)")
            if let bit = plan.prefilter?.bits[subtable.mapName] {
                let look = Label("look_\(index)_\(position)")
                jump(ifAny: UInt64(1) << bit, to: look)
                asm.emit(.jump(to: next))
                asm.label(look)
            }
            let presence = Int32(bitPattern: subtable.presence.rawValue)
            if presence != 0 {
                asm.emit([.load(.r1, .word, from: .fp, Self.record + Int16(KeyField.presenceOffset)),
                          .alu(.and, .r1, presence), .jump(.notEqual, .r1, presence, to: next)])
            }
            for (field, value) in subtable.guards.sorted(by: { $0.key < $1.key }) {
                // The record holds network order; a load sees the bytes little-endian.
                let expected = value.enumerated().reduce(Int32(0)) { $0 | Int32($1.element) << ($1.offset * 8) }
                asm.emit([.load(.r1, Size(bytes: field.width)!, from: .fp, Self.record + Int16(field.offset)),
                          .jump(.notEqual, .r1, expected, to: next)])
            }
            switch subtable.storage {
            case .direct:
                directIndex(subtable.mask.keyBytes)
                asm.emit([.store(.word, to: .fp, Self.scratch, .r1), .loadMap(.r1, subtable.mapName),
                          .mov(.r2, .fp), .alu(.add, .r2, Int32(Self.scratch)), .call(.mapLookupElem),
                          .jump(.equal, .r0, 0, to: next),
                          .load(.r1, .word, from: .r0, Int16(SubtableValue.slotOffset)),
                          .jump(.equal, .r1, 0, to: next)])
            case .hash:
                buildKey(subtable.mask.keyBytes)
                asm.emit([.loadMap(.r1, subtable.mapName), .mov(.r2, .fp), .alu(.add, .r2, Int32(Self.key)),
                          .call(.mapLookupElem), .jump(.equal, .r0, 0, to: next)])
            }
            if single {
                if options.metadata == .rule {
                    asm.emit(.load(.r9, .word, from: .r0, Int16(SubtableValue.handleOffset)))
                }
                asm.emit([.load(.r8, .word, from: .r0, Int16(SubtableValue.slotOffset)),
                          .load(.r3, .word, from: .r0, Int16(SubtableValue.actionOffset)), .jump(to: hit)])
            } else {
                // The best entry so far as scalars (slot in r8, handle in r9, action on the
                // stack), not as a pointer into one of the maps: states that differ only in
                // which entry won then look alike to the verifier, which prunes them.
                asm.emit([.load(.r1, .word, from: .r0, Int16(SubtableValue.handleOffset)),
                          .jump(.greaterOrEqual, .r1, .r9, to: next), .mov(.r9, .r1),
                          .load(.r8, .word, from: .r0, Int16(SubtableValue.slotOffset)),
                          .load(.r1, .word, from: .r0, Int16(SubtableValue.actionOffset)),
                          .store(.word, to: .fp, Self.bestAction, .r1)])
            }
            asm.label(next)
        }
        if single {
            asm.emit(.jump(to: end))
        } else {
            // Slot 0 (the miss counter) is no rule's.
            asm.emit([.jump(.equal, .r8, 0, to: end), .load(.r3, .word, from: .fp, Self.bestAction)])
        }
        asm.label(hit)
        if options.metadata == .rule {
            // The rank `hit` names in the metadata: the prio's, and the handle in r9.
            asm.emit([.loadImmediate(.r5, Int64(group[0].prio) << 32), .alu(.or, .r5, .r9)])
        }
        asm.emit([.mov(.r1, .r6), .mov(.r2, .r8), .load(.r4, .double, from: .fp, Self.length)])
        if inline {
            asm.emit(.jump(to: "hit"))
        } else {
            asm.emit([.call(Label("hit")),
                      .jump(.equal, .r0, Self.continueClassification, to: Label("continue_\(index)")), .exit])
            asm.label(Label("continue_\(index)"))
            callParse()
        }
        asm.label(end)
    }

    // MARK: - the table search

    /// One step per turn of a loop the verifier checks once (`may_goto`): a step checks
    /// the next rule of a bucket's chain, or probes the next table, first the filtered
    /// tables the frame's addresses have bits for, then the current list in rank order.
    /// The search ends when the list runs out or the best rule found outranks the next
    /// table's best. Falls through on a miss.
    private mutating func search(_ tables: TupleTables) {
        let words = tables.words
        asm.emit([.store(.word, to: .fp, Self.scratch, Int32(TableEntry.headKey(tableCapacity: tables.tableCapacity))),
                  .loadMap(.r1, FlowMaps.tables),
                  .mov(.r2, .fp),
                  .alu(.add, .r2, Int32(Self.scratch)), .call(.mapLookupElem), .jump(.equal, .r0, 0, to: "search_miss"),
                  // Half `generation & 1` of the list is current: its base and length,
                  // without a branch (each way would be verified on its own).
                  .load(.r1, .word, from: .r0, Int16(TableListHead.generationOffset)), .alu(.and, .r1, 1),
                  .load(.r2, .word, from: .r0, Int16(TableListHead.countsOffset)),
                  .load(.r3, .word, from: .r0, Int16(TableListHead.countsOffset + 4)), .alu(.sub, .r3, .r2),
                  .alu(.mul, .r3, .r1), .alu(.add, .r2, .r3), .store(.double, to: .fp, Self.tableCount, .r2),
                  .alu(.mul, .r1, Int32(tables.tableCapacity)), .store(.double, to: .fp, Self.tableBase, .r1),
                  .store(.double, to: .fp, Self.headAddress, .r0)])
        unknownZero()
        // The filtered tables worth a visit: those with a bit under every dimension's key
        // (an absent header reads as zero; a filtered table needs it anyway). A dimension
        // whose fields no rule reads filters no table.
        let dimensions = TableFilter.dimensions.indices.filter { position in
            TableFilter.dimensions[position].fields.contains(where: plan.fields.contains)
        }
        for position in dimensions {
            let dimension = TableFilter.dimensions[position]
            // The key from the field the frame has (the record holds zero in the other,
            // when the rules read it at all): its first 16 bits, or its first 24, 32 or 64
            // hashed (`TableFilter.hash`).
            asm.emit(.mov(.r1, 0))
            let size: Size = switch dimension.bytes {
            case 2: .half
            case 8: .double
            default: .word
            }
            for field in dimension.fields where plan.fields.contains(field) {
                asm.emit(.load(.r2, size, from: .fp, Self.record + Int16(field.offset)))
                if dimension.bytes == 2 { asm.emit(.endian(.big, .r2, bits: 16)) }
                asm.emit(.alu(.or, .r1, .r2))
            }
            let multiplier = Int32(bitPattern: TableFilter.hashMultiplier)
            switch dimension.bytes {
            case 2: break
            case 8: asm.emit([.alu(.mul, .r1, multiplier), .alu(.rsh, .r1, 48)])
            default:
                if dimension.bytes == 3 { asm.emit(.alu(.and, .r1, 0xff_ffff)) }
                asm.emit([.alu(.mul, .r1, multiplier, .bits32), .alu(.rsh, .r1, 16, .bits32)])
            }
            if position > 0 { asm.emit(.alu(.add, .r1, Int32(position * TableFilter.entries))) }
            asm.emit([.store(.word, to: .fp, Self.scratch, .r1), .loadMap(.r1, FlowMaps.tableFilter), .mov(.r2, .fp),
                      .alu(.add, .r2, Int32(Self.scratch)), .call(.mapLookupElem),
                      .jump(.equal, .r0, 0, to: "search_budget"), .store(.double, to: .fp, Self.filterAddress(position), .r0)])
        }
        candidateWords(tables, dimensions: dimensions)
        resetSearch()

        asm.label("search")
        asm.emit([.mayGoto("search_budget"), .load(.r1, .double, from: .fp, Self.candidate),
                  .jump(.notEqual, .r1, 0, to: "search_check"),
                  .load(.r1, .double, from: .fp, Self.candidates), .jump(.notEqual, .r1, 0, to: "search_filtered")])
        if tables.filterWords > 1 {
            // The next word's candidates, while there is one; the words after it move down.
            asm.emit([.load(.r1, .double, from: .fp, Self.candidateWord), .alu(.add, .r1, 1),
                      .jump(.greaterOrEqual, .r1, Int32(tables.filterWords), to: "search_list"),
                      .store(.double, to: .fp, Self.candidateWord, .r1),
                      .load(.r1, .double, from: .fp, Self.laterWord(1)), .store(.double, to: .fp, Self.candidates, .r1)])
            for word in 1 ..< tables.filterWords - 1 {
                asm.emit([.load(.r1, .double, from: .fp, Self.laterWord(word + 1)),
                          .store(.double, to: .fp, Self.laterWord(word), .r1)])
            }
            asm.emit(.jump(to: "search"))
        }
        asm.label("search_list")
        asm.emit([// Visit the next table of the list.
                  .load(.r1, .double, from: .fp, Self.tablePosition), .load(.r2, .double, from: .fp, Self.tableCount),
                  .jump(.greaterOrEqual, .r1, .r2, to: "search_end"), .mov(.r2, .r1), .alu(.add, .r2, 1),
                  .store(.double, to: .fp, Self.tablePosition, .r2), .load(.r2, .double, from: .fp, Self.tableBase),
                  .alu(.add, .r1, .r2), .store(.word, to: .fp, Self.scratch, .r1), .loadMap(.r1, FlowMaps.tables),
                  .mov(.r2, .fp), .alu(.add, .r2, Int32(Self.scratch)), .call(.mapLookupElem),
                  .jump(.equal, .r0, 0, to: "search"), .mov(.r7, .r0),
                  // The best so far outranks this table and every one after it.
                  .load(.r1, .double, from: .r7, Int16(TableEntry.rankOffset)),
                  .load(.r2, .double, from: .fp, Self.bestRank), .jump(.less, .r2, .r1, to: "search_end"),
                  .jump(to: "search_visit")])

        // Visit the filtered table of the lowest candidate bit (its entry at the bit's
        // de Bruijn index), unless the best so far outranks it, and then every table
        // after it in lookup order too: those leave the candidates at once.
        asm.label("search_filtered")
        asm.emit([.mov(.r2, 0), .alu(.sub, .r2, .r1), .alu(.and, .r2, .r1), .alu(.xor, .r1, .r2),
                  .store(.double, to: .fp, Self.candidates, .r1),
                  .loadImmediate(.r3, Int64(bitPattern: TableEntry.deBruijn)), .alu(.mul, .r2, .r3), .alu(.rsh, .r2, 58),
                  .alu(.add, .r2, Int32(TableEntry.filteredBase(tableCapacity: tables.tableCapacity)))])
        if tables.filterWords > 1 {
            asm.emit([.load(.r3, .double, from: .fp, Self.candidateWord), .alu(.lsh, .r3, 6), .alu(.add, .r2, .r3)])
        }
        asm.emit([.store(.word, to: .fp, Self.scratch, .r2), .loadMap(.r1, FlowMaps.tables), .mov(.r2, .fp),
                  .alu(.add, .r2, Int32(Self.scratch)), .call(.mapLookupElem), .jump(.equal, .r0, 0, to: "search"),
                  .mov(.r7, .r0), .load(.r1, .double, from: .r7, Int16(TableEntry.rankOffset)),
                  .load(.r2, .double, from: .fp, Self.bestRank), .jump(.greaterOrEqual, .r2, .r1, to: "search_visit"),
                  .load(.r1, .double, from: .r7, Int16(TableEntry.laterOffset)), .alu(.xor, .r1, -1),
                  .load(.r2, .double, from: .fp, Self.candidates), .alu(.and, .r2, .r1),
                  .store(.double, to: .fp, Self.candidates, .r2), .jump(to: "search")])

        // r7: a table worth a probe.
        asm.label("search_visit")
        asm.emit([.load(.r1, .word, from: .r7, Int16(TableEntry.presenceOffset)),
                  .load(.r2, .word, from: .fp, Self.record + Int16(KeyField.presenceOffset)), .alu(.and, .r2, .r1),
                  .jump(.notEqual, .r2, .r1, to: "search")])
        // The bucket's place: the fingerprint of the frame's masked words, and the table's
        // index (`Bucket.position`).
        asm.emit(.mov(.r3, 0))
        forEachWord(words, skipping: "search_fingerprint") { position, word in
            [.load(.r1, .double, from: .fp, Self.record + Int16(word * 8)),
             .load(.r2, .double, from: .r7, Int16(TableEntry.masksOffset + 8 * position)), .alu(.and, .r1, .r2),
             .alu(.mul, .r1, Bucket.multiplierImmediate(word)), .alu(.xor, .r3, .r1)]
        }
        asm.emit([.mov(.r1, .r3), .alu(.rsh, .r1, 32), .alu(.xor, .r3, .r1),
                  .load(.r1, .word, from: .r7, Int16(TableEntry.indexOffset)),
                  .alu(.mul, .r1, Int32(bitPattern: Bucket.indexMultiplier), .bits32), .alu(.add, .r3, .r1, .bits32),
                  .alu(.mul, .r3, Int32(bitPattern: Bucket.placeMultiplier), .bits32),
                  .alu(.rsh, .r3, Int32(Bucket.placeShift(capacity: tables.bucketCapacity)), .bits32),
                  .store(.word, to: .fp, Self.tableKey, .r3)])
        // The chain there: its first rule is checked at once, not a turn later (the check
        // sets `candidate` to the rule after it).
        asm.emit([.loadMap(.r1, FlowMaps.buckets), .mov(.r2, .fp), .alu(.add, .r2, Int32(Self.tableKey)),
                  .call(.mapLookupElem), .jump(.equal, .r0, 0, to: "search"), .load(.r1, .word, from: .r0, 0),
                  .jump(.equal, .r1, 0, to: "search")])

        // Check the rule at slot r1, the next of its chain.
        asm.label("search_check")
        asm.emit([.store(.word, to: .fp, Self.scratch, .r1), .loadMap(.r1, FlowMaps.rules), .mov(.r2, .fp),
                  .alu(.add, .r2, Int32(Self.scratch)), .call(.mapLookupElem),
                  .jump(.equal, .r0, 0, to: "search_chain_end"), .mov(.r7, .r0),
                  // The chain goes by rank: nothing after this rule beats the best.
                  .load(.r1, .double, from: .r7, Int16(RuleCheck.rankOffset)),
                  .load(.r2, .double, from: .fp, Self.bestRank), .jump(.greaterOrEqual, .r1, .r2, to: "search_chain_end"),
                  .load(.r3, .word, from: .r7, Int16(RuleCheck.nextOffset)), .store(.double, to: .fp, Self.candidate, .r3),
                  .load(.r2, .double, from: .fp, Self.floorRank), .jump(.less, .r1, .r2, to: "search"),
                  .load(.r2, .word, from: .r7, Int16(RuleCheck.presenceOffset)),
                  .load(.r3, .word, from: .fp, Self.record + Int16(KeyField.presenceOffset)), .alu(.and, .r3, .r2),
                  .jump(.notEqual, .r3, .r2, to: "search")])
        forEachWord(words, skipping: "search_check") { position, word in
            let value = Int16(RuleCheck.wordsOffset + 16 * position)
            return [.load(.r2, .double, from: .fp, Self.record + Int16(word * 8)),
                    .load(.r3, .double, from: .r7, value + 8), .alu(.and, .r2, .r3),
                    .load(.r3, .double, from: .r7, value), .jump(.notEqual, .r2, .r3, to: "search")]
        }
        if tables.usesRanges {
            for (field, minimum, maximum) in [(KeyField.srcPort, RuleCheck.srcMinOffset, RuleCheck.srcMaxOffset),
                                              (.dstPort, RuleCheck.dstMinOffset, RuleCheck.dstMaxOffset)] {
                asm.emit([.load(.r2, .half, from: .fp, Self.record + Int16(field.offset)), .endian(.big, .r2, bits: 16),
                          .load(.r3, .half, from: .r7, Int16(minimum)), .jump(.less, .r2, .r3, to: "search"),
                          .load(.r3, .half, from: .r7, Int16(maximum)), .jump(.greater, .r2, .r3, to: "search")])
            }
        }
        // A match, the best so far: the rest of its chain ranks below it.
        asm.emit([.store(.double, to: .fp, Self.bestRank, .r1), .load(.r2, .word, from: .fp, Self.scratch),
                  .store(.double, to: .fp, Self.bestSlot, .r2), .load(.r2, .word, from: .r7, Int16(RuleCheck.actionOffset)),
                  .store(.word, to: .fp, Self.bestAction, .r2)])
        asm.label("search_chain_end")
        storeZero(at: Self.candidate)
        asm.emit(.jump(to: "search"))

        // The best rule found decides, or goes on with the next prio (`continue`).
        asm.label("search_end")
        asm.emit([.load(.r8, .double, from: .fp, Self.bestSlot), .jump(.equal, .r8, 0, to: "search_miss"),
                  .load(.r3, .word, from: .fp, Self.bestAction), .mov(.r1, .r6), .mov(.r2, .r8),
                  .load(.r4, .double, from: .fp, Self.length)])
        if options.metadata == .rule { asm.emit(.load(.r5, .double, from: .fp, Self.bestRank)) }
        if inline {
            asm.emit(.jump(to: "hit"))
        } else {
            asm.emit([.call(Label("hit")), .jump(.equal, .r0, Self.continueClassification, to: "search_continue"), .exit])
            // The ranks up to the decided prio's are done with.
            asm.label("search_continue")
            asm.emit([.load(.r8, .double, from: .fp, Self.bestRank), .alu(.rsh, .r8, 32), .alu(.add, .r8, 1),
                      .alu(.lsh, .r8, 32), .store(.double, to: .fp, Self.floorRank, .r8), .jump(to: "classify")])
        }
        // Out of turns (a chain changing under the frame, at worst): the program cannot
        // be sure, so the stack decides, and the frame counts as unparsed.
        asm.label("search_budget")
        asm.emit(.store(.word, to: .fp, Self.scratch, Int32(RuleSlots.unparsed)))
        count(slotAt: Self.scratch, lengthAt: Self.length, using: .r7, done: "search_budget_counted")
        asm.emit(Instruction.return(XDPAction.pass))
        asm.label("search_miss")
    }

    /// Emits `body` for each of the record's `words` (with its position among them),
    /// those of the IPv6 addresses behind a test of the frame's headers: a frame without
    /// an IPv6 header holds zeros there, which add nothing to a fingerprint, and a rule
    /// that reads them asks for the header, so its check fails before its words. An IPv4
    /// frame skips four words of each probe and check; the branch goes the same way for
    /// every probe of a frame.
    private mutating func forEachWord(_ words: [Int], skipping label: String,
                                      _ body: (_ position: Int, _ word: Int) -> [Instruction]) {
        let ipv6 = KeyField.srcIPv6.offset / 8 ... (KeyField.dstIPv6.offset + 15) / 8
        for (position, word) in words.enumerated() where !ipv6.contains(word) { asm.emit(body(position, word)) }
        let held = words.enumerated().filter { ipv6.contains($0.element) }
        guard !held.isEmpty else { return }
        let skip = Label(label + "_ipv4")
        asm.emit([.load(.r2, .word, from: .fp, Self.record + Int16(KeyField.presenceOffset)),
                  .alu(.and, .r2, Int32(Presence.ipv6.rawValue)), .jump(.equal, .r2, 0, to: skip)])
        for (position, word) in held { asm.emit(body(position, word)) }
        asm.label(skip)
    }

    /// The frame's candidates, word by word: the AND over `dimensions` of their bits and
    /// of the head's bits of the tables each does not filter (the addresses are on the
    /// stack, from the search's start).
    private mutating func candidateWords(_ tables: TupleTables, dimensions: [Int]) {
        asm.emit(.load(.r4, .double, from: .fp, Self.headAddress))
        for word in 0 ..< tables.filterWords {
            if dimensions.isEmpty { asm.emit(.mov(.r1, 0)) }
            for (order, position) in dimensions.enumerated() {
                let unfiltered = TableListHead.unfilteredOffset + 8 * (position * TableFilter.maxWords + word)
                asm.emit([.load(.r2, .double, from: .r4, Int16(unfiltered)),
                          .load(.r3, .double, from: .fp, Self.filterAddress(position)),
                          .load(.r3, .double, from: .r3, Int16(8 * word)), .alu(.or, .r2, .r3),
                          order == 0 ? .mov(.r1, .r2) : .alu(.and, .r1, .r2)])
            }
            asm.emit([.alu(.or, .r1, 0), .store(.double, to: .fp, word == 0 ? Self.candidates : Self.laterWord(word), .r1)])
        }
    }

    /// r9: a zero the verifier cannot tell from the values later turns of a loop leave
    /// (0 ^ length ^ length), so that the turns meet in one state; it never learns a
    /// constant to follow round the loop.
    private mutating func unknownZero() {
        asm.emit([.mov(.r9, 0), .load(.r1, .double, from: .fp, Self.length)] + Self.forgetting(.r9, by: .r1))
    }

    /// `register` XOR-ed twice with `unknown`, a value the verifier cannot know (the
    /// frame's length): the value stays, what the verifier knew of it goes, so that ways
    /// that left different constants there meet in one state.
    private static func forgetting(_ register: Register, by unknown: Register) -> [Instruction] {
        [.alu(.xor, register, unknown), .alu(.xor, register, unknown)]
    }

    /// The search from the first table, with nothing found.
    private mutating func resetSearch() {
        for slot in [Self.tablePosition, Self.candidate, Self.bestSlot, Self.candidateWord] {
            storeZero(at: slot)
        }
        // A plan with `continue` keeps its floor from one turn of `classify` to the next.
        if inline { storeZero(at: Self.floorRank) }
        storeZero(at: Self.bestRank, minus: 1)
    }

    /// Stores r9's zero (less `minus`) at `slot` as a value of its own: a copy would share
    /// r9's identity, and what a branch learns of one copy the verifier applies to all
    /// (`r1 |= 0` gives it a new one).
    private mutating func storeZero(at slot: Int16, minus: Int32 = 0) {
        asm.emit(.mov(.r1, .r9))
        if minus != 0 { asm.emit(.alu(.sub, .r1, minus)) }
        asm.emit([.alu(.or, .r1, 0), .store(.double, to: .fp, slot, .r1)])
    }

    /// r1 = the key of a direct subtable as an index: its bytes, big-endian.
    private mutating func directIndex(_ bytes: [(offset: Int, mask: UInt8)]) {
        if bytes.isEmpty { asm.emit(.mov(.r1, 0)) }
        for (position, byte) in bytes.enumerated() {
            let register: Register = position == 0 ? .r1 : .r2
            if position > 0 { asm.emit(.alu(.lsh, .r1, 8)) }
            asm.emit(.load(register, .byte, from: .fp, Self.record + Int16(byte.offset)))
            if byte.mask != 0xff { asm.emit(.alu(.and, register, Int32(byte.mask))) }
            if position > 0 { asm.emit(.alu(.or, .r1, .r2)) }
        }
    }

    /// Writes a hash subtable's key at `key`: runs of record bytes, masked, moved with the
    /// widest loads both alignments allow (the verifier insists on aligned stack access).
    private mutating func buildKey(_ bytes: [(offset: Int, mask: UInt8)]) {
        var position = 0
        while position < bytes.count {
            let source = bytes[position].offset
            var width = 8
            while width > 1 && (source % width != 0 || position % width != 0 || position + width > bytes.count
                || (1 ..< width).contains(where: { bytes[position + $0].offset != source + $0 })) {
                width /= 2
            }
            let masks = bytes[position ..< position + width].map(\.mask)
            let size = Size(bytes: width)!
            asm.emit(.load(.r1, size, from: .fp, Self.record + Int16(source)))
            if masks.contains(where: { $0 != 0xff }) {
                let mask = masks.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << ($1.offset * 8) }
                if width == 8 {
                    asm.emit([.loadImmediate(.r2, Int64(bitPattern: mask)), .alu(.and, .r1, .r2)])
                } else {
                    asm.emit(.alu(.and, .r1, Int32(bitPattern: UInt32(mask))))
                }
            }
            asm.emit(.store(size, to: .fp, Self.key + Int16(position), .r1))
            position += width
        }
    }

    // MARK: - parse(ctx, record) -> 0, or 1 when the frame cannot be classified

    /// Registers: r7 data, r8 data end, r9 record, r6 presence, r4 cursor, r5 EtherType
    /// or protocol (as loaded: network order in the register's low bytes).
    private mutating func parseFunction() {
        let fields = plan.fields
        let layers = plan.keyLayers
        let vlanFields: Set<KeyField> = [.vlanTCI, .vlanTPID, .cvlanTCI, .cvlanTPID]
        let parseVLAN = !layers.isEmpty || !fields.isDisjoint(with: vlanFields)
        // The 8-byte words of the record that lookups read: the presence word and the
        // fields. A parser in the loop of `continue` covers every word it writes, so
        // that every way through it leaves the record alike (the verifier compares each
        // byte when it prunes a turn of the loop).
        var covered = fields
        if !inline {
            covered.formUnion([.outerType, .etherType, .ipProto, .ipFlags])
            if parseVLAN { covered.formUnion(vlanFields) }
        }
        let recordWords = covered.reduce(into: Set([KeyField.presenceOffset / 8])) { words, field in
            words.formUnion(field.offset / 8 ... (field.offset + field.width - 1) / 8)
        }.sorted()

        if !inline { asm.label("parse") }
        asm.emit([.mov(.r9, .r2), .load(.r7, .word, from: .r1, XDPContext.data),
                  .load(.r8, .word, from: .r1, XDPContext.dataEnd), .mov(.r6, 0)])
        // Zero the words lookups read (a field of an absent header reads as zero); the
        // rest of the record is never read.
        for word in recordWords {
            asm.emit(.store(.double, to: .r9, Int16(word * 8), 0))
        }
        asm.emit([.mov(.r2, .r7), .alu(.add, .r2, 14), .jump(.greater, .r2, .r8, to: "parsed")])
        copy(.dstMAC, from: 0)
        copy(.srcMAC, from: 6)
        asm.emit([.load(.r5, .half, from: .r7, 12), .store(.half, to: .r9, Int16(KeyField.outerType.offset), .r5),
                  .store(.half, to: .r9, Int16(KeyField.etherType.offset), .r5),
                  .alu(.or, .r6, Int32(Presence.ethernet.rawValue)), .mov(.r4, .r7), .alu(.add, .r4, 14)])
        if parseVLAN {
            for (depth, tci, tpid, presence) in [(0, KeyField.vlanTCI, KeyField.vlanTPID, Presence.vlan),
                                                 (1, .cvlanTCI, .cvlanTPID, .cvlan)] {
                let tag = Label("tag_\(depth)")
                // Behind one tag or two the ways meet in `tags_done`; an untagged frame
                // goes straight on.
                let untagged: Label = depth == 0 || !inline ? "network" : "tags_done"
                asm.emit([.jump(.equal, .r5, raw(EtherType.vlan), to: tag),
                          .jump(.notEqual, .r5, raw(EtherType.qinq), to: untagged),])
                asm.label(tag)
                asm.emit([.mov(.r2, .r4), .alu(.add, .r2, 4), .jump(.greater, .r2, .r8, to: "parsed"),
                          .load(.r3, .half, from: .r4, 0), .store(.half, to: .r9, Int16(tci.offset), .r3),
                          .store(.half, to: .r9, Int16(tpid.offset), .r5),
                          .load(.r5, .half, from: .r4, 2), .store(.half, to: .r9, Int16(KeyField.etherType.offset), .r5),
                          .alu(.or, .r6, Int32(presence.rawValue)), .alu(.add, .r4, 4)])
            }
            // A third tag: what lies behind it is unknown; it matters when a rule reads it.
            let tooDeep: Label = layers.isEmpty ? "parsed" : "unparsed_frame"
            asm.emit([.jump(.equal, .r5, raw(EtherType.vlan), to: tooDeep),
                      .jump(.equal, .r5, raw(EtherType.qinq), to: tooDeep)])
            if inline {
                asm.label("tags_done")
                forgetTags()
            }
        }
        asm.label("network")
        if layers.contains(.arp) {
            asm.emit([.jump(.equal, .r5, raw(EtherType.arp), to: "arp"), .jump(.equal, .r5, raw(EtherType.rarp), to: "arp")])
        }
        if !layers.isDisjoint(with: [.ipv4, .ipv4Transport]) {
            asm.emit(.jump(.equal, .r5, raw(EtherType.ipv4), to: "ipv4"))
        }
        if !layers.isDisjoint(with: [.ipv6, .ipv6Protocol, .ipv6Transport]) {
            asm.emit(.jump(.equal, .r5, raw(EtherType.ipv6), to: "ipv6"))
        }
        asm.emit(.jump(to: "parsed"))
        if layers.contains(.arp) { parseARP() }
        if !layers.isDisjoint(with: [.ipv4, .ipv4Transport]) {
            parseIPv4(transport: layers.contains(.ipv4Transport), flags: covered.contains(.ipFlags))
        }
        if !layers.isDisjoint(with: [.ipv6, .ipv6Protocol, .ipv6Transport]) {
            parseIPv6(walk: !layers.isDisjoint(with: [.ipv6Protocol, .ipv6Transport]),
                      transport: layers.contains(.ipv6Transport))
        }
        asm.label("parsed")
        asm.emit(.store(.word, to: .r9, Int16(KeyField.presenceOffset), .r6))
        // Each way through the parser leaves constants in the record (presence bits, the
        // EtherType and protocol it compared), and the verifier, seeing them decide the
        // lookups' checks, would verify every lookup once per way: 12 times over with
        // tags and ports, most of a new program's load time. XOR-ing each word twice
        // with a value it cannot know (the frame's length) leaves the values and takes
        // that knowledge away, so the ways meet in one state.
        asm.emit([.mov(.r2, .r8), .alu(.sub, .r2, .r7)])
        for word in recordWords {
            asm.emit([.load(.r1, .double, from: .r9, Int16(word * 8))] + Self.forgetting(.r1, by: .r2)
                     + [.store(.double, to: .r9, Int16(word * 8), .r1)])
        }
        if inline {
            asm.emit(.load(.r6, .double, from: .fp, Self.context))
            if isReferenced("unparsed_frame") {
                asm.emit(.jump(to: "lookup"))
                asm.label("unparsed_frame")
                asm.emit([.load(.r6, .double, from: .fp, Self.context), .jump(to: "unparsed")])
            }
            asm.label("lookup")
        } else {
            asm.emit([.mov(.r0, 0), .exit])
            if isReferenced("unparsed_frame") {
                asm.label("unparsed_frame")
                asm.emit(Instruction.return(1))
            }
        }
    }

    /// Behind one tag or two, the ways differ from each other only in the cursor's
    /// offset, the presence bits and the length of frame checked so far, and the verifier
    /// would follow the rest of the parser once per way. The cursor as data plus an offset
    /// it knows only as below 64 (a tag ends by 22), data loaded again (nothing checked
    /// yet), and the presence XOR-ed twice with a value it cannot know (the frame's
    /// length) leave them one state, so the rest is verified twice (untagged, tagged)
    /// rather than three times, and an untagged frame, the usual one, runs none of this.
    /// (Inlined parsers only, which have the context on the stack; a parser in the loop
    /// of `continue` is verified as its loop needs.)
    private mutating func forgetTags() {
        asm.emit([.mov(.r2, .r8), .alu(.sub, .r2, .r7), .mov(.r3, .r4), .alu(.sub, .r3, .r7)]
                 + Self.forgetting(.r3, by: .r2)
                 + [.alu(.and, .r3, 0x3f), .load(.r1, .double, from: .fp, Self.context),
                    .load(.r7, .word, from: .r1, XDPContext.data), .mov(.r4, .r7), .alu(.add, .r4, .r3)]
                 + Self.forgetting(.r6, by: .r2))
    }

    /// Copies a field from the packet at `cursor + offset` into the record, when a
    /// subtable reads it.
    private mutating func copy(_ field: KeyField, from offset: Int16, cursor: Register = .r7) {
        guard plan.fields.contains(field) else { return }
        var done = 0
        while done < field.width {
            let target = field.offset + done
            var width = 8
            while width > field.width - done || target % width != 0 { width /= 2 }
            let size = Size(bytes: width)!
            asm.emit([.load(.r1, size, from: cursor, offset + Int16(done)), .store(size, to: .r9, Int16(target), .r1)])
            done += width
        }
    }

    private mutating func parseARP() {
        asm.label("arp")
        asm.emit([.mov(.r2, .r4), .alu(.add, .r2, 28), .jump(.greater, .r2, .r8, to: "parsed"),
                  .load(.r3, .half, from: .r4, 0), .jump(.notEqual, .r3, raw(1), to: "parsed"),
                  .load(.r3, .half, from: .r4, 2), .jump(.notEqual, .r3, raw(EtherType.ipv4), to: "parsed"),
                  .load(.r3, .half, from: .r4, 4), .jump(.notEqual, .r3, raw(6 << 8 | 4), to: "parsed"),
                  .load(.r3, .half, from: .r4, 6), .jump(.equal, .r3, raw(1), to: "arp_op"),
                  .jump(.notEqual, .r3, raw(2), to: "parsed")])
        asm.label("arp_op")
        copy(.arpOp, from: 7, cursor: .r4)
        copy(.arpSenderMAC, from: 8, cursor: .r4)
        copy(.arpSenderIP, from: 14, cursor: .r4)
        copy(.arpTargetMAC, from: 18, cursor: .r4)
        copy(.arpTargetIP, from: 24, cursor: .r4)
        asm.emit([.alu(.or, .r6, Int32(Presence.arp.rawValue)), .jump(to: "parsed")])
    }

    /// `flags`: the record's ip_flags byte, which a rule reads (the transport header
    /// needs the fragment offset whatever the rules read).
    private mutating func parseIPv4(transport: Bool, flags: Bool) {
        asm.label("ipv4")
        asm.emit([.mov(.r2, .r4), .alu(.add, .r2, 20), .jump(.greater, .r2, .r8, to: "parsed"),
                  .load(.r3, .byte, from: .r4, 0), .mov(.r2, .r3), .alu(.rsh, .r2, 4),
                  .jump(.notEqual, .r2, 4, to: "unparsed_frame"), .alu(.and, .r3, 0x0f),
                  .jump(.less, .r3, 5, to: "unparsed_frame")])
        copy(.tos, from: 1, cursor: .r4)
        copy(.ttl, from: 8, cursor: .r4)
        copy(.srcIPv4, from: 12, cursor: .r4)
        copy(.dstIPv4, from: 16, cursor: .r4)
        // ip_proto is always kept: the transport parser dispatches on it.
        asm.emit([.load(.r5, .byte, from: .r4, 9), .store(.byte, to: .r9, Int16(KeyField.ipProto.offset), .r5)])
        if transport || flags {
            // Flags: 1 = fragment (MF or an offset), 2 = first fragment. Each way stores its
            // own, so that none carries a value to where they meet.
            let flagsOffset = Int16(KeyField.ipFlags.offset)
            asm.emit([.load(.r2, .half, from: .r4, 6), .endian(.big, .r2, bits: 16),
                      .mov(.r1, .r2), .alu(.and, .r1, 0x3fff), .jump(.equal, .r1, 0, to: "ipv4_whole"),
                      .mov(.r1, .r2), .alu(.and, .r1, 0x1fff), .jump(.notEqual, .r1, 0, to: "ipv4_later"),
                      .store(.byte, to: .r9, flagsOffset, 3), .jump(to: "ipv4_flags")])
            asm.label("ipv4_later")
            asm.emit([.store(.byte, to: .r9, flagsOffset, 1), .jump(to: "ipv4_flags")])
            asm.label("ipv4_whole")
            asm.emit(.store(.byte, to: .r9, flagsOffset, 0))
            asm.label("ipv4_flags")
        }
        asm.emit(.alu(.or, .r6, Int32(Presence([.ip, .ipv4]).rawValue)))
        if transport {
            // Only an unfragmented frame or a first fragment carries the transport header.
            asm.emit([.alu(.and, .r2, 0x1fff), .jump(.notEqual, .r2, 0, to: "parsed"),
                      .alu(.lsh, .r3, 2), .alu(.add, .r4, .r3)])
            parseTransport(suffix: "4", icmp: IPProtocolNumber.icmp)
        }
        goto("parsed")
    }

    private mutating func parseIPv6(walk: Bool, transport: Bool) {
        asm.label("ipv6")
        asm.emit([.mov(.r2, .r4), .alu(.add, .r2, 40), .jump(.greater, .r2, .r8, to: "parsed"),
                  .load(.r3, .byte, from: .r4, 0), .mov(.r2, .r3), .alu(.rsh, .r2, 4),
                  .jump(.notEqual, .r2, 6, to: "unparsed_frame")])
        if plan.fields.contains(.tos) {
            asm.emit([.alu(.lsh, .r3, 4), .load(.r2, .byte, from: .r4, 1), .alu(.rsh, .r2, 4), .alu(.or, .r3, .r2),
                      .store(.byte, to: .r9, Int16(KeyField.tos.offset), .r3)])
        }
        copy(.ttl, from: 7, cursor: .r4)
        copy(.srcIPv6, from: 8, cursor: .r4)
        copy(.dstIPv6, from: 24, cursor: .r4)
        asm.emit([.load(.r5, .byte, from: .r4, 6), .store(.byte, to: .r9, Int16(KeyField.ipProto.offset), .r5),
                  .alu(.or, .r6, Int32(Presence([.ip, .ipv6]).rawValue)), .alu(.add, .r4, 40)])
        guard walk else {
            asm.emit(.jump(to: "parsed"))
            return
        }
        let options = [IPProtocolNumber.hopByHop, IPProtocolNumber.routing, IPProtocolNumber.destinationOptions]
        for step in 0 ..< FlowKeys.maxIPv6ExtensionHeaders {
            let option = Label("ext_option_\(step)"), fragment = Label("ext_fragment_\(step)")
            for number in options { asm.emit(.jump(.equal, .r5, Int32(number), to: option)) }
            asm.emit([.jump(.equal, .r5, Int32(IPProtocolNumber.fragment), to: fragment), .jump(to: "ext_walked")])
            asm.label(option)
            // Hop-by-hop, routing, destination options: (length + 1) * 8 bytes.
            asm.emit([.mov(.r2, .r4), .alu(.add, .r2, 2), .jump(.greater, .r2, .r8, to: "ext_stopped"),
                      .load(.r3, .byte, from: .r4, 1), .alu(.add, .r3, 1), .alu(.lsh, .r3, 3),
                      .mov(.r2, .r4), .alu(.add, .r2, .r3), .jump(.greater, .r2, .r8, to: "ext_stopped"),
                      .load(.r5, .byte, from: .r4, 0), .mov(.r4, .r2), .jump(to: Label("ext_next_\(step)"))])
            asm.label(fragment)
            asm.emit([.mov(.r2, .r4), .alu(.add, .r2, 8), .jump(.greater, .r2, .r8, to: "ext_stopped"),
                      .load(.r5, .byte, from: .r4, 0), .load(.r3, .half, from: .r4, 2), .endian(.big, .r3, bits: 16),
                      .alu(.rsh, .r3, 3), .alu(.add, .r4, 8), .mov(.r2, 3), .jump(.equal, .r3, 0, to: Label("ext_first_\(step)")),
                      .mov(.r2, 1)])
            asm.label(Label("ext_first_\(step)"))
            // A later fragment: no transport header; the walk ends at its next header.
            asm.emit([.store(.byte, to: .r9, Int16(KeyField.ipFlags.offset), .r2),
                      .jump(.notEqual, .r3, 0, to: "ext_stopped")])
            asm.label(Label("ext_next_\(step)"))
            // The cursor as data plus an offset the verifier knows only as below 16 KiB
            // (the headers end before 8.3 KiB: four of at most 2 KiB): every way through
            // the headers so far then leaves one state, and the ways do not multiply
            // step by step (they took the verifier past a million instructions).
            assert(14 + 8 + 40 + FlowKeys.maxIPv6ExtensionHeaders * 2048 < 0x3fff, "the bound must stay past real headers")
            asm.emit([.mov(.r3, .r4), .alu(.sub, .r3, .r7), .jump(.greater, .r3, 0x3fff, to: "unparsed_frame"),
                      .mov(.r4, .r7), .alu(.add, .r4, .r3)])
        }
        for number in options + [IPProtocolNumber.fragment] {
            asm.emit(.jump(.equal, .r5, Int32(number), to: "unparsed_frame"))
        }
        asm.label("ext_walked")
        asm.emit(.store(.byte, to: .r9, Int16(KeyField.ipProto.offset), .r5))
        if transport { parseTransport(suffix: "6", icmp: IPProtocolNumber.icmpv6) }
        goto("parsed")
        asm.label("ext_stopped")
        asm.emit([.store(.byte, to: .r9, Int16(KeyField.ipProto.offset), .r5), .jump(to: "parsed")])
    }

    /// r5 = protocol, r4 = the transport header.
    private mutating func parseTransport(suffix: String, icmp: UInt8) {
        let tcp = Label("tcp_" + suffix), udp = Label("udp_" + suffix), sctp = Label("sctp_" + suffix)
        let icmpLabel = Label("icmp_" + suffix), ports = Label("ports_" + suffix)
        asm.emit([.jump(.equal, .r5, Int32(IPProtocolNumber.tcp), to: tcp),
                  .jump(.equal, .r5, Int32(IPProtocolNumber.udp), to: udp),
                  .jump(.equal, .r5, Int32(IPProtocolNumber.sctp), to: sctp),
                  .jump(.equal, .r5, Int32(icmp), to: icmpLabel), .jump(to: "parsed")])
        asm.label(tcp)
        asm.emit([.mov(.r2, .r4), .alu(.add, .r2, 20), .jump(.greater, .r2, .r8, to: "parsed"),
                  .load(.r3, .byte, from: .r4, 12), .alu(.rsh, .r3, 4), .jump(.less, .r3, 5, to: "unparsed_frame")])
        if plan.fields.contains(.tcpFlags) {
            asm.emit([.load(.r3, .half, from: .r4, 12), .alu(.and, .r3, raw(0x0fff)),
                      .store(.half, to: .r9, Int16(KeyField.tcpFlags.offset), .r3)])
        }
        asm.emit([.alu(.or, .r6, Int32(Presence.tcp.rawValue)), .jump(to: ports)])
        asm.label(udp)
        asm.emit([.mov(.r2, .r4), .alu(.add, .r2, 8), .jump(.greater, .r2, .r8, to: "parsed"), .jump(to: ports)])
        asm.label(sctp)
        asm.emit([.mov(.r2, .r4), .alu(.add, .r2, 12), .jump(.greater, .r2, .r8, to: "parsed")])
        asm.label(ports)
        if !plan.fields.isDisjoint(with: [.srcPort, .dstPort]) {
            // Source and destination port are adjacent in the header and in the record.
            asm.emit([.load(.r3, .word, from: .r4, 0), .store(.word, to: .r9, Int16(KeyField.srcPort.offset), .r3)])
        }
        asm.emit([.alu(.or, .r6, Int32(Presence.ports.rawValue)), .jump(to: "parsed")])
        asm.label(icmpLabel)
        asm.emit([.mov(.r2, .r4), .alu(.add, .r2, 8), .jump(.greater, .r2, .r8, to: "parsed")])
        if !plan.fields.isDisjoint(with: [.icmpType, .icmpCode]) {
            asm.emit([.load(.r3, .half, from: .r4, 0), .store(.half, to: .r9, Int16(KeyField.icmpType.offset), .r3)])
        }
        asm.emit([.alu(.or, .r6, Int32(Presence.icmp.rawValue)), .jump(to: "parsed")])
    }

    // MARK: - hit(ctx, slot, action, length) -> XDP action, or continueClassification

    /// r6 ctx, r7 the action program, r8 a policer; the received length at fp-8.
    private mutating func hitFunction() {
        let steps = plan.maxSteps
        let kinds = plan.stepKinds
        asm.label("hit")
        // The rule's counters, inline: a call costs as much as the counting.
        // fp-24 keeps the counters (0 without) for hit_drop to count the drop; fp-32 the
        // rule's rank (prio << 32 | handle, in r5) for the metadata that names it.
        asm.emit([.mov(.r6, .r1), .mov(.r7, .r3), .store(.double, to: .fp, -8, .r4), .store(.word, to: .fp, -16, .r2),
                  .store(.double, to: .fp, -24, 0)])
        if options.metadata == .rule { asm.emit(.store(.double, to: .fp, Self.hitRank, .r5)) }
        count(slotAt: -16, lengthAt: -8, using: .r8, done: "hit_counted", keepingAt: -24)
        asm.emit([.store(.word, to: .fp, -12, .r7), .loadMap(.r1, FlowMaps.actions), .mov(.r2, .fp), .alu(.add, .r2, -12),
                  .call(.mapLookupElem), .jump(.equal, .r0, 0, to: "hit_pass"), .mov(.r7, .r0)])
        if options.metadata == .rule { ruleMetadata() }
        var generated = 0
        // A step is generated only when the one before can pipe into it.
        while generated < steps && (generated == 0 || isReferenced(Label("step_\(generated)"))) {
            let step = generated
            generated += 1
            let base = Int16(step * ActionStep.byteCount)
            let control = Label("control_\(step)"), next = Label("step_\(step + 1)")
            asm.label(Label("step_\(step)"))
            asm.emit([.load(.r1, .byte, from: .r7, base + Int16(ActionStep.kindOffset)), .jump(.equal, .r1, 0, to: "hit_pass")])
            for kind in kinds.sorted() {
                asm.emit(.jump(.equal, .r1, Int32(kind.rawValue), to: Label("step_\(step)_\(kind.rawValue)")))
            }
            asm.emit(.jump(to: "hit_pass"))
            for kind in kinds.sorted() {
                asm.label(Label("step_\(step)_\(kind.rawValue)"))
                emitStep(kind, base: base, step: step, control: control)
            }
            guard isReferenced(control) else { continue }
            asm.label(control)
            asm.emit(.load(.r1, .byte, from: .r7, base + Int16(ActionStep.controlOffset)))
            asm.label(Label("control_\(step)_r1"))
            asm.emit([.jump(.equal, .r1, Int32(ActionStep.Control.pipe.rawValue), to: next),
                      .jump(.equal, .r1, Int32(ActionStep.Control.drop.rawValue), to: "hit_drop"),
                      .jump(.equal, .r1, Int32(ActionStep.Control.continue.rawValue), to: "hit_continue"),
                      .jump(to: "hit_pass")])
        }
        if isReferenced(Label("step_\(generated)")) { asm.label(Label("step_\(generated)")) }
        asm.label("hit_pass")
        asm.emit(Instruction.return(XDPAction.pass))
        // The verifier refuses unreachable code: only the exits some step jumps to.
        if isReferenced("hit_drop") {
            // Per CPU, so a plain add: the rule's dropped, as tc's action statistics count it.
            asm.label("hit_drop")
            asm.emit([.load(.r1, .double, from: .fp, -24), .jump(.equal, .r1, 0, to: "hit_drop_exit"),
                      .load(.r2, .double, from: .r1, RuleCounters.droppedOffset), .alu(.add, .r2, 1),
                      .store(.double, to: .r1, RuleCounters.droppedOffset, .r2)])
            asm.label("hit_drop_exit")
            asm.emit(Instruction.return(XDPAction.drop))
        }
        for (label, value) in [("hit_aborted", XDPAction.aborted.rawValue),
                               ("hit_continue", Self.continueClassification)] where isReferenced(Label(label)) {
            asm.label(Label(label))
            asm.emit(Instruction.return(value))
        }
    }

    /// r2 = data, r3 = data end, fresh from the context.
    private mutating func loadPacket() {
        asm.emit([.load(.r2, .word, from: .r6, XDPContext.data), .load(.r3, .word, from: .r6, XDPContext.dataEnd)])
    }

    private mutating func emitStep(_ kind: ActionStep.Kind, base: Int16, step: Int, control: Label) {
        let argument = base + Int16(ActionStep.argumentOffset), wide = base + Int16(ActionStep.wideOffset)
        let local = { (name: String) in Label("step_\(step)_\(kind.rawValue)_\(name)") }
        switch kind {
        case .gact:
            asm.emit(.jump(to: control))
        case .redirect:
            // A target missing from the devmap: XDP_ABORTED (tc drops when the device is gone).
            asm.emit([.loadMap(.r1, FlowMaps.redirect), .load(.r2, .word, from: .r7, argument), .mov(.r3, 0),
                      .call(.redirectMap), .exit])
        case .tx:
            asm.emit(Instruction.return(XDPAction.tx))
        case .vlanPop:
            loadPacket()
            outerTagCheck(skip: control, tagged: local("tagged"))
            // Move the addresses 4 bytes up, from the end, over the tag; then drop 4 bytes.
            asm.emit([.load(.r1, .word, from: .r2, 8), .store(.word, to: .r2, 12, .r1),
                      .load(.r1, .word, from: .r2, 4), .store(.word, to: .r2, 8, .r1),
                      .load(.r1, .word, from: .r2, 0), .store(.word, to: .r2, 4, .r1),
                      .mov(.r1, .r6), .mov(.r2, 4), .call(.xdpAdjustHead), .jump(.notEqual, .r0, 0, to: "hit_aborted"),
                      .jump(to: control)])
        case .vlanPush:
            asm.emit([.mov(.r1, .r6), .mov(.r2, -4), .call(.xdpAdjustHead), .jump(.notEqual, .r0, 0, to: "hit_aborted")])
            loadPacket()
            asm.emit([.mov(.r1, .r2), .alu(.add, .r1, 18), .jump(.greater, .r1, .r3, to: "hit_aborted"),
                      .load(.r1, .word, from: .r2, 4), .store(.word, to: .r2, 0, .r1),
                      .load(.r1, .word, from: .r2, 8), .store(.word, to: .r2, 4, .r1),
                      .load(.r1, .word, from: .r2, 12), .store(.word, to: .r2, 8, .r1),
                      .load(.r1, .word, from: .r7, argument), .store(.word, to: .r2, 12, .r1), .jump(to: control)])
        case .vlanModify:
            loadPacket()
            outerTagCheck(skip: control, tagged: local("tagged"))
            asm.emit([.load(.r1, .half, from: .r2, 14), .load(.r4, .half, from: .r7, wide), .alu(.and, .r1, .r4),
                      .load(.r4, .half, from: .r7, argument + 2), .alu(.or, .r1, .r4), .store(.half, to: .r2, 14, .r1),
                      .load(.r4, .half, from: .r7, argument), .store(.half, to: .r2, 12, .r4), .jump(to: control)])
        case .setDestinationMAC, .setSourceMAC:
            let at: Int16 = kind == .setDestinationMAC ? 0 : 6
            loadPacket()
            asm.emit([.mov(.r1, .r2), .alu(.add, .r1, 14), .jump(.greater, .r1, .r3, to: "hit_aborted"),
                      .load(.r1, .word, from: .r7, wide), .store(.word, to: .r2, at, .r1),
                      .load(.r1, .half, from: .r7, wide + 4), .store(.half, to: .r2, at + 4, .r1), .jump(to: control)])
        case .mark:
            let layout = options.metadata, length = Int32(layout.length)
            let offset = Int16(FlowMetadata.Layout.markOffset)
            asm.emit([.load(.r2, .word, from: .r6, XDPContext.dataMeta), .load(.r3, .word, from: .r6, XDPContext.data),
                      .mov(.r1, .r2), .alu(.add, .r1, length), .jump(.greater, .r1, .r3, to: local("fresh")),
                      // The area is there (an earlier mark, or the rule's): (mark & ~mask) | value.
                      .store(.byte, to: .r2, Int16(FlowMetadata.Key.mark.rawValue), Int32(offset)),
                      .load(.r1, .word, from: .r2, offset), .load(.r4, .word, from: .r7, wide), .alu(.and, .r1, .r4),
                      .load(.r4, .word, from: .r7, argument), .alu(.or, .r1, .r4), .store(.word, to: .r2, offset, .r1),
                      .jump(to: control)])
            asm.label(local("fresh"))
            // No room for metadata (a driver without it): the mark is lost, the verdict stands.
            freshMetadata(mark: true, otherwise: control)
            asm.emit([.load(.r1, .word, from: .r7, argument), .store(.word, to: .r2, offset, .r1), .jump(to: control)])
        case .police:
            policeStep(argument: argument, base: base, step: step, control: control, local: local)
        case .broadcast:
            asm.emit(.load(.r2, .word, from: .r7, argument))
            let groups = plan.broadcastIndex.indexes.values.sorted()
            for group in groups { asm.emit(.jump(.equal, .r2, Int32(group), to: local("group_\(group)"))) }
            asm.emit(.jump(to: "hit_aborted"))
            for group in groups {
                asm.label(local("group_\(group)"))
                asm.emit([.loadMap(.r1, FlowMaps.broadcast(group)), .mov(.r2, 0), .mov(.r3, Self.broadcastFlag),
                          .call(.redirectMap), .exit])
            }
        case .xsk:
            // The socket bound to the frame's queue takes it (XDP_REDIRECT). Without one
            // the helper returns the flags' action (XDP_PASS, kernel 5.3 and later): count
            // it per CPU, then the step's control decides.
            let unbound = local("unbound")
            asm.emit([.loadMap(.r1, FlowMaps.xsks), .load(.r2, .word, from: .r6, XDPContext.rxQueueIndex),
                      .mov(.r3, XDPAction.pass.rawValue), .call(.redirectMap),
                      .jump(.notEqual, .r0, XDPAction.redirect.rawValue, to: unbound), .exit])
            asm.label(unbound)
            asm.emit(.store(.word, to: .fp, -16, 0))
            count(in: FlowMaps.xskUnbound, slotAt: -16, lengthAt: -8, using: .r8, done: local("counted"))
            asm.emit(.jump(to: control))
        }
    }

    /// In `hit`: a new metadata area of the plan's layout in front of the frame (r2 =
    /// data_meta, r3 = data after), or a jump to `otherwise` when the driver has no room.
    /// With the rule layout it names the rule (`hitRank`).
    private mutating func freshMetadata(mark: Bool, otherwise: Label) {
        let layout = options.metadata, length = Int32(layout.length)
        asm.emit([.mov(.r1, .r6), .mov(.r2, -length), .call(.xdpAdjustMeta), .jump(.notEqual, .r0, 0, to: otherwise),
                  .load(.r2, .word, from: .r6, XDPContext.dataMeta), .load(.r3, .word, from: .r6, XDPContext.data),
                  .mov(.r1, .r2), .alu(.add, .r1, length), .jump(.greater, .r1, .r3, to: otherwise),
                  .store(.word, to: .r2, 0, Int32(bitPattern: layout.offsetsWord(mark: mark))),
                  .store(.word, to: .r2, Int16(FlowMetadata.Layout.markOffset), 0),
                  .store(.word, to: .r2, Int16(layout.trailerOffset), Int32(bitPattern: layout.trailerWord))])
        if layout == .rule { storeRule() }
    }

    /// The rule layout, on every hit: the area (made once a frame; `continue` reaches
    /// here again) names the rule deciding now.
    private mutating func ruleMetadata() {
        let length = Int32(FlowMetadata.Layout.rule.length)
        asm.emit([.load(.r2, .word, from: .r6, XDPContext.dataMeta), .load(.r3, .word, from: .r6, XDPContext.data),
                  .mov(.r1, .r2), .alu(.add, .r1, length), .jump(.greater, .r1, .r3, to: "hit_metadata_fresh")])
        storeRule()
        asm.emit(.jump(to: "hit_metadata_done"))
        asm.label("hit_metadata_fresh")
        freshMetadata(mark: false, otherwise: "hit_metadata_done")
        asm.label("hit_metadata_done")
    }

    /// prio and handle from `hitRank` into a rule-layout area at r2.
    private mutating func storeRule() {
        let at = Int16(FlowMetadata.Layout.ruleOffset)
        asm.emit([.load(.r1, .double, from: .fp, Self.hitRank), .store(.word, to: .r2, at + 4, .r1),
                  .alu(.rsh, .r1, 32), .store(.word, to: .r2, at, .r1)])
    }

    /// Skips to `skip` when the frame has no outermost VLAN tag; aborts when the tag is cut short.
    private mutating func outerTagCheck(skip: Label, tagged: Label) {
        asm.emit([.mov(.r1, .r2), .alu(.add, .r1, 14), .jump(.greater, .r1, .r3, to: skip),
                  .load(.r1, .half, from: .r2, 12), .jump(.equal, .r1, raw(EtherType.vlan), to: tagged),
                  .jump(.notEqual, .r1, raw(EtherType.qinq), to: skip)])
        asm.label(tagged)
        asm.emit([.mov(.r1, .r2), .alu(.add, .r1, 18), .jump(.greater, .r1, .r3, to: "hit_aborted")])
    }

    /// Token bucket in byte-nanoseconds: refill rate x elapsed (full past the fill time),
    /// then take length x 1e9 if there is as much. Updates race between CPUs (no lock
    /// without BTF): at worst a frame per CPU is misjudged.
    private mutating func policeStep(argument: Int16, base: Int16, step: Int, control: Label,
                                     local: (String) -> Label) {
        let refill = local("refill"), take = local("take"), full = local("full"), exceed = local("exceed")
        let credit = Int16(PolicerBucket.creditOffset), last = Int16(PolicerBucket.lastOffset)
        let capacity = Int16(PolicerBucket.capacityOffset), rate = Int16(PolicerBucket.rateOffset)
        let fillTime = Int16(PolicerBucket.fillTimeOffset), decided = local("decided")
        let overlimits = Int16(PolicerBucket.overlimitsOffset), dropped = Int16(PolicerBucket.droppedOffset)
        asm.emit([.load(.r1, .word, from: .r7, argument), .store(.word, to: .fp, -16, .r1),
                  .loadMap(.r1, FlowMaps.policers), .mov(.r2, .fp), .alu(.add, .r2, -16), .call(.mapLookupElem),
                  .jump(.equal, .r0, 0, to: control), .mov(.r8, .r0), .call(.ktimeGetNs),
                  .load(.r1, .double, from: .r8, last), .jump(.notEqual, .r1, 0, to: refill),
                  .store(.double, to: .r8, last, .r0)])
        asm.label(full)
        asm.emit([.load(.r2, .double, from: .r8, capacity), .store(.double, to: .r8, credit, .r2), .jump(to: take)])
        asm.label(refill)
        asm.emit([.jump(.lessOrEqual, .r0, .r1, to: take), .store(.double, to: .r8, last, .r0),
                  .mov(.r2, .r0), .alu(.sub, .r2, .r1), .load(.r3, .double, from: .r8, fillTime),
                  .jump(.greater, .r2, .r3, to: full),
                  .load(.r3, .double, from: .r8, rate), .alu(.mul, .r2, .r3), .load(.r3, .double, from: .r8, credit),
                  .alu(.add, .r2, .r3), .load(.r3, .double, from: .r8, capacity),
                  .jump(.lessOrEqual, .r2, .r3, to: local("store")), .mov(.r2, .r3)])
        asm.label(local("store"))
        asm.emit(.store(.double, to: .r8, credit, .r2))
        asm.label(take)
        asm.emit([.load(.r2, .double, from: .fp, -8), .alu(.mul, .r2, 1_000_000_000),
                  .load(.r3, .double, from: .r8, credit), .jump(.less, .r3, .r2, to: exceed),
                  .alu(.sub, .r3, .r2), .store(.double, to: .r8, credit, .r3),
                  .load(.r1, .byte, from: .r7, base + Int16(ActionStep.controlOffset)), .jump(to: decided)])
        // tc's police statistics: overlimits counts the frames that exceeded, dropped
        // those whose control, conform or exceed, was drop. Shared by all CPUs: atomic.
        asm.label(exceed)
        asm.emit([.mov(.r2, 1), .atomic(.add, .double, to: .r8, overlimits, .r2),
                  .load(.r1, .byte, from: .r7, base + Int16(ActionStep.exceedOffset))])
        asm.label(decided)
        asm.emit([.jump(.notEqual, .r1, Int32(ActionStep.Control.drop.rawValue), to: Label("control_\(step)_r1")),
                  .mov(.r2, 1), .atomic(.add, .double, to: .r8, dropped, .r2), .jump(to: Label("control_\(step)_r1"))])
    }

    /// An unconditional jump, left out after one (the verifier refuses unreachable code).
    private mutating func goto(_ label: Label) {
        let last = asm.instructions.last
        guard last != .exit, last?.opcode != Instruction.jump(to: label).opcode else { return }
        asm.emit(.jump(to: label))
    }

    private func isReferenced(_ label: Label) -> Bool {
        asm.instructions.contains { $0.reference == .label(label) }
    }

    // MARK: - log(_, slot)

    /// Appends the slot to the trace log.
    private mutating func logFunction() {
        asm.label("log")
        asm.emit([.store(.word, to: .fp, -4, .r2), .store(.word, to: .fp, -8, 0), .loadMap(.r1, FlowMaps.trace),
                  .mov(.r2, .fp), .alu(.add, .r2, -8), .call(.mapLookupElem), .jump(.equal, .r0, 0, to: "log_done"),
                  .load(.r1, .word, from: .r0, 0), .jump(.greaterOrEqual, .r1, Int32(TraceLog.capacity), to: "log_done"),
                  .mov(.r2, .r1), .alu(.lsh, .r2, 2), .mov(.r3, .r0), .alu(.add, .r3, .r2),
                  .load(.r2, .word, from: .fp, -4), .store(.word, to: .r3, 4, .r2),
                  .alu(.add, .r1, 1), .store(.word, to: .r0, 0, .r1)])
        asm.label("log_done")
        asm.emit(Instruction.return(0))
    }
}

/// A 16-bit network-order constant as a half-word load sees it on a little-endian CPU.
func raw(_ value: UInt16) -> Int32 { Int32(value.byteSwapped) }

import BPFAssembly
import FlowRules
import Packets

/// The classifier for rule sets too large for one lookup per (prio, mask): tuple space
/// search in the manner of OVS and TupleMerge, with the tables in maps the program
/// walks in a loop, so that a new mask or prio is a map write and no count of them is a
/// limit of the program.
///
/// A rule goes into the table of its coarse mask: its own mask with each address prefix
/// shortened to a multiple of `prefixStep` bits and its port ranges left out (ranges
/// are compared as ranges, never as prefix blocks). In the table it sits in the bucket
/// of its value under that mask, and the bucket at a place in the heads array
/// (`Bucket.position`), in a chain of the rules there by rank (prio, then handle). The
/// program visits the tables by their best rank and stops once the best rule found
/// outranks every table left; at a bucket's place it checks the chain's rules in full
/// (every masked word, the port ranges, the headers present) until one matches.
///
/// The table a rule goes to depends on the rule alone: a set built rule by rule is the
/// set built at once.
public struct TupleTables: Equatable, Sendable {
    /// Prefix lengths of IPv4 and IPv6 addresses are rounded down to multiples of these
    /// in a table's mask: fewer tables (visits, probes) against longer chains (checks).
    /// Chosen on the ClassBench sets and generated ACLs (docs/compiler.md).
    static let prefixStep: [KeyField: Int] = [.srcIPv4: 8, .dstIPv4: 8, .srcIPv6: 32, .dstIPv6: 32]

    /// Bits no table masks: the rule's check compares them. Rules rarely match on them,
    /// and each combination would otherwise be a table of its own (the generated 100,000
    /// rules needed 1,656 tables with them, 298 without): a frame visits tables, while
    /// a bucket's chain is short. The bytes kept of each field (a VLAN TCI keeps its id,
    /// not its priority); a port masked in part (`0/0xfc00`) is left out too.
    static let checkedOnly: [(KeyField, [UInt8])] = [
        (.tos, [0]), (.ttl, [0]), (.ipFlags, [0]), (.tcpFlags, [0, 0]),
        (.vlanTCI, [0x0f, 0xff]), (.cvlanTCI, [0x0f, 0xff]),
    ]

    /// By coarse mask.
    public private(set) var tables: [TableMask: Table] = [:]
    /// Table -> its key in the buckets map and its place in the outer lists; stable.
    public private(set) var tableIndex: StableIndex<TableMask>
    /// By counter slot.
    public private(set) var rules: [UInt32: TableRule] = [:]
    /// Rules reading each field (a ranged port counts: the program compares it).
    private var fieldUsers = UseCounts<KeyField>()
    private var rangeUsers = 0
    /// Buckets (table, fingerprint) with rules, over all tables.
    public private(set) var bucketCount = 0
    /// Place in the heads array (`Bucket.position`) -> the slots of the rules whose
    /// buckets are there, by rank: buckets that share a place share a chain.
    public private(set) var chains: [UInt32: [UInt32]] = [:]
    /// Which tables can hold a frame's rule (`TableFilter`).
    public private(set) var filter = TableFilter()
    /// Places in the heads array, a power of two: at least twice the buckets, so that few
    /// share a place. Kept while they fit; past it, every place moves: new maps.
    public private(set) var bucketCapacity: Int
    /// Room in each half of the tables list.
    public private(set) var tableCapacity: Int

    /// The fields the parser extracts: every field in the words the rules read, so that a
    /// rule reading another field of a word already read (ip_tos beside ip_proto, a
    /// source port beside a destination port) is map writes, not a new program.
    public private(set) var fields: Set<KeyField> = []
    /// The record's 8-byte words the rules read: a rule's check and a table's mask are
    /// these words, in this order, and a bucket's fingerprint folds them. Word 0 is always
    /// one: it holds the protocol every rule names.
    public private(set) var words = [0]

    /// `words` and `fields` again, after a field got its first user or lost its last:
    /// every change reads them (twice, in its program shapes), few change them.
    private mutating func readFieldsAgain() {
        words = Set([0] + fieldUsers.keys.flatMap { $0.offset / 8 ... ($0.offset + $0.width - 1) / 8 }).sorted()
        let read = Set(words)
        fields = Set(KeyField.allCases.filter { field in
            (field.offset / 8 ... (field.offset + field.width - 1) / 8).contains(where: read.contains)
        })
    }
    public var usesRanges: Bool { rangeUsers > 0 }

    /// Tables in lookup order: by best rank, then index.
    public var lookupOrder: [Table] {
        tables.values.sorted { ($0.rank, $0.index) < ($1.rank, $1.index) }
    }

    /// The tables the program walks in order (by best rank), the ones the filter does
    /// not pick: the filter's tables it finds by their bits.
    public var list: [Table] { lookupOrder.filter { !$0.isFiltered } }

    /// The filter's tables, by index.
    public var filtered: [Table] { tables.values.filter(\.isFiltered).sorted { $0.index < $1.index } }

    /// Per filtered table (by index), the bits of the filtered tables of its filter word
    /// after it in lookup order: a frame whose best so far outranks a table outranks
    /// those too, and drops them from its candidates at once (`TableEntry.laterOffset`).
    /// The program visits candidates by index, which is lookup order for tables made
    /// together. Kept, and made again only when a filtered table comes, goes or moves in
    /// that order.
    public private(set) var later: [UInt32: UInt64] = [:]

    private static func later(of tables: some Sequence<Table>) -> [UInt32: UInt64] {
        // Per filter word, the bits of the tables placed so far (a filtered table's index
        // is within the words' bits).
        var bits = [UInt64](repeating: 0, count: TableFilter.maxWords)
        var later: [UInt32: UInt64] = [:]
        // Ranks and indexes only: a table copied is three collections retained and released.
        let order = tables.lazy.filter(\.isFiltered).map { (rank: $0.rank, index: $0.index) }
        for (_, index) in order.sorted(by: { ($0.rank, $0.index) > ($1.rank, $1.index) }) {
            later[index] = bits[Int(index / 64)]
            bits[Int(index / 64)] |= 1 << UInt64(index % 64)
        }
        return later
    }

    /// Words of filter bits a frame reads: a bit for each table the list has room for, up
    /// to `TableFilter.maxWords`. The program is made for this many.
    public var filterWords: Int { TableFilter.words(tableCapacity: tableCapacity) }

    /// Makes `later` again; `writes` learns the filtered entries whose bits changed.
    private mutating func reorder(_ writes: inout TableWrites) {
        let made = Self.later(of: tables.values)
        for (index, bits) in made where later[index] != bits { writes.entries.insert(index) }
        later = made
    }

    /// The rules of `placed` (slot, and the rest of what a table holds of them) in
    /// tables, keeping the indexes and sizes of `memory`. Room for `count` rules (at
    /// most) is made at once: 100,000 rules of 360 bytes, grown step by step, are copied
    /// and their pages faulted in again at each doubling.
    init(_ placed: some Sequence<(slot: UInt32, rule: TableRule)>, count: Int, memory: TableMemory?) {
        tableIndex = memory?.tableIndex ?? StableIndex()
        bucketCapacity = memory?.bucketCapacity ?? Plan.capacity(for: 0)
        tableCapacity = memory?.tableCapacity ?? Self.minimumTableCapacity
        var masks: [TableMask] = []
        rules.reserveCapacity(count)
        for (slot, rule) in placed {
            rules[slot] = rule
            self.count(rule, +1)
            if tables[rule.table] == nil {
                // Indexed and filtered below, once the room for tables is known.
                tables[rule.table] = Table(mask: rule.table, index: 0, filterWords: 1)
                masks.append(rule.table)
            }
            tables[rule.table]!.ranks.append(rule.rank)
            tables[rule.table]!.buckets[rule.bucket, default: 0] += 1
            tables[rule.table]!.keys[rule.key, default: 0] += 1
        }
        let indexes = tableIndex.assign(masks)
        for (mask, index) in zip(masks, indexes) {
            tables[mask]!.index = index
            tables[mask]!.ranks.sort()
            bucketCount += tables[mask]!.buckets.count
        }
        growCapacities()
        rechain()
        refilter()
        readFieldsAgain()
    }

    /// The chains made again, every rule at its bucket's place for `bucketCapacity`.
    private mutating func rechain() {
        var chains: [UInt32: [UInt32]] = [:]
        for (slot, rule) in rules { chains[position(of: rule), default: []].append(slot) }
        for place in Array(chains.keys) { chains[place]!.sort { rules[$0]!.rank < rules[$1]!.rank } }
        self.chains = chains
    }

    /// The place of `rule`'s bucket, its table indexed.
    func position(of rule: TableRule) -> UInt32 {
        Bucket.position(index: tableIndex[rule.table]!, fingerprint: rule.bucket, capacity: bucketCapacity)
    }

    /// Every table's filter fields, the filter and `later` made again for `filterWords`:
    /// a table past the words' bits is in the list.
    private mutating func refilter() {
        let words = filterWords
        filter = TableFilter()
        for mask in Array(tables.keys) { tables[mask]!.filterWords = words }
        var ignored = Set<UInt32>()
        for table in tables.values {
            for key in table.keys.keys { filter.count(key, in: table, +1, &ignored) }
        }
        later = Self.later(of: tables.values)
    }

    public static let minimumTableCapacity = 64

    var memory: TableMemory {
        TableMemory(tableIndex: tableIndex, bucketCapacity: bucketCapacity, tableCapacity: tableCapacity)
    }

    /// Adds the rule at `slot`; `writes` learns what the kernel's maps need.
    mutating func add(_ rule: TableRule, slot: UInt32, _ writes: inout TableWrites) {
        rules[slot] = rule
        count(rule, +1)
        let (index, isNew) = tableIndex.insert(rule.table)
        // The table out of the dictionary while it changes: one lookup, not one a step.
        var table = tables.removeValue(forKey: rule.table)
            ?? Table(mask: rule.table, index: index, filterWords: filterWords)
        let before = table.rank
        table.ranks.insert(rule.rank, at: table.ranks.partitioningIndex { $0 >= rule.rank })
        let moved = isNew || before != rule.rank && table.rank == rule.rank
        if moved { writes.changed(table) }
        table.buckets[rule.bucket, default: 0] += 1
        if table.buckets[rule.bucket] == 1 { bucketCount += 1 }
        let key = rule.key
        table.keys[key, default: 0] += 1
        if table.keys[key] == 1 { filter.count(key, in: table, +1, &writes.filter) }
        tables[rule.table] = table
        let place = position(of: rule)
        var chain = chains.removeValue(forKey: place) ?? []
        let position = chain.partitioningIndex { rules[$0]!.rank > rule.rank }
        chain.insert(slot, at: position)
        chains[place] = chain
        // The rule first (its link to the next), then what leads to it.
        writes.rules.insert(slot)
        if position == 0 {
            writes.buckets.insert(place)
        } else {
            writes.rules.insert(chain[position - 1])
        }
        if moved && table.isFiltered { reorder(&writes) }
        fitCapacities()
    }

    /// Removes the rule at `slot`, which the tables must hold.
    mutating func remove(slot: UInt32, _ writes: inout TableWrites) {
        // The table out of the dictionary while it changes (as in `add`): a second
        // reference would copy its buckets and keys.
        guard let rule = rules.removeValue(forKey: slot), var table = tables.removeValue(forKey: rule.table) else {
            preconditionFailure("slot \(slot) is in no table")
        }
        count(rule, -1)
        let before = table.rank
        table.ranks.remove(at: table.ranks.firstIndex(of: rule.rank)!)
        let place = position(of: rule)
        var chain = chains.removeValue(forKey: place)!
        let position = chain.firstIndex(of: slot)!
        chain.remove(at: position)
        chains[place] = chain.isEmpty ? nil : chain
        if position == 0 {
            writes.buckets.insert(place)
        } else {
            writes.rules.insert(chain[position - 1])
        }
        // Its check goes too, once nothing leads to it.
        writes.rules.insert(slot)
        table.buckets[rule.bucket]! -= 1
        if table.buckets[rule.bucket] == 0 {
            table.buckets[rule.bucket] = nil
            bucketCount -= 1
        }
        let key = rule.key
        table.keys[key]! -= 1
        if table.keys[key] == 0 {
            table.keys[key] = nil
            filter.count(key, in: table, -1, &writes.filter)
        }
        let moved = table.ranks.isEmpty || table.rank != before
        if table.ranks.isEmpty {
            tables[rule.table] = nil
            tableIndex.remove(rule.table)
        } else {
            tables[rule.table] = table
        }
        if moved {
            writes.changed(table)
            if table.isFiltered { reorder(&writes) }
        }
    }

    /// What maps made afresh need: every rule, bucket and the list.
    public var everything: TableWrites {
        var writes = TableWrites()
        writes.rules = Set(rules.keys)
        writes.buckets = Set(chains.keys)
        writes.list = true
        writes.filter = filter.indexes
        writes.entries = Set(filtered.map(\.index))
        return writes
    }

    /// The slot after `slot` in its chain; 0 at the end.
    public func next(after slot: UInt32) -> UInt32 {
        guard let rule = rules[slot], let chain = chains[position(of: rule)],
              let position = chain.firstIndex(of: slot), position + 1 < chain.count
        else { return 0 }
        return chain[position + 1]
    }

    /// The heads array's value at `place`: its chain's first slot, 0 for none (no rule
    /// has slot 0).
    public func head(at place: UInt32) -> UInt32 { chains[place]?.first ?? 0 }


    private mutating func count(_ rule: TableRule, _ sign: Int) {
        var fieldsChanged = false
        for field in rule.fields {
            let users = sign > 0 ? fieldUsers.add(field) : fieldUsers.remove(field)
            fieldsChanged = fieldsChanged || users == (sign > 0 ? 1 : 0)
        }
        if fieldsChanged { readFieldsAgain() }
        if rule.srcPorts != nil || rule.dstPorts != nil { rangeUsers += sign }
    }

    /// Puts back the sizes of `memory` (a change the kernel refused was undone).
    mutating func restore(_ memory: TableMemory) {
        resize {
            $0.bucketCapacity = memory.bucketCapacity
            $0.tableCapacity = memory.tableCapacity
        }
    }

    /// Room for the buckets and tables; kept while they fit, as subtables' are. More room
    /// for tables is more filter words, a new program and maps: filtered afresh; more
    /// places for buckets move every chain: chained afresh.
    private mutating func fitCapacities() {
        resize { $0.growCapacities() }
    }

    /// Runs `change` on the sizes, then makes again what new sizes move: the filter for
    /// more filter words, the chains for more places.
    private mutating func resize(_ change: (inout TupleTables) -> Void) {
        let words = filterWords, places = bucketCapacity
        change(&self)
        if filterWords != words { refilter() }
        if bucketCapacity != places { rechain() }
    }

    /// Past half of the places taken, four times the buckets' (`Plan.capacity(for:)` of
    /// twice them): at most half the places are taken, at least a quarter after a growth.
    private mutating func growCapacities() {
        if 2 * bucketCount > bucketCapacity { bucketCapacity = Plan.capacity(for: 2 * bucketCount) }
        while tables.count > tableCapacity { tableCapacity *= 2 }
    }
}

/// A table's mask: record bytes, coarser than (or as fine as) the masks of its rules.
public struct TableMask: Hashable, Sendable, Codable, CustomStringConvertible {
    var bytes: RecordBytes
    /// The headers a frame must have to be looked up in the table; kept, since every
    /// change of its rules reads it.
    public private(set) var presence: Presence = []

    /// `pattern`'s mask with each address prefix shortened to a multiple of its step (a
    /// mask that is not a prefix keeps its longest leading prefix), and without the bits
    /// `checkedOnly` names.
    init(_ pattern: KeyPattern) {
        bytes = pattern.mask
        for (field, kept) in TupleTables.checkedOnly where pattern.fields.contains(FieldSet(field)) {
            for index in 0 ..< field.width { bytes[field.offset + index] &= kept[index] }
        }
        for field in [KeyField.srcPort, .dstPort] where bytes.field(field) != [0xff, 0xff] {
            for index in 0 ..< field.width { bytes[field.offset + index] = 0 }
        }
        for (field, step) in TupleTables.prefixStep where pattern.fields.contains(FieldSet(field)) {
            var length = 0
            while length < field.width * 8, bytes[field.offset + length / 8] & (0x80 >> UInt8(length % 8)) != 0 {
                length += 1
            }
            length -= length % step
            for index in 0 ..< field.width {
                let bits = min(max(length - index * 8, 0), 8)
                bytes[field.offset + index] = bits == 0 ? 0 : UInt8(0xff << (8 - bits) & 0xff)
            }
        }
        presence = fields.reduce(into: []) { $0.formUnion($1.presence) }
    }

    /// The fields with mask bits.
    public var fields: [KeyField] {
        KeyField.allCases.filter { field in (field.offset ..< field.offset + field.width).contains { bytes[$0] != 0 } }
    }

    /// The mask's bytes of `field`.
    public func field(_ field: KeyField) -> [UInt8] { bytes.field(field) }

    /// The mask's word `word` as the program loads it (little-endian).
    public func word(_ word: Int) -> UInt64 { bytes.word(word) }

    /// `field/mask` for each field with mask bits, as `compile` prints subtables' masks.
    public var description: String {
        fields.map { field in
            field.name + "/" + bytes.field(field).map { String($0, radix: 16).leftPadded(to: 2) }.joined()
        }.joined(separator: " ")
    }

    public init(from decoder: any Decoder) throws {
        let hex = try decoder.singleValueContainer().decode(String.self)
        guard hex.count == 2 * KeyField.recordSize else {
            throw Swift.DecodingError.dataCorrupted(Swift.DecodingError.Context(codingPath: decoder.codingPath, debugDescription: "table mask \(hex)"))
        }
        bytes = RecordBytes()
        var index = hex.startIndex
        for offset in 0 ..< KeyField.recordSize {
            let next = hex.index(index, offsetBy: 2)
            guard let byte = UInt8(hex[index ..< next], radix: 16) else {
                throw Swift.DecodingError.dataCorrupted(Swift.DecodingError.Context(codingPath: decoder.codingPath, debugDescription: "table mask \(hex)"))
            }
            bytes[offset] = byte
            index = next
        }
        presence = fields.reduce(into: []) { $0.formUnion($1.presence) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode((0 ..< KeyField.recordSize).map { String(bytes[$0], radix: 16).leftPadded(to: 2) }.joined())
    }
}

/// One table: its rules by bucket, each bucket's chain best rank first.
public struct Table: Equatable, Sendable {
    public let mask: TableMask
    public internal(set) var index: UInt32 {
        didSet { filterFields = TableFilter.fields(filtering: mask, index: index, words: filterWords) }
    }
    /// The plan's `TupleTables.filterWords`.
    var filterWords: Int {
        didSet { filterFields = TableFilter.fields(filtering: mask, index: index, words: filterWords) }
    }
    /// Per `TableFilter` dimension, the field that filters the table; nil where none does.
    public private(set) var filterFields: [KeyField?]
    /// Its rules' ranks, ascending.
    var ranks: [UInt64] = []
    /// Bucket (`TableRule.bucket`, a fingerprint) -> how many of its rules are there.
    var buckets: [UInt32: Int] = [:]
    /// Key (value under the mask) -> its rules: the filter counts keys, several of which
    /// may share a bucket.
    var keys: [RecordBytes: Int] = [:]

    init(mask: TableMask, index: UInt32, filterWords: Int) {
        self.mask = mask
        self.index = index
        self.filterWords = filterWords
        filterFields = TableFilter.fields(filtering: mask, index: index, words: filterWords)
    }

    /// Whether the program finds the table by its filter bits rather than in the list.
    public var isFiltered: Bool { filterFields.contains { $0 != nil } }

    /// The best rank of its rules: no frame finds a better one here.
    public var rank: UInt64 { ranks.first ?? .max }
    public var ruleCount: Int { ranks.count }
    public var bucketCount: Int { buckets.count }
}

/// A rule as the table classifier holds it.
public struct TableRule: Equatable, Sendable {
    /// prio << 32 | handle: lower is better.
    public var rank: UInt64
    public var action: UInt32
    /// Every header its fields come from (a field may be required under no mask bits).
    public var presence: Presence
    var value: RecordBytes
    var mask: RecordBytes
    public var srcPorts: PortRange?
    public var dstPorts: PortRange?
    let table: TableMask
    /// Its bucket in the table: `key`'s fingerprint.
    public let bucket: UInt32
    let fields: [KeyField]

    /// Nil for a rule that can never match (it keeps its counter slot, in no table).
    init?(_ rule: FlowRule, key ruleKey: RuleKey, action: UInt32) {
        guard let pattern = ruleKey.pattern else { return nil }
        rank = Self.rank(prio: rule.prio, handle: rule.handle)
        self.action = action
        value = pattern.value
        mask = pattern.mask
        srcPorts = ruleKey.srcPorts
        dstPorts = ruleKey.dstPorts
        table = TableMask(pattern)
        bucket = Bucket.fingerprint(Self.key(pattern.value, under: table))
        fields = pattern.fields.fields
        presence = fields.reduce(into: []) { $0.formUnion($1.presence) }
    }

    /// The rule's value under its table's mask; made when asked, not kept (104 bytes a
    /// rule, in a plan of 100,000: placing or removing a rule makes it once).
    var key: RecordBytes { Self.key(value, under: table) }

    private static func key(_ value: RecordBytes, under table: TableMask) -> RecordBytes {
        var key = RecordBytes()
        for offset in 0 ..< KeyField.recordSize { key[offset] = value[offset] & table.bytes[offset] }
        return key
    }

    static func rank(prio: UInt16, handle: UInt32) -> UInt64 { UInt64(prio) << 32 | UInt64(handle) }

    public var prio: UInt16 { UInt16(rank >> 32) }
    public var handle: UInt32 { UInt32(truncatingIfNeeded: rank) }

    /// The rule's check as the program reads it from the rules map.
    public func check(next: UInt32, words: [Int]) -> RuleCheck {
        RuleCheck(rank: rank, next: next, action: action, presence: presence.rawValue,
                  srcPorts: srcPorts.map { ($0.min, $0.max) } ?? (0, .max),
                  dstPorts: dstPorts.map { ($0.min, $0.max) } ?? (0, .max),
                  words: words.map { (value.word($0), mask.word($0)) })
    }
}

/// Buckets: a rule's bucket is the fingerprint of its key (its value under its
/// table's mask), and the bucket's place in the heads array (`xf_buckets`, an array:
/// the program reads it inline, with no call and no hash of its own) follows from the
/// fingerprint and the table's index. Rules whose buckets share a place share a chain,
/// by rank.
///
/// A probe hashes the masked words once, not jhash over up to 13 of them (it took ~35
/// ns of a probe at 9): the program folds each word into the fingerprint as it masks it.
/// And a hash map's lookup of the fingerprint (jhash of 8 bytes, then its bucket's list)
/// was still 31% of a frame of the generated 100,000 rules. Keys whose places collide
/// share a chain: each rule's check compares every word, so a collision costs a check,
/// never a verdict.
public enum Bucket {
    /// The XOR of each record word (as a little-endian load reads it) times the odd
    /// multiplier of its place, its halves XORed: a word no rule reads is zero and adds
    /// nothing, so the fingerprint does not change with the words the plan reads. (The
    /// high half alone barely told keys apart in a word's low half: the multipliers are
    /// 32-bit immediates.)
    static func fingerprint(_ key: RecordBytes) -> UInt32 {
        var hash: UInt64 = 0
        for word in 0 ..< KeyField.recordSize / 8 { hash ^= key.word(word) &* multiplier(word) }
        return UInt32(truncatingIfNeeded: hash >> 32 ^ hash)
    }

    /// A 32-bit immediate, sign-extended to 64 bits as the program's multiply reads it.
    public static func multiplierImmediate(_ word: Int) -> Int32 { Int32(bitPattern: 0x9e37_79b1 &+ 0x7f4a_7c16 &* UInt32(word)) }
    static func multiplier(_ word: Int) -> UInt64 { UInt64(bitPattern: Int64(multiplierImmediate(word))) }

    /// Spreads the tables' indexes over the places, and then the sum over the places (odd;
    /// 32-bit arithmetic, as the program's).
    public static let indexMultiplier: UInt32 = 0x85eb_ca6b
    public static let placeMultiplier: UInt32 = 0x9e37_79b1

    /// The place of a bucket in a heads array of `capacity` places (a power of two): the
    /// top bits of a multiplicative hash. The fingerprint's low bits alone are not enough:
    /// keys that differ only in a word's top bytes (the last two of an IPv4 destination)
    /// differ only in its top half.
    public static func position(index: UInt32, fingerprint: UInt32, capacity: Int) -> UInt32 {
        ((fingerprint &+ index &* indexMultiplier) &* placeMultiplier) >> placeShift(capacity: capacity)
    }

    /// 32 less the bits of a place.
    public static func placeShift(capacity: Int) -> UInt32 { UInt32(32 - capacity.trailingZeroBitCount) }
}

/// What of the tables a change leaves for the kernel's maps, by name: the values follow
/// from the plan when they are written. The checks of present rules are written before
/// the buckets, the buckets before the list, and the checks of rules that went last
/// (a check that can never match), so that a frame only finds what is in place.
public struct TableWrites: Equatable, Sendable {
    /// Slots whose check (or link to the next rule) changed, or whose rule went.
    public var rules: Set<UInt32> = []
    /// Places in the heads array whose chain's first rule changed, or whose chain went.
    public var buckets: Set<UInt32> = []
    /// The list changed (a table of it came or went, or its best rank moved).
    public var list = false
    /// Filtered tables (by index) that came or went, or whose best rank or
    /// `TupleTables.later` bits moved.
    public var entries: Set<UInt32> = []
    /// Filter entries (`TableFilter` keys) whose bits changed.
    public var filter: Set<UInt32> = []

    /// Notes that `table` came, went or changed its best rank.
    mutating func changed(_ table: Table) {
        if table.isFiltered { entries.insert(table.index) } else { list = true }
    }

    public init() {}

    mutating func merge(_ later: TableWrites) {
        rules.formUnion(later.rules)
        buckets.formUnion(later.buckets)
        list = list || later.list
        entries.formUnion(later.entries)
        filter.formUnion(later.filter)
    }

    var count: Int { rules.count + buckets.count + (list ? 1 : 0) + entries.count + filter.count }
}

/// What one plan of the table classifier hands to the next.
public struct TableMemory: Hashable, Sendable, Codable {
    public var tableIndex: StableIndex<TableMask>
    public var bucketCapacity: Int
    public var tableCapacity: Int
}

/// The value of a rule in the rules map: rank, next slot in the bucket, action index,
/// required headers, port ranges (host order), then (value, mask) per word.
public struct RuleCheck: Equatable, Sendable {
    public var rank: UInt64
    public var next: UInt32
    public var action: UInt32
    public var presence: UInt32
    public var srcPorts: (min: UInt16, max: UInt16)
    public var dstPorts: (min: UInt16, max: UInt16)
    public var words: [(value: UInt64, mask: UInt64)]

    /// What the rules map holds at a slot no rule has: a check no frame passes (it asks
    /// for every header at once).
    public static func vacant(words: Int) -> RuleCheck {
        RuleCheck(rank: .max, next: 0, action: 0, presence: .max, srcPorts: (0, .max), dstPorts: (0, .max),
                  words: Array(repeating: (0, 0), count: words))
    }

    public static let rankOffset = 0, nextOffset = 8, actionOffset = 12, presenceOffset = 16
    public static let srcMinOffset = 20, srcMaxOffset = 22, dstMinOffset = 24, dstMaxOffset = 26, wordsOffset = 32
    public static func byteCount(words: Int) -> Int { wordsOffset + 16 * words }

    public var encodedBytes: [UInt8] {
        var writer = ByteWriter(capacity: Self.byteCount(words: words.count))
        writer.write(rank)
        writer.write(next)
        writer.write(action)
        writer.write(presence)
        for port in [srcPorts.min, srcPorts.max, dstPorts.min, dstPorts.max] { writer.write(port) }
        writer.write(UInt32(0))
        for word in words {
            writer.write(word.value)
            writer.write(word.mask)
        }
        return writer.bytes
    }

    public static func == (a: Self, b: Self) -> Bool { a.encodedBytes == b.encodedBytes }
}

/// A table as the program reads it from the tables map (in the list, or at its index
/// past the head): its best rank, index, required headers and mask words, in the order
/// of the plan's words. An entry is at least as large as the head, which shares its map.
public enum TableEntry {
    public static let rankOffset = 0, indexOffset = 8, presenceOffset = 12, laterOffset = 16, masksOffset = 24
    public static func byteCount(words: Int) -> Int { max(masksOffset + 8 * words, TableListHead.byteCount) }

    /// `later`: a filtered table's `TupleTables.later` bits (the list's entries have none).
    public static func encoded(_ table: Table, words: [Int], later: UInt64 = 0) -> [UInt8] {
        var writer = ByteWriter(capacity: byteCount(words: words.count))
        writer.write(table.rank)
        writer.write(table.index)
        writer.write(table.mask.presence.rawValue)
        writer.write(later)
        for word in words { writer.write(table.mask.word(word)) }
        return writer.bytes + Array(repeating: 0, count: byteCount(words: words.count) - writer.bytes.count)
    }

    /// What the map holds at the index of a filtered table that went: one no frame's
    /// headers satisfy, and that drops no other table.
    public static func vacant(words: Int) -> [UInt8] {
        var writer = ByteWriter(capacity: byteCount(words: words))
        writer.write(UInt64.max)
        writer.write(UInt32(0))
        writer.write(UInt32.max)
        writer.write(UInt64(0))
        return writer.bytes + Array(repeating: 0, count: byteCount(words: words) - writer.bytes.count)
    }

    /// The tables map's keys: the list's two halves, the head, then the filtered tables.
    public static func headKey(tableCapacity: Int) -> UInt32 { UInt32(2 * tableCapacity) }
    public static func filteredBase(tableCapacity: Int) -> UInt32 { headKey(tableCapacity: tableCapacity) + 1 }

    /// A filtered table's place in its word's 64 is not its bit but the bit's de Bruijn
    /// index, `(1 << bit) x deBruijn >> 58`, a permutation of 0-63: the program finds
    /// it from the candidate's bit in a multiply and a shift, where counting the bits
    /// below it took seventeen dependent instructions a visit.
    public static let deBruijn: UInt64 = 0x03f7_9d71_b4ca_8b09
    /// Past the head, 64 places for each filter word: the word's, then the bit's.
    public static func key(filtered index: UInt32, tableCapacity: Int) -> UInt32 {
        filteredBase(tableCapacity: tableCapacity) + index / 64 * 64
            + UInt32(((1 << UInt64(index % 64)) &* deBruijn) >> 58)
    }
    public static func mapEntries(tableCapacity: Int) -> Int {
        2 * tableCapacity + 1 + 64 * TableFilter.words(tableCapacity: tableCapacity)
    }
}

/// Which tables may hold a frame's rule, by ten keys of 16 bits (dimensions): the top
/// 16 bits of each address (source and destination; IPv4 or IPv6, whichever the frame
/// has: the other reads as zero), a hash of each address's top 24 bits, of its top 32,
/// and of an IPv6 address's top 64, and each port. For each dimension and key, a bit per
/// table with a bucket there, in as many 64-bit words as the plan has room for tables
/// (`words(tableCapacity:)`, at most `maxWords`). The program ANDs the values once per
/// search (those of the dimensions whose fields the rules read) and visits a filtered
/// table only where all have its bit: a table whose buckets are all elsewhere costs
/// nothing. An address filters a table in one dimension, the one that reads the most of
/// its first bytes the table's mask holds whole (`addressBytes`): by the top 16 bits when
/// it masks 8 to 23 of them, by the hash of 24 when it masks 24 to 31, by the hash of 32
/// when it masks 32 to 63, by the hash of 64 when it masks more. Tables that mask no
/// address by 8 bits or more and neither port whole, or whose index is past the words'
/// bits, are in the list instead. Exact: each bit counts the keys behind it (a hash only
/// lets more tables through, never fewer).
///
/// Why these ten, measured with a model of the search on ClassBench's ACL and IP-chain
/// sets and the generated ACLs (docs/compiler.md): with the top 16 bits of the addresses
/// alone a ClassBench frame probed 2.8 to 8.2 tables to find 1.1 buckets, since the sets'
/// rules share prefixes; with the ports too, 1.7 to 4.0; with the 24-bit hash as well,
/// 1.3 to 1.8. The 32-bit hash took the generated 100,000 rules' probes from 19.1 a frame
/// to 13.2 (6.3 buckets found): host addresses under a shared /24, and IPv6 prefixes that
/// part after their first 24 bits; the 64-bit hash to 11.7.
public struct TableFilter: Equatable, Sendable {
    /// A dimension: the fields that hold it, and how many of a field's first bytes its
    /// key reads: 2 are the key; 3, 4 or 8 are hashed into one (`hash`).
    public struct Dimension: Sendable {
        public let fields: [KeyField]
        public let bytes: Int
    }

    public static let dimensions = [
        Dimension(fields: [.srcIPv4, .srcIPv6], bytes: 2), Dimension(fields: [.dstIPv4, .dstIPv6], bytes: 2),
        Dimension(fields: [.srcIPv4, .srcIPv6], bytes: 3), Dimension(fields: [.dstIPv4, .dstIPv6], bytes: 3),
        Dimension(fields: [.srcIPv4, .srcIPv6], bytes: 4), Dimension(fields: [.dstIPv4, .dstIPv6], bytes: 4),
        Dimension(fields: [.srcIPv6], bytes: 8), Dimension(fields: [.dstIPv6], bytes: 8),
        Dimension(fields: [.srcPort], bytes: 2), Dimension(fields: [.dstPort], bytes: 2),
    ]
    /// Per dimension.
    public static let entries = 1 << 16
    /// A frame ANDs ten values of this many words at most: 384 tables, a value of 48
    /// bytes (a filter map of 31 MB), and a short shift of the words on the stack.
    public static let maxWords = Bits.Words.count

    /// Words for a plan with room for `tableCapacity` tables (64, doubled as they grow).
    public static func words(tableCapacity: Int) -> Int { min(maxWords, max(1, tableCapacity / 64)) }

    /// The key of a field's first `count` bytes, 3, 4 or 8 (the low bytes of the
    /// little-endian word they start): the top 16 bits of their product with a
    /// golden-ratio constant, 32-bit (64-bit for 8 bytes).
    public static let hashMultiplier: UInt32 = 0x9e37_79b1
    public static func hash(_ word: UInt64, bytes count: Int) -> UInt32 {
        if count == 8 { return UInt32(truncatingIfNeeded: (word &* wideHashMultiplier) >> 48) }
        return ((UInt32(truncatingIfNeeded: word) & (count == 4 ? .max : 0xff_ffff)) &* hashMultiplier) >> 16
    }
    /// `hashMultiplier` sign-extended, as the program's 64-bit multiply reads its immediate.
    static let wideHashMultiplier = UInt64(bitPattern: Int64(Int32(bitPattern: hashMultiplier)))

    /// Filter key (`dimension x entries + key`) << 32 | table index -> the table's keys
    /// under it. Flat: a table of /8 addresses counts a key under 256 filter keys at once.
    private var counts: [UInt64: Int] = [:]
    /// Filter key -> the bits of the tables with keys under it, `maxWords` words; kept as
    /// the counts change, so that writing an entry reads it in one lookup.
    private var tableBits: [UInt32: Bits] = [:]

    /// A filter key's bits, in place: a key that gets its first table allocates nothing.
    private struct Bits: Equatable, Sendable {
        /// `maxWords` is their count.
        typealias Words = InlineArray<6, UInt64>
        var words = Words(repeating: 0)

        static func == (a: Self, b: Self) -> Bool { a.words.indices.allSatisfy { a.words[$0] == b.words[$0] } }
        var isEmpty: Bool { words.indices.allSatisfy { words[$0] == 0 } }
    }

    /// The tables' bits at `key`, `words` words.
    public func bits(at key: UInt32, words: Int) -> [UInt64] {
        let bits = tableBits[key] ?? Bits()
        return (0 ..< words).map { bits.words[$0] }
    }

    /// The filter map's value at `key`: `bits(at:words:)` as the program loads them.
    public func value(at key: UInt32, words: Int) -> [UInt8] {
        let bits = tableBits[key] ?? Bits()
        var writer = ByteWriter(capacity: 8 * words)
        for word in 0 ..< words { writer.write(bits.words[word]) }
        return writer.bytes
    }

    /// Every key with a bit.
    public var indexes: Set<UInt32> { Set(tableBits.keys) }

    /// Per dimension, the field that filters the table of `mask` at `index`: one whose
    /// first byte the mask holds whole and, for the addresses, in the dimension that
    /// reads as many of its bytes as the mask holds whole (up to 3).
    static func fields(filtering mask: TableMask, index: UInt32, words: Int) -> [KeyField?] {
        dimensions.map { dimension in
            guard index < 64 * words else { return nil }
            return dimension.fields.first { field in
                let whole = (0 ..< min(field.width, 8)).prefix { mask.bytes[field.offset + $0] == 0xff }.count
                return whole >= 1 && (field.width <= 2 || Self.addressBytes(whole: whole) == dimension.bytes)
            }
        }
    }

    /// The bytes of the address dimension that filters a table masking `whole` of an
    /// address's first bytes whole (at least one).
    static func addressBytes(whole: Int) -> Int { whole >= 8 ? 8 : whole >= 4 ? 4 : max(whole, 2) }

    /// Per dimension, the bits of the filtered tables of `tables` it does not filter:
    /// `maxWords` words a dimension.
    public static func unfiltered(_ tables: some Sequence<Table>) -> [UInt64] {
        var bits = [UInt64](repeating: 0, count: dimensions.count * maxWords)
        for table in tables where table.isFiltered {
            for position in dimensions.indices where table.filterFields[position] == nil {
                bits[position * maxWords + Int(table.index / 64)] |= 1 << UInt64(table.index % 64)
            }
        }
        return bits
    }

    /// The keys of dimension `position` under which `table`'s bucket `key` lies.
    static func keys(of key: RecordBytes, in table: Table, _ position: Int, field: KeyField) -> ClosedRange<UInt32> {
        let bytes = dimensions[position].bytes
        if bytes > 2 {
            let word = (0 ..< bytes).reduce(UInt64(0)) { $0 | UInt64(key[field.offset + $1]) << (8 * $1) }
            let hash = hash(word, bytes: bytes)
            return hash ... hash
        }
        // A mask of 16 bits or more: one value; of 8 to 15 (coarse masks have 8): all 256.
        let high = UInt32(key[field.offset]) << 8
        let low = UInt32(key[field.offset + 1])
        return table.mask.bytes[field.offset + 1] == 0xff ? high | low ... high | low : high ... high | 0xff
    }

    /// Counts the table key `key` of `table` in (or out of) the entries it covers;
    /// `changed` learns the keys whose bits change.
    mutating func count(_ key: RecordBytes, in table: Table, _ sign: Int, _ changed: inout Set<UInt32>) {
        for position in Self.dimensions.indices {
            guard let field = table.filterFields[position] else { continue }
            for value in Self.keys(of: key, in: table, position, field: field) {
                let filterKey = UInt32(position) << 16 | value
                let countKey = UInt64(filterKey) << 32 | UInt64(table.index)
                let left = (counts[countKey] ?? 0) + sign
                counts[countKey] = left == 0 ? nil : left
                // The table's bit comes with its first key here and goes with its last.
                guard left == 0 || left == sign else { continue }
                changed.insert(filterKey)
                tableBits[filterKey, default: Bits()].words[Int(table.index / 64)] ^= 1 << UInt64(table.index % 64)
                if tableBits[filterKey]!.isEmpty { tableBits[filterKey] = nil }
            }
        }
    }
}

/// The tables list's head: which half of the list the program reads (`generation & 1`),
/// how many tables each half holds, and per filter dimension the filtered tables' bits
/// that dimension does not filter (they hold for every frame; `TableFilter.maxWords`
/// words a dimension, whatever the plan's, so the head has one size). A change writes the
/// other half, then its count, then the generation: a frame reads one whole list, old
/// or new.
public struct TableListHead: Equatable, Sendable, MapCodable {
    public var generation: UInt32
    public var counts: (UInt32, UInt32)
    /// `TableFilter.maxWords` words per `TableFilter.dimensions`.
    public var unfiltered: [UInt64]

    public init(generation: UInt32, counts: (UInt32, UInt32), unfiltered: [UInt64]) {
        precondition(unfiltered.count == Self.unfilteredWords)
        self.generation = generation
        self.counts = counts
        self.unfiltered = unfiltered
    }

    /// A head for a map that has none yet: half 0, empty.
    public static let empty = TableListHead(generation: 0, counts: (0, 0),
                                            unfiltered: Array(repeating: 0, count: unfilteredWords))

    static let unfilteredWords = TableFilter.dimensions.count * TableFilter.maxWords
    public static let byteCount = unfilteredOffset + 8 * unfilteredWords
    public static let generationOffset = 0, countsOffset = 4, unfilteredOffset = 16

    public func encode(into writer: inout ByteWriter) {
        writer.write(generation)
        writer.write(counts.0)
        writer.write(counts.1)
        writer.write(UInt32(0))
        for bits in unfiltered { writer.write(bits) }
    }

    public init(from reader: inout ByteReader) throws(ByteDecodingError) {
        generation = try reader.read()
        counts = (try reader.read(), try reader.read())
        let _: UInt32 = try reader.read()
        unfiltered = []
        for _ in 0 ..< Self.unfilteredWords { unfiltered.append(try reader.read()) }
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.generation == b.generation && a.counts == b.counts && a.unfiltered == b.unfiltered
    }
}

extension RecordBytes {
    /// Word `word` (8 bytes from `8 * word`) as a little-endian load reads it.
    func word(_ word: Int) -> UInt64 {
        (0 ..< 8).reduce(UInt64(0)) { $0 | UInt64(self[8 * word + $1]) << (8 * $1) }
    }
}

extension Array {
    /// The first index whose element satisfies `belongs` (which must be false, then true
    /// along the array): a binary search.
    func partitioningIndex(where belongs: (Element) -> Bool) -> Int {
        var low = 0, high = count
        while low < high {
            let middle = (low + high) / 2
            if belongs(self[middle]) { high = middle } else { low = middle + 1 }
        }
        return low
    }
}

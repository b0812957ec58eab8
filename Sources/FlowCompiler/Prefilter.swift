import Packets

/// Which hash subtables can hit a frame, told by two bytes of its key record that they
/// all key on in full (the top of an address, or a port): one inlined array lookup
/// decides which of the hash lookups to make, so a frame pays for the subtables that
/// hold entries near it, not for every subtable of the rule set. (OVS's classifier
/// skips subtables with prefix tries for the same reason.)
///
/// The bits are exact: a bit is set while an entry of its subtable has those two bytes
/// (rule changes count the entries under each index).
public struct Prefilter: Hashable, Sendable {
    /// Where the two bytes are in the key record.
    public var offset: Int
    /// The bit of each filtered subtable, by map name, in lookup order.
    public var bits: [String: Int]
    /// The two bytes, as a little-endian half-word load of the record reads them -> the
    /// bits of the subtables with an entry there.
    public var table: [UInt16: UInt64]
    /// How many entries of each filtered subtable fall under each index, by map name: a
    /// bit is set exactly while its count is not zero, so rule changes keep `table` exact.
    var counts: [String: [UInt16: Int]] = [:]
    /// Where the two bytes are in the keys of each filtered subtable, by map name.
    private var keyPositions: [String: Int] = [:]

    /// The map is an array indexed by the two bytes.
    public static let entries = 1 << 16
    /// One bit per subtable in a u64.
    public static let maxSubtables = 64
    /// Below this, a lookup saved is not worth the prefilter's own.
    public static let minimumSubtables = 2

    /// Filters the hash subtables that key on the two bytes most of them share; nil when
    /// fewer than `minimumSubtables` share any. The counts of `previous` (the prefilter
    /// before a subtable came or went) are taken over rather than counted again.
    init?(_ subtables: [Subtable], reusing previous: Prefilter? = nil) {
        let hashed = subtables.filter { if case .hash = $0.storage { true } else { false } }
        var sharing: [Int: Int] = [:]
        for subtable in hashed {
            for offset in Self.candidates(subtable) { sharing[offset, default: 0] += 1 }
        }
        // The most shared; the first in the record among equals.
        guard let (offset, count) = sharing.max(by: { ($0.value, -$0.key) < ($1.value, -$1.key) }),
              count >= Self.minimumSubtables
        else { return nil }
        self.offset = offset
        let filtered = hashed.filter { Self.candidates($0).contains(offset) }.prefix(Self.maxSubtables)
        bits = Dictionary(uniqueKeysWithValues: filtered.enumerated().map { ($0.element.mapName, $0.offset) })
        table = [:]
        let kept = previous?.offset == offset ? previous!.counts : [:]
        for subtable in filtered {
            let name = subtable.mapName
            let first = subtable.mask.keyBytes.map(\.offset).firstIndex(of: offset)!
            keyPositions[name] = first
            var count: [UInt16: Int]
            if let known = kept[name] {
                count = known
            } else {
                count = Dictionary(minimumCapacity: min(subtable.entries.count, Self.entries))
                for key in subtable.entries.keys { count[Self.index(key, at: first), default: 0] += 1 }
            }
            for index in count.keys { table[index, default: 0] |= 1 << bits[name]! }
            counts[name] = count
        }
    }

    /// Fields whose first two bytes the subtable keys on unmasked.
    private static func candidates(_ subtable: Subtable) -> [Int] {
        subtable.mask.fields.compactMap { field, mask in
            mask.count >= 2 && mask[0] == 0xff && mask[1] == 0xff ? field.offset : nil
        }
    }

    private static func index(_ key: [UInt8], at position: Int) -> UInt16 {
        UInt16(key[position]) | UInt16(key[position + 1]) << 8
    }

    /// Counts a key that subtable `name` gained; returns its index and the index's new
    /// bits when they changed.
    mutating func count(_ key: [UInt8], in name: String) -> (index: UInt16, bits: UInt64)? {
        guard let position = keyPositions[name], let bit = bits[name] else { return nil }
        let index = Self.index(key, at: position)
        counts[name]![index, default: 0] += 1
        guard counts[name]![index] == 1 else { return nil }
        table[index, default: 0] |= 1 << bit
        return (index, table[index]!)
    }

    /// Uncounts a key that subtable `name` lost; returns its index and the index's new
    /// bits when they changed.
    mutating func uncount(_ key: [UInt8], in name: String) -> (index: UInt16, bits: UInt64)? {
        guard let position = keyPositions[name], let bit = bits[name] else { return nil }
        let index = Self.index(key, at: position)
        let left = counts[name]![index]! - 1
        counts[name]![index] = left == 0 ? nil : left
        guard left == 0 else { return nil }
        let word = table[index]! & ~(1 << bit)
        table[index] = word == 0 ? nil : word
        return (index, word)
    }

    /// Named by what its bits mean, so that a plan that filters differently gets a new
    /// map rather than rewriting one a running program reads.
    public var mapName: String {
        var hash = FNV1a()
        hash.mix(UInt8(offset))
        for (name, bit) in bits.sorted(by: { $0.value < $1.value }) {
            hash.mix(name.utf8)
            hash.mix(UInt8(bit))
        }
        return "xf_pf_" + String(hash.folded, radix: 16).leftPadded(to: 8)
    }
}

import FlowRules
import Packets

/// SplitMix64. A whole fuzz case (rules and frames) is a function of one 64-bit seed, so
/// the seed printed with a failure replays it exactly (`XDPFLOW_FUZZ_SEED`).
struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ z >> 30) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ z >> 27) &* 0x94d0_49bb_1331_11eb
        return z ^ z >> 31
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    mutating func chance(_ probability: Double) -> Bool { Double.random(in: 0 ..< 1, using: &self) < probability }

    mutating func pick<C: Collection>(_ choices: C) -> C.Element { choices.randomElement(using: &self)! }

    mutating func bits<T: FixedWidthInteger>(_: T.Type = T.self) -> T { T(truncatingIfNeeded: next()) }

    mutating func maybe<T>(_ probability: Double, _ make: (inout Self) -> T) -> T? {
        chance(probability) ? make(&self) : nil
    }

    /// One of the values, each as likely as its weight (a weight may be 0).
    mutating func weighted<T>(_ choices: [(Int, T)]) -> T {
        var roll = int(0 ... choices.reduce(0) { $0 + $1.0 } - 1)
        for (weight, value) in choices {
            if roll < weight { return value }
            roll -= weight
        }
        preconditionFailure("weights are positive")
    }
}

extension MaskableField {
    /// A value of the field with `bits` (any width) cut to the field.
    static func truncating(_ bits: UInt128) -> Self {
        Self(fieldBits: FieldBits(truncatingIfNeeded: bits) & allOnes.fieldBits)
    }

    func flipping(bit: Int) -> Self { Self(fieldBits: fieldBits ^ FieldBits(1) << bit) }
}

extension Masked {
    /// A value the mask selects: the key, other bits from `filler`.
    func sample(filler: Value) -> Value {
        Value(fieldBits: key.fieldBits | filler.fieldBits & ~mask.fieldBits)
    }

    /// Bits (from the right) where a value changes from matching to not, or nearly: the
    /// lowest and highest bits the mask compares, and the uncompared bit next to each.
    var edgeBits: [Int] {
        let bits = mask.fieldBits
        guard bits != 0 else { return [0, Value.fieldWidth - 1] }
        let lowest = bits.trailingZeroBitCount
        let highest = Value.FieldBits.bitWidth - 1 - bits.leadingZeroBitCount
        return [lowest, highest, lowest - 1, highest + 1].filter { (0 ..< Value.fieldWidth).contains($0) }
    }
}

import FlowRules
import Packets
import RuleSetWorkloads

/// The fuzz cases' generator is the workloads' (`RuleSetWorkloads.SeededRandom`).
typealias SeededRandom = RuleSetWorkloads.SeededRandom

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

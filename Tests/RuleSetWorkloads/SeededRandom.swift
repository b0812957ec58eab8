/// SplitMix64: a workload, and a whole fuzz case of the tests, is a function of one
/// 64-bit seed, on every platform and Swift version (the system generator cannot be
/// seeded), so the seed printed with a failure replays it exactly.
public struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ z >> 30) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ z >> 27) &* 0x94d0_49bb_1331_11eb
        return z ^ z >> 31
    }

    public mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &self) }

    public mutating func chance(_ probability: Double) -> Bool {
        Double.random(in: 0 ..< 1, using: &self) < probability
    }

    public mutating func pick<C: Collection>(_ choices: C) -> C.Element { choices.randomElement(using: &self)! }

    public mutating func bits<T: FixedWidthInteger>(_: T.Type = T.self) -> T { T(truncatingIfNeeded: next()) }

    public mutating func maybe<T>(_ probability: Double, _ make: (inout Self) -> T) -> T? {
        chance(probability) ? make(&self) : nil
    }

    /// One of the values, each as likely as its weight (a weight may be 0).
    public mutating func weighted<T>(_ choices: [(Int, T)]) -> T {
        var roll = int(0 ... choices.reduce(0) { $0 + $1.0 } - 1)
        for (weight, value) in choices {
            if roll < weight { return value }
            roll -= weight
        }
        preconditionFailure("weights are positive")
    }
}

import FlowRules
import PropertyBased
import Testing

@Suite struct JSONReadingTests {
    /// A value of strings with every kind of character, numbers, arrays and objects, at
    /// most `depth` levels deep, from `seed`.
    static func value(_ seed: inout UInt64, depth: Int) -> JSONValue {
        func next(_ bound: UInt64) -> UInt64 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return (seed >> 33) % bound
        }
        switch next(depth > 0 ? 8 : 6) {
        case 0: return .null
        case 1: return .bool(next(2) == 0)
        case 2: return .number(next(2) == 0 ? next(1000) : seed)
        case 3: return .real(-Double(next(100_000)) / 8)
        case 4, 5:
            let characters: [Character] = ["a", "\"", "\\", "\n", "\t", "\u{1}", "é", "😀", "/", " "]
            return .string(String((0 ..< next(8)).map { _ in characters[Int(next(UInt64(characters.count)))] }))
        case 6: return .array((0 ..< next(4)).map { _ in value(&seed, depth: depth - 1) })
        default: return .object((0 ..< next(4)).map { index in ("k\(index)\"\u{7}", value(&seed, depth: depth - 1)) })
        }
    }

    @Test func readsWhatThePrinterWrites() async {
        await propertyCheck(count: 2000, input: Gen.uint64(), Gen.bool()) { seed, pretty in
            var state = seed
            let printed = Self.value(&state, depth: 4).serialized(pretty: pretty)
            let read = try JSONValue(reading: Array(printed.utf8))
            #expect(read.serialized(pretty: pretty) == printed)
        }
    }

    @Test func readsEscapesAndNegativeNumbers() throws {
        let read = try JSONValue(reading: Array(#"{"a": "x\u00e9\ud83d\ude00\/", "b": [-10, 2.5e3, true, null]}"#.utf8))
        #expect(read["a"]?.string == "xé😀/")
        #expect(read["b"]?.array?.map(\.integer) == [-10, 2500, nil, nil])
        // A lone surrogate is U+FFFD, and what follows it is read.
        #expect(try JSONValue(reading: Array(#""\ud800\u0041""#.utf8)).string == "\u{fffd}A")
    }

    @Test func namesWhereADocumentIsNotJSON() {
        for (text, offset) in [("{\"a\" 1}", 5), ("[1, 2", 5), ("[1] x", 4), ("\"open", 5), ("{\"a\": tru}", 9)] {
            #expect(throws: JSONValue.ReadError.self, "\(text)") { try JSONValue(reading: Array(text.utf8)) }
            do {
                _ = try JSONValue(reading: Array(text.utf8))
            } catch {
                #expect(error.offset == offset, "\(text): \(error)")
            }
        }
    }
}

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

    /// The elements of `{"nftables": [...]}` read by `ArrayStream` from bytes cut anywhere.
    static func streamed(_ bytes: [UInt8], cuts: [Int]) throws(JSONValue.ReadError) -> [JSONValue] {
        var stream = JSONValue.ArrayStream(key: "nftables")
        var elements: [JSONValue] = []
        var start = 0
        for cut in (cuts.map { $0 % (bytes.count + 1) } + [bytes.count]).sorted() where cut >= start {
            elements += try stream.read(bytes[start ..< cut])
            start = cut
        }
        try stream.finish()
        return elements
    }

    @Test func streamsTheElementsOfTheArrayItOpensWith() async {
        await propertyCheck(count: 1000, input: Gen.uint64(), Gen.bool(), Gen.uint64()) { seed, pretty, cutSeed in
            var state = seed
            let items = (0 ..< Int(seed % 6)).map { _ in Self.value(&state, depth: 3) }
            let printed = Array(JSONValue.object([("nftables", .array(items))]).serialized(pretty: pretty).utf8)
            var cutState = cutSeed
            let cuts = (0 ..< Int(cutSeed % 9)).map { _ in
                cutState = cutState &* 6364136223846793005 &+ 1442695040888963407
                return Int(cutState >> 33)
            }
            let read = try Self.streamed(printed, cuts: cuts)
            #expect(read.map { $0.serialized(pretty: false) } == items.map { $0.serialized(pretty: false) })
        }
    }

    @Test func streamNamesWhereTheDocumentIsNotWhole() {
        for (text, offset) in [("{\"nftables\": [1, 2", 18), ("{\"nftables\": [1 2]}", 16), ("{\"other\": []}", 0),
                               ("{\"nftables\": [{\"a\": tru}]}", 23), ("{\"nftables\": []", 15),
                               ("{\"nftables\": [] } x", 18), ("table netdev t", 0), ("{\"nftables\": [,]}", 14)] {
            for cuts in [[], [1, 5, 14, 16]] {
                do {
                    _ = try Self.streamed(Array(text.utf8), cuts: cuts)
                    Issue.record("\(text): read")
                } catch {
                    #expect(error.offset == offset, "\(text) cut at \(cuts): \(error)")
                }
            }
        }
    }
}

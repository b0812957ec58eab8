/// Reading JSON into the same value the printers write, for what other tools print
/// (`nft -j`). Objects keep their keys in order; readers look keys up by name.
///
/// By hand, over UTF-8 bytes: FoundationEssentials' JSONDecoder reads into a `Decodable`
/// only, and a value of unknown type means a failed decode per type tried, each building
/// its coding path: 4 of the 5 s that `nft -j` of 10,000 rules took to read.
extension JSONValue {
    /// Why a document is not JSON: where and what was expected.
    public struct ReadError: Error, Hashable, Sendable, CustomStringConvertible {
        public var offset: Int
        public var expected: String
        public var description: String { "byte \(offset): expected \(expected)" }
    }

    /// The one value `bytes` holds, with nothing but white space around it.
    public init(reading bytes: [UInt8]) throws(ReadError) {
        var reader = JSONReader(bytes: bytes)
        self = try reader.value()
        reader.skipSpace()
        guard reader.at == bytes.count else { throw ReadError(offset: reader.at, expected: "the end of the document") }
    }

    /// The member `key` of an object; nil for a missing key or another value.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let fields) = self else { return nil }
        return fields.first { $0.0 == key }?.1
    }

    /// An object with one member, as nftables writes its expressions (`{"prefix": {...}}`).
    public var singleMember: (key: String, value: JSONValue)? {
        guard case .object(let fields) = self, fields.count == 1 else { return nil }
        return (fields[0].0, fields[0].1)
    }

    public var string: String? {
        if case .string(let value) = self { value } else { nil }
    }

    /// A whole number, negative ones included (which read as `real`).
    public var integer: Int? {
        switch self {
        case .number(let value): Int(exactly: value)
        case .real(let value): Int(exactly: value)
        default: nil
        }
    }

    public var array: [JSONValue]? {
        if case .array(let items) = self { items } else { nil }
    }
}

/// RFC 8259's values, one at a time; lenient where nft's output never goes (numbers are
/// read by Swift's parsers, control bytes are kept in strings).
private struct JSONReader {
    let bytes: [UInt8]
    var at = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func skipSpace() {
        while at < bytes.count, bytes[at] == 0x20 || bytes[at] == 0x0a || bytes[at] == 0x0d || bytes[at] == 0x09 { at += 1 }
    }

    func fail(_ expected: String) -> JSONValue.ReadError { JSONValue.ReadError(offset: at, expected: expected) }

    mutating func value() throws(JSONValue.ReadError) -> JSONValue {
        skipSpace()
        guard at < bytes.count else { throw fail("a value") }
        switch bytes[at] {
        case UInt8(ascii: "{"):
            at += 1
            var fields: [(String, JSONValue)] = []
            skipSpace()
            if at < bytes.count, bytes[at] == UInt8(ascii: "}") { at += 1; return .object(fields) }
            while true {
                skipSpace()
                let key = try string()
                skipSpace()
                try expect(UInt8(ascii: ":"))
                fields.append((key, try value()))
                skipSpace()
                if try closes(UInt8(ascii: "}")) { return .object(fields) }
            }
        case UInt8(ascii: "["):
            at += 1
            var items: [JSONValue] = []
            skipSpace()
            if at < bytes.count, bytes[at] == UInt8(ascii: "]") { at += 1; return .array(items) }
            while true {
                items.append(try value())
                skipSpace()
                if try closes(UInt8(ascii: "]")) { return .array(items) }
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default:
            return try number()
        }
    }

    /// After a member or an element: true at `close`, false at a comma.
    mutating func closes(_ close: UInt8) throws(JSONValue.ReadError) -> Bool {
        guard at < bytes.count else { throw fail("',' or '\(Character(Unicode.Scalar(close)))'") }
        if bytes[at] == close { at += 1; return true }
        try expect(UInt8(ascii: ","))
        return false
    }

    mutating func expect(_ byte: UInt8) throws(JSONValue.ReadError) {
        guard at < bytes.count, bytes[at] == byte else { throw fail("'\(Character(Unicode.Scalar(byte)))'") }
        at += 1
    }

    mutating func literal(_ word: String) throws(JSONValue.ReadError) {
        for byte in word.utf8 { try expect(byte) }
    }

    mutating func number() throws(JSONValue.ReadError) -> JSONValue {
        let start = at
        while at < bytes.count, "+-.0123456789eE".utf8.contains(bytes[at]) { at += 1 }
        let text = String(decoding: bytes[start ..< at], as: UTF8.self)
        if let value = UInt64(text) { return .number(value) }
        guard !text.isEmpty, let value = Double(text) else { at = start; throw fail("a value") }
        return .real(value)
    }

    /// `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`: the byte each stands for.
    static let simpleEscapes: [UInt8: UInt8] = [0x22: 0x22, 0x5c: 0x5c, 0x2f: 0x2f, 0x62: 0x08, 0x66: 0x0c, 0x6e: 0x0a,
                                                0x72: 0x0d, 0x74: 0x09]

    mutating func string() throws(JSONValue.ReadError) -> String {
        try expect(UInt8(ascii: "\""))
        let start = at
        // Without escapes (nearly always), the bytes as they are.
        while at < bytes.count, bytes[at] != UInt8(ascii: "\""), bytes[at] != UInt8(ascii: "\\") { at += 1 }
        guard at < bytes.count else { throw fail("'\"'") }
        if bytes[at] == UInt8(ascii: "\"") {
            at += 1
            return String(decoding: bytes[start ..< at - 1], as: UTF8.self)
        }
        // With escapes, the string's UTF-8 with each escape written out.
        var utf8 = Array(bytes[start ..< at])
        while at < bytes.count {
            let byte = bytes[at]
            at += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: utf8, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard at < bytes.count else { throw fail("an escape") }
                let escaped = bytes[at]
                at += 1
                if let replacement = Self.simpleEscapes[escaped] {
                    utf8.append(replacement)
                    continue
                }
                guard escaped == UInt8(ascii: "u") else { at -= 1; throw fail("an escape") }
                var code = try hex4()
                // A surrogate pair is one scalar; a lone surrogate, U+FFFD.
                if (0xd800 ..< 0xdc00).contains(code), at + 5 < bytes.count, bytes[at] == 0x5c, bytes[at + 1] == 0x75 {
                    let mark = at
                    at += 2
                    let low = try hex4()
                    if (0xdc00 ..< 0xe000).contains(low) {
                        code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00)
                    } else {
                        at = mark
                    }
                }
                utf8 += String(Unicode.Scalar(code) ?? "\u{fffd}").utf8
            default:
                utf8.append(byte)
            }
        }
        throw fail("'\"'")
    }

    mutating func hex4() throws(JSONValue.ReadError) -> UInt32 {
        guard at + 4 <= bytes.count, let code = UInt32(String(decoding: bytes[at ..< at + 4], as: UTF8.self), radix: 16) else {
            throw fail("four hex digits")
        }
        at += 4
        return code
    }
}

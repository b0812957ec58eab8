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

extension JSONValue {
    /// The elements of the array a document opens with, `{"KEY": [...]}` as `nft -j`
    /// prints it, each read as soon as its last byte is in: nft prints 10,000 rules over
    /// a third of a second, and reading them as they come takes that time off ours.
    /// Bytes go in as they arrive (`read`); `finish` checks that the document ended.
    public struct ArrayStream {
        public let key: String
        /// The bytes not yet read, from `offset` in the document.
        private var pending: [UInt8] = []
        private var offset = 0
        private var state = State.opening
        /// Inside an element: how far it was scanned, and the scan's nesting.
        private var scanned = 0
        private var depth = 0
        private var inString = false
        private var escaped = false

        private enum State {
            /// Before the array's bracket.
            case opening
            /// Right after the bracket: an element, or the closing bracket.
            case first
            /// After an element: a comma or the closing bracket.
            case afterElement
            /// After a comma: an element.
            case afterComma
            case element(start: Int)
            /// After the array: the object's closing brace.
            case closing
            case done
        }

        public init(key: String) { self.key = key }

        /// The elements that `bytes`, the document's next bytes, complete.
        public mutating func read(_ bytes: some Collection<UInt8>) throws(ReadError) -> [JSONValue] {
            pending.append(contentsOf: bytes)
            var elements: [JSONValue] = []
            var at = 0
            func skipSpace() { while at < pending.count, JSONReader.isSpace(pending[at]) { at += 1 } }
            scan: while true {
                switch state {
                case .opening:
                    var reader = JSONReader(bytes: pending)
                    let first: String
                    do {
                        reader.skipSpace()
                        try reader.expect(UInt8(ascii: "{"))
                        reader.skipSpace()
                        first = try reader.string()
                        reader.skipSpace()
                        try reader.expect(UInt8(ascii: ":"))
                        reader.skipSpace()
                        try reader.expect(UInt8(ascii: "["))
                    } catch where error.offset >= pending.count {
                        break scan  // the opening so far: more to come
                    }
                    guard first == key else { throw ReadError(offset: 0, expected: "\"\(key)\" as the first member") }
                    at = reader.at
                    state = .first
                case .first, .afterElement, .afterComma:
                    skipSpace()
                    guard at < pending.count else { break scan }
                    switch (state, pending[at]) {
                    case (.first, UInt8(ascii: "]")), (.afterElement, UInt8(ascii: "]")):
                        at += 1
                        state = .closing
                    case (.afterElement, UInt8(ascii: ",")):
                        at += 1
                        state = .afterComma
                    case (.afterElement, _):
                        throw ReadError(offset: offset + at, expected: "',' or ']'")
                    default:
                        state = .element(start: at)
                        (scanned, depth, inString, escaped) = (at, 0, false, false)
                    }
                case .element(let start):
                    guard let end = scanElement() else { break scan }
                    do {
                        elements.append(try JSONValue(reading: Array(pending[start ..< end])))
                    } catch {
                        throw ReadError(offset: offset + start + error.offset, expected: error.expected)
                    }
                    at = end
                    state = .afterElement
                case .closing:
                    skipSpace()
                    guard at < pending.count else { break scan }
                    guard pending[at] == UInt8(ascii: "}") else { throw ReadError(offset: offset + at, expected: "'}'") }
                    at += 1
                    state = .done
                case .done:
                    skipSpace()
                    guard at == pending.count else { throw ReadError(offset: offset + at, expected: "the end of the document") }
                    break scan
                }
            }
            // What was read goes; an element begun stays, and the opening until it is whole.
            switch state {
            case .opening: at = 0
            case .element(let start):
                at = start
                state = .element(start: 0)
                scanned -= start
            default: break
            }
            pending.removeFirst(at)
            offset += at
            return elements
        }

        /// The end of the element being scanned, once its last byte is in: after its
        /// closing bracket, or before the comma or bracket after a number or literal.
        private mutating func scanElement() -> Int? {
            while scanned < pending.count {
                let byte = pending[scanned]
                if inString {
                    if escaped {
                        escaped = false
                    } else if byte == UInt8(ascii: "\\") {
                        escaped = true
                    } else if byte == UInt8(ascii: "\"") {
                        inString = false
                    }
                } else {
                    switch byte {
                    case UInt8(ascii: "\""): inString = true
                    case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"):
                        if depth == 0 { return scanned }
                        depth -= 1
                        if depth == 0 { return scanned + 1 }
                    case UInt8(ascii: ","):
                        if depth == 0 { return scanned }
                    default: break
                    }
                }
                scanned += 1
            }
            return nil
        }

        /// The document ended: throws unless it was whole.
        public func finish() throws(ReadError) {
            let expected = switch state {
            case .done: ""
            case .opening: "'{\"\(key)\": ['"
            case .first, .afterElement: "',' or ']'"
            case .afterComma, .element: "a value"
            case .closing: "'}'"
            }
            guard expected.isEmpty else { throw ReadError(offset: offset + pending.count, expected: expected) }
        }
    }
}

/// RFC 8259's values, one at a time; lenient where nft's output never goes (numbers are
/// read by Swift's parsers, control bytes are kept in strings).
private struct JSONReader {
    let bytes: [UInt8]
    var at = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x0a || byte == 0x0d || byte == 0x09 }

    mutating func skipSpace() {
        while at < bytes.count, Self.isSpace(bytes[at]) { at += 1 }
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

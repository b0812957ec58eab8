/// Text forms of link-layer and IP addresses, as ip(8) and tc(8) read and print them.
///
/// Parsing is strict: the whole string must be one address, with no surrounding
/// spaces, signs or trailing text. Printing gives the canonical form, which parses
/// back to the same value.

extension MACAddress: LosslessStringConvertible {
    /// Six colon-separated octets of one or two hex digits, either case
    /// ("aa:bb:cc:dd:ee:ff", "0:1b:2:3:4:5").
    public init?(_ text: String) {
        let octets = text.split(separator: ":", omittingEmptySubsequences: false)
        guard octets.count == 6 else { return nil }
        var value: UInt64 = 0
        for octet in octets {
            guard (1 ... 2).contains(octet.utf8.count), let byte = UInt8(hexDigits: octet) else { return nil }
            value = value << 8 | UInt64(byte)
        }
        self.init(rawValue: value)
    }

    /// Lowercase, two digits per octet: "aa:bb:cc:dd:ee:ff".
    public var description: String {
        (0 ..< 6).map { i in
            UInt8(truncatingIfNeeded: rawValue >> (40 - 8 * UInt64(i))).paddedHex(width: 2)
        }.joined(separator: ":")
    }
}

extension IPv4Address: LosslessStringConvertible {
    /// A dotted quad of decimal octets 0-255 without leading zeros ("192.0.2.1"),
    /// as inet_pton(3) reads it.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard let octet = UInt8(strictDecimal: part) else { return nil }
            value = value << 8 | UInt32(octet)
        }
        self.init(rawValue: value)
    }

    public var description: String {
        (0 ..< 4).map { String(UInt8(truncatingIfNeeded: rawValue >> (24 - 8 * UInt32($0)))) }
            .joined(separator: ".")
    }
}

extension IPv6Address: LosslessStringConvertible {
    /// The text forms of RFC 4291 section 2.2: eight groups of one to four hex digits,
    /// at most one "::" standing for one or more zero groups, and optionally a dotted
    /// quad in place of the last two groups ("::ffff:192.0.2.1").
    public init?(_ text: String) {
        let halves = text.split(separator: "::", maxSplits: 2, omittingEmptySubsequences: false)
        guard halves.count <= 2 else { return nil }
        guard let head = Self.groups(halves[0], mayEndWithIPv4: halves.count == 1) else { return nil }
        var groups = head
        if halves.count == 2 {
            guard let tail = Self.groups(halves[1], mayEndWithIPv4: true),
                  head.count + tail.count <= 7
            else { return nil }
            groups += Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        }
        guard groups.count == 8 else { return nil }
        self.init(rawValue: groups.reduce(0) { $0 << 16 | UInt128($1) })
    }

    /// Colon-separated 16-bit groups; an empty string is no groups (one side of "::").
    private static func groups(_ text: Substring, mayEndWithIPv4: Bool) -> [UInt16]? {
        if text.isEmpty { return [] }
        let fields = text.split(separator: ":", omittingEmptySubsequences: false)
        var groups: [UInt16] = []
        for (index, field) in fields.enumerated() {
            if index == fields.count - 1, mayEndWithIPv4, field.contains(".") {
                guard let v4 = IPv4Address(String(field)) else { return nil }
                groups += [UInt16(truncatingIfNeeded: v4.rawValue >> 16), UInt16(truncatingIfNeeded: v4.rawValue)]
            } else {
                guard (1 ... 4).contains(field.utf8.count), let group = UInt16(hexDigits: field) else { return nil }
                groups.append(group)
            }
        }
        return groups
    }

    /// RFC 5952: lowercase, no leading zeros, the longest run of two or more zero
    /// groups (the first of equal runs) as "::"; IPv4-mapped addresses end in a
    /// dotted quad ("::ffff:192.0.2.1").
    public var description: String {
        let groups = (0 ..< 8).map { UInt16(truncatingIfNeeded: rawValue >> (112 - 16 * UInt128($0))) }
        if rawValue >> 32 == 0xffff {
            return "::ffff:" + IPv4Address(rawValue: UInt32(truncatingIfNeeded: rawValue)).description
        }
        var best: Range<Int>? = nil
        var start: Int? = nil
        for i in 0 ... 8 {
            if i < 8, groups[i] == 0 {
                if start == nil { start = i }
            } else if let s = start {
                if i - s >= 2, i - s > (best?.count ?? 0) { best = s ..< i }
                start = nil
            }
        }
        let hex = groups.map { String($0, radix: 16) }
        guard let run = best else { return hex.joined(separator: ":") }
        return hex[..<run.lowerBound].joined(separator: ":") + "::" + hex[run.upperBound...].joined(separator: ":")
    }
}

extension IPAddress: LosslessStringConvertible {
    /// IPv4 when the text has no colon, IPv6 otherwise.
    public init?(_ text: String) {
        if text.contains(":") {
            guard let v6 = IPv6Address(text) else { return nil }
            self = .v6(v6)
        } else {
            guard let v4 = IPv4Address(text) else { return nil }
            self = .v4(v4)
        }
    }

    public var description: String {
        switch self {
        case .v4(let address): address.description
        case .v6(let address): address.description
        }
    }
}

extension FixedWidthInteger where Self: UnsignedInteger {
    /// Hex digits only (no "0x", no sign); nil when empty or out of range.
    fileprivate init?(hexDigits text: Substring) {
        guard !text.isEmpty, text.utf8.allSatisfy(\.isASCIIHexDigit) else { return nil }
        self.init(text, radix: 16)
    }

    /// Decimal digits only, no leading zero unless the number is 0.
    fileprivate init?(strictDecimal text: Substring) {
        guard !text.isEmpty, text.utf8.allSatisfy({ (0x30 ... 0x39).contains($0) }),
              text.utf8.count == 1 || text.utf8.first != 0x30
        else { return nil }
        self.init(text, radix: 10)
    }

    fileprivate func paddedHex(width: Int) -> String { String(self, radix: 16).leftPadded(to: width) }
}

extension String {
    /// With zeros in front up to `width` characters: digits of a fixed width.
    public func leftPadded(to width: Int) -> String { String(repeating: "0", count: Swift.max(0, width - count)) + self }
}

extension UInt8 {
    fileprivate var isASCIIHexDigit: Bool {
        (0x30 ... 0x39).contains(self) || (0x41 ... 0x46).contains(self) || (0x61 ... 0x66).contains(self)
    }
}

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
        guard let value = Self.value(text.utf8) else { return nil }
        self.init(rawValue: value)
    }

    /// The dotted quad of `bytes`, read byte by byte: a rule set of 100,000 rules holds
    /// as many addresses.
    fileprivate static func value(_ bytes: some Collection<UInt8>) -> UInt32? {
        var value: UInt32 = 0, octet: UInt32 = 0, digits = 0, dots = 0
        for byte in bytes {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, dots < 3 else { return nil }
                value = value << 8 | octet
                (octet, digits, dots) = (0, 0, dots + 1)
                continue
            }
            // A digit; a leading zero only as the whole octet.
            guard (0x30 ... 0x39).contains(byte), digits == 0 || octet != 0 else { return nil }
            octet = octet * 10 + UInt32(byte - 0x30)
            digits += 1
            guard octet <= 255 else { return nil }
        }
        return digits > 0 && dots == 3 ? value << 8 | octet : nil
    }

    public var description: String {
        (0 ..< 4).map { String(UInt8(truncatingIfNeeded: rawValue >> (24 - 8 * UInt32($0)))) }
            .joined(separator: ".")
    }
}

extension IPv6Address: LosslessStringConvertible {
    /// The text forms of RFC 4291 section 2.2: eight groups of one to four hex digits,
    /// at most one "::" standing for one or more zero groups, and optionally a dotted
    /// quad in place of the last two groups ("::ffff:192.0.2.1"). Read byte by byte.
    public init?(_ text: String) {
        let bytes = text.utf8
        var groups: [UInt16] = []
        // Where "::" stands among the groups.
        var gap: Int?
        var position = bytes.startIndex
        if bytes.starts(with: [0x3A, 0x3A]) {
            gap = 0
            position = bytes.index(position, offsetBy: 2)
        }
        while position < bytes.endIndex, groups.count < 8 {
            let start = position
            var group: UInt16 = 0, digits = 0
            while position < bytes.endIndex, let digit = bytes[position].hexDigitValue {
                guard digits < 4 else { return nil }
                (group, digits) = (group << 4 | UInt16(digit), digits + 1)
                position = bytes.index(after: position)
            }
            if position < bytes.endIndex, bytes[position] == UInt8(ascii: ".") {
                // A dotted quad ends the address.
                guard let v4 = IPv4Address.value(bytes[start...]) else { return nil }
                groups += [UInt16(truncatingIfNeeded: v4 >> 16), UInt16(truncatingIfNeeded: v4)]
                position = bytes.endIndex
                break
            }
            guard digits > 0 else { return nil }
            groups.append(group)
            guard position < bytes.endIndex else { break }
            // A colon, then a group, or a second colon: the gap, then a group or the end.
            guard bytes[position] == UInt8(ascii: ":") else { return nil }
            position = bytes.index(after: position)
            if position < bytes.endIndex, bytes[position] == UInt8(ascii: ":") {
                guard gap == nil else { return nil }
                gap = groups.count
                position = bytes.index(after: position)
                if position == bytes.endIndex { break }
            } else if position == bytes.endIndex {
                return nil
            }
        }
        guard position == bytes.endIndex else { return nil }
        if let gap {
            guard groups.count <= 7 else { return nil }
            groups.insert(contentsOf: repeatElement(0, count: 8 - groups.count), at: gap)
        }
        guard groups.count == 8 else { return nil }
        self.init(rawValue: groups.reduce(0) { $0 << 16 | UInt128($1) })
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

    fileprivate func paddedHex(width: Int) -> String { String(self, radix: 16).leftPadded(to: width) }
}

extension String {
    /// With zeros in front up to `width` characters: digits of a fixed width.
    public func leftPadded(to width: Int) -> String { String(repeating: "0", count: Swift.max(0, width - count)) + self }
}

extension UInt8 {
    fileprivate var isASCIIHexDigit: Bool { hexDigitValue != nil }

    /// The value of an ASCII hex digit, either case.
    fileprivate var hexDigitValue: UInt8? {
        switch self {
        case 0x30 ... 0x39: self - 0x30
        case 0x41 ... 0x46: self - 0x41 + 10
        case 0x61 ... 0x66: self - 0x61 + 10
        default: nil
        }
    }
}

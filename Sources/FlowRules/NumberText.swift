import Packets

/// Numbers as iproute2's get_u8/get_u16/get_u32 read them with strtoul(3), but strict:
/// the whole word, no sign, no spaces.
enum NumberBase {
    case decimal
    /// Hex digits, with or without "0x".
    case hex
    /// strtoul base 0: "0x..." hex, "0..." octal, else decimal.
    case automatic
}

extension FixedWidthInteger where Self: UnsignedInteger {
    init?(tcText text: some StringProtocol, base: NumberBase) {
        var digits = Substring(text)
        let radix: Int
        switch base {
        case .decimal:
            radix = 10
        case .hex:
            radix = 16
            if digits.hasPrefix("0x") || digits.hasPrefix("0X") { digits = digits.dropFirst(2) }
        case .automatic:
            if digits.hasPrefix("0x") || digits.hasPrefix("0X") {
                radix = 16
                digits = digits.dropFirst(2)
            } else if digits.count > 1, digits.hasPrefix("0") {
                radix = 8
                digits = digits.dropFirst()
            } else {
                radix = 10
            }
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isHexDigit }),
              let value = Self(digits, radix: radix)
        else { return nil }
        self = value
    }
}

/// The words tc prints and reads for protocols, EtherTypes, IP protocols and controls.
enum TCNames {
    /// ll_proto names XDPFlow knows; matched without regard to case, as ll_proto_a2n.
    static let etherTypes: [(name: String, value: UInt16)] = [
        ("ip", 0x0800), ("ipv4", 0x0800), ("ipv6", 0x86dd), ("arp", 0x0806), ("rarp", 0x8035),
        ("802.1Q", 0x8100), ("802.1ad", 0x88a8), ("all", 0x0003),
    ]

    /// A protocol name or a number (base 0), as `protocol` and `vlan_ethtype` take it.
    static func etherType(_ text: String) -> UInt16? {
        etherTypes.first { $0.name.lowercased() == text.lowercased() }?.value ?? UInt16(tcText: text, base: .automatic)
    }

    /// Why a protocol name tc knows is refused here; nil for the others.
    static func unsupportedEtherType(_ text: String) -> String? {
        ["mpls_uc", "mpls_mc"].contains(text.lowercased())
            ? "MPLS is not supported by xdpflow (its programs parse no MPLS label stack)" : nil
    }

    /// How `protocol` prints: a name, else hex.
    static func protocolName(_ value: UInt16) -> String {
        etherTypes.first { $0.value == value }?.name ?? "0x" + hex(value, width: 4)
    }

    /// How `vlan_ethtype` and `cvlan_ethtype` print.
    static func etherTypeName(_ value: UInt16) -> String {
        switch value {
        case 0x0800: "ipv4"
        default: protocolName(value)
        }
    }

    static let ipProtocols: [(name: String, value: UInt8)] = [
        ("tcp", 6), ("udp", 17), ("sctp", 132), ("icmp", 1), ("icmpv6", 58), ("l2tp", 115), ("esp", 50), ("ah", 51),
    ]

    /// f_flower.c matches the first five by prefix and the last three exactly.
    static let ipProtocolWords = Keywords(ipProtocols.map { ($0.name, $0.value) }, exactOnly: ["l2tp", "esp", "ah"])

    /// A name where the parser takes it back under `l3EtherType` (icmp only with IPv4,
    /// icmpv6 only with IPv6), else hex.
    static func ipProtocolName(_ value: UInt8, l3EtherType: UInt16) -> String {
        let named = ipProtocols.first { $0.value == value }?.name
        let fits = switch value {
        case IPProtocolNumber.icmp: l3EtherType == EtherType.ipv4
        case IPProtocolNumber.icmpv6: l3EtherType == EtherType.ipv6
        default: true
        }
        guard let named, fits else { return "0x" + hex(value, width: 2) }
        return named
    }

    static func handle(_ handle: UInt32) -> String { "0x" + String(handle, radix: 16) }

    /// tc's `%x:%x`.
    static func classID(_ id: UInt32) -> String { String(id >> 16, radix: 16) + ":" + String(id & 0xffff, radix: 16) }

    static func hex<T: BinaryInteger>(_ value: T, width: Int) -> String {
        String(value, radix: 16).leftPadded(to: width)
    }
}

extension FilterProtocol {
    /// As `protocol` prints it: `ip`, `802.1Q`, ..., else `0x88cc`.
    public var name: String { TCNames.protocolName(rawValue) }
}

extension ActionControl: CustomStringConvertible {
    /// tc's `action_n2a` words.
    public var description: String {
        switch self {
        case .continue: "continue"
        case .drop: "drop"
        case .pass: "pass"
        case .pipe: "pipe"
        case .reclassify: "reclassify"
        case .trap: "trap"
        case .stolen: "stolen"
        case .gotoChain(let chain): "goto chain \(chain)"
        case .jump(let count): "jump \(count)"
        }
    }
}

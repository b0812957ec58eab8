import FlowRules
import Packets

/// The few values and masks one fuzz case draws its rules and frames from, so that frames
/// hit rules, rules overlap, and rules of a prio share masks (and so subtables). Addresses
/// are variants of one base that differ in single bits, so prefixes of different lengths
/// tell them apart or not.
struct ValuePool {
    var macs: [MACAddress]
    var ipv4: [IPv4Address]
    var ipv6: [IPv6Address]
    var ports: [UInt16]
    var vlanIDs: [UInt16]
    /// TOS, TTL, ICMP type and code values.
    var bytes: [UInt8]
    var tcpFlags: [UInt16]
    var marks: [UInt32]

    var macMasks: [MACAddress]
    var ipv4Masks: [IPv4Address]
    var ipv6Masks: [IPv6Address]
    var portMasks: [UInt16]
    var byteMasks: [UInt8]
    var tcpFlagMasks: [UInt16]
    var markMasks: [UInt32]

    /// Redirect targets: the test device itself (XDP_TX) and others (XDP_REDIRECT).
    let devices = [testDevice, "xft1", "xft2"]
    /// EtherTypes that are neither VLAN, IP nor ARP.
    let otherEtherTypes: [UInt16] = [0x88b5, 0x8847, 0x9100, 0x05dc, 0x0000, 0xffff]

    init(_ rng: inout SeededRandom) {
        macs = Self.variants(of: MACAddress.self, &rng)
        ipv4 = Self.variants(of: IPv4Address.self, &rng)
        ipv6 = Self.variants(of: IPv6Address.self, &rng)
        ports = Self.variants(of: UInt16.self, &rng) + [1, 65535, rng.pick([22, 53, 80, 443, 1024])]
        vlanIDs = [0, 4095, UInt16(rng.int(1 ... 4094)), UInt16(rng.int(1 ... 4094))]
        bytes = Self.variants(of: UInt8.self, &rng) + [0, 255]
        tcpFlags = Self.variants(of: UInt16.self, &rng).map { $0 & 0x0fff } + [TCPFlag.syn, TCPFlag.syn | TCPFlag.ack]
        marks = [0, 1, rng.bits(), rng.bits()]

        macMasks = [.allOnes, .prefixMask(24), .prefixMask(47), .prefixMask(0), rng.bits(UInt64.self).mac]
        ipv4Masks = [.allOnes, .prefixMask(24), .prefixMask(31), .prefixMask(16), .prefixMask(0),
                     IPv4Address(rawValue: rng.bits())]
        ipv6Masks = [.allOnes, .prefixMask(64), .prefixMask(127), .prefixMask(48), .prefixMask(0),
                     IPv6Address(rawValue: rng.bits(UInt128.self))]
        portMasks = [0xffff, 0xff00, 0xfff0, 0xfffe, 0, rng.bits()]
        byteMasks = [0xff, 0xfc, 0xf0, 0x01, 0, rng.bits()]
        tcpFlagMasks = [0x0fff, 0x003f, 0x0012, 0x0002, rng.bits(UInt16.self) & 0x0fff]
        markMasks = [.max, 0xffff, 0x0000_00ff, rng.bits()]
    }

    /// A random base and 1-3 variants, each with one bit flipped: the lowest or highest
    /// bit, a byte edge, or any.
    private static func variants<Value: MaskableField>(of _: Value.Type, _ rng: inout SeededRandom) -> [Value] {
        let base = Value.truncating(UInt128(rng.next()) << 64 | UInt128(rng.next()))
        let width = Value.fieldWidth
        return [base] + (0 ..< rng.int(1 ... 3)).map { _ in
            base.flipping(bit: rng.pick([0, 1, 7, 8, width / 2, width - 1, rng.int(0 ... width - 1)]))
        }
    }

    func masked<Value: MaskableField>(_ values: [Value], _ masks: [Value], _ rng: inout SeededRandom) -> Masked<Value> {
        Masked(rng.pick(values), mask: rng.pick(masks))
    }
}

extension UInt64 {
    var mac: MACAddress { MACAddress(rawValue: self) }
}

import FlowRules
import Packets

/// A field's value and mask as the bytes of the key record (network order), with the
/// value already masked.
public struct MaskedBytes: Hashable, Sendable {
    public var value: [UInt8]
    public var mask: [UInt8]

    init(value: [UInt8], mask: [UInt8]) {
        self.mask = mask
        self.value = zip(value, mask).map { $0 & $1 }
    }

    /// Both constraints at once; nil when no value satisfies them.
    func merged(with other: MaskedBytes) -> MaskedBytes? {
        for index in value.indices where (value[index] ^ other.value[index]) & mask[index] & other.mask[index] != 0 {
            return nil
        }
        return MaskedBytes(value: zip(value, other.value).map { $0 | $1 }, mask: zip(mask, other.mask).map { $0 | $1 })
    }
}

/// What one rule asks of the key record, as one or more alternatives: a port range
/// becomes several masked values, as a TCAM holds it.
struct RuleKey {
    /// Each alternative constrains the same fields; they differ in masks only where a
    /// range was expanded. Empty when the rule can never match.
    var alternatives: [[KeyField: MaskedBytes]]

    init(_ rule: FlowRule, device: String) {
        var fixed: [KeyField: MaskedBytes]? = [:]
        func constrain(_ field: KeyField, _ value: [UInt8], _ mask: [UInt8]) {
            let new = MaskedBytes(value: value, mask: mask)
            guard let existing = fixed?[field] else { fixed?[field] = new; return }
            if let merged = existing.merged(with: new) { fixed?[field] = merged } else { fixed = nil }
        }
        func constrain<Value: MaskableField>(_ field: KeyField, _ masked: Masked<Value>?) {
            guard let masked else { return }
            constrain(field, masked.value.networkBytes, masked.mask.networkBytes)
        }
        let m = rule.match
        if m.indev.map({ $0 != device }) ?? false { fixed = nil }
        let proto = rule.filterProtocol.rawValue
        if rule.filterProtocol != .all {
            constrain(proto.isVLANType ? .vlanTPID : .outerType, Masked(proto))
        }
        constrain(.dstMAC, m.dstMAC)
        constrain(.srcMAC, m.srcMAC)
        if let id = m.vlanID { constrain(.vlanTCI, Masked(id, mask: 0x0fff)) }
        if let priority = m.vlanPriority { constrain(.vlanTCI, Masked(UInt16(priority) << 13, mask: 0xe000)) }
        if let type = m.vlanEtherType { constrain(type.isVLANType ? .cvlanTPID : .etherType, Masked(type)) }
        if let id = m.cvlanID { constrain(.cvlanTCI, Masked(id, mask: 0x0fff)) }
        if let priority = m.cvlanPriority { constrain(.cvlanTCI, Masked(UInt16(priority) << 13, mask: 0xe000)) }
        if let type = m.cvlanEtherType { constrain(.etherType, Masked(type)) }
        if let proto = m.ipProto { constrain(.ipProto, Masked(proto)) }
        constrain(.tos, m.ipTOS)
        constrain(.ttl, m.ipTTL)
        if let flags = m.ipFlags { constrain(.ipFlags, flags.masked) }
        for (address, v4, v6) in [(m.srcIP, KeyField.srcIPv4, KeyField.srcIPv6), (m.dstIP, .dstIPv4, .dstIPv6)] {
            switch address {
            case .v4(let prefix)?: constrain(v4, prefix)
            case .v6(let prefix)?: constrain(v6, prefix)
            case nil: break
            }
        }
        constrain(.tcpFlags, m.tcpFlags)
        constrain(.icmpType, m.icmpType)
        constrain(.icmpCode, m.icmpCode)
        constrain(.arpOp, m.arpOp)
        constrain(.arpSenderIP, m.arpSenderIP)
        constrain(.arpTargetIP, m.arpTargetIP)
        constrain(.arpSenderMAC, m.arpSenderMAC)
        constrain(.arpTargetMAC, m.arpTargetMAC)

        guard let fixed else {
            alternatives = []
            return
        }
        var alternatives = [fixed]
        for (field, port) in [(KeyField.srcPort, m.srcPort), (.dstPort, m.dstPort)] {
            guard let port else { continue }
            let blocks: [Masked<UInt16>] = switch port {
            case .masked(let masked): [masked]
            case .range(let range): Self.blocks(covering: range)
            }
            alternatives = alternatives.flatMap { base in
                blocks.map { block in
                    var next = base
                    next[field] = MaskedBytes(value: block.value.networkBytes, mask: block.mask.networkBytes)
                    return next
                }
            }
        }
        self.alternatives = alternatives
    }

    /// The fewest prefix blocks whose union is exactly `range`.
    static func blocks(covering range: PortRange) -> [Masked<UInt16>] {
        var blocks: [Masked<UInt16>] = []
        var low = UInt32(range.min)
        let high = UInt32(range.max)
        while low <= high {
            // The largest aligned block starting at `low` that stays within the range.
            var size: UInt32 = low == 0 ? 1 << 16 : low & (~low &+ 1)
            while low + size - 1 > high { size >>= 1 }
            blocks.append(Masked(UInt16(low), mask: UInt16(truncatingIfNeeded: ~(size - 1))))
            low += size
        }
        return blocks
    }
}

extension MaskableField {
    /// The field's bits in network order, `fieldWidth / 8` bytes.
    var networkBytes: [UInt8] {
        let bytes = Self.fieldWidth / 8
        let bits = fieldBits
        return (0 ..< bytes).map { UInt8(truncatingIfNeeded: bits >> ((bytes - 1 - $0) * 8)) }
    }
}

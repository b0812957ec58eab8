#if canImport(Glibc)
import Glibc
#endif
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
}

/// Bytes laid out as the key record (`KeyField` offsets), held inline: a rule's key is
/// built without allocating, and hashed in one pass.
struct RecordBytes: Hashable, Sendable {
    var bytes = InlineArray<104, UInt8>(repeating: 0)

    subscript(offset: Int) -> UInt8 {
        get { bytes[offset] }
        set { bytes[offset] = newValue }
    }

    static func == (a: Self, b: Self) -> Bool {
        withUnsafeBytes(of: a.bytes) { a in
            withUnsafeBytes(of: b.bytes) { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 }
        }
    }

    /// The 13 words folded into one (multiply and shift, as in a 64-bit FNV-style mix),
    /// then given to the hasher: a plan hashes these keys for every rule it places, and
    /// SipHash over all 104 bytes was a twentieth of a 100,000-rule load.
    func hash(into hasher: inout Hasher) {
        let folded = withUnsafeBytes(of: bytes) { raw in
            var folded: UInt64 = 0xcbf2_9ce4_8422_2325
            for offset in stride(from: 0, to: raw.count, by: 8) {
                folded = (folded ^ raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0x9e37_79b9_7f4a_7c15
                folded ^= folded >> 29
            }
            return folded
        }
        hasher.combine(folded)
    }

    /// The bytes of `field`.
    func field(_ field: KeyField) -> [UInt8] { (field.offset ..< field.offset + field.width).map { bytes[$0] } }

    /// These bytes with `field`'s set to zero.
    func clearing(_ fields: FieldSet) -> RecordBytes {
        var copy = self
        fields.forEach { field in
            for offset in field.offset ..< field.offset + field.width { copy[offset] = 0 }
        }
        return copy
    }

    /// Only the bytes of `fields`; the others zero.
    func keeping(_ fields: FieldSet) -> RecordBytes {
        var copy = RecordBytes()
        fields.forEach { field in
            for offset in field.offset ..< field.offset + field.width { copy[offset] = self[offset] }
        }
        return copy
    }
}

/// A set of key fields as bits (by raw value).
struct FieldSet: OptionSet, Hashable, Sendable {
    let rawValue: UInt32

    init(rawValue: UInt32) { self.rawValue = rawValue }
    init(_ field: KeyField) { rawValue = 1 << UInt32(field.rawValue) }

    var fields: [KeyField] { KeyField.allCases.filter { contains(FieldSet($0)) } }

    /// Calls `body` with each field, in order, without building a list.
    func forEach(_ body: (KeyField) -> Void) {
        var bits = rawValue
        while bits != 0 {
            body(KeyField(rawValue: bits.trailingZeroBitCount)!)
            bits &= bits - 1
        }
    }

    static let guards = FieldSet(rawValue: Subtable.guardFields.reduce(0) { $0 | FieldSet($1).rawValue })
}

/// One alternative of a rule's key: the record bytes it requires under a mask, and
/// the fields it constrains (a field may be required present under an all-zero mask).
struct KeyPattern: Hashable, Sendable {
    var fields = FieldSet()
    /// Masked.
    var value = RecordBytes()
    var mask = RecordBytes()

    /// Adds a constraint; false when no value satisfies both it and the one the field
    /// already has.
    mutating func constrain<Bits: FixedWidthInteger>(_ field: KeyField, _ bits: Bits, mask maskBits: Bits) -> Bool {
        let width = field.width
        let known = fields.contains(FieldSet(field))
        for index in 0 ..< width {
            let shift = (width - 1 - index) * 8
            let byteMask = UInt8(truncatingIfNeeded: maskBits >> shift)
            let byte = UInt8(truncatingIfNeeded: bits >> shift) & byteMask
            let offset = field.offset + index
            if known && (value[offset] ^ byte) & mask[offset] & byteMask != 0 { return false }
            value[offset] |= byte
            mask[offset] |= byteMask
        }
        fields.insert(FieldSet(field))
        return true
    }

    /// The field's value and mask (for callers that think in fields).
    func masked(_ field: KeyField) -> MaskedBytes { MaskedBytes(value: value.field(field), mask: mask.field(field)) }
}

/// What one rule asks of the key record: a masked pattern, and the port ranges it
/// matches as ranges. The inline classifier expands each range into prefix blocks, as a
/// TCAM holds it (`alternatives`); the table classifier compares ranges as ranges.
struct RuleKey {
    /// A ranged port field is in the pattern's fields under an all-zero mask (the ports
    /// must be present); nil when the rule can never match.
    var pattern: KeyPattern?
    var srcPorts: PortRange?
    var dstPorts: PortRange?

    init(_ rule: FlowRule, device: String) {
        var pattern = KeyPattern()
        var satisfiable = true
        func constrain<Value: MaskableField>(_ field: KeyField, _ masked: Masked<Value>?) {
            guard let masked, satisfiable else { return }
            satisfiable = pattern.constrain(field, masked.value.fieldBits, mask: masked.mask.fieldBits)
        }
        let m = rule.match
        if m.indev.map({ $0 != device }) ?? false { satisfiable = false }
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
        for (field, port) in [(KeyField.srcPort, m.srcPort), (.dstPort, m.dstPort)] {
            switch port {
            case .masked(let masked)?: constrain(field, masked)
            case .range(let range)?:
                constrain(field, Masked(UInt16(0), mask: 0))
                if field == .srcPort { srcPorts = range } else { dstPorts = range }
            case nil: break
            }
        }
        self.pattern = satisfiable ? pattern : nil
    }

    /// The pattern with each port range expanded into prefix blocks: several masked
    /// values, as a TCAM holds them. Empty when the rule can never match.
    var alternatives: [KeyPattern] {
        guard let pattern else { return [] }
        var alternatives = [pattern]
        for (field, range) in [(KeyField.srcPort, srcPorts), (.dstPort, dstPorts)] {
            guard let range else { continue }
            let blocks = Masked.covering(range.min, through: range.max)
            alternatives = alternatives.flatMap { base in
                blocks.map { block in
                    var next = base
                    _ = next.constrain(field, block.value, mask: block.mask)
                    return next
                }
            }
        }
        return alternatives
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

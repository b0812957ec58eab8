import Packets

extension FlowRule {
    /// The flower keys in the order `tc filter show` prints them, each value in the
    /// syntax the parser reads, so that these pairs are also the rule's `match` in JSON.
    public var flowerKeys: [(keyword: String, value: String)] {
        let m = match
        var keys: [(String, String)] = []
        func add(_ keyword: String, _ value: String?) { if let value { keys.append((keyword, value)) } }
        add("indev", m.indev)
        add("vlan_id", m.vlanID.map { String($0) })
        add("vlan_prio", m.vlanPriority.map { String($0) })
        add("vlan_ethtype", m.vlanEtherType.map(TCNames.etherTypeName))
        add("cvlan_id", m.cvlanID.map { String($0) })
        add("cvlan_prio", m.cvlanPriority.map { String($0) })
        add("cvlan_ethtype", m.cvlanEtherType.map(TCNames.etherTypeName))
        add("dst_mac", m.dstMAC.map(Self.text))
        add("src_mac", m.srcMAC.map(Self.text))
        add("ip_proto", m.ipProto.map { TCNames.ipProtocolName($0, l3EtherType: l3EtherType) })
        add("ip_tos", m.ipTOS.map { "0x" + TCNames.hex($0.value, width: 2) + Self.hexMask($0.mask, unless: 0xff) })
        add("ip_ttl", m.ipTTL.map { String($0.value) + Self.hexMask($0.mask, unless: 0xff) })
        add("dst_ip", m.dstIP.map(Self.text))
        add("src_ip", m.srcIP.map(Self.text))
        add("dst_port", m.dstPort.map(Self.text))
        add("src_port", m.srcPort.map(Self.text))
        add("tcp_flags", m.tcpFlags.map { "0x" + String($0.value, radix: 16) + Self.hexMask($0.mask, unless: 0x0fff) })
        add("type", m.icmpType.map(Self.decimalText))
        add("code", m.icmpCode.map(Self.decimalText))
        add("arp_tip", m.arpTargetIP.map(Self.text))
        add("arp_sip", m.arpSenderIP.map(Self.text))
        add("arp_op", m.arpOp.map { op in
            let name = [1: "request", 2: "reply"][op.value] ?? String(op.value)
            return name + (op.mask == 0xff ? "" : "/\(op.mask)")
        })
        add("arp_sha", m.arpSenderMAC.map(Self.text))
        add("arp_tha", m.arpTargetMAC.map(Self.text))
        add("ip_flags", m.ipFlags.flatMap(Self.text))
        return keys
    }

    /// The words of the `filter add` command that recreates this rule on `device`.
    /// Prio and handle are left out while unallocated.
    public func commandWords(device: String) -> [String] {
        var words = ["filter", "add", "dev", device, "ingress"]
        if chain != 0 { words += ["chain", String(chain)] }
        if prio != 0 { words += ["prio", String(prio)] }
        if handle != 0 { words += ["handle", TCNames.handle(handle)] }
        words += ["protocol", filterProtocol.name, "flower"]
        if skipHardware { words.append("skip_hw") }
        for (keyword, value) in flowerKeys { words += [keyword, value] }
        if let classID { words += ["classid", TCNames.classID(classID)] }
        for action in actions { words += ["action"] + action.words }
        return words
    }

    /// The words joined by spaces, as the state directory keeps them: its reader splits
    /// at spaces, which no word holds (names are checked for white space).
    public func commandLine(device: String) -> String { commandWords(device: device).joined(separator: " ") }

    /// The line `-batch` reads back as this rule on `device` (what `xdpflow save` writes):
    /// `commandLine`, but with a name quoted where the batch reader would take part of it
    /// for syntax. A device may be called `#x`, `a"b` or `a\` (the kernel refuses only
    /// '/', ':' and white space); unquoted, these would comment out the rest of the
    /// line, open a quote, or continue the line.
    public func batchLine(device: String) -> String {
        commandWords(device: device).map(Batch.quoted).joined(separator: " ")
    }

    // MARK: Values

    static func text(_ mac: Masked<MACAddress>) -> String {
        if mac.isExact { return mac.value.description }
        if let length = mac.prefixLength { return "\(mac.value)/\(length)" }
        return "\(mac.value)/\(mac.mask)"
    }

    static func text<Address>(_ prefix: Masked<Address>) -> String where Address: LosslessStringConvertible {
        // Addresses only ever carry prefix masks (the parser accepts no others).
        let length = prefix.prefixLength ?? Address.fieldWidth
        return length == Address.fieldWidth ? prefix.value.description : "\(prefix.value)/\(length)"
    }

    static func text(_ ip: IPMatch) -> String {
        switch ip {
        case .v4(let prefix): text(prefix)
        case .v6(let prefix): text(prefix)
        }
    }

    static func text(_ port: PortMatch) -> String {
        switch port {
        case .range(let range): "\(range.min)-\(range.max)"
        case .masked(let masked) where masked.isExact && masked.value != 0: String(masked.value)
        case .masked(let masked): "\(masked.value)/0x" + TCNames.hex(masked.mask, width: 4)
        }
    }

    static func decimalText(_ masked: Masked<UInt8>) -> String {
        String(masked.value) + (masked.isExact ? "" : "/\(masked.mask)")
    }

    static func hexMask<T: BinaryInteger>(_ mask: T, unless full: T) -> String {
        mask == full ? "" : "/0x" + String(mask, radix: 16)
    }

    static func text(_ flags: IPFlagsMatch) -> String? {
        var words: [String] = []
        if let fragment = flags.isFragment { words.append(fragment ? "frag" : "nofrag") }
        if let first = flags.isFirstFragment { words.append(first ? "firstfrag" : "nofirstfrag") }
        return words.isEmpty ? nil : words.joined(separator: "/")
    }
}

extension FlowAction {
    /// The words of this action's spec, without the leading `action`; a control is
    /// written only where it differs from the kind's default.
    public var words: [String] {
        let explicitControl = control == kind.defaultControl ? [] : control.words
        switch kind {
        case .gact:
            return control.words
        case .mirred(let mirred):
            return ["mirred", mirred.direction.rawValue, mirred.mode.rawValue, "dev", mirred.device] + explicitControl
        case .vlan(.pop):
            return ["vlan", "pop"] + explicitControl
        case .vlan(.push(let id, let priority, let tpid)):
            return ["vlan", "push", "id", String(id)] + (priority == 0 ? [] : ["priority", String(priority)])
                + (tpid == EtherType.vlan ? [] : ["protocol", TCNames.protocolName(tpid)]) + explicitControl
        case .vlan(.modify(let id, let priority, let tpid)):
            return ["vlan", "modify", "id", String(id)] + (priority.map { ["priority", String($0)] } ?? [])
                + (tpid == EtherType.vlan ? [] : ["protocol", TCNames.protocolName(tpid)]) + explicitControl
        case .pedit(let edits):
            return ["pedit", "ex"] + edits.flatMap { ["munge", "eth", $0.field.rawValue, "set", $0.address.description] }
                + explicitControl
        case .skbmod(let edit):
            return ["skbmod"] + (edit.dstMAC.map { ["set", "dmac", $0.description] } ?? [])
                + (edit.srcMAC.map { ["set", "smac", $0.description] } ?? []) + explicitControl
        case .skbeditMark(let mark):
            return ["skbedit", "mark", String(mark.value) + FlowRule.hexMask(mark.mask, unless: .max)] + explicitControl
        case .police(let police):
            let defaults = police.exceed == .reclassify && control == .pass
            return ["police", "rate", Self.rateText(police.bytesPerSecond), "burst", Self.sizeText(police.burstBytes)]
                + (defaults ? [] : ["conform-exceed", "\(police.exceed)/\(control)"])
        case .xsk:
            return ["xsk"] + explicitControl
        }
    }

    /// tc's sprint_rate style: the largest of bit, Kbit, Mbit, Gbit that is exact.
    static func rateText(_ bytesPerSecond: UInt64) -> String {
        let bits = UInt128(bytesPerSecond) * 8
        for (unit, scale) in [("Gbit", UInt128(1_000_000_000)), ("Mbit", 1_000_000), ("Kbit", 1000)]
        where bits % scale == 0 {
            return "\(bits / scale)\(unit)"
        }
        return "\(bits)bit"
    }

    /// tc's sprint_size style: Mb, Kb (1024-based) or b, whichever is exact.
    static func sizeText(_ bytes: UInt32) -> String {
        if bytes % (1024 * 1024) == 0 { return "\(bytes / (1024 * 1024))Mb" }
        if bytes % 1024 == 0 { return "\(bytes / 1024)Kb" }
        return "\(bytes)b"
    }
}

extension ActionControl {
    var words: [String] { description.split(separator: " ").map(String.init) }
}

extension Sequence<FlowRule> {
    /// `commandLine(device:)` of each rule, in order, printed on every core: what the
    /// state directory keeps (snapshots, journal records).
    public func commandLineList(device: String) -> [String] {
        Array(self).concurrentMap { $0.commandLine(device: device) }
    }

    /// `commandLineList` as one text (`joinedLines`).
    public func commandLines(device: String, prefix: String = "") -> String {
        commandLineList(device: device).joinedLines(prefix: prefix)
    }
}

extension [String] {
    /// Each line after `prefix`, ended by a newline, as one text: one allocation for the
    /// text of 100,000 rules, not one per line and a doubling.
    public func joinedLines(prefix: String = "") -> String {
        var text = ""
        text.reserveCapacity(reduce(0) { $0 + prefix.utf8.count + $1.utf8.count + 1 })
        for line in self {
            text += prefix
            text += line
            text += "\n"
        }
        return text
    }
}

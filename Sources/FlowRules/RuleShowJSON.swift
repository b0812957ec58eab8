import Packets

/// `-j filter show` in the schema of `tc -j filter show` for flower: the objects and keys
/// iproute2 prints (tc/tc_filter.c print_filter, tc/f_flower.c flower_print_opt,
/// tc/m_action.c and each tc/m_*.c print function), with values as the kernel would dump
/// them for the same rule. Where XDPFlow prints less or more than tc, docs/flower.md says
/// what and why.
extension RuleShow {
    /// An array: per (chain, prio) a head object without options, as tc prints one
    /// before the rules of each prio of a dump, then one object per rule. `filter get`
    /// passes `prioHeads: false`: the kernel answers a get with the one rule, so tc prints
    /// no head.
    public func json(pretty: Bool, prioHeads: Bool = true) -> String {
        var objects: [JSONValue] = []
        var previous: (UInt32, UInt16)?
        for rule in rules {
            let head = Self.head(rule)
            if prioHeads, previous.map({ $0 != (rule.chain, rule.prio) }) ?? true { objects.append(.object(head)) }
            previous = (rule.chain, rule.prio)
            objects.append(.object(head + [("options", options(rule))]))
        }
        return JSONValue.array(objects).serialized(pretty: pretty)
    }

    /// print_filter's members: the parent (what the text's `parent ffff:` says), protocol,
    /// pref, kind and chain.
    private static func head(_ rule: FlowRule) -> [(String, JSONValue)] {
        [("parent", .string("ffff:")), ("protocol", .string(rule.filterProtocol.name)),
         ("pref", .integer(rule.prio)), ("kind", .string("flower")), ("chain", .integer(rule.chain))]
    }

    private func options(_ rule: FlowRule) -> JSONValue {
        var fields: [(String, JSONValue)] = [("handle", .integer(rule.handle))]
        if let classID = rule.classID { fields.append(("classid", .string(TCNames.classID(classID)))) }
        if let indev = rule.match.indev { fields.append(("indev", .string(indev))) }
        fields.append(("keys", .object(rule.tcJSONKeys)))
        if rule.skipHardware { fields.append(("skip_hw", .bool(true))) }
        fields.append(("not_in_hw", .bool(true)))
        // The kernel dumps no action list for a rule without actions.
        guard !rule.actions.isEmpty else { return .object(fields) }
        let counters = stats?(rule)
        fields.append(("actions", .array(rule.actions.enumerated().map {
            $0.element.tcJSON(order: $0.offset + 1, counters: counters)
        })))
        return .object(fields)
    }
}

extension FlowRule {
    /// The EtherType the kernel keeps as the rule's `eth_type` (cls_flower's n_proto):
    /// the protocol, unless it is a VLAN TPID, then `vlan_ethtype`, unless that is a TPID
    /// too, then `cvlan_ethtype`. None for protocol all.
    var kernelEtherType: UInt16? {
        func isTPID(_ type: UInt16) -> Bool { type == EtherType.vlan || type == EtherType.qinq }
        let proto = filterProtocol.rawValue
        guard proto != FilterProtocol.all.rawValue else { return nil }
        guard isTPID(proto) else { return proto }
        guard let vlanType = match.vlanEtherType else { return nil }
        guard isTPID(vlanType) else { return vlanType }
        return match.cvlanEtherType
    }

    /// f_flower.c's "keys" object, in its order.
    var tcJSONKeys: [(String, JSONValue)] {
        let m = match
        var keys: [(String, JSONValue)] = []
        func add(_ name: String, _ value: JSONValue?) { if let value { keys.append((name, value)) } }
        /// print_masked_u8 / print_masked_be16: the value as a number, the mask in hex
        /// under NAME_mask unless it is full.
        func addMasked<T: FixedWidthInteger & UnsignedInteger>(_ name: String, _ masked: Masked<T>?) {
            guard let masked else { return }
            keys.append((name, .integer(masked.value)))
            if masked.mask != T.max { keys.append((name + "_mask", .string(String(masked.mask, radix: 16)))) }
        }
        /// flower_print_masked_u8: a string, the value (or its name) and /MASK in decimal.
        func maskedU8Text(_ masked: Masked<UInt8>, name: (UInt8) -> String?) -> JSONValue {
            let value = (masked.mask == 0xff ? name(masked.value) : nil) ?? String(masked.value)
            return .string(value + (masked.mask == 0xff ? "" : "/\(masked.mask)"))
        }
        add("vlan_id", m.vlanID.map(JSONValue.integer))
        add("vlan_prio", m.vlanPriority.map(JSONValue.integer))
        add("vlan_ethtype", m.vlanEtherType.map { .string(TCNames.protocolName($0)) })
        add("cvlan_id", m.cvlanID.map(JSONValue.integer))
        add("cvlan_prio", m.cvlanPriority.map(JSONValue.integer))
        add("cvlan_ethtype", m.cvlanEtherType.map { .string(TCNames.protocolName($0)) })
        add("dst_mac", m.dstMAC.map { .string(Self.text($0)) })
        add("src_mac", m.srcMAC.map { .string(Self.text($0)) })
        add("eth_type", kernelEtherType.map { type in
            .string([EtherType.ipv4: "ipv4", EtherType.ipv6: "ipv6", EtherType.arp: "arp", EtherType.rarp: "rarp"][type]
                ?? TCNames.hex(type, width: 4))
        })
        add("ip_proto", m.ipProto.map { proto in
            .string(TCNames.ipProtocols.first { $0.value == proto }?.name ?? "0x" + TCNames.hex(proto, width: 2))
        })
        addMasked("ip_tos", m.ipTOS)
        addMasked("ip_ttl", m.ipTTL)
        add("dst_ip", m.dstIP.map { .string(Self.text($0)) })
        add("src_ip", m.srcIP.map { .string(Self.text($0)) })
        // Exact and masked ports first, then ranges, as f_flower.c.
        let ports = [("dst_port", m.dstPort), ("src_port", m.srcPort)]
        for case let (name, .masked(masked)?) in ports { addMasked(name, masked) }
        for case let (name, .range(range)?) in ports {
            keys.append((name, .object([("start", .integer(range.min)), ("end", .integer(range.max))])))
        }
        add("tcp_flags", m.tcpFlags.map {
            .string("0x" + String($0.value, radix: 16) + "/" + String($0.mask, radix: 16))
        })
        add("icmp_type", m.icmpType.map { maskedU8Text($0) { _ in nil } })
        add("icmp_code", m.icmpCode.map { maskedU8Text($0) { _ in nil } })
        add("arp_sip", m.arpSenderIP.map { .string(Self.text($0)) })
        add("arp_tip", m.arpTargetIP.map { .string(Self.text($0)) })
        add("arp_op", m.arpOp.map { maskedU8Text($0) { [1: "request", 2: "reply"][$0] } })
        add("arp_sha", m.arpSenderMAC.map { .string(Self.text($0)) })
        add("arp_tha", m.arpTargetMAC.map { .string(Self.text($0)) })
        if let flags = m.ipFlags {
            var members: [(String, JSONValue)] = []
            if let fragment = flags.isFragment { members.append(("frag", .bool(fragment))) }
            if let first = flags.isFirstFragment { members.append(("firstfrag", .bool(first))) }
            if !members.isEmpty { keys.append(("ip_flags", .object(members))) }
        }
        return keys
    }
}

extension ActionControl {
    /// print_action_control's object.
    var tcJSON: JSONValue {
        switch self {
        case .gotoChain(let chain): .object([("type", .string("goto")), ("chain", .integer(chain))])
        case .jump(let count): .object([("type", .string("jump")), ("jump", .integer(count))])
        default: .object([("type", .string(description))])
        }
    }
}

extension FlowAction {
    /// One member of tc's "actions": order, what the kind's print function prints
    /// (index, ref and bind left out: XDPFlow's actions are not shared kernel objects),
    /// with counters the time since last use and a "stats" object (print_tcstats2_attr).
    /// Packets and bytes are the rule's (XDPFlow counts frames per rule); drops and
    /// overlimits the action's own.
    func tcJSON(order: Int, counters: RuleStats?) -> JSONValue {
        var fields: [(String, JSONValue)] = [("order", .integer(order))]
        let controlAction = ("control_action", control.tcJSON)
        switch kind {
        case .gact:
            fields += [("kind", .string("gact")), controlAction,
                       ("prob", .object([("random_type", .string("none")),
                                         ("control_action", ActionControl.pass.tcJSON), ("val", .integer(0))]))]
        case .mirred(let mirred):
            fields += [("kind", .string("mirred")), ("mirred_action", .string(mirred.mode.rawValue)),
                       ("direction", .string(mirred.direction.rawValue)), ("to_dev", .string(mirred.device)),
                       controlAction]
        case .vlan(.pop):
            fields += [("kind", .string("vlan")), ("vlan_action", .string("pop")), controlAction]
        case .vlan(.push(let id, let priority, let tpid)):
            fields += [("kind", .string("vlan")), ("vlan_action", .string("push")), ("id", .integer(id)),
                       ("protocol", .string(TCNames.protocolName(tpid))), ("priority", .integer(priority)),
                       controlAction]
        case .vlan(.modify(let id, let priority, let tpid)):
            fields += [("kind", .string("vlan")), ("vlan_action", .string("modify")), ("id", .integer(id)),
                       ("protocol", .string(TCNames.protocolName(tpid)))]
            if let priority { fields.append(("priority", .integer(priority))) }
            fields.append(controlAction)
        case .pedit(let edits):
            let keys = edits.flatMap(Self.peditKeys)
            fields += [("kind", .string("pedit")), controlAction, ("nkeys", .integer(keys.count))]
            if let used = counters?.lastUsed { fields.append(("last_used", .integer(used))) }
            fields.append(("keys", .array(keys.map { key in
                .object([("htype", .string("eth")), ("offset", .integer(key.offset)), ("cmd", .string("set")),
                         ("val", .string(String(key.value, radix: 16))), ("mask", .string(String(key.mask, radix: 16)))])
            })))
        case .skbmod(let edit):
            fields += [("kind", .string("skbmod")), controlAction]
            if let mac = edit.dstMAC { fields.append(("dmac", .string(mac.description))) }
            if let mac = edit.srcMAC { fields.append(("smac", .string(mac.description))) }
        case .skbeditMark(let mark):
            fields += [("kind", .string("skbedit")), ("mark", .integer(mark.value))]
            if mark.mask != .max { fields.append(("mask", .string(String(mark.mask, radix: 16)))) }
            fields.append(controlAction)
        case .police(let police):
            // tc prints the exceed control as "control_action", then the conform control
            // under the same name again, and rate and burst only as text; here the conform
            // control has a name of its own and rate (bytes/s) and burst (bytes) are kept.
            fields += [("kind", .string("police")), ("rate", .integer(police.bytesPerSecond)),
                       ("burst", .integer(police.burstBytes)), ("control_action", police.exceed.tcJSON),
                       ("conform_action", control.tcJSON), ("overhead", .integer(0))]
        case .xsk:
            // XDPFlow's own kind: control_action is what a frame gets when no socket is bound.
            fields += [("kind", .string("xsk")), controlAction]
        }
        guard let counters else { return .object(fields) }
        if case .pedit = kind {} else if let used = counters.lastUsed { fields.append(("last_used", .integer(used))) }
        func count(_ counts: [UInt64]) -> UInt64 { order <= counts.count ? counts[order - 1] : 0 }
        fields.append(("stats", .object([
            ("bytes", .integer(counters.bytes)), ("packets", .integer(counters.packets)),
            ("drops", .integer(count(counters.actionDrops))), ("overlimits", .integer(count(counters.actionOverlimits))),
            ("requeues", .integer(0)),
            ("backlog", .integer(0)), ("qlen", .integer(0)),
        ])))
        return .object(fields)
    }

    /// The 32-bit keys tc's pedit writes for `munge eth dst|src set MAC` (m_pedit.c's
    /// pack_mac): offsets from the Ethernet header, values and masks as host-order words
    /// (the mask keeps the bits not set).
    static func peditKeys(_ edit: EthernetAddressEdit) -> [(offset: Int, value: UInt32, mask: UInt32)] {
        let b = (0..<6).map { UInt32(truncatingIfNeeded: edit.address.rawValue >> (40 - 8 * UInt64($0))) & 0xff }
        switch edit.field {
        case .dst:
            return [(0, b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3], 0),
                    (4, b[4] << 24 | b[5] << 16, 0x0000_ffff)]
        case .src:
            return [(4, b[0] << 8 | b[1], 0xffff_0000),
                    (8, b[2] << 24 | b[3] << 16 | b[4] << 8 | b[5], 0)]
        }
    }
}

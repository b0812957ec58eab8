import Packets

enum FlowerKey: Hashable, Sendable {
    case indev, skipHW, skipSW, verbose
    case dstMAC, srcMAC
    case vlanID, vlanPrio, vlanEthType, cvlanID, cvlanPrio, cvlanEthType
    case ipProto, ipTOS, ipTTL, dstIP, srcIP, dstPort, srcPort, tcpFlags, icmpType, icmpCode
    case arpTIP, arpSIP, arpOp, arpSHA, arpTHA
    case ipFlags, classID, action
    /// A key tc knows and XDPFlow does not run.
    case unsupported(String)
}

/// The flower part of a filter command: match keys, then actions, as f_flower.c reads
/// them, in order, so that `ip_proto` must come before the keys that depend on it.
struct FlowerParser {
    var words: Words
    var rule: FlowRule
    private var seen: Set<FlowerKey> = []
    /// Warnings about what was read (see `FilterCommand.notes`).
    private(set) var notes: [ParseError] = []
    /// `verbose` was given (see `FilterCommand.verbose`).
    private(set) var verbose = false

    init(words: Words, rule: FlowRule) {
        self.words = words
        self.rule = rule
    }

    static let keys = Keywords<FlowerKey>(
        [
            ("indev", .indev), ("skip_hw", .skipHW), ("skip_sw", .skipSW), ("verbose", .verbose),
            ("dst_mac", .dstMAC), ("src_mac", .srcMAC),
            ("vlan_id", .vlanID), ("vlan_prio", .vlanPrio), ("vlan_ethtype", .vlanEthType),
            ("cvlan_id", .cvlanID), ("cvlan_prio", .cvlanPrio), ("cvlan_ethtype", .cvlanEthType),
            ("ip_proto", .ipProto), ("ip_tos", .ipTOS), ("ip_ttl", .ipTTL),
            ("dst_ip", .dstIP), ("src_ip", .srcIP), ("dst_port", .dstPort), ("src_port", .srcPort),
            ("tcp_flags", .tcpFlags), ("type", .icmpType), ("code", .icmpCode),
            ("arp_tip", .arpTIP), ("arp_sip", .arpSIP), ("arp_op", .arpOp), ("arp_sha", .arpSHA),
            ("arp_tha", .arpTHA), ("ip_flags", .ipFlags),
            ("classid", .classID), ("flowid", .classID), ("action", .action), ("actions", .action),
        ] + unsupportedKeys.keys.sorted().map { ($0, FlowerKey.unsupported($0)) },
        exactOnly: ["num_of_vlans", "l2_miss", "l2tpv3_sid", "spi", "pppoe_sid", "ppp_proto", "gtp_opts",
                    "pfcp_opts", "enc_flags", "cfm"])

    /// Keys tc knows that XDPFlow does not match, each with why: distinct from a word
    /// nobody knows.
    static let unsupportedKeys: [String: String] = {
        let tunnel = "tunnel keys are what a tunnel device learns when it decapsulates, after XDP"
        let conntrack = "connection tracking state is conntrack's, which runs after XDP"
        let mpls = "its programs parse no MPLS label stack"
        var reasons = [
            "hw_tc": "hardware traffic classes are a NIC's, not XDP's",
            "num_of_vlans": "its programs do not count VLAN tags (vlan_* and cvlan_* match the outer two)",
            "l2_miss": "it needs the bridge's forwarding database, which is looked up after XDP",
            "pppoe_sid": "its programs parse no PPPoE header", "ppp_proto": "its programs parse no PPPoE header",
            "l2tpv3_sid": "its programs parse no L2TPv3 header", "spi": "its programs parse no IPsec header",
            "cfm": "its programs parse no CFM (802.1ag) header",
        ]
        for key in ["mpls", "mpls_label", "mpls_tc", "mpls_bos", "mpls_ttl"] { reasons[key] = mpls }
        for key in ["ct_state", "ct_zone", "ct_mark", "ct_label"] { reasons[key] = conntrack }
        for key in ["enc_key_id", "enc_dst_ip", "enc_src_ip", "enc_dst_port", "enc_tos", "enc_ttl", "enc_flags",
                    "geneve_opts", "vxlan_opts", "erspan_opts", "gtp_opts", "pfcp_opts"] { reasons[key] = tunnel }
        return reasons
    }()

    mutating func parse() throws(ParseError) {
        var sawActions = false
        while let word = words.current {
            let keyIndex = words.index
            guard let key = Self.keys.resolve(word) else {
                throw words.error(Self.keys.complaint(about: word, kind: "flower key"), at: keyIndex)
            }
            words.advance()
            switch key {
            case .unsupported(let name):
                throw words.errorAtPrevious("flower key '\(name)' is not supported by xdpflow: \(Self.unsupportedKeys[name]!)")
            case .action:
                guard !sawActions else { throw words.errorAtPrevious("duplicate action list") }
                sawActions = true
                var actions = ActionParser(words: words)
                rule.actions = try actions.parse()
                words = actions.words
            default:
                guard seen.insert(key).inserted else {
                    throw words.errorAtPrevious("duplicate flower key '\(Self.name(of: key))'")
                }
                try parseKey(key, keyIndex: keyIndex)
            }
        }
    }

    static func name(of key: FlowerKey) -> String {
        keys.entries.first { $0.meaning == key }!.word
    }

    // MARK: Keys

    private mutating func parseKey(_ key: FlowerKey, keyIndex: Int) throws(ParseError) {
        let name = Self.name(of: key)
        switch key {
        case .skipHW, .skipSW:
            // tc's kernel refuses both: the rule would run nowhere.
            guard !seen.contains(key == .skipHW ? .skipSW : .skipHW) else {
                throw words.errorAtPrevious("skip_sw and skip_hw together: the rule would run nowhere")
            }
            // skip_sw (offload only) is what every xdpflow rule is: kept in neither form.
            if key == .skipHW { rule.skipHardware = true }
            return
        case .verbose:
            verbose = true
            return
        default:
            break
        }
        try checkDependency(of: key, name: name, at: keyIndex)
        let text = try words.value(of: name)
        func invalid(_ expected: String) -> ParseError { words.errorAtPrevious("\(name) \(text): \(expected)") }
        var match = rule.match
        switch key {
        case .indev:
            guard isValidInterfaceName(text) else { throw invalid(interfaceNameExpectation) }
            match.indev = text
        case .dstMAC, .srcMAC, .arpSHA, .arpTHA:
            guard let mac = Self.maskedMAC(text) else {
                throw invalid("expected a MAC address, optionally /MASK (a MAC address) or /0-48")
            }
            switch key {
            case .dstMAC: match.dstMAC = mac
            case .srcMAC: match.srcMAC = mac
            case .arpSHA: match.arpSenderMAC = mac
            default: match.arpTargetMAC = mac
            }
        case .vlanID, .cvlanID:
            guard let id = UInt16(tcText: text, base: .decimal), id <= 0xfff else { throw invalid("expected 0-4095") }
            if key == .vlanID { match.vlanID = id } else { match.cvlanID = id }
        case .vlanPrio, .cvlanPrio:
            guard let priority = UInt8(tcText: text, base: .decimal), priority <= 7 else { throw invalid("expected 0-7") }
            if key == .vlanPrio { match.vlanPriority = priority } else { match.cvlanPriority = priority }
        case .vlanEthType, .cvlanEthType:
            if let refusal = TCNames.unsupportedEtherType(text) { throw invalid(refusal) }
            guard let type = TCNames.etherType(text) else {
                throw invalid("expected ipv4, ipv6, 802.1Q, 802.1ad, arp, rarp or a number 0-0xffff")
            }
            if key == .vlanEthType { match.vlanEtherType = type } else { match.cvlanEtherType = type }
        case .ipProto:
            let number = try ipProtocol(text, invalid: invalid)
            match.ipProto = number
            if let note = Self.hexNote(ipProtocol: text, read: number) { notes.append(words.errorAtPrevious(note)) }
        case .ipTOS, .ipTTL:
            guard let masked = Self.maskedTOSOrTTL(text) else {
                throw invalid("expected 0-255 (decimal, else hex) with an optional /MASK (hex)")
            }
            if key == .ipTOS { match.ipTOS = masked } else { match.ipTTL = masked }
        case .dstIP, .srcIP:
            let ip = try ipMatch(text, name: name, invalid: invalid)
            if key == .dstIP { match.dstIP = ip } else { match.srcIP = ip }
        case .arpTIP, .arpSIP:
            guard let masked = Self.prefix(text, as: IPv4Address.self) else {
                throw invalid("expected an IPv4 address with an optional /0-32 or /MASK")
            }
            if key == .arpTIP { match.arpTargetIP = masked } else { match.arpSenderIP = masked }
        case .dstPort, .srcPort:
            let port = try Self.port(text, invalid: invalid)
            if key == .dstPort { match.dstPort = port } else { match.srcPort = port }
        case .tcpFlags:
            guard let flags = Self.masked(text, valueBase: .hex, maskBase: .hex, defaultMask: UInt16(0x0fff)),
                  flags.value <= 0x0fff, flags.mask <= 0x0fff
            else { throw invalid("expected hex FLAGS with an optional /MASK, each at most 0xfff") }
            match.tcpFlags = flags
        case .icmpType, .icmpCode:
            guard let masked = Self.masked(text, valueBase: .decimal, maskBase: .decimal, defaultMask: UInt8.max) else {
                throw invalid("expected 0-255 with an optional /MASK 0-255 (decimal)")
            }
            if key == .icmpType { match.icmpType = masked } else { match.icmpCode = masked }
        case .arpOp:
            match.arpOp = try Self.arpOp(text, invalid: invalid)
        case .ipFlags:
            guard let flags = Self.ipFlags(text) else {
                throw invalid("expected frag, nofrag, firstfrag or nofirstfrag, joined with /")
            }
            match.ipFlags = flags
        case .classID:
            guard let id = Self.classID(text) else { throw invalid("expected MAJ:MIN, each hex 0-ffff") }
            rule.classID = id
        case .skipHW, .skipSW, .verbose, .action, .unsupported:
            preconditionFailure("handled by the caller")
        }
        rule.match = match
    }

    /// The cross-field rules of f_flower.c, checked when the key is read, so that the
    /// keys a key depends on must come before it.
    private func checkDependency(of key: FlowerKey, name: String, at index: Int) throws(ParseError) {
        let l3 = rule.l3EtherType
        let needs: String?
        switch key {
        case .vlanID, .vlanPrio, .vlanEthType:
            needs = rule.filterProtocol.rawValue.isVLANType ? nil : "protocol 802.1Q or 802.1ad"
        case .cvlanID, .cvlanPrio, .cvlanEthType:
            needs = rule.match.vlanEtherType?.isVLANType == true ? nil : "vlan_ethtype 802.1Q or 802.1ad"
        case .ipProto, .ipTOS, .ipTTL, .dstIP, .srcIP, .ipFlags:
            needs = l3.isIPType ? nil : "protocol ip or ipv6"
        case .dstPort, .srcPort:
            needs = [IPProtocolNumber.tcp, IPProtocolNumber.udp, IPProtocolNumber.sctp].contains(rule.match.ipProto)
                ? nil : "ip_proto tcp, udp or sctp"
        case .tcpFlags:
            needs = rule.match.ipProto == IPProtocolNumber.tcp ? nil : "ip_proto tcp"
        case .icmpType, .icmpCode:
            let icmp = (l3 == EtherType.ipv4 && rule.match.ipProto == IPProtocolNumber.icmp)
                || (l3 == EtherType.ipv6 && rule.match.ipProto == IPProtocolNumber.icmpv6)
            needs = icmp ? nil : "ip_proto icmp (protocol ip) or icmpv6 (protocol ipv6)"
        case .arpTIP, .arpSIP, .arpOp, .arpSHA, .arpTHA:
            needs = l3.isARPType ? nil : "protocol arp or rarp"
        default:
            needs = nil
        }
        if let needs { throw words.error("\(name) needs \(needs)", at: index) }
    }

    // MARK: Values

    private func ipProtocol(_ text: String, invalid: (String) -> ParseError) throws(ParseError) -> UInt8 {
        if let named = TCNames.ipProtocolWords.resolve(text) {
            let l3 = rule.l3EtherType
            if named == IPProtocolNumber.icmp, l3 != EtherType.ipv4 {
                throw invalid("icmp needs protocol ip; use icmpv6 with ipv6")
            }
            if named == IPProtocolNumber.icmpv6, l3 != EtherType.ipv6 {
                throw invalid("icmpv6 needs protocol ipv6; use icmp with ip")
            }
            return named
        }
        guard let number = UInt8(tcText: text, base: .hex) else {
            throw invalid("expected tcp, udp, sctp, icmp, icmpv6, l2tp, esp, ah or a hex number 0-ff")
        }
        return number
    }

    /// tc reads IP-PROTO as hex: a bare number whose decimal reading names a protocol
    /// (17, udp) most likely meant that one. What to say, or nil.
    static func hexNote(ipProtocol text: String, read number: UInt8) -> String? {
        guard text.allSatisfy({ $0.isASCII && $0.isNumber }), let decimal = UInt8(text), decimal != number,
              let named = TCNames.ipProtocols.first(where: { $0.value == decimal })
        else { return nil }
        return "ip_proto \(text) is read as hex, 0x\(text) (\(number) decimal), as tc reads it; "
            + "for \(named.name) (\(decimal)) write ip_proto \(named.name) or 0x\(String(decimal, radix: 16))"
    }

    private func ipMatch(_ text: String, name: String, invalid: (String) -> ParseError) throws(ParseError) -> IPMatch {
        // Only to say what was written instead, when it is not a prefix.
        var address: String { String(text.prefix { $0 != "/" }) }
        if rule.l3EtherType == EtherType.ipv4 {
            if let v4 = Self.prefix(text, as: IPv4Address.self) { return .v4(v4) }
            if IPv6Address(address) != nil { throw invalid("an IPv6 address needs protocol ipv6") }
            throw invalid("expected an IPv4 address with an optional /0-32 or /MASK (a prefix)")
        }
        if let v6 = Self.prefix(text, as: IPv6Address.self) { return .v6(v6) }
        if IPv4Address(address) != nil { throw invalid("an IPv4 address needs protocol ip") }
        throw invalid("expected an IPv6 address with an optional /0-128 or /MASK (a prefix)")
    }

    /// ADDRESS[/LEN] or ADDRESS/MASK with a prefix mask, as iproute2's get_prefix.
    static func prefix<Address: MaskableField & LosslessStringConvertible>(
        _ text: String, as _: Address.Type
    ) -> Masked<Address>? {
        guard let slash = text.utf8.firstIndex(of: UInt8(ascii: "/")) else { return Address(text).map { Masked($0) } }
        guard let address = Address(String(text[..<slash])) else { return nil }
        // After the slash's byte, not its Character: `/` with a combining mark is no slash.
        let suffix = Substring(text.utf8[text.utf8.index(after: slash)...])
        if let length = UInt8(tcText: suffix, base: .decimal) { return Masked(address, prefixLength: Int(length)) }
        guard let mask = Address(String(suffix)) else { return nil }
        let masked = Masked(address, mask: mask)
        return masked.prefixLength == nil ? nil : masked
    }

    /// MAC, MAC/MAC or MAC/BITS (decimal, 0-48), as flower_parse_eth_addr.
    static func maskedMAC(_ text: String) -> Masked<MACAddress>? {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = MACAddress(String(parts[0])) else { return nil }
        guard parts.count == 2 else { return Masked(address) }
        if let bits = UInt8(tcText: parts[1], base: .decimal) { return Masked(address, prefixLength: Int(bits)) }
        return MACAddress(String(parts[1])).map { Masked(address, mask: $0) }
    }

    /// VALUE[/MASK] with the bases tc uses for the key.
    static func masked<Value: FixedWidthInteger & UnsignedInteger & MaskableField>(
        _ text: String, valueBase: NumberBase, maskBase: NumberBase, defaultMask: Value
    ) -> Masked<Value>? {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let value = Value(tcText: parts[0], base: valueBase) else { return nil }
        guard parts.count == 2 else { return Masked(value, mask: defaultMask) }
        return Value(tcText: parts[1], base: maskBase).map { Masked(value, mask: $0) }
    }

    /// flower_parse_ip_tos_ttl: the value decimal, else hex; the mask hex.
    static func maskedTOSOrTTL(_ text: String) -> Masked<UInt8>? {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let value = UInt8(tcText: parts[0], base: .decimal) ?? UInt8(tcText: parts[0], base: .hex) else {
            return nil
        }
        guard parts.count == 2 else { return Masked(value) }
        return UInt8(tcText: parts[1], base: .hex).map { Masked(value, mask: $0) }
    }

    /// flower_parse_port: PORT (decimal), MIN-MAX (decimal) or VALUE/MASK (base 0).
    static func port(_ text: String, invalid: (String) -> ParseError) throws(ParseError) -> PortMatch {
        let expected = "expected PORT (1-65535), MIN-MAX or VALUE/MASK"
        if text.contains("/") {
            guard let masked = masked(text, valueBase: .automatic, maskBase: .automatic, defaultMask: UInt16.max) else {
                throw invalid(expected)
            }
            return .masked(masked)
        }
        if let dash = text.firstIndex(of: "-") {
            guard let min = UInt16(tcText: text[..<dash], base: .decimal),
                  let max = UInt16(tcText: text[text.index(after: dash)...], base: .decimal)
            else { throw invalid(expected) }
            guard max > min else { throw invalid("max value should be greater than min value") }
            guard let range = PortRange(min: min, max: max) else {
                throw invalid("a range starts at 1 (tc reads 0 as no port)")
            }
            return .range(range)
        }
        guard let port = UInt16(tcText: text, base: .decimal) else { throw invalid(expected) }
        guard port != 0 else { throw invalid("port 0 needs the masked form 0/0xffff (tc reads 0 as no port)") }
        return .masked(Masked(port))
    }

    /// `request`, `reply`, 0, 1 or 2, with an optional decimal mask.
    static func arpOp(_ text: String, invalid: (String) -> ParseError) throws(ParseError) -> Masked<UInt8> {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let value: UInt8?
        switch parts[0] {
        case "request": value = 1
        case "reply": value = 2
        default: value = UInt8(tcText: parts[0], base: .decimal).flatMap { $0 <= 2 ? $0 : nil }
        }
        let mask = parts.count == 2 ? UInt8(tcText: parts[1], base: .decimal) : UInt8.max
        guard let value, let mask else {
            throw invalid("expected request, reply, 0, 1 or 2 with an optional /MASK 0-255 (decimal)")
        }
        return Masked(value, mask: mask)
    }

    /// FLAG[/FLAG]...; a later word for the same flag wins, as in tc.
    static func ipFlags(_ text: String) -> IPFlagsMatch? {
        var flags = IPFlagsMatch()
        for word in text.split(separator: "/", omittingEmptySubsequences: false) {
            switch word {
            case "frag": flags.isFragment = true
            case "nofrag": flags.isFragment = false
            case "firstfrag": flags.isFirstFragment = true
            case "nofirstfrag": flags.isFirstFragment = false
            default: return nil
            }
        }
        return flags
    }

    /// get_tc_classid: MAJ:MIN or a bare number, hex, each half at most ffff.
    static func classID(_ text: String) -> UInt32? {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        if parts.count == 1 { return UInt32(tcText: parts[0], base: .hex) }
        let major = parts[0].isEmpty ? 0 : UInt16(tcText: parts[0], base: .hex)
        guard let major, let minor = UInt16(tcText: parts[1], base: .hex) else { return nil }
        return UInt32(major) << 16 | UInt32(minor)
    }
}

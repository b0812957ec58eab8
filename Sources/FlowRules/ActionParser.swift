import Packets

private enum ControlWord: Equatable, Sendable { case `continue`, drop, pass, reclassify, pipe, goto, jump, trap }

private enum ActionWord: Equatable, Sendable {
    case control(ControlWord)
    case gact, mirred, vlan, pedit, skbmod, skbedit, police, xsk
    case unsupported(String)
}

/// `action SPEC [action SPEC]...` as m_action.c reads it: a bare control word is a gact
/// action, the word `action` between specs may be left out, and the list ends at the end
/// of the command or at `classid`/`flowid`.
struct ActionParser {
    var words: Words

    /// The kernel's TCA_ACT_MAX_PRIO.
    static let maxActions = 32

    private static let actionWords = Keywords<ActionWord>(
        [
            ("continue", .control(.continue)), ("drop", .control(.drop)), ("shot", .control(.drop)),
            ("pass", .control(.pass)), ("ok", .control(.pass)), ("reclassify", .control(.reclassify)),
            ("pipe", .control(.pipe)), ("goto", .control(.goto)), ("jump", .control(.jump)), ("trap", .control(.trap)),
            ("gact", .gact), ("mirred", .mirred), ("vlan", .vlan), ("pedit", .pedit), ("skbmod", .skbmod),
            ("skbedit", .skbedit), ("police", .police), ("xsk", .xsk),
        ] + unsupportedKinds.keys.sorted().map { ($0, ActionWord.unsupported($0)) },
        exactOnly: Set(["gact", "mirred", "vlan", "pedit", "skbmod", "skbedit", "police", "xsk"] + unsupportedKinds.keys))

    /// Actions tc knows that XDPFlow does not run, each with why.
    private static let unsupportedKinds: [String: String] = [
        "csum": "its actions change no IP or L4 field, so none recomputes a checksum",
        "ct": "conntrack runs after XDP", "ctinfo": "conntrack runs after XDP", "connmark": "conntrack runs after XDP",
        "tunnel_key": "tunnel metadata is for a tunnel device, which an XDP program cannot hand a frame with it",
        "nat": "its actions rewrite no IP address", "sample": "psample's sampling is tc's, not XDP's",
        "mpls": "its programs parse no MPLS label stack",
        "bpf": "XDPFlow generates the one program; run a BPF program of your own with tc or ip link",
        "ife": "its actions add no IFE encapsulation", "simple": "it writes to the kernel log, per frame",
        "xt": "iptables targets run in netfilter, after XDP", "ipt": "iptables targets run in netfilter, after XDP",
        "gate": "time-based gates need tc's timers", "mirred_blockid": "shared blocks are not supported",
    ]

    private static let controlWords = Keywords<ControlWord>(actionWords.entries.compactMap {
        if case .control(let word) = $0.meaning { ($0.word, word) } else { nil }
    })

    private static let kindList = "drop, pass, continue, pipe, mirred, vlan, pedit, skbmod, skbedit, police or xsk"

    init(words: Words) { self.words = words }

    /// Starts after the `action` word that opened the list.
    mutating func parse() throws(ParseError) -> [FlowAction] {
        var actions: [FlowAction] = []
        var expectingSpec = true
        while let word = words.current {
            if word == "action" || word == "actions" {
                words.advance()
                expectingSpec = true
                continue
            }
            if word == "classid" || word == "flowid" { break }
            guard actions.count < Self.maxActions else {
                throw words.error("a rule takes at most \(Self.maxActions) actions", at: words.index)
            }
            actions.append(try spec())
            expectingSpec = false
            if let option = words.current, ["index", "cookie", "hw_stats", "no_percpu", "skip_sw", "skip_hw"].contains(option) {
                throw words.error("action option '\(option)' is not supported by xdpflow", at: words.index)
            }
        }
        if expectingSpec { throw words.endError("action needs an action: \(Self.kindList)") }
        return actions
    }

    private mutating func spec() throws(ParseError) -> FlowAction {
        let word = words.take()!
        guard let kind = Self.actionWords.resolve(word) else {
            throw words.errorAtPrevious(Self.actionWords.complaint(about: word, kind: "action"))
        }
        switch kind {
        case .control(let control):
            return .gact(try controlArguments(control))
        case .gact:
            guard let control = try optionalControl() else {
                throw words.errorAtPrevious("gact needs a control: continue, drop, pass, pipe, reclassify, trap, goto chain N or jump N")
            }
            return .gact(control)
        case .mirred: return try mirred()
        case .vlan: return try vlan()
        case .pedit: return try pedit()
        case .skbmod: return try skbmod()
        case .skbedit: return try skbedit()
        case .police: return try police()
        case .xsk: return FlowAction(.xsk, control: try optionalControl())
        case .unsupported(let name):
            throw words.errorAtPrevious("action '\(name)' is not supported by xdpflow: \(Self.unsupportedKinds[name]!)")
        }
    }

    // MARK: Controls

    /// The control word at the cursor, consumed, or nil when the word is not one.
    private mutating func optionalControl() throws(ParseError) -> ActionControl? {
        guard let word = words.current, let control = Self.controlWords.resolve(word) else { return nil }
        words.advance()
        return try controlArguments(control)
    }

    private mutating func controlArguments(_ control: ControlWord) throws(ParseError) -> ActionControl {
        switch control {
        case .continue: return .continue
        case .drop: return .drop
        case .pass: return .pass
        case .reclassify: return .reclassify
        case .pipe: return .pipe
        case .trap: return .trap
        case .goto:
            guard words.take() == "chain" else { throw words.errorAtPrevious("goto needs 'chain N'") }
            return .gotoChain(try count(of: "goto chain", allowsZero: true))
        case .jump:
            return .jump(try count(of: "jump", allowsZero: false))
        }
    }

    private mutating func count(of name: String, allowsZero: Bool) throws(ParseError) -> UInt32 {
        let text = try words.value(of: name)
        guard let value = UInt32(tcText: text, base: .decimal), value <= 0x0fff_ffff, allowsZero || value > 0 else {
            throw words.errorAtPrevious("\(name) \(text): expected \(allowsZero ? 0 : 1)-268435455")
        }
        return value
    }

    // MARK: Kinds

    private mutating func mirred() throws(ParseError) -> FlowAction {
        let directions = Keywords<Mirred.Direction>([("egress", .egress), ("ingress", .ingress)])
        let modes = Keywords<Mirred.Mode>([("redirect", .redirect), ("mirror", .mirror)])
        let directionWord = try words.value(of: "mirred")
        guard let direction = directions.resolve(directionWord) else {
            throw words.errorAtPrevious("mirred \(directionWord): expected egress or ingress")
        }
        let modeWord = try words.value(of: "mirred \(direction.rawValue)")
        guard let mode = modes.resolve(modeWord) else {
            throw words.errorAtPrevious("mirred \(direction.rawValue) \(modeWord): expected redirect or mirror")
        }
        let devWord = try words.value(of: "mirred \(direction.rawValue) \(mode.rawValue)")
        guard devWord == "dev" else {
            throw words.errorAtPrevious("mirred \(direction.rawValue) \(mode.rawValue) needs dev DEV")
        }
        let device = try words.value(of: "dev")
        guard isValidInterfaceName(device) else { throw words.errorAtPrevious("dev \(device): \(interfaceNameExpectation)") }
        let mirred = Mirred(direction: direction, mode: mode, device: device)
        // tc reads a control after mirror only; after redirect the next word is a new action.
        let control = mode == .mirror ? try optionalControl() : nil
        return FlowAction(.mirred(mirred), control: control)
    }

    private mutating func vlan() throws(ParseError) -> FlowAction {
        enum Command: Equatable { case pop, push, modify, unsupported(String) }
        let commands = Keywords<Command>(
            [("pop", .pop), ("push", .push), ("modify", .modify),
             ("pop_eth", .unsupported("pop_eth")), ("push_eth", .unsupported("push_eth"))],
            exactOnly: ["pop_eth", "push_eth"])
        let commandWord = try words.value(of: "vlan")
        guard let command = commands.resolve(commandWord) else {
            throw words.errorAtPrevious(commands.complaint(about: commandWord, kind: "vlan command") + "; expected pop, push or modify")
        }
        if case .unsupported(let name) = command { throw words.errorAtPrevious("vlan \(name) is not supported by xdpflow") }
        guard command != .pop else { return FlowAction(.vlan(.pop), control: try optionalControl()) }

        let verb = command == .push ? "vlan push" : "vlan modify"
        enum Option: Equatable { case id, priority, `protocol` }
        let options = Keywords<Option>([("id", .id), ("priority", .priority), ("protocol", .protocol)])
        var id: UInt16?, priority: UInt8?, tpid: UInt16?
        while let word = words.current {
            guard let option = options.resolve(word) else {
                if options.prefixed(by: word).count > 1 {
                    throw words.error(options.complaint(about: word, kind: "\(verb) option"), at: words.index)
                }
                break
            }
            words.advance()
            let text = try words.value(of: word)
            switch option {
            case .id:
                guard id == nil else { throw words.errorAtPrevious("duplicate \(verb) id") }
                // The kernel refuses VID 4095 (VLAN_VID_MASK) for push and modify.
                guard let value = UInt16(tcText: text, base: .automatic), value < 0xfff else {
                    throw words.errorAtPrevious("\(verb) id \(text): expected 0-4094")
                }
                id = value
            case .priority:
                guard priority == nil else { throw words.errorAtPrevious("duplicate \(verb) priority") }
                guard let value = UInt8(tcText: text, base: .automatic), value <= 7 else {
                    throw words.errorAtPrevious("\(verb) priority \(text): expected 0-7")
                }
                priority = value
            case .protocol:
                guard tpid == nil else { throw words.errorAtPrevious("duplicate \(verb) protocol") }
                guard let value = TCNames.etherType(text), value.isVLANType else {
                    throw words.errorAtPrevious("\(verb) protocol \(text): expected 802.1Q or 802.1ad")
                }
                tpid = value
            }
        }
        guard let id else { throw words.endError("\(verb) needs id N") }
        let action: VLANAction = command == .push
            ? .push(id: id, priority: priority ?? 0, tpid: tpid ?? EtherType.vlan)
            : .modify(id: id, priority: priority, tpid: tpid ?? EtherType.vlan)
        return FlowAction(.vlan(action), control: try optionalControl())
    }

    private mutating func pedit() throws(ParseError) -> FlowAction {
        let supported = "xdpflow supports pedit ex munge eth dst|src set MAC"
        guard words.take() == "ex" else { throw words.errorAtPrevious("pedit needs 'ex': \(supported)") }
        var edits: [EthernetAddressEdit] = []
        while words.current == "munge" {
            words.advance()
            let layer = try words.value(of: "munge")
            guard layer == "eth" else { throw words.errorAtPrevious("pedit munge \(layer) is not supported: \(supported)") }
            let fieldWord = try words.value(of: "munge eth")
            guard let field = EthernetAddressEdit.Field(rawValue: fieldWord) else {
                throw words.errorAtPrevious("pedit munge eth \(fieldWord) is not supported: \(supported)")
            }
            let command = try words.value(of: "munge eth \(fieldWord)")
            guard command == "set" else {
                throw words.errorAtPrevious("pedit munge eth \(fieldWord) \(command) is not supported: \(supported)")
            }
            let text = try words.value(of: "set")
            guard let address = MACAddress(text) else {
                throw words.errorAtPrevious("pedit munge eth \(fieldWord) set \(text): expected a MAC address")
            }
            if words.current == "retain" { throw words.error("pedit retain is not supported by xdpflow", at: words.index) }
            edits.append(EthernetAddressEdit(field, address))
        }
        guard !edits.isEmpty else { throw words.error("pedit ex needs munge: \(supported)", at: words.index) }
        return FlowAction(.pedit(edits), control: try optionalControl())
    }

    private mutating func skbmod() throws(ParseError) -> FlowAction {
        var edit = SKBMod()
        while let word = words.current {
            if word == "swap" || word == "ecn" {
                throw words.error("skbmod \(word) is not supported by xdpflow", at: words.index)
            }
            guard word == "set" else { break }
            words.advance()
            let field = try words.value(of: "skbmod set")
            guard field == "dmac" || field == "smac" else {
                throw words.errorAtPrevious("skbmod set \(field) is not supported: expected dmac or smac")
            }
            let text = try words.value(of: "set \(field)")
            guard let address = MACAddress(text) else {
                throw words.errorAtPrevious("skbmod set \(field) \(text): expected a MAC address")
            }
            if field == "dmac" {
                guard edit.dstMAC == nil else { throw words.errorAtPrevious("duplicate skbmod set dmac") }
                edit.dstMAC = address
            } else {
                guard edit.srcMAC == nil else { throw words.errorAtPrevious("duplicate skbmod set smac") }
                edit.srcMAC = address
            }
        }
        guard edit.dstMAC != nil || edit.srcMAC != nil else {
            throw words.error("skbmod needs set dmac MAC or set smac MAC", at: words.index)
        }
        return FlowAction(.skbmod(edit), control: try optionalControl())
    }

    private mutating func skbedit() throws(ParseError) -> FlowAction {
        var mark: Masked<UInt32>?
        while let word = words.current {
            if ["queue_mapping", "priority", "ptype", "inheritdsfield"].contains(word) {
                throw words.error("skbedit \(word) is not supported by xdpflow", at: words.index)
            }
            guard word == "mark" else { break }
            words.advance()
            let text = try words.value(of: "skbedit mark")
            guard mark == nil else { throw words.errorAtPrevious("duplicate skbedit mark") }
            guard let value = FlowerParser.masked(text, valueBase: .automatic, maskBase: .automatic,
                                                  defaultMask: UInt32.max) else {
                throw words.errorAtPrevious("skbedit mark \(text): expected MARK with an optional /MASK, each 0-0xffffffff")
            }
            mark = value
        }
        guard let mark else { throw words.error("skbedit needs mark MARK", at: words.index) }
        return FlowAction(.skbeditMark(mark), control: try optionalControl())
    }

    private mutating func police() throws(ParseError) -> FlowAction {
        enum Option: Equatable { case rate, burst, conformExceed, unsupported(String) }
        let unsupported = ["mtu", "minburst", "peakrate", "overhead", "linklayer", "index", "avrate", "pkts_rate",
                           "pkts_burst", "mpu", "estimator"]
        let options = Keywords<Option>(
            [("rate", .rate), ("burst", .burst), ("buffer", .burst), ("maxburst", .burst),
             ("conform-exceed", .conformExceed)] + unsupported.map { ($0, Option.unsupported($0)) },
            exactOnly: ["buffer", "maxburst", "conform-exceed"])
        var rate: UInt64?, burst: UInt32?, exceed: ActionControl?, conform: ActionControl?
        while let word = words.current, let option = options.resolve(word) {
            words.advance()
            switch option {
            case .rate:
                let text = try words.value(of: "police rate")
                guard rate == nil else { throw words.errorAtPrevious("duplicate police rate") }
                guard let value = Self.rate(text), value > 0 else {
                    throw words.errorAtPrevious("police rate \(text): expected a rate of at least 8bit, e.g. 10mbit, 1gbit or 500kbps")
                }
                rate = value
            case .burst:
                let text = try words.value(of: "police burst")
                guard burst == nil else { throw words.errorAtPrevious("duplicate police burst") }
                guard let value = Self.size(text), value > 0 else {
                    throw words.errorAtPrevious("police burst \(text): expected 1 byte to 4294967295 bytes, e.g. 1500, 16k or 1mb")
                }
                burst = value
            case .conformExceed:
                let text = try words.value(of: "conform-exceed")
                guard exceed == nil else { throw words.errorAtPrevious("duplicate police conform-exceed") }
                let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
                let controls = parts.map { Self.simpleControl(String($0)) }
                guard !controls.contains(where: { $0 == nil }) else {
                    throw words.errorAtPrevious(
                        "police conform-exceed \(text): expected EXCEED[/CONFORM], each drop, pass, pipe, continue, reclassify or trap")
                }
                exceed = controls[0]
                conform = controls.count == 2 ? controls[1] : nil
            case .unsupported(let name):
                throw words.errorAtPrevious("police \(name) is not supported by xdpflow")
            }
        }
        guard let rate, let burst else { throw words.endError("police needs rate RATE and burst SIZE") }
        let police = Police(bytesPerSecond: rate, burstBytes: burst, exceed: exceed ?? .reclassify)
        return FlowAction(.police(police), control: conform)
    }

    private static func simpleControl(_ word: String) -> ActionControl? {
        switch controlWords.resolve(word) {
        case .continue?: .continue
        case .drop?: .drop
        case .pass?: .pass
        case .reclassify?: .reclassify
        case .pipe?: .pipe
        case .trap?: .trap
        case .goto?, .jump?, nil: nil
        }
    }

    // MARK: Rates and sizes (tc_util.c get_rate64 and get_size)

    private static let rateUnits: [(String, Double)] = [
        ("bit", 1), ("kibit", 1024), ("kbit", 1000), ("mibit", 1024 * 1024), ("mbit", 1e6),
        ("gibit", 1024 * 1024 * 1024), ("gbit", 1e9), ("tibit", 1024 * 1024 * 1024 * 1024), ("tbit", 1e12),
        ("bps", 8), ("kibps", 8 * 1024), ("kbps", 8000), ("mibps", 8 * 1024 * 1024), ("mbps", 8e6),
        ("gibps", 8 * 1024 * 1024 * 1024), ("gbps", 8e9), ("tibps", 8 * 1024 * 1024 * 1024 * 1024), ("tbps", 8e12),
    ]

    /// Bytes per second; a bare number is bits per second, as in tc.
    static func rate(_ text: String) -> UInt64? {
        guard let (number, unit) = splitNumber(text) else { return nil }
        let scale = unit.isEmpty ? 1 : rateUnits.first { $0.0 == unit.lowercased() }?.1
        guard let scale else { return nil }
        let bytes = (number * scale / 8).rounded(.down)
        return bytes < 0x1p64 ? UInt64(bytes) : nil
    }

    private static let sizeUnits: [(String, Double)] = [
        ("b", 1), ("k", 1024), ("kb", 1024), ("m", 1024 * 1024), ("mb", 1024 * 1024),
        ("g", 1024 * 1024 * 1024), ("gb", 1024 * 1024 * 1024),
        ("kbit", 1024 / 8), ("mbit", 1024 * 1024 / 8), ("gbit", 1024 * 1024 * 1024 / 8),
    ]

    /// Bytes; a bare number is bytes.
    static func size(_ text: String) -> UInt32? {
        guard let (number, unit) = splitNumber(text) else { return nil }
        let scale = unit.isEmpty ? 1 : sizeUnits.first { $0.0 == unit.lowercased() }?.1
        guard let scale else { return nil }
        let bytes = (number * scale).rounded(.down)
        return bytes < 0x1p32 ? UInt32(bytes) : nil
    }

    /// A decimal number with an optional fraction, and the unit after it.
    private static func splitNumber(_ text: String) -> (Double, Substring)? {
        let end = text.firstIndex { !($0.isASCII && ($0.isNumber || $0 == ".")) } ?? text.endIndex
        let digits = text[..<end]
        guard digits.first?.isNumber == true, digits.last?.isNumber == true,
              digits.filter({ $0 == "." }).count <= 1, let number = Double(digits)
        else { return nil }
        return (number, text[end...])
    }
}

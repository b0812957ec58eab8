import Packets

/// What XDPFlow does with one received frame: the semantics the compiled program must
/// reproduce. docs/flower.md ("Classifier semantics") is the reference.
public struct ReferenceClassifier {
    public let device: String
    /// Chain 0 in classification order: by prio, then handle.
    public let rules: [FlowRule]
    /// The layers the rules read: a dissection failure elsewhere does not matter.
    public let keyLayers: KeyLayers
    /// Receive queues with an AF_XDP socket in the device's XSKMAP. None by default: the
    /// kernel's side of a test run, where an `xsk` action finds no socket and its control
    /// decides (pass unless written), as on a device whose sockets are not bound yet.
    public var boundQueues: Set<UInt32> = []
    private var policers: [PolicerID: TokenBucket] = [:]

    /// Refuses a rule set with a rule XDP cannot run exactly.
    public init(rules: RuleSet, device: String) throws(UnsupportedRule) {
        for rule in rules.rules where !rule.xdpLimitations.isEmpty {
            throw UnsupportedRule(rule: rule, limitations: rule.xdpLimitations)
        }
        self.device = device
        self.rules = rules.rules
        keyLayers = rules.keyLayers
    }

    /// Classifies `frame`, received on `device`'s receive queue `queue` at `now`
    /// (nanoseconds on any monotonic clock; only differences matter, for police).
    public mutating func classify(_ frame: [UInt8], now: UInt64, queue: UInt32 = 0) -> Classification {
        var result = Classification(verdict: .pass, frame: frame)
        var keys = FlowKeys(dissecting: frame)
        if let reason = undecidable(keys) {
            result.unclassifiable = reason
            return result
        }
        var index = 0
        while index < rules.count {
            let rule = rules[index]
            index += 1
            guard rule.matches(keys, device: device) else { continue }
            result.matchedRules.append(rule)
            switch run(rule, on: &result, receivedLength: frame.count, now: now, queue: queue) {
            case .verdict(let verdict):
                result.verdict = verdict
                return result
            case .continueClassification:
                // tc goes on with the next priority (the next tcf_proto), which dissects
                // the frame as the actions left it.
                while index < rules.count, rules[index].prio == rule.prio { index += 1 }
                keys = FlowKeys(dissecting: result.frame)
                if let reason = undecidable(keys) {
                    result.unclassifiable = reason
                    result.verdict = .pass
                    return result
                }
            }
        }
        result.verdict = .pass
        return result
    }

    /// The dissector's reason when it left undetermined a key some rule reads.
    private func undecidable(_ keys: FlowKeys) -> Unclassifiable? {
        keys.undeterminedLayers.isDisjoint(with: keyLayers) ? nil : keys.unclassifiable
    }

    private enum Outcome { case verdict(Classification.Verdict), continueClassification }

    private mutating func run(_ rule: FlowRule, on result: inout Classification, receivedLength: Int,
                              now: UInt64, queue: UInt32) -> Outcome {
        for (index, action) in rule.actions.enumerated() {
            var control = action.control
            switch action.kind {
            case .gact:
                break
            case .mirred(let mirred) where mirred.mode == .mirror:
                // A copy of the frame as it is now (XDPLimitation: no edits follow).
                result.mirrors.append(mirred.device)
            case .mirred(let mirred):
                // Only egress redirect gets here (XDPLimitation); it steals the frame.
                return .verdict(mirred.device == device ? .tx : .redirect(mirred.device))
            case .vlan(let vlan):
                guard result.frame.apply(vlan) else { return .verdict(.aborted) }
            case .pedit(let edits):
                for edit in edits {
                    let done = edit.field == .dst
                        ? result.frame.setDestinationMAC(edit.address) : result.frame.setSourceMAC(edit.address)
                    guard done else { return .verdict(.aborted) }
                }
            case .skbmod(let edit):
                if let mac = edit.dstMAC, !result.frame.setDestinationMAC(mac) { return .verdict(.aborted) }
                if let mac = edit.srcMAC, !result.frame.setSourceMAC(mac) { return .verdict(.aborted) }
            case .skbeditMark(let mark):
                result.mark = (result.mark ?? 0) & ~mark.mask | mark.value & mark.mask
            case .police(let police):
                let id = PolicerID(chain: rule.chain, prio: rule.prio, handle: rule.handle, action: index)
                var bucket = policers[id] ?? TokenBucket(police, now: now)
                if !bucket.take(UInt64(receivedLength), now: now) { control = police.exceed }
                policers[id] = bucket
            case .xsk:
                // A bound socket takes the frame; without one the control goes on.
                if boundQueues.contains(queue) { return .verdict(.xsk(queue: queue)) }
                result.xskUnbound += 1
            }
            switch control {
            case .pipe: continue
            case .drop: return .verdict(.drop)
            case .pass: return .verdict(.pass)
            case .continue: return .continueClassification
            case .stolen, .reclassify, .trap, .gotoChain, .jump:
                preconditionFailure("refused by init (XDPLimitation)")
            }
        }
        // No action, or the last one piped: tc's ingress hook passes the frame on.
        return .verdict(.pass)
    }
}

/// The outcome of classifying one frame.
public struct Classification: Hashable, Sendable {
    public enum Verdict: Hashable, Sendable {
        case drop
        case pass
        /// Sent back out of the device it came in on (mirred redirect to itself).
        case tx
        case redirect(String)
        /// Into the AF_XDP socket bound to the receive queue (XDP_REDIRECT through the
        /// device's XSKMAP).
        case xsk(queue: UInt32)
        /// An action could not edit the frame (too short for it): dropped, as tc's
        /// TC_ACT_SHOT, and reported as XDP_ABORTED so that xdp_exception shows it.
        case aborted
    }

    public var verdict: Verdict
    /// The frame as the actions left it.
    public var frame: [UInt8]
    /// In the order they matched: more than one when a rule ended with `continue`.
    public var matchedRules: [FlowRule] = []
    /// Devices that got a copy (`mirred egress mirror`), in order; the verdict says what
    /// became of the frame itself (redirect or drop).
    public var mirrors: [String] = []
    /// The skb mark the rules set (XDP hands it on as metadata); nil when none did.
    public var mark: UInt32?
    /// `xsk` actions that found no socket bound to the queue (the program counts them).
    public var xskUnbound = 0
    /// Set when the dissector could not determine a key some rule reads: the frame is
    /// passed, unmatched.
    public var unclassifiable: Unclassifiable?

    public init(verdict: Verdict, frame: [UInt8]) {
        self.verdict = verdict
        self.frame = frame
    }
}

public struct UnsupportedRule: Error, Hashable, Sendable, CustomStringConvertible {
    public var rule: FlowRule
    public var limitations: [XDPLimitation]

    public init(rule: FlowRule, limitations: [XDPLimitation]) {
        self.rule = rule
        self.limitations = limitations
    }

    public var description: String {
        "prio \(rule.prio) handle \(TCNames.handle(rule.handle)): "
            + limitations.map(\.description).joined(separator: "; ")
    }
}

struct PolicerID: Hashable {
    var chain: UInt32
    var prio: UInt16
    var handle: UInt32
    var action: Int
}

/// tc police as a token bucket in bytes: `burst` deep, refilled at `rate` bytes per
/// second, full when first used. A frame conforms when the bucket holds at least its
/// length, and then takes that many tokens; an exceeding frame takes none.
struct TokenBucket {
    private static let nanosecondsPerSecond: UInt128 = 1_000_000_000
    /// Tokens in byte-nanoseconds, so that refills are exact in integers.
    private var credit: UInt128
    private let capacity: UInt128
    private let rate: UInt128
    private var last: UInt64

    init(_ police: Police, now: UInt64) {
        capacity = UInt128(police.burstBytes) * Self.nanosecondsPerSecond
        rate = UInt128(police.bytesPerSecond)
        credit = capacity
        last = now
    }

    mutating func take(_ bytes: UInt64, now: UInt64) -> Bool {
        if now > last {
            let elapsed = UInt128(now - last)
            // Past the time to fill the whole bucket the product could overflow; it is full.
            let refill = rate == 0 || elapsed <= capacity / rate ? rate * elapsed : capacity
            credit = min(capacity, credit + refill)
            last = now
        }
        let cost = UInt128(bytes) * Self.nanosecondsPerSecond
        guard credit >= cost else { return false }
        credit -= cost
        return true
    }
}

extension FlowRule {
    /// Whether a frame with `keys`, received on `device`, matches: every key the rule
    /// names must be present in the frame and equal under its mask.
    func matches(_ keys: FlowKeys, device: String) -> Bool {
        let m = match
        let proto = filterProtocol.rawValue
        if filterProtocol != .all {
            // tc compares the outermost EtherType: a VLAN TPID for a tagged frame.
            if proto.isVLANType {
                guard keys.vlans.first?.tpid == proto else { return false }
            } else {
                guard keys.vlans.isEmpty, keys.etherType == proto else { return false }
            }
        }
        if let indev = m.indev, indev != device { return false }
        guard Self.compare(m.dstMAC, keys.dstMAC), Self.compare(m.srcMAC, keys.srcMAC) else { return false }

        let outer = keys.vlans.first
        if let id = m.vlanID, outer?.id != id { return false }
        if let priority = m.vlanPriority, outer?.priority != priority { return false }
        if let type = m.vlanEtherType {
            if type.isVLANType {
                guard keys.vlans.count >= 2, keys.vlans[1].tpid == type else { return false }
            } else if keys.etherType != type {
                return false
            }
        }
        let inner = keys.vlans.count >= 2 ? keys.vlans[1] : nil
        if let id = m.cvlanID, inner?.id != id { return false }
        if let priority = m.cvlanPriority, inner?.priority != priority { return false }
        if let type = m.cvlanEtherType, keys.etherType != type { return false }

        if let proto = m.ipProto, keys.ipProto != proto { return false }
        guard Self.compare(m.ipTOS, keys.tos), Self.compare(m.ipTTL, keys.ttl),
              Self.compare(m.dstIP, keys.dstIP), Self.compare(m.srcIP, keys.srcIP),
              Self.compare(m.dstPort, keys.dstPort), Self.compare(m.srcPort, keys.srcPort),
              Self.compare(m.tcpFlags, keys.tcpFlags),
              Self.compare(m.icmpType, keys.icmpType), Self.compare(m.icmpCode, keys.icmpCode)
        else { return false }
        if let flags = m.ipFlags {
            guard let frameFlags = keys.ipFlags else { return false }
            let bits: UInt8 = (frameFlags.isFragment ? 1 : 0) | (frameFlags.isFirstFragment ? 2 : 0)
            guard flags.masked.matches(bits) else { return false }
        }
        if m.arpOp != nil || m.arpSenderIP != nil || m.arpTargetIP != nil || m.arpSenderMAC != nil
            || m.arpTargetMAC != nil {
            guard let arp = keys.arp,
                  Self.compare(m.arpOp, UInt8(truncatingIfNeeded: arp.op)),
                  Self.compare(m.arpSenderIP, arp.senderIP), Self.compare(m.arpTargetIP, arp.targetIP),
                  Self.compare(m.arpSenderMAC, arp.senderMAC), Self.compare(m.arpTargetMAC, arp.targetMAC)
            else { return false }
        }
        return true
    }

    /// True when the rule does not name the key, or the frame has it and it matches.
    private static func compare<Value>(_ key: Masked<Value>?, _ value: Value?) -> Bool {
        guard let key else { return true }
        guard let value else { return false }
        return key.matches(value)
    }

    private static func compare(_ key: IPMatch?, _ value: IPAddress?) -> Bool {
        switch (key, value) {
        case (nil, _): true
        case (.v4(let prefix)?, .v4(let address)?): prefix.matches(address)
        case (.v6(let prefix)?, .v6(let address)?): prefix.matches(address)
        default: false
        }
    }

    private static func compare(_ key: PortMatch?, _ port: UInt16?) -> Bool {
        switch (key, port) {
        case (nil, _): true
        case (.masked(let masked)?, let port?): masked.matches(port)
        case (.range(let range)?, let port?): range.contains(port)
        case (_?, nil): false
        }
    }
}

extension [UInt8] {
    /// Applies a vlan action as act_vlan does: pop and modify do nothing to an untagged
    /// frame; false when the frame is too short for the edit.
    mutating func apply(_ action: VLANAction) -> Bool {
        let outerIsVLAN = count >= 14 && (UInt16(self[12]) << 8 | UInt16(self[13])).isVLANType
        switch action {
        case .pop:
            return !outerIsVLAN || popVLAN()
        case .push(let id, let priority, let tpid):
            return pushVLAN(VLANTag(tpid: tpid, priority: priority, id: id))
        case .modify(let id, let priority, let tpid):
            guard outerIsVLAN else { return true }
            let current = count >= 15 ? self[14] >> 5 : 0
            return modifyVLAN(VLANTag(tpid: tpid, priority: priority ?? current, id: id))
        }
    }
}

import BPFAssembly
import FlowRules
import Packets

/// One step of a rule's actions as the program runs it: 16 bytes in the actions map.
///
///     0 kind   1 control   2 exceed control   3 reserved   4..8 argument   8..16 wide
///
/// `argument` and `wide` are raw bytes the program copies or combines as they are, so
/// packet fields are in network order and the mark in host order.
public struct ActionStep: Hashable, Sendable, Codable {
    public enum Kind: UInt8, CaseIterable, Hashable, Sendable, Comparable, Codable {
        /// Only a control.
        case gact = 1
        /// argument: the devmap key of the target device.
        case redirect
        /// Back out of the receiving device.
        case tx
        case vlanPop
        /// argument: TPID and TCI as on the wire.
        case vlanPush
        /// argument: TPID and TCI; wide[0..2]: the TCI bits to keep (DEI, and PCP when
        /// no priority is given).
        case vlanModify
        /// wide[0..6]: the address.
        case setDestinationMAC
        case setSourceMAC
        /// argument: mark bits to set (value & mask); wide[0..4]: bits to keep (~mask).
        case mark
        /// argument: the policer's index; control is the conform control.
        case police
        /// argument: a broadcast group's index: the frame goes to every device of the
        /// group (mirrors, then the redirect target).
        case broadcast
        /// Into the AF_XDP socket bound to the receive queue (`FlowMaps.xsks`); control:
        /// what follows when none is bound.
        case xsk

        public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    }

    /// What follows the step (TC_ACT_* reduced to what XDP runs).
    public enum Control: UInt8, Hashable, Sendable, Codable {
        case pipe = 0, drop, pass, `continue`
    }

    public var kind: Kind
    public var control: Control
    public var exceed: Control = .pipe
    public var argument: [UInt8] = [0, 0, 0, 0]
    public var wide: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0]

    public static let byteCount = 16
    public static let kindOffset = 0, controlOffset = 1, exceedOffset = 2, argumentOffset = 4, wideOffset = 8
}

extension ActionStep.Kind: MapCodable {}
extension ActionStep.Control: MapCodable {}

extension ActionStep: MapCodable {
    public func encode(into writer: inout ByteWriter) {
        writer.write(kind)
        writer.write(control)
        writer.write(exceed)
        writer.writeZeros(1)
        writer.write(bytes: argument, paddedTo: 4)
        writer.write(bytes: wide, paddedTo: 8)
    }

    public init(from reader: inout ByteReader) throws(ByteDecodingError) {
        kind = try reader.read()
        control = try reader.read()
        exceed = try reader.read()
        try reader.skip(1)
        argument = try reader.read(byteCount: 4)
        wide = try reader.read(byteCount: 8)
    }
}

/// A rule's actions as steps, at most `maxSteps`: the value of the actions map.
public struct ActionProgram: Hashable, Sendable, Codable {
    public static let maxSteps = 8

    public var steps: [ActionStep]
}

/// Steps end to end; the unused ones are zero, which ends the program (no kind is 0).
extension ActionProgram: MapCodable {
    public static let byteCount = maxSteps * ActionStep.byteCount

    public func encode(into writer: inout ByteWriter) {
        for step in steps { writer.write(step) }
        writer.writeZeros((Self.maxSteps - steps.count) * ActionStep.byteCount)
    }

    public init(from reader: inout ByteReader) throws(ByteDecodingError) {
        steps = []
        for index in 0 ..< Self.maxSteps {
            guard try reader.peekByte() != 0 else {
                try reader.skip((Self.maxSteps - index) * ActionStep.byteCount)
                return
            }
            steps.append(try reader.read())
        }
    }
}

/// Why a rule cannot be compiled; named with the rule.
public enum CompileError: Error, Hashable, Sendable, CustomStringConvertible {
    case unsupported(UnsupportedRule)
    case tooManySteps(prio: UInt16, handle: UInt32, steps: Int)
    case tooManyBroadcastGroups(count: Int)
    case tooManyRules(count: Int, capacity: Int)
    case tooManyRedirectTargets(count: Int)

    public var description: String {
        switch self {
        case .unsupported(let rule):
            "cannot run at XDP: \(rule)"
        case .tooManySteps(let prio, let handle, let steps):
            "prio \(prio) handle 0x\(String(handle, radix: 16)): its actions make \(steps) steps; "
                + "a rule runs at most \(ActionProgram.maxSteps) (each pedit/skbmod address counts as one)"
        case .tooManyBroadcastGroups(let count):
            "\(count) broadcast groups (distinct lists of mirror devices); at most \(Plan.maxBroadcastGroups)"
        case .tooManyRules(let count, let capacity):
            "\(count) rules, the device's rule capacity is \(capacity)"
        case .tooManyRedirectTargets(let count):
            "\(count) redirect target devices; at most \(Plan.maxRedirectTargets)"
        }
    }
}

extension ActionProgram {
    /// The steps of `rule`'s actions. `target` gives a redirect device's devmap key;
    /// `policer` the index of the rule's N-th police action.
    init(_ rule: FlowRule, device: String, target: (String) -> UInt32,
         policer: (Int) -> UInt32, broadcast: ([String]) -> UInt32) throws(CompileError) {
        var steps: [ActionStep] = []
        for (index, action) in rule.actions.enumerated() {
            let control = ActionStep.Control(action.control)
            if let group = rule.broadcastGroup, index == rule.actions.firstIndex(where: \.isMirror) {
                // The mirrors and what follows them are one broadcast (XDPLimitation).
                steps.append(ActionStep(kind: .broadcast, control: .drop, argument: broadcast(group).encodedBytes))
                break
            }
            switch action.kind {
            case .gact:
                steps.append(ActionStep(kind: .gact, control: control))
            case .mirred(let mirred):
                if mirred.device == device {
                    steps.append(ActionStep(kind: .tx, control: .drop))
                } else {
                    steps.append(ActionStep(kind: .redirect, control: .drop,
                                            argument: target(mirred.device).encodedBytes))
                }
            case .vlan(.pop):
                steps.append(ActionStep(kind: .vlanPop, control: control))
            case .vlan(.push(let id, let priority, let tpid)):
                let tci = UInt16(priority) << 13 | id
                steps.append(ActionStep(kind: .vlanPush, control: control,
                                        argument: tpid.networkBytes + tci.networkBytes))
            case .vlan(.modify(let id, let priority, let tpid)):
                let tci = UInt16(priority ?? 0) << 13 | id
                let keep: UInt16 = priority == nil ? 0xf000 : 0x1000
                steps.append(ActionStep(kind: .vlanModify, control: control,
                                        argument: tpid.networkBytes + tci.networkBytes,
                                        wide: keep.networkBytes + [0, 0, 0, 0, 0, 0]))
            case .pedit(let edits):
                for (position, edit) in edits.enumerated() {
                    let last = position == edits.count - 1
                    steps.append(ActionStep(kind: edit.field == .dst ? .setDestinationMAC : .setSourceMAC,
                                            control: last ? control : .pipe,
                                            wide: edit.address.networkBytes + [0, 0]))
                }
            case .skbmod(let edit):
                let edits = [edit.dstMAC.map { (ActionStep.Kind.setDestinationMAC, $0) },
                             edit.srcMAC.map { (ActionStep.Kind.setSourceMAC, $0) }].compactMap { $0 }
                for (position, (kind, address)) in edits.enumerated() {
                    steps.append(ActionStep(kind: kind, control: position == edits.count - 1 ? control : .pipe,
                                            wide: address.networkBytes + [0, 0]))
                }
            case .skbeditMark(let mark):
                steps.append(ActionStep(kind: .mark, control: control,
                                        argument: (mark.value & mark.mask).encodedBytes,
                                        wide: (~mark.mask).encodedBytes + [0, 0, 0, 0]))
            case .police(let police):
                steps.append(ActionStep(kind: .police, control: control, exceed: ActionStep.Control(police.exceed),
                                        argument: policer(index).encodedBytes))
            case .xsk:
                steps.append(ActionStep(kind: .xsk, control: control))
            }
        }
        guard steps.count <= Self.maxSteps else {
            throw .tooManySteps(prio: rule.prio, handle: rule.handle, steps: steps.count)
        }
        self.steps = steps
    }
}

extension FlowRule {
    /// The devices a rule's mirrors and final redirect send the frame to, in order; nil
    /// when it mirrors nothing.
    var broadcastGroup: [String]? {
        guard let first = actions.firstIndex(where: \.isMirror) else { return nil }
        var devices: [String] = []
        for action in actions[first...] {
            if case .mirred(let mirred) = action.kind, !devices.contains(mirred.device) { devices.append(mirred.device) }
        }
        return devices
    }
}

extension ActionStep.Control {
    /// Only the controls XDPLimitation lets through reach here.
    init(_ control: ActionControl) {
        switch control {
        case .drop: self = .drop
        case .pass: self = .pass
        case .continue: self = .continue
        default: self = .pipe
        }
    }
}

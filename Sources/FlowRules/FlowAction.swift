import Packets

/// What happens after an action, as tc's `action_a2n` words (TC_ACT_*).
public enum ActionControl: Hashable, Sendable, Codable {
    /// TC_ACT_UNSPEC: stop this rule, go on classifying with the next priority.
    case `continue`
    /// TC_ACT_SHOT (`drop`, `shot`).
    case drop
    /// TC_ACT_OK (`pass`, `ok`): stop, hand the frame to the stack.
    case pass
    /// TC_ACT_PIPE: go on with the rule's next action; after the last one, pass.
    case pipe
    case reclassify
    case trap
    /// TC_ACT_STOLEN: the control of `mirred redirect`, never written by hand.
    case stolen
    case gotoChain(UInt32)
    /// Skip the next N actions of this rule.
    case jump(UInt32)
}

/// One tc action and the control that follows it. For `police` the control is the
/// conform action (the exceed action is in `Police`).
public struct FlowAction: Hashable, Sendable, Codable {
    public var kind: ActionKind
    public var control: ActionControl

    public init(_ kind: ActionKind, control: ActionControl? = nil) {
        self.kind = kind
        self.control = control ?? kind.defaultControl
    }

    /// `gact CONTROL`: `drop`, `pass`, `continue`, ...
    public static func gact(_ control: ActionControl) -> FlowAction { FlowAction(.gact, control: control) }
}

public enum ActionKind: Hashable, Sendable, Codable {
    /// The generic action: only its control.
    case gact
    case mirred(Mirred)
    case vlan(VLANAction)
    /// `pedit ex munge eth dst|src set MAC`, one or more.
    case pedit([EthernetAddressEdit])
    /// `skbmod set dmac MAC set smac MAC`.
    case skbmod(SKBMod)
    /// `skbedit mark MARK[/MASK]`: the new mark is `(old & ~mask) | (value & mask)`.
    case skbeditMark(Masked<UInt32>)
    case police(Police)
    /// XDPFlow's own, not tc's: into the AF_XDP socket bound to the queue the frame came
    /// in on. The control is what happens when no socket is bound there (pass, to the
    /// stack, unless written).
    case xsk

    /// The control tc's parser gives each kind when none is written.
    public var defaultControl: ActionControl {
        switch self {
        case .gact: .pass
        case .mirred(let mirred): mirred.mode == .redirect ? .stolen : .pipe
        case .vlan, .skbmod, .skbeditMark: .pipe
        case .pedit: .pass
        case .police: .pass
        case .xsk: .pass
        }
    }

    /// Whether tc reads a control word after this kind. `mirred redirect` takes none.
    var takesControl: Bool {
        if case .mirred(let mirred) = self, mirred.mode == .redirect { return false }
        return true
    }
}

public struct Mirred: Hashable, Sendable, Codable {
    public enum Direction: String, Hashable, Sendable, Codable { case egress, ingress }
    public enum Mode: String, Hashable, Sendable, Codable { case redirect, mirror }

    public var direction: Direction
    public var mode: Mode
    public var device: String

    public init(direction: Direction, mode: Mode, device: String) {
        self.direction = direction
        self.mode = mode
        self.device = device
    }
}

public enum VLANAction: Hashable, Sendable, Codable {
    case pop
    /// A new outermost tag; tc's defaults are priority 0 and TPID 802.1Q.
    case push(id: UInt16, priority: UInt8, tpid: UInt16)
    /// Rewrites the outermost tag's id and TPID (802.1Q unless given, as the kernel);
    /// the priority only when given.
    case modify(id: UInt16, priority: UInt8?, tpid: UInt16)
}

public struct EthernetAddressEdit: Hashable, Sendable, Codable {
    public enum Field: String, Hashable, Sendable, Codable { case dst, src }
    public var field: Field
    public var address: MACAddress

    public init(_ field: Field, _ address: MACAddress) {
        self.field = field
        self.address = address
    }
}

/// At least one of the two is set.
public struct SKBMod: Hashable, Sendable, Codable {
    public var dstMAC: MACAddress?
    public var srcMAC: MACAddress?

    public init(dstMAC: MACAddress? = nil, srcMAC: MACAddress? = nil) {
        self.dstMAC = dstMAC
        self.srcMAC = srcMAC
    }
}

/// A token bucket: `burst` bytes deep, filled at `rate` bytes per second. A frame that
/// finds as many tokens as its length conforms (and takes them); otherwise it exceeds.
public struct Police: Hashable, Sendable, Codable {
    public var bytesPerSecond: UInt64
    public var burstBytes: UInt32
    /// tc's default is `reclassify`.
    public var exceed: ActionControl

    public init(bytesPerSecond: UInt64, burstBytes: UInt32, exceed: ActionControl = .reclassify) {
        self.bytesPerSecond = bytesPerSecond
        self.burstBytes = burstBytes
        self.exceed = exceed
    }
}

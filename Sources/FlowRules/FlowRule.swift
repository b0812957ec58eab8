import Packets

/// One `tc filter ... flower` rule, independent of the device it is attached to.
public struct FlowRule: Hashable, Sendable, Codable {
    /// Only chain 0 is classified; other chains are reached by `goto chain`.
    public var chain: UInt32
    /// tc's `pref`/`prio`, 1-65535; 0 until a rule set allocates it.
    public var prio: UInt16
    /// 1-0xffffffff within (chain, prio); 0 until a rule set allocates it.
    public var handle: UInt32
    public var filterProtocol: FilterProtocol
    public var match: FlowMatch
    /// In order; empty means tc's default: classify and pass.
    public var actions: [FlowAction]
    /// `classid`/`flowid` MAJ:MIN, kept and shown; it steers nothing at XDP.
    public var classID: UInt32?
    /// `skip_hw`: kept and shown; XDPFlow has no hardware path.
    public var skipHardware: Bool

    public init(chain: UInt32 = 0, prio: UInt16 = 0, handle: UInt32 = 0, filterProtocol: FilterProtocol = .all,
                match: FlowMatch = FlowMatch(), actions: [FlowAction] = [], classID: UInt32? = nil,
                skipHardware: Bool = false) {
        self.chain = chain
        self.prio = prio
        self.handle = handle
        self.filterProtocol = filterProtocol
        self.match = match
        self.actions = actions
        self.classID = classID
        self.skipHardware = skipHardware
    }

    /// The EtherType the L3 keys are read under: `cvlan_ethtype`, else `vlan_ethtype`,
    /// else the protocol (tc's parser tracks the same).
    public var l3EtherType: UInt16 {
        match.cvlanEtherType ?? match.vlanEtherType ?? filterProtocol.rawValue
    }
}

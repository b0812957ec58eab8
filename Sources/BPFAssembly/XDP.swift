/// The verdicts an XDP program returns (enum xdp_action).
public enum XDPAction: Int32, CaseIterable, Sendable, CustomStringConvertible {
    case aborted = 0, drop = 1, pass = 2, tx = 3, redirect = 4

    public var description: String {
        switch self {
        case .aborted: "aborted"
        case .drop: "drop"
        case .pass: "pass"
        case .tx: "tx"
        case .redirect: "redirect"
        }
    }
}

/// Offsets of the fields of `struct xdp_md`, the context in r1 at entry.
public enum XDPContext {
    public static let data: Int16 = 0
    public static let dataEnd: Int16 = 4
    public static let dataMeta: Int16 = 8
    public static let ingressIfindex: Int16 = 12
    public static let rxQueueIndex: Int16 = 16
    public static let egressIfindex: Int16 = 20
    /// sizeof(struct xdp_md), for test runs that pass a context.
    public static let size = 24
}

extension Instruction {
    /// `r0 = action; exit`.
    public static func `return`(_ action: XDPAction) -> [Instruction] {
        Instruction.return(action.rawValue)
    }
}

/// Why a valid tc rule cannot be run exactly by an XDP program. The grammar accepts such
/// rules, because they are valid tc; the reference classifier and the compiler refuse
/// them, naming the reason.
public enum XDPLimitation: Hashable, Sendable, CustomStringConvertible {
    /// Chains other than 0 are entered by `goto chain` only.
    case chain(UInt32)
    /// `reclassify`, `trap`, `goto chain` and `jump` need tc's classifier state.
    case control(ActionControl, action: Int)
    /// A police exceed control that needs tc's classifier: `reclassify`, tc's default
    /// when `conform-exceed` is not given, or one written.
    case policeExceed(ActionControl, action: Int)
    /// XDP cannot inject a frame into a device's receive path.
    case mirredIngress(action: Int)
    /// XDP sends copies only by broadcasting the frame as it is to several devices: a
    /// mirror must be followed by nothing but mirrors and then a redirect or a drop.
    case mirror(action: Int)

    public var description: String {
        switch self {
        case .chain(let chain):
            "chain \(chain): only chain 0 runs at XDP (other chains are reached by goto chain)"
        case .control(let control, let action):
            "action \(action): control '\(control)' needs tc's classifier; XDP runs drop, pass, pipe and continue"
        case .policeExceed(.reclassify, let action):
            "action \(action): police exceeds with 'reclassify' (tc's default exceed action when conform-exceed "
                + "is not given), which needs tc's classifier; add conform-exceed drop (or pass, pipe, continue), "
                + "as in: police rate 1mbit burst 10k conform-exceed drop"
        case .policeExceed(let control, let action):
            "action \(action): police conform-exceed '\(control)' needs tc's classifier; write drop, pass, pipe or continue"
        case .mirredIngress(let action):
            "action \(action): mirred ingress cannot be done at XDP (no way into another device's receive path)"
        case .mirror(let action):
            "action \(action): mirred mirror must be followed only by mirrors and then a redirect or a drop "
                + "(XDP broadcasts one frame to several devices; it cannot also pass it up the stack or edit one copy)"
        }
    }
}

extension FlowRule {
    /// Empty when XDPFlow can run the rule exactly. Actions are numbered from 1, as tc
    /// numbers them in `action order N`.
    public var xdpLimitations: [XDPLimitation] {
        var limitations: [XDPLimitation] = chain == 0 ? [] : [.chain(chain)]
        if let first = actions.firstIndex(where: \.isMirror), !Self.isBroadcastTail(actions[first...]) {
            limitations.append(.mirror(action: first + 1))
        }
        for (index, action) in actions.enumerated() {
            let order = index + 1
            var controls = [action.control]
            switch action.kind {
            case .police(let police):
                switch police.exceed {
                case .reclassify, .trap, .gotoChain, .jump, .stolen:
                    limitations.append(.policeExceed(police.exceed, action: order))
                case .continue, .drop, .pass, .pipe: break
                }
            case .mirred(let mirred):
                if mirred.direction == .ingress { limitations.append(.mirredIngress(action: order)) }
                // A redirect steals the frame; its control is never read. A mirror's is
                // checked with the broadcast tail.
                controls = []
            default:
                break
            }
            for control in controls {
                switch control {
                case .reclassify, .trap, .gotoChain, .jump, .stolen: limitations.append(.control(control, action: order))
                case .continue, .drop, .pass, .pipe: break
                }
            }
        }
        return limitations
    }

    /// Mirrors (piping on), then a redirect, a drop, or a last mirror that drops: the
    /// actions a broadcast to their devices performs.
    static func isBroadcastTail(_ tail: ArraySlice<FlowAction>) -> Bool {
        for (position, action) in zip(tail.indices, tail) {
            let last = position == tail.index(before: tail.endIndex)
            switch action.kind {
            case .mirred(let mirred) where mirred.direction == .egress:
                if mirred.mode == .redirect { return last }
                if action.control == .drop { return last }
                guard action.control == .pipe, !last else { return false }
            case .gact where action.control == .drop:
                return last
            default:
                return false
            }
        }
        return false
    }
}

extension FlowAction {
    /// `mirred ... mirror`.
    public var isMirror: Bool {
        if case .mirred(let mirred) = kind, mirred.mode == .mirror { return true }
        return false
    }

}

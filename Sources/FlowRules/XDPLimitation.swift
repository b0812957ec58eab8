/// Why a valid tc rule cannot be run exactly by an XDP program. The grammar accepts such
/// rules, because they are valid tc; the reference classifier and the compiler refuse
/// them, naming the reason.
public enum XDPLimitation: Hashable, Sendable, CustomStringConvertible {
    /// Chains other than 0 are entered by `goto chain` only.
    case chain(UInt32)
    /// `reclassify`, `trap`, `goto chain` and `jump` need tc's classifier state.
    case control(ActionControl, action: Int)
    /// XDP cannot inject a frame into a device's receive path.
    case mirredIngress(action: Int)
    /// XDP cannot clone a frame: it can send it on or keep it, not both.
    case mirror(action: Int)

    public var description: String {
        switch self {
        case .chain(let chain):
            "chain \(chain): only chain 0 runs at XDP (other chains are reached by goto chain)"
        case .control(let control, let action):
            "action \(action): control '\(control)' needs tc's classifier; XDP runs drop, pass, pipe and continue"
        case .mirredIngress(let action):
            "action \(action): mirred ingress cannot be done at XDP (no way into another device's receive path)"
        case .mirror(let action):
            "action \(action): mirred mirror cannot be done at XDP (a frame cannot be cloned)"
        }
    }
}

extension FlowRule {
    /// Empty when XDPFlow can run the rule exactly. Actions are numbered from 1, as tc
    /// numbers them in `action order N`.
    public var xdpLimitations: [XDPLimitation] {
        var limitations: [XDPLimitation] = chain == 0 ? [] : [.chain(chain)]
        for (index, action) in actions.enumerated() {
            let order = index + 1
            var controls = [action.control]
            switch action.kind {
            case .police(let police):
                controls.append(police.exceed)
            case .mirred(let mirred):
                if mirred.direction == .ingress { limitations.append(.mirredIngress(action: order)) }
                if mirred.mode == .mirror { limitations.append(.mirror(action: order)) }
                // A redirect steals the frame; its control is never read.
                if mirred.mode == .redirect { controls = [] }
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
}

import BPFAssembly
import BPFKernel
import FlowCompiler
import SystemPackage

/// Every failure of FlowOffload, by what went wrong: a plan the compiler refused, a kernel
/// object that could not be made or used, the state on disk (`StoreError`, the store's
/// own enum, as `.store`), or a device command that cannot be done as asked, each with
/// what to do instead. The description is the message the command line prints.
public enum OffloadError: Error, Sendable, CustomStringConvertible {
    // MARK: The layers below

    /// The rules cannot be planned (a rule XDP cannot run, too many rules).
    case compile(CompileError)
    /// The generated program does not assemble: a bug in the code generator.
    case assembly(AssemblyError)
    /// A BPF object could not be made or used (the verifier, a full map, a missing device).
    case kernel(BPFError)
    /// The state directory: its lock, a file that cannot be read or written.
    case store(StoreError)

    // MARK: Device commands that cannot be done as asked

    /// Not root, nor the capabilities that stand for it.
    case needsRoot(command: String)
    /// `-s` without root: the counters are in pinned maps, which need root to read; the
    /// rules were shown without them.
    case countersNeedRoot
    /// `show` without root: what runs in the kernel was not read; what the state
    /// directory holds was shown.
    case kernelNeedsRoot
    case alreadyAttached(String)
    /// A detach (or check) of a device xdpflow does not hold.
    case notAttached(String)
    /// A rule change on a device with no xdpflow program.
    case notAttachedForRules(String, stored: Int)
    /// A trace of a device's live rules when the device is not attached.
    case notAttachedForTrace(String)
    /// A capture on a device none of whose rules has action xsk: nothing would come.
    case noXSKRule(String)
    case busy(String, programID: UInt32)
    /// The pins belong to the xdpflow state in another directory.
    case ownedElsewhere(String, owner: String, pins: FilePath)
    /// State says attached, but the link is gone.
    case linkGone(String, pins: FilePath, stored: Int)
    case noSuchNamespace(String, Errno)
    case namespace(String, Errno)
    /// A redirect or mirror target that does not exist.
    case missingTarget(mode: String, target: String, rule: String, device: String)

    public var description: String {
        switch self {
        case .compile(let error): "\(error)"
        case .assembly(let error): "internal error: the generated program does not assemble: \(error)"
        case .kernel(let error): "\(error)"
        case .store(let error): "\(error)"
        case .needsRoot(let command):
            "xdpflow \(command) needs root (CAP_BPF and CAP_NET_ADMIN, and access to bpffs "
                + "and the state directory): run it as root or with sudo"
        case .countersNeedRoot:
            "counters need root (CAP_BPF, to read the pinned maps): run xdpflow as root for -s"
        case .kernelNeedsRoot:
            "program ids, counters and the audit of the kernel need root (CAP_BPF): run xdpflow show as root "
                + "for them; shown is what the state directory holds"
        case .alreadyAttached(let device):
            "\(device) is already attached (xdpflow show dev \(device); xdpflow detach dev \(device))"
        case .notAttached(let device):
            "\(device) is not attached by xdpflow (xdpflow show lists what is)"
        case .notAttachedForRules(let device, let stored):
            "no xdpflow program on \(device); run: xdpflow attach dev \(device)"
                + (stored > 0 ? " (it loads the \(stored) stored rules)" : "")
        case .notAttachedForTrace(let device):
            "\(device) is not attached (xdpflow show dev \(device)); "
                + "to trace rules without a device: xdpflow trace -batch RULES --pcap FILE"
        case .noXSKRule(let device):
            "no rule of \(device) has action xsk, so nothing would reach a capture; add one first "
                + "(xdpflow filter add dev \(device) ... flower ... action xsk)"
        case .busy(let device, let id):
            "another XDP program (id \(id)) is attached to \(device); "
                + "remove it first (ip link set dev \(device) xdp off, or the tool that attached it)"
        case .ownedElsewhere(let device, let owner, let pins):
            "\(device) is attached by the xdpflow state in \(owner) (pins at \(pins)); "
                + "run the command with XDPFLOW_STATE_DIR=\(owner)"
        case .linkGone(let device, let pins, let stored):
            "\(device)'s link is gone from \(pins) (a reboot, or bpffs remounted): "
                + "xdpflow attach dev \(device) loads its \(stored) stored rules again"
        case .noSuchNamespace(let name, let errno):
            "network namespace \(name) does not exist (\(errno.name)): ip netns list shows those there are"
        case .namespace(let path, let errno):
            "cannot enter the network namespace \(path): \(errno.name) (\(errno.description))"
        case .missingTarget(let mode, let target, let rule, let device):
            "\(mode) target \(target) does not exist (rule \(rule) on \(device)): create the device first"
        }
    }
}

extension OffloadError {
    /// `error` as FlowOffload reports it: an error of a layer below in its case, anything
    /// else (an `OffloadError`, or what a caller's change threw, such as a
    /// `RuleSetError`) as it is.
    static func lifting(_ error: any Error) -> any Error {
        switch error {
        case let error as StoreError: OffloadError.store(error)
        case let error as BPFError: OffloadError.kernel(error)
        case let error as CompileError: OffloadError.compile(error)
        case let error as AssemblyError: OffloadError.assembly(error)
        default: error
        }
    }

    /// Runs `body`, lifting what it throws (`lifting(_:)`).
    static func lifting<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw lifting(error)
        }
    }
}

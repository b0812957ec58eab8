import CLibBPF
import SystemPackage

/// A tc program attached to a device's ingress through tcx (kernel 6.6), the way cilium
/// attaches on kernels that have it: a bpf_link in the device's multi-program list, so no
/// clsact qdisc is made (or left behind), programs of other tools keep their places, and
/// the attachment lasts while the link is open or pinned.
public final class TCXLink: Pinnable, Sendable {
    public let descriptor: Descriptor
    public let device: NetworkInterface
    public var name: String { "tcx ingress link on \(device)" }

    /// BPF_LINK_TYPE_TCX, which libbpf 1.1's headers predate.
    static let linkType: UInt32 = 11

    /// Attaches `program` (loaded as `.schedCLS`) to `device`'s ingress, after the
    /// programs already there.
    public init(attachingIngress program: Program, to device: NetworkInterface) throws(BPFError) {
        self.device = device
        let fd = bpf_link_create(program.descriptor.rawValue, Int32(device.index), AttachType.tcxIngress.kernelValue, nil)
        descriptor = Descriptor(try check("bpf_link_create", "\(program.name) on \(device) tcx ingress", fd))
    }

    /// Opens the link pinned at `path`.
    public init(pinnedAt path: FilePath) throws(BPFError) {
        descriptor = try openPinned(path)
        let info = try descriptor.linkInfo(path.string)
        guard info.type == TCXLink.linkType else { throw .notATCXLink(path: path.string) }
        device = try NetworkInterface(index: TCXLink.ifindex(info))
    }

    /// The id of the program behind the link; nil when the link is defunct (its device
    /// went away, or it was detached).
    public var programID: UInt32? {
        guard let info = try? descriptor.linkInfo(name), TCXLink.ifindex(info) != 0 else { return nil }
        return info.prog_id
    }

    /// Whether the device's ingress list runs the link's program.
    public var isAttached: Bool {
        guard let id = programID else { return false }
        return TCXLink.ingressProgramIDs(device).contains(id)
    }

    /// Detaches the program from the device now, even if the link is pinned elsewhere.
    public func detach() throws(BPFError) {
        try check("bpf_link_detach", name, bpf_link_detach(descriptor.rawValue))
    }

    /// The ids of the programs on `device`'s tcx ingress, in the order they run (empty
    /// when there are none, or the kernel has no tcx).
    public static func ingressProgramIDs(_ device: NetworkInterface) -> [UInt32] {
        var ids = [UInt32](repeating: 0, count: 64)
        var count = UInt32(ids.count)
        var flags: UInt32 = 0
        let result = bpf_prog_query(Int32(device.index), AttachType.tcxIngress.kernelValue, 0, &flags, &ids, &count)
        guard result == 0 else { return [] }
        return Array(ids.prefix(Int(count)))
    }

    /// The tcx member of the info's union (`{ifindex, attach_type}`) is missing from
    /// libbpf 1.1's headers; its ifindex is the union's first word, where xdp's lies.
    private static func ifindex(_ info: bpf_link_info) -> UInt32 { info.xdp.ifindex }
}

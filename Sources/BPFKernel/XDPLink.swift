import CLibBPF
import SystemPackage

/// How an XDP program is attached to a device.
public enum XDPMode: String, Sendable, CaseIterable, CustomStringConvertible {
    /// In the driver, before the kernel allocates an skb.
    case native
    /// In the generic receive path, after the skb exists: works on any device, slower.
    case generic
    /// Native when the driver supports it, else generic.
    case auto

    var flags: UInt32 {
        switch self {
        case .native: UInt32(XDP_FLAGS_DRV_MODE)
        case .generic: UInt32(XDP_FLAGS_SKB_MODE)
        case .auto: 0
        }
    }

    public var description: String { rawValue }
}

/// An XDP program attached to a device through a bpf_link: the attachment lasts
/// while the link is open or pinned, and its program can be swapped atomically.
public final class XDPLink: Pinnable, Sendable {
    public let descriptor: Descriptor
    public let device: NetworkInterface
    /// The mode this link attached its program in; nil when opened from a pin.
    private let attachedMode: XDPMode?
    public var name: String { "xdp link on \(device)" }

    /// Attaches `program` to `device`. With `.auto`, native is tried first and generic
    /// used when the driver cannot do native; `mode` says which was taken.
    public init(attaching program: Program, to device: NetworkInterface, mode: XDPMode = .auto) throws(BPFError) {
        self.device = device
        if mode != .auto {
            descriptor = try XDPLink.create(program, device, mode)
            attachedMode = mode
            return
        }
        do {
            descriptor = try XDPLink.create(program, device, .native)
            attachedMode = .native
        } catch .call(_, _, let errno) where errno == .notSupported || errno == .invalidArgument {
            descriptor = try XDPLink.create(program, device, .generic)
            attachedMode = .generic
        }
    }

    private static func create(_ program: Program, _ device: NetworkInterface, _ mode: XDPMode) throws(BPFError) -> Descriptor {
        var opts = bpf_link_create_opts()
        opts.sz = MemoryLayout<bpf_link_create_opts>.size
        opts.flags = mode.flags
        let fd = bpf_link_create(program.descriptor.rawValue, Int32(device.index), BPF_XDP, &opts)
        if fd == -EBUSY || fd == -EEXIST, let id = XDPLink.attachedProgramID(device), id != 0 {
            throw .deviceBusy(device.name, programID: id)
        }
        return Descriptor(try check("bpf_link_create", "\(program.name) on \(device) in \(mode) mode", fd))
    }

    /// Opens the link pinned at `path`.
    public init(pinnedAt path: FilePath) throws(BPFError) {
        descriptor = try openPinned(path)
        let info = try descriptor.linkInfo(path.string)
        guard info.type == BPF_LINK_TYPE_XDP.rawValue else {
            throw .notAnXDPLink(path: path.string)
        }
        device = try NetworkInterface(index: info.xdp.ifindex)
        attachedMode = nil
    }

    /// The mode actually in use (never `.auto`). Of a link opened from its pin it is asked
    /// of the kernel when wanted: bpf_xdp_query dumps every device over netlink, which
    /// would otherwise be most of a rule change's system time.
    public var mode: XDPMode {
        get throws(BPFError) {
            if let attachedMode { return attachedMode }
            var query = bpf_xdp_query_opts.upToAttachMode()
            try check("bpf_xdp_query", device.name, bpf_xdp_query(Int32(device.index), 0, &query))
            return query.attach_mode == UInt8(XDP_ATTACHED_SKB) ? .generic : .native
        }
    }

    /// The id of the program behind the link; nil when the link is defunct (its device
    /// went away).
    public var programID: UInt32? {
        guard let info = try? descriptor.linkInfo(name), info.xdp.ifindex != 0 else { return nil }
        return info.prog_id
    }

    /// Replaces the running program atomically: every packet sees either the old
    /// program or the new one. With `expected`, fails (EPERM) unless it is the one running.
    public func update(to program: Program, expected: Program? = nil) throws(BPFError) {
        var opts = bpf_link_update_opts()
        opts.sz = MemoryLayout<bpf_link_update_opts>.size
        if let expected {
            opts.flags = UInt32(BPF_F_REPLACE)
            opts.old_prog_fd = UInt32(expected.descriptor.rawValue)
        }
        try check("bpf_link_update", "\(name) to \(program.name)",
                  bpf_link_update(descriptor.rawValue, program.descriptor.rawValue, &opts))
    }

    /// Detaches the program from the device now, even if the link is pinned elsewhere.
    public func detach() throws(BPFError) {
        try check("bpf_link_detach", name, bpf_link_detach(descriptor.rawValue))
    }

    /// The id of the XDP program running on `device`, or nil when there is none.
    public static func attachedProgramID(_ device: NetworkInterface) -> UInt32? {
        var query = bpf_xdp_query_opts.upToAttachMode()
        guard bpf_xdp_query(Int32(device.index), 0, &query) == 0, query.prog_id != 0 else { return nil }
        return query.prog_id
    }
}

extension bpf_xdp_query_opts {
    /// Options whose size ends at attach_mode, the last field. libbpf refuses options with
    /// non-zero bytes past the last field it knows, and the padding after attach_mode is not
    /// zeroed by Swift's initializer: a release build leaves whatever the stack held there.
    static func upToAttachMode() -> bpf_xdp_query_opts {
        var query = bpf_xdp_query_opts()
        query.sz = MemoryLayout<bpf_xdp_query_opts>.offset(of: \.attach_mode)! + MemoryLayout<UInt8>.size
        return query
    }
}

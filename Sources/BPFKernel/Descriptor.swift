import CLibBPF
import SystemPackage

/// A file descriptor for a kernel object (map, program, link), closed exactly
/// once, when the last reference to it goes away.
public final class Descriptor: Sendable {
    public let fd: FileDescriptor

    /// Takes ownership of `raw`.
    init(_ raw: Int32) { fd = FileDescriptor(rawValue: raw) }

    public var rawValue: Int32 { fd.rawValue }

    deinit { try? fd.close() }
}

/// Pinning in bpffs: one wrapper shared by maps, programs and links.
public protocol Pinnable {
    var descriptor: Descriptor { get }
    var name: String { get }
}

extension Pinnable {
    /// Pins the object at `path` in bpffs, so it outlives this process.
    public func pin(at path: FilePath) throws(BPFError) {
        try check("bpf_obj_pin", "\(name) at \(path)", bpf_obj_pin(descriptor.rawValue, path.string))
    }
}

/// Opens a pinned object, returning its owned descriptor.
func openPinned(_ path: FilePath) throws(BPFError) -> Descriptor {
    Descriptor(try check("bpf_obj_get", path.string, bpf_obj_get(path.string)))
}

extension Descriptor {
    /// What the kernel says of the bpf_link this descriptor holds (`subject` names it
    /// in the error).
    func linkInfo(_ subject: String) throws(BPFError) -> bpf_link_info {
        var info = bpf_link_info()
        var length = UInt32(MemoryLayout<bpf_link_info>.size)
        try check("bpf_obj_get_info_by_fd", subject, bpf_obj_get_info_by_fd(rawValue, &info, &length))
        return info
    }
}

/// Removes a pin; the object lives on while something else holds it.
public func unpin(_ path: FilePath) throws(BPFError) {
    guard unlink(path.string) == 0 else {
        throw .call("unlink", subject: path.string, errno: .current)
    }
}

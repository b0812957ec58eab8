import BPFKernel
import CLibBPF
import FoundationEssentials
import Glibc
import SystemPackage

/// A network namespace, as the kernel names it: the inode of its nsfs file. Device
/// names are unique only within a namespace, so a device's state and pins are keyed by
/// both (`net-INODE/DEV`): two `eth1` in two namespaces never share or clear each
/// other's state.
public struct NamespaceID: Hashable, Sendable, CustomStringConvertible {
    public let inode: UInt64

    public init(inode: UInt64) { self.inode = inode }

    /// The namespace this thread runs in.
    public static func current() throws(OffloadError) -> NamespaceID {
        try of("/proc/thread-self/ns/net")
    }

    /// The namespace of `path`: an nsfs file, or a name under /run/netns.
    static func of(_ path: String) throws(OffloadError) -> NamespaceID {
        var info = stat()
        guard stat(path, &info) == 0 else { throw .namespace(path, Errno(rawValue: errno)) }
        return NamespaceID(inode: UInt64(info.st_ino))
    }

    /// The subdirectory of the state directory and of the pin root for this namespace.
    public var directoryName: String { "net-\(inode)" }

    public var description: String { "net:[\(inode)]" }

    /// Moves this thread into the namespace `ip netns add NAME` made, as `ip -n NAME`
    /// does, but keeps the mounts: bpffs pins stay where every namespace's commands find
    /// them. The CLI calls it before anything else, on its only thread.
    public static func enter(named name: String) throws(OffloadError) {
        // The stdlib's byte search: `contains("/")` is Foundation's, which instantiates
        // its witness tables at first use, 3% of a served command's CPU (`-n` runs first).
        let path = name.utf8.contains(UInt8(ascii: "/")) ? name : "/run/netns/\(name)"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .noSuchNamespace(name, Errno(rawValue: errno)) }
        defer { close(fd) }
        guard setns(fd, XDPFLOW_CLONE_NEWNET) == 0 else { throw .namespace(path, Errno(rawValue: errno)) }
    }

    /// The namespace a directory name stands for, nil for other names.
    init?(directoryName: String) {
        guard directoryName.hasPrefix("net-"), let inode = UInt64(directoryName.dropFirst(4)) else { return nil }
        self.inode = inode
    }
}

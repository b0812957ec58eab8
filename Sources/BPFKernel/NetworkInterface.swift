import CLibBPF
import Glibc
import SystemPackage

/// A network device by name and index, as `ip link` shows it.
public struct NetworkInterface: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    public let index: UInt32

    /// Looks the device up in the calling process's network namespace.
    public init(named name: String) throws(BPFError) {
        let index = if_nametoindex(name)
        guard index != 0 else { throw .noSuchDevice(name) }
        self.name = name
        self.index = index
    }

    public init(index: UInt32) throws(BPFError) {
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE))
        guard if_indextoname(index, &buffer) != nil else { throw .noSuchDevice("with index \(index)") }
        name = String(decoding: buffer.prefix(while: { $0 != 0 }).map(UInt8.init(bitPattern:)), as: UTF8.self)
        self.index = index
    }

    public var description: String { name }

    /// How many receive queues it has (`rx-N` under /sys/class/net/DEV/queues, as the
    /// calling process's namespace sees it): an AF_XDP socket binds to one of them.
    public func receiveQueueCount() throws(BPFError) -> Int {
        let path = "/sys/class/net/\(name)/queues"
        guard let directory = opendir(path) else { throw .call("opendir", subject: path, errno: .current) }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let isReceiveQueue = withUnsafeBytes(of: entry.pointee.d_name) { $0.starts(with: "rx-".utf8) }
            if isReceiveQueue { count += 1 }
        }
        return count
    }
}

import CLibBPF

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
}

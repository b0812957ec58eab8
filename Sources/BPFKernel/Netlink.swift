import BPFAssembly
import CLibBPF
import Glibc

/// Netlink's framing, for the few requests XDPFlow makes itself (generic netlink's
/// netdev family; nftables' rule dump): a request of nlmsghdr, the family's own header
/// and attributes; the attributes of a reply. Host byte order, as the kernel's.
public enum Netlink {
    /// NLM_F_REQUEST.
    public static let request: UInt16 = 0x1
    /// NLM_F_REQUEST | NLM_F_DUMP.
    public static let dump: UInt16 = 0x301
    /// NLMSG_ERROR and NLMSG_DONE: message types.
    public static let error: UInt16 = 2
    public static let done: UInt16 = 3

    /// One request message, sequence 1, to the kernel (port 0).
    public static func message(type: UInt16, flags: UInt16, header: [UInt8], attributes: [(UInt16, [UInt8])]) -> [UInt8] {
        var body = ByteWriter()
        body.write(bytes: header)
        for (kind, value) in attributes {
            body.write(UInt16(4 + value.count))
            body.write(kind)
            body.write(bytes: value, paddedTo: (value.count + 3) & ~3)
        }
        var writer = ByteWriter()
        writer.write(UInt32(16 + body.bytes.count))
        writer.write(type)
        writer.write(flags)
        writer.write(UInt32(1))  // sequence
        writer.write(UInt32(0))  // port id: the kernel
        writer.write(bytes: body.bytes)
        return writer.bytes
    }

    /// The attributes from the reader's place to `end`, by type (without the NLA_F_
    /// bits), each value whole; the reader is left at `end`. A malformed one ends them.
    public static func attributes(_ reader: inout ByteReader, to end: Int) throws(ByteDecodingError) -> [(UInt16, [UInt8])] {
        var attributes: [(UInt16, [UInt8])] = []
        while reader.offset + 4 <= end {
            let length = Int(try reader.read(UInt16.self))
            let kind = try reader.read(UInt16.self) & 0x3fff
            guard length >= 4, reader.offset + length - 4 <= end else { break }
            attributes.append((kind, try reader.read(byteCount: length - 4)))
            try reader.skip(min((4 - length % 4) % 4, end - reader.offset))
        }
        try reader.skip(max(0, end - reader.offset))
        return attributes
    }

    /// Binds `socket` to a port the kernel picks: a multicast group's messages reach
    /// bound sockets only (a request's send binds one by itself). False, with errno set,
    /// when it fails.
    public static func bind(_ socket: Int32) -> Bool {
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(socket, $0, socklen_t(MemoryLayout<sockaddr_nl>.size)) == 0
            }
        }
    }
}

import BPFAssembly
import BPFKernel
import Glibc
import NFTables

/// The kernel's order of one chain's rules, by handle: an NFT_MSG_GETRULE dump of the
/// chain, of which only each rule's handle is read. `nft -j monitor` does not say where
/// an added rule went (nft's JSON leaves the position out); this says it in
/// milliseconds, where `nft list chain` takes most of a second at 10,000 rules.
enum NFTRuleOrder {
    // linux/netlink.h, linux/netfilter/nfnetlink.h, linux/netfilter/nf_tables.h.
    static let netfilter: Int32 = 12                // NETLINK_NETFILTER
    static let getRule = UInt16(10 << 8 | 7)        // NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETRULE
    static let tableAttribute: UInt16 = 1           // NFTA_RULE_TABLE
    static let chainAttribute: UInt16 = 2           // NFTA_RULE_CHAIN
    static let handleAttribute: UInt16 = 3          // NFTA_RULE_HANDLE
    static let interrupted: UInt16 = 0x10           // NLM_F_DUMP_INTR

    /// NFPROTO_* of a family.
    static func number(_ family: Family) -> UInt8 {
        switch family {
        case .inet: 1
        case .ip: 2
        case .arp: 3
        case .netdev: 5
        case .bridge: 7
        case .ip6: 10
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var call: String
        var errno: Int32
        var description: String { "nftables netlink: \(call): \(String(cString: strerror(errno)))" }
    }

    /// The handles of the chain's rules in order; empty when the chain is gone.
    static func handles(table: TableID, chain: String) throws -> [Int] {
        let raw = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), netfilter)
        guard raw >= 0 else { throw Failure(call: "socket", errno: errno) }
        defer { close(raw) }
        // nfgenmsg: family, NFNETLINK_V0, res_id.
        let request = Netlink.message(type: getRule, flags: Netlink.dump, header: [number(table.family), 0, 0, 0],
                                      attributes: [(tableAttribute, Array(table.name.utf8) + [0]),
                                                   (chainAttribute, Array(chain.utf8) + [0])])
        guard send(raw, request, request.count, 0) == request.count else {
            throw Failure(call: "send", errno: errno)
        }
        var handles: [Int] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let length = recv(raw, &buffer, buffer.count, 0)
            guard length > 0 else { throw Failure(call: "recv", errno: length < 0 ? errno : EPROTO) }
            do {
                if try read(buffer.prefix(length), into: &handles) { return handles }
            } catch let failure as Failure where failure.errno == ENOENT {
                return []
            }
        }
    }

    /// Reads the messages of one datagram; true at the dump's end.
    private static func read(_ datagram: ArraySlice<UInt8>, into handles: inout [Int]) throws -> Bool {
        var reader = ByteReader(datagram)
        do {
            while reader.remaining >= 16 {
                let start = reader.offset
                let length = Int(try reader.read(UInt32.self))
                let type = try reader.read(UInt16.self)
                let flags = try reader.read(UInt16.self)
                try reader.skip(8)  // sequence, port id
                guard length >= 16, start + length <= datagram.count else { throw Failure(call: "recv", errno: EPROTO) }
                // The chain changed while the kernel dumped it: handles may be missing or twice.
                if flags & interrupted != 0 { throw Failure(call: "dump of the chain's rules", errno: EINTR) }
                if type == Netlink.done { return true }
                if type == Netlink.error {
                    let code: Int32 = try reader.read()
                    throw Failure(call: "dump of the chain's rules", errno: -code)
                }
                try reader.skip(4)  // nfgenmsg
                for case (handleAttribute, let value) in try Netlink.attributes(&reader, to: start + length) where value.count == 8 {
                    var handle = ByteReader(value)
                    handles.append(Int(try handle.read(UInt64.self).byteSwapped))
                }
                try reader.skip(min(start + ((length + 3) & ~3), datagram.count) - reader.offset)
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(call: "recv", errno: EPROTO)
        }
        return false
    }
}

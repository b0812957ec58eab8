import BPFAssembly
import BPFKernel
import Glibc
import NFTables
import Packets

/// Where the kernel put a rule, which `nft -j monitor` does not say (nft's JSON leaves
/// the position out): its NEWRULE notification (`Notifications`), and when none says,
/// the kernel's order of the chain's rules, by handle: an NFT_MSG_GETRULE dump of the
/// chain, of which only each rule's handle is read (tens of milliseconds at 10,000
/// rules, where `nft list chain` takes most of a second).
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

    /// The family of an NFPROTO_* number.
    static func family(_ number: UInt8) -> Family? {
        Family.allCases.first { self.number($0) == number }
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
        for message in try messages(in: datagram) {
            // The chain changed while the kernel dumped it: handles may be missing or twice.
            if message.flags & interrupted != 0 { throw Failure(call: "dump of the chain's rules", errno: EINTR) }
            if message.type == Netlink.done { return true }
            if let handle = message.number(handleAttribute) { handles.append(handle) }
        }
        return false
    }

    /// One nftables message: its type, flags, family (nfgenmsg's) and attributes.
    struct Message {
        var type: UInt16
        var flags: UInt16
        var family: UInt8 = 0
        var attributes: [(UInt16, [UInt8])] = []

        /// A big-endian 64-bit attribute (a handle or position).
        func number(_ kind: UInt16) -> Int? {
            guard let value = attributes.first(where: { $0.0 == kind })?.1, value.count == 8 else { return nil }
            var cursor = ByteCursor(value)
            return cursor.read(UInt64.self).map { Int($0) }
        }

        /// A string attribute (a table or chain name).
        func string(_ kind: UInt16) -> String? {
            attributes.first { $0.0 == kind }.map { String(decoding: $0.1.prefix { $0 != 0 }, as: UTF8.self) }
        }
    }

    /// The messages of one datagram; an error message throws its errno.
    static func messages(in datagram: ArraySlice<UInt8>) throws -> [Message] {
        var reader = ByteReader(datagram)
        var messages: [Message] = []
        do {
            while reader.remaining >= 16 {
                let start = reader.offset
                let length = Int(try reader.read(UInt32.self))
                let type = try reader.read(UInt16.self)
                let flags = try reader.read(UInt16.self)
                try reader.skip(8)  // sequence, port id
                let end = start + length
                guard length >= 16, end <= datagram.count else { throw Failure(call: "recv", errno: EPROTO) }
                switch type {
                case Netlink.error:
                    let code: Int32 = try reader.read()
                    throw Failure(call: "dump of the chain's rules", errno: -code)
                case Netlink.done:
                    messages.append(Message(type: type, flags: flags))
                default:
                    let family: UInt8 = try reader.read()
                    try reader.skip(3)  // version, res_id
                    messages.append(Message(type: type, flags: flags, family: family,
                                            attributes: try Netlink.attributes(&reader, to: end)))
                }
                try reader.skip(min(start + ((length + 3) & ~3), datagram.count) - reader.offset)
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw Failure(call: "recv", errno: EPROTO)
        }
        return messages
    }

    /// The kernel's notifications of new rules (group NFNLGRP_NFTABLES), which say what
    /// `nft -j monitor` leaves out: whether a rule was appended or inserted, and next to
    /// which rule when the command named one. The kernel queues a notification on every
    /// listener at once, so the one for a rule the monitor printed is here already.
    final class Notifications {
        static let group: Int32 = 7                 // NFNLGRP_NFTABLES
        static let addMembership: Int32 = 1         // NETLINK_ADD_MEMBERSHIP
        static let newRule = UInt16(10 << 8 | 6)    // NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWRULE
        static let append: UInt16 = 0x800           // NLM_F_APPEND
        static let positionAttribute: UInt16 = 6    // NFTA_RULE_POSITION
        static let positionIDAttribute: UInt16 = 10 // NFTA_RULE_POSITION_ID

        private let socket: Int32
        private var places: [Rule.ID: RulePlace] = [:]
        private var buffer = [UInt8](repeating: 0, count: 1 << 16)

        init() throws {
            socket = Glibc.socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
                | Int32(SOCK_NONBLOCK.rawValue), netfilter)
            guard socket >= 0 else { throw Failure(call: "socket", errno: errno) }
            var group = Self.group
            let bound = Netlink.bind(socket)
            guard bound, setsockopt(socket, SOL_NETLINK, Self.addMembership, &group, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
                let code = errno
                close(socket)
                throw Failure(call: bound ? "NETLINK_ADD_MEMBERSHIP" : "bind", errno: code)
            }
            // A table of rules loaded at once is a notification a rule: room for many
            // (an overrun loses places, and a dump finds them).
            var size: Int32 = 8 << 20
            _ = setsockopt(socket, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size))
        }

        deinit { close(socket) }

        /// Where the kernel put the rule; nil when no notification says (lost in an
        /// overrun, or placed next to a rule of the same batch by its id).
        func place(of rule: Rule.ID) -> RulePlace? {
            while true {
                let length = recv(socket, &buffer, buffer.count, 0)
                if length < 0, errno == ENOBUFS { continue }
                guard length > 0, let messages = try? NFTRuleOrder.messages(in: buffer.prefix(length)) else { break }
                for message in messages where message.type == Self.newRule { note(message) }
            }
            // Places of rules the monitor has not printed yet wait; those it never will
            // (a monitor that fell behind) do not pile up.
            if places.count > 65536 { places.removeAll() }
            return places.removeValue(forKey: rule)
        }

        private func note(_ message: Message) {
            guard let family = NFTRuleOrder.family(message.family), let table = message.string(tableAttribute),
                  let chain = message.string(chainAttribute), let handle = message.number(handleAttribute),
                  !message.attributes.contains(where: { $0.0 == Self.positionIDAttribute }) else { return }
            let appended = message.flags & Self.append != 0
            let place: RulePlace = switch message.number(Self.positionAttribute) {
            case nil: appended ? .last : .first
            case let position?: appended ? .after(handle: position) : .before(handle: position)
            }
            places[Rule.ID(table: TableID(family, table), chain: chain, handle: handle)] = place
        }
    }
}

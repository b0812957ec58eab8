import BPFAssembly
import CLibBPF
import SystemPackage

/// What a device's driver can do with XDP (enum netdev_xdp_act).
public struct XDPFeatures: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Native XDP: XDP_ABORTED, DROP, PASS and TX in the driver.
    public static let basic = XDPFeatures(rawValue: 1 << 0)
    /// XDP_REDIRECT out of this device's receive path.
    public static let redirect = XDPFeatures(rawValue: 1 << 1)
    /// Can be the target of XDP_REDIRECT (ndo_xdp_xmit).
    public static let redirectTarget = XDPFeatures(rawValue: 1 << 2)
    public static let zeroCopyXSK = XDPFeatures(rawValue: 1 << 3)
    public static let hardwareOffload = XDPFeatures(rawValue: 1 << 4)
    public static let receiveScatterGather = XDPFeatures(rawValue: 1 << 5)
    public static let redirectTargetScatterGather = XDPFeatures(rawValue: 1 << 6)

    static let names: [(XDPFeatures, String)] = [
        (.basic, "basic"), (.redirect, "redirect"), (.redirectTarget, "ndo-xmit"),
        (.zeroCopyXSK, "xsk-zerocopy"), (.hardwareOffload, "hw-offload"),
        (.receiveScatterGather, "rx-sg"), (.redirectTargetScatterGather, "ndo-xmit-sg"),
    ]

    /// The kernel's names (`ynl --family netdev`), space-separated.
    public var description: String {
        let set = XDPFeatures.names.filter { contains($0.0) }.map(\.1)
        return set.isEmpty ? "none" : set.joined(separator: " ")
    }

    public var names: [String] { XDPFeatures.names.filter { contains($0.0) }.map(\.1) }
}

/// Where a device's XDP features came from.
public enum XDPFeatureSource: String, Sendable {
    /// The netdev generic-netlink family's `xdp-features` (Linux 6.3 and later).
    case netlink
    /// A native attach of a pass-everything program, when netlink cannot tell.
    case probe
}

extension NetworkInterface {
    /// What the driver supports: from netlink where the kernel reports it, else by
    /// attaching a program that passes everything in native mode for a moment.
    public func xdpFeatures() throws(BPFError) -> (features: XDPFeatures, source: XDPFeatureSource) {
        if let features = try GenericNetlink.xdpFeatures(ifindex: index) {
            return (features, .netlink)
        }
        var asm = Assembler()
        asm.emit(Instruction.return(XDPAction.pass))
        let program = try Program.loadXDP(name: "xdpflow_probe", instructions: try! asm.assemble())
        do {
            let link = try XDPLink(attaching: program, to: self, mode: .native)
            try link.detach()
            return (.basic, .probe)
        } catch .call(_, _, let errno) where errno == .notSupported || errno == .invalidArgument {
            return ([], .probe)
        }
    }
}

/// Just enough generic netlink to ask the netdev family about one device.
enum GenericNetlink {
    // linux/genetlink.h and linux/netdev.h (the latter is newer than this machine's headers).
    static let controllerID: UInt16 = 0x10          // GENL_ID_CTRL
    static let getFamily: UInt8 = 3                  // CTRL_CMD_GETFAMILY
    static let familyIDAttribute: UInt16 = 1         // CTRL_ATTR_FAMILY_ID
    static let familyNameAttribute: UInt16 = 2       // CTRL_ATTR_FAMILY_NAME
    static let deviceGet: UInt8 = 1                  // NETDEV_CMD_DEV_GET
    static let ifindexAttribute: UInt16 = 1          // NETDEV_A_DEV_IFINDEX
    static let xdpFeaturesAttribute: UInt16 = 3      // NETDEV_A_DEV_XDP_FEATURES

    /// The device's xdp-features, or nil when this kernel has no netdev family.
    static func xdpFeatures(ifindex: UInt32) throws(BPFError) -> XDPFeatures? {
        let raw = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_GENERIC)
        guard raw >= 0 else { throw .call("socket", subject: "generic netlink", errno: .current) }
        let socket = Descriptor(raw)

        let family = try request(socket, type: controllerID, command: getFamily,
                                 attributes: [(familyNameAttribute, Array("netdev".utf8) + [0])])
        guard let familyAttributes = family, let id = familyAttributes[familyIDAttribute], id.count >= 2 else {
            return nil
        }
        var familyID = ByteReader(id)
        let device = try request(socket, type: try field(familyID.read()), command: deviceGet,
                                 attributes: [(ifindexAttribute, ifindex.encodedBytes)])
        guard let value = device?[xdpFeaturesAttribute], value.count >= 8 else { return nil }
        var features = ByteReader(value)
        return XDPFeatures(rawValue: try field(features.read()))
    }

    /// Sends one request and returns the attributes of its answer; nil when the kernel
    /// answers ENOENT or EOPNOTSUPP (no such family, or no such operation).
    private static func request(_ socket: Descriptor, type: UInt16, command: UInt8,
                                attributes: [(UInt16, [UInt8])]) throws(BPFError) -> [UInt16: [UInt8]]? {
        // genlmsghdr: cmd, version, reserved.
        let message = Netlink.message(type: type, flags: Netlink.request, header: [command, 1, 0, 0], attributes: attributes)

        guard send(socket.rawValue, message, message.count, 0) == message.count else {
            throw .call("send", subject: "generic netlink", errno: .current)
        }
        var answer = [UInt8](repeating: 0, count: 8192)
        let length = recv(socket.rawValue, &answer, answer.count, 0)
        guard length >= 16 else { throw .call("recv", subject: "generic netlink", errno: .current) }
        var reply = ByteReader(answer.prefix(length))
        try field(reply.skip(4))  // length
        if try field(reply.read(UInt16.self)) == Netlink.error {
            guard length >= 20 else { throw .call("recv", subject: "generic netlink error", errno: .badMessage) }
            try field(reply.skip(10))  // flags, sequence, port id
            let code: Int32 = try field(reply.read())
            if code == -ENOENT || code == -EOPNOTSUPP { return nil }
            throw .call("netlink request", subject: "command \(command)", errno: Errno(rawValue: -code))
        }
        try field(reply.skip(min(14, reply.remaining)))  // the rest of nlmsghdr, genlmsghdr
        let attributes = try field(Netlink.attributes(&reply, to: length))
        return Dictionary(attributes, uniquingKeysWith: { _, last in last })
    }

    /// A reply shorter than its own lengths say: the kernel's message is malformed.
    private static func field<T>(_ read: @autoclosure () throws(ByteDecodingError) -> T) throws(BPFError) -> T {
        do {
            return try read()
        } catch {
            throw .call("recv", subject: "generic netlink reply", errno: .badMessage)
        }
    }
}

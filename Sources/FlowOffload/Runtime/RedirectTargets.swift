import BPFKernel
import FlowRules
import FoundationEssentials
import Glibc

/// The devices that rules redirect or mirror to, checked when the rules are added
/// (before they reach the kernel): a missing device is an error; a device that would
/// drop the frames is a warning that says how to fix it.
///
/// A device can take redirected frames (and mirrored copies, sent by a devmap
/// broadcast) when its driver transmits XDP frames (ndo_xdp_xmit, "ndo-xmit" in its
/// xdp-features). A veth has it only while its peer runs an XDP program or has GRO on,
/// and the kernel reflects that in the veth's own xdp-features, so the check also
/// works when the peer is in another namespace.
enum RedirectTargets {
    /// The warnings for the targets of `rules` (the rules a command adds or changes).
    static func check(_ rules: [FlowRule], on device: String) throws -> [String] {
        var warnings: [String] = []
        var seen: Set<String> = []
        for rule in rules {
            for action in rule.actions {
                guard case .mirred(let mirred) = action.kind, mirred.direction == .egress,
                      seen.insert(mirred.device).inserted
                else { continue }
                if mirred.device == device {
                    // Redirected to itself: XDP_TX.
                    if let warning = transmitWarning(for: device) { warnings.append(warning) }
                    continue
                }
                guard let target = try? NetworkInterface(named: mirred.device) else {
                    throw OffloadError.missingTarget(mode: "\(mirred.mode)", target: mirred.device,
                                                       rule: "pref \(rule.prio) handle 0x\(String(rule.handle, radix: 16))",
                                                       device: device)
                }
                if let warning = warning(for: target, sent: mirred.mode == .redirect ? "frames redirected" : "copies mirrored") {
                    warnings.append(warning)
                }
            }
        }
        return warnings
    }

    /// Why frames `sent` to `target` would be dropped, and the fix; nil when they would
    /// not be (or the kernel cannot tell, before Linux 6.3).
    static func warning(for target: NetworkInterface, sent: String) -> String? {
        guard let (features, source) = try? target.xdpFeatures(), source == .netlink,
              !features.contains(.redirectTarget)
        else { return nil }
        guard driver(of: target) == "veth", let peerIndex = linkIndex(of: target.name) else {
            return "\(sent) to \(target) will be dropped: its driver cannot transmit XDP frames "
                + "(no ndo-xmit in 'xdpflow features dev \(target)')"
        }
        let problem = "\(sent) to \(target) will be dropped: it is a veth whose peer has "
            + "no XDP program and GRO off"
        if let peer = try? NetworkInterface(index: peerIndex), linkIndex(of: peer.name) == target.index {
            return problem + " (peer \(peer)). Fix: ethtool -K \(peer) gro on, or xdpflow attach dev \(peer)"
        }
        return problem + " (the peer, ifindex \(peerIndex), is in another network namespace). Fix, in that "
            + "namespace: ethtool -K PEER gro on (ip netns exec NS ethtool -K PEER gro on), or attach XDP there"
    }

    /// XDP_TX on a veth reaches the peer only when the peer runs an XDP program: the
    /// kernel wakes the peer's NAPI for XDP frames only then (GRO is not enough).
    static func transmitWarning(for name: String) -> String? {
        guard let device = try? NetworkInterface(named: name), driver(of: device) == "veth",
              let peerIndex = linkIndex(of: name),
              let peer = try? NetworkInterface(index: peerIndex), linkIndex(of: peer.name) == device.index,
              XDPLink.attachedProgramID(peer) == nil
        else { return nil }
        return "frames sent back out of \(name) (XDP_TX) will be lost: its veth peer \(peer) runs no XDP program. "
            + "Fix: xdpflow attach dev \(peer)"
    }

    /// IFLA_LINK: for a veth, its peer's ifindex (in the peer's namespace).
    static func linkIndex(of name: String) -> UInt32? {
        guard let text = try? String(contentsOfFile: "/sys/class/net/\(name)/iflink", encoding: .utf8) else { return nil }
        return UInt32(text.filter { !$0.isWhitespace })
    }

    /// The driver's name, as `ethtool -i` shows it (ETHTOOL_GDRVINFO).
    static func driver(of device: NetworkInterface) -> String? {
        let ethtoolIoctl: UInt = 0x8946       // SIOCETHTOOL
        let getDriverInfo: UInt32 = 3         // ETHTOOL_GDRVINFO
        let driverInfoSize = 196, driverOffset = 4, driverLength = 32  // struct ethtool_drvinfo
        let socket = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard socket >= 0 else { return nil }
        defer { close(socket) }
        var info = [UInt8](repeating: 0, count: driverInfoSize)
        withUnsafeBytes(of: getDriverInfo.littleEndian) { info.replaceSubrange(0 ..< 4, with: $0) }
        return info.withUnsafeMutableBytes { buffer -> String? in
            var request = ifreq()
            withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { name in
                for (index, byte) in device.name.utf8.prefix(name.count - 1).enumerated() { name[index] = byte }
            }
            request.ifr_ifru.ifru_data = buffer.baseAddress!.assumingMemoryBound(to: CChar.self)
            guard ioctl(socket, ethtoolIoctl, &request) == 0 else { return nil }
            let driver = buffer[driverOffset ..< driverOffset + driverLength]
            return String(decoding: driver.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }
}

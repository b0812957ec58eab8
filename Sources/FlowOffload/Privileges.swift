import FoundationEssentials
import Glibc

/// Whether this process may load, attach and pin XDP programs, and read them: root, or
/// the capabilities that stand for it. Checked first, so that an unprivileged run says
/// so instead of failing later on a state file or a syscall: a command that changes
/// something refuses (`require("attach")` throws "xdpflow attach needs root ..."), one
/// that shows prints what the state directory holds and names what needs root.
public enum Privileges {
    /// Bits of linux/capability.h.
    static let netAdmin = 12, sysAdmin = 21, bpf = 39

    public static func require(_ command: String) throws {
        guard !sufficient else { return }
        throw OffloadError.needsRoot(command: command)
    }

    /// CAP_NET_ADMIN, and CAP_BPF or the older CAP_SYS_ADMIN, in the effective set.
    /// Read once: xdpflow never changes its capabilities, and a batch asks per line.
    public static let sufficient: Bool = {
        guard let effective = effectiveCapabilities else { return geteuid() == 0 }
        let has = { (bit: Int) in effective & (1 << UInt64(bit)) != 0 }
        return has(netAdmin) && (has(bpf) || has(sysAdmin))
    }()

    /// CapEff of /proc/self/status.
    static var effectiveCapabilities: UInt64? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") })
        else { return nil }
        return UInt64(line.dropFirst("CapEff:".count).filter { !$0.isWhitespace }, radix: 16)
    }
}

import CLibBPF
import SystemPackage

/// The BPF filesystem, where pins live.
public enum BPFFS {
    public static let defaultMountPoint: FilePath = "/sys/fs/bpf"
    /// BPF_FS_MAGIC from linux/magic.h.
    static let magic = 0xcafe_4a11

    public static func isMounted(at path: FilePath = defaultMountPoint) -> Bool {
        var stats = statfs()
        return statfs(path.string, &stats) == 0 && stats.f_type == magic
    }

    /// Mounts bpffs at `path` unless it is already there.
    public static func mountIfNeeded(at path: FilePath = defaultMountPoint) throws(BPFError) {
        guard !isMounted(at: path) else { return }
        guard mount("bpf", path.string, "bpf", 0, "mode=0700") == 0 else {
            throw .call("mount", subject: "bpffs at \(path)", errno: .current)
        }
    }

    /// Creates `path` and its parents as directories (in bpffs, where pins are grouped).
    public static func makeDirectories(_ path: FilePath) throws(BPFError) {
        var current = FilePath(root: path.root)
        for component in path.components {
            current.append(component)
            guard mkdir(current.string, 0o700) == 0 else {
                let errno = Errno.current
                if errno == .fileExists { continue }
                throw .call("mkdir", subject: current.string, errno: errno)
            }
        }
    }
}

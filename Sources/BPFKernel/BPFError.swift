import BPFAssembly
import CLibBPF
import SystemPackage

/// A failure of a kernel operation, said in the user's terms: which operation, on
/// what, the errno by name, and what to do about it where that is known.
public enum BPFError: Error, Sendable, CustomStringConvertible {
    /// A syscall or libbpf call failed. `subject` names what it acted on (a map, a device).
    case call(String, subject: String, errno: Errno)
    /// The verifier refused a program. `log` is the whole verifier log.
    case verifierRejected(program: String, errno: Errno, log: String)
    case noSuchDevice(String)
    /// The device already runs an XDP program that XDPFlow did not attach.
    case deviceBusy(String, programID: UInt32)

    /// A key of `actual` bytes (given, or a typed map's key type) for a map whose keys
    /// are `expected` bytes.
    case keySizeMismatch(map: String, expected: Int, actual: Int)
    /// As `keySizeMismatch`, for values (a per-CPU map's raw value is all CPUs' values).
    case valueSizeMismatch(map: String, expected: Int, actual: Int)
    /// The map is not of a type the operation or the typed map works on.
    case mapTypeMismatch(map: String, expected: [MapType], actual: MapType)
    /// Batch keys and values that are not whole entries.
    case partialBatchEntry(map: String, keyBytes: Int, valueBytes: Int, keySize: Int, valueSize: Int)
    /// A pinned map of a type xdpflow has no `MapType` for.
    case unsupportedMapType(path: String, kernelType: UInt32)
    /// Bytes read from a typed map are not a value of its type.
    case undecodable(map: String, ByteDecodingError)

    /// An instruction loads a map the loader was not given (`instruction` nil: the
    /// program was built without it).
    case missingMap(program: String, map: String, instruction: Int?)
    case notAnXDPLink(path: String)
    case notATCXLink(path: String)
    /// A program xdpflow generates itself did not assemble (a bug, named by the program).
    case assembly(program: String, AssemblyError)
    case trafficGenerator(TrafficGeneratorError)
    /// An AF_XDP umem's frame count or ring size that is not a power of two.
    case xskSize(what: String, size: Int)
    /// A frame to send that does not fit one umem frame.
    case xskFrameTooLong(length: Int, frameSize: Int)

    public var description: String {
        switch self {
        case .call(let call, let subject, let errno):
            let hint = BPFError.hint(for: errno).map { ": \($0)" } ?? ""
            return "\(call)(\(subject)) failed: \(errno.name) (\(errno.description))\(hint)"
        case .verifierRejected(let program, let errno, let log):
            return "the kernel verifier rejected program '\(program)' (\(errno.name)):\n"
                + BPFError.tail(of: log, lines: 12)
        case .noSuchDevice(let name):
            return "device \(name) does not exist"
        case .deviceBusy(let name, let id):
            return "device \(name) already has an XDP program (id \(id)) not attached by xdpflow;"
                + " remove it first (ip link set dev \(name) xdp off)"
        case .keySizeMismatch(let map, let expected, let actual):
            return "map \(map): key of \(actual) bytes, expected \(expected)"
        case .valueSizeMismatch(let map, let expected, let actual):
            return "map \(map): value of \(actual) bytes, expected \(expected)"
        case .mapTypeMismatch(let map, let expected, let actual):
            return "map \(map) is of type \(actual.name), expected "
                + expected.map(\.name).joined(separator: " or ")
        case .partialBatchEntry(let map, let keyBytes, let valueBytes, let keySize, let valueSize):
            return "map \(map): \(keyBytes) key bytes and \(valueBytes) value bytes "
                + "are not whole entries of \(keySize) and \(valueSize) bytes"
        case .unsupportedMapType(let path, let type):
            return "\(path) is a map of type \(type), which xdpflow does not use"
        case .undecodable(let map, let error):
            return "map \(map) holds a value xdpflow cannot read: \(error)"
        case .missingMap(let program, let map, let instruction?):
            return "program \(program): instruction \(instruction) refers to map '\(map)', which was not given"
        case .missingMap(let program, let map, nil):
            return "program \(program) was built without map '\(map)'"
        case .notAnXDPLink(let path):
            return "\(path) is not an XDP link"
        case .notATCXLink(let path):
            return "\(path) is not a tcx link"
        case .assembly(let program, let error):
            return "internal error: program \(program) does not assemble: \(error)"
        case .trafficGenerator(let error):
            return error.description
        case .xskSize(let what, let size):
            return "AF_XDP \(what): \(size) is not a power of two"
        case .xskFrameTooLong(let length, let frameSize):
            return "AF_XDP send: a frame of \(length) bytes does not fit a umem frame of \(frameSize)"
        }
    }

    /// The last lines of a verifier log: where the verifier stopped, and why.
    public static func tail(of log: String, lines count: Int) -> String {
        log.split(separator: "\n", omittingEmptySubsequences: true).suffix(count).joined(separator: "\n")
    }

    static func hint(for errno: Errno) -> String? {
        switch errno {
        case .notPermitted, .permissionDenied: "needs root or CAP_BPF and CAP_NET_ADMIN"
        case .noSuchFileOrDirectory: "no such object (is it pinned, and is bpffs mounted at /sys/fs/bpf?)"
        case .fileExists: "it already exists"
        case .resourceBusy: "the device is busy: another XDP program holds it"
        case .notSupported: "not supported by this kernel or driver"
        case .noSpace: "the map is full"
        case .tooManyOpenFiles: "too many open files (raise ulimit -n)"
        default: nil
        }
    }
}

extension Errno {
    /// The symbolic name, `EPERM`, as glibc knows it.
    public var name: String {
        guard let name = strerrorname_np(rawValue) else { return "errno \(rawValue)" }
        return String(cString: name)
    }

    /// The errno of the last failed C call.
    static var current: Errno { Errno(rawValue: xdpflow_errno()) }
}

/// Passes a libbpf result through, or turns a failure (libbpf 1.x returns -errno)
/// into `BPFError.call`.
@discardableResult
func check(_ call: String, _ subject: String, _ result: Int32) throws(BPFError) -> Int32 {
    guard result < 0 else { return result }
    throw .call(call, subject: subject, errno: Errno(rawValue: -result))
}

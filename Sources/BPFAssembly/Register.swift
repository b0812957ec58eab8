/// One of the eleven eBPF registers.
///
/// r0 holds return values, r1-r5 carry call arguments and are clobbered by calls,
/// r6-r9 survive calls, r10 is the read-only frame pointer.
public enum Register: UInt8, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    case r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10

    /// The frame pointer: the top of the program's 512-byte stack.
    public static let fp = Register.r10

    public var description: String { "r\(rawValue)" }
}

/// A kernel helper function, called by number (`call bpf_map_lookup_elem#1`).
public struct Helper: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// Looks a helper up by its kernel name, with or without the `bpf_` prefix.
    public init?(name: String) {
        let bare = name.hasPrefix("bpf_") ? String(name.dropFirst(4)) : name
        guard let number = Helper.names.firstIndex(of: bare), number > 0 else { return nil }
        self.init(rawValue: Int32(number))
    }

    /// The kernel's name, `bpf_map_lookup_elem`; `bpf_helper_N` for a number this table lacks.
    public var name: String {
        Helper.names.indices.contains(Int(rawValue)) && rawValue > 0
            ? "bpf_" + Helper.names[Int(rawValue)] : "bpf_helper_\(rawValue)"
    }

    public var description: String { name }
}

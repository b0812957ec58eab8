import BPFAssembly
import BPFKernel
import SystemPackage

/// An attached entry program that tail-calls the program in a one-entry prog array: a
/// new program is swapped in with a map update (~35 us here) instead of
/// bpf_link_update, whose switch of the kernel's XDP dispatcher waits for an RCU grace
/// period (7-36 ms here). The tail call, to a constant index, is patched into a direct
/// jump: about 1 ns a frame. Each frame runs either the old program or the new one.
///
/// Pinned (`pin(in:)`), the slot outlives the process that made it: a prog array's
/// entries are cleared when its last user reference goes, so the array itself is pinned,
/// next to the link; `init(pinnedIn:)` opens both again for the next command.
public final class ProgramSlot {
    /// The program attached to the device, and its link.
    public let entry: Program
    public let link: XDPLink
    private let programs: BPFKernel.Map

    /// The pins in a device's directory.
    public enum Pin {
        public static let link = "link"
        public static let slot = "slot"
        public static let entry = "entry"
        public static let all: Set<String> = [link, slot, entry]
    }

    public init(running program: Program, attachingTo interface: NetworkInterface, mode: XDPMode = .auto)
        throws(BPFError) {
        programs = try BPFKernel.Map(MapSpec(name: "xf_slot", type: .progArray, key: UInt32.self, value: UInt32.self,
                                             maxEntries: 1))
        // Should the slot ever be empty, the tail call falls through: the frame passes.
        entry = try Program.loadXDP(name: "xdpflow_entry",
                                        instructions: [.loadMap(.r2, "xf_slot"), .mov(.r3, 0), .call(.tailCall)]
                                            + Instruction.return(XDPAction.pass),
                                        maps: ["xf_slot": programs])
        try Self.put(program, in: programs)
        link = try XDPLink(attaching: entry, to: interface, mode: mode)
    }

    /// The slot pinned in `directory` by `pin(in:)`.
    public init(pinnedIn directory: FilePath) throws(BPFError) {
        link = try XDPLink(pinnedAt: directory.appending(Pin.link))
        entry = try Program(pinnedAt: directory.appending(Pin.entry))
        programs = try BPFKernel.Map(pinnedAt: directory.appending(Pin.slot))
    }

    public func pin(in directory: FilePath) throws(BPFError) {
        try programs.pin(at: directory.appending(Pin.slot))
        try entry.pin(at: directory.appending(Pin.entry))
        try link.pin(at: directory.appending(Pin.link))
    }

    /// Swaps `program` in.
    public func run(_ program: Program) throws(BPFError) {
        try Self.put(program, in: programs)
    }

    /// The id of the program in the slot (a prog array's lookup gives ids); nil when empty.
    public var programID: UInt32? {
        guard let value = try? programs.lookup(Self.index.encodedBytes) else { return nil }
        return try? UInt32(decoding: value)
    }

    /// Whether the device runs this slot's entry program: the link is live and the
    /// program on the device is the link's.
    public var isRunning: Bool {
        guard let id = link.programID else { return false }
        return XDPLink.attachedProgramID(link.device) == id
    }

    /// The slot's one index. A prog array takes a program's descriptor and gives back its
    /// id, so its values have no one type: it stays a raw `Map`, u32 in both directions.
    private static let index: UInt32 = 0

    private static func put(_ program: Program, in programs: BPFKernel.Map) throws(BPFError) {
        try programs.update(index.encodedBytes, UInt32(bitPattern: program.descriptor.rawValue).encodedBytes)
    }
}

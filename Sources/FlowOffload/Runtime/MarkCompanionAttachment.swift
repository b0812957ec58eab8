import BPFAssembly
import BPFKernel
import FlowCompiler
import FoundationEssentials
import Glibc
import SystemPackage

/// The mark companion (`MarkCompanion`) attached to a device's tc ingress through tcx,
/// next to the XDP slot. It is attached with every slot, whether or not a rule marks:
/// a rule with `skbedit mark` added later then needs no new attachment, and a frame
/// without metadata costs it one bounds check.
///
/// Pinned (`pin(in:)`) in the device's directory like the slot: program and link. The link
/// is what holds the attachment; a pinned link detaches when its pin goes and nothing
/// else holds it, so removing the device's pins removes the companion too.
public final class MarkCompanionAttachment {
    public let program: Program
    public let link: TCXLink

    /// The pins in a device's directory.
    public enum Pin {
        public static let link = "tc-link"
        public static let entry = "tc-entry"
        public static let all: Set<String> = [link, entry]
    }

    /// `layout`: the areas the device's XDP program writes.
    public init(attachingTo interface: NetworkInterface, layout: FlowMetadata.Layout = .mark) throws(BPFError) {
        let instructions: [Instruction]
        do throws(AssemblyError) {
            instructions = try MarkCompanion.instructions(for: layout)
        } catch {
            throw .assembly(program: MarkCompanion.name, error)
        }
        program = try Program.load(.schedCLS, attachType: .tcxIngress, name: MarkCompanion.name,
                                   instructions: instructions)
        link = try TCXLink(attachingIngress: program, to: interface)
    }

    /// The companion pinned in `directory` by `pin(in:)`.
    public init(pinnedIn directory: FilePath) throws(BPFError) {
        link = try TCXLink(pinnedAt: directory.appending(Pin.link))
        program = try Program(pinnedAt: directory.appending(Pin.entry))
    }

    /// Whether `directory` holds a companion's pins (devices attached before xdpflow had
    /// the companion do not).
    public static func isPinned(in directory: FilePath) -> Bool {
        FileManager.default.fileExists(atPath: directory.appending(Pin.link).string)
    }

    public func pin(in directory: FilePath) throws(BPFError) {
        try program.pin(at: directory.appending(Pin.entry))
        try link.pin(at: directory.appending(Pin.link))
    }

    /// Whether the device's tc ingress runs the companion's program through this link.
    public var isRunning: Bool { link.isAttached }
}

import BPFAssembly
import BPFKernel
import Foundation
import KernelTestSupport
import SystemPackage
import Testing

/// tcx ingress links on a veth of a lab: attach (after what is there), pin, open the pin,
/// detach. No qdisc is made, so none is left.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct TCXLinkTests {
    /// A tc program that decides nothing (TCX_NEXT).
    static func next(_ name: String) throws -> Program {
        try Program.load(.schedCLS, name: name, instructions: Instruction.return(-1))
    }

    @Test func attachPinReopenAndDetach() throws {
        let lab = try VethLab()
        let first = try Self.next("first"), second = try Self.next("second")
        let link = try TCXLink(attachingIngress: first, to: lab.device)
        let other = try TCXLink(attachingIngress: second, to: lab.device)
        #expect(TCXLink.ingressProgramIDs(lab.device) == [first.id, second.id], "in the order attached")
        #expect(link.programID == first.id && link.isAttached)
        #expect(!(try run(["tc", "qdisc", "show", "dev", lab.deviceName]).contains("clsact")), "no qdisc")

        try BPFFS.mountIfNeeded()
        let pin = FilePath("/sys/fs/bpf/\(lab.namespace)-tcx")
        try link.pin(at: pin)
        defer { try? unpin(pin) }
        let reopened = try TCXLink(pinnedAt: pin)
        #expect(reopened.device == lab.device && reopened.programID == first.id)

        try reopened.detach()
        #expect(TCXLink.ingressProgramIDs(lab.device) == [second.id])
        #expect(link.programID == nil, "the link is defunct, wherever it is held")
        let defunct = #expect(throws: BPFError.self) { try TCXLink(pinnedAt: pin) }
        #expect(defunct?.description.contains("does not exist") == true, "\(defunct.map(String.init(describing:)) ?? "")")
        try other.detach()
        #expect(TCXLink.ingressProgramIDs(lab.device).isEmpty)
    }

    @Test func anXDPLinkIsNotATCXLink() throws {
        let lab = try VethLab()
        let program = try Program.loadXDP(name: "pass", instructions: Instruction.return(XDPAction.pass))
        let link = try XDPLink(attaching: program, to: lab.device, mode: .native)
        try BPFFS.mountIfNeeded()
        let pin = FilePath("/sys/fs/bpf/\(lab.namespace)-xdp")
        try link.pin(at: pin)
        defer { try? unpin(pin) }
        let error = #expect(throws: BPFError.self) { try TCXLink(pinnedAt: pin) }
        #expect(error?.description == "\(pin) is not a tcx link")
    }
}

import BPFAssembly
import BPFKernel
import Foundation
import KernelTestSupport
import SystemPackage
import Testing

/// Attach, swap and detach on a veth pair: the device in this namespace, its peer
/// in a fresh one. Frames come from the peer's side, sent by `xdpflow gen`.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable))
struct XDPLinkTests {
    static var xdpflow: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("xdpflow").path
    }

    @Test func attachSwapPinAndDetachWithRealFrames() throws {
        let lab = try VethLab()
        let counters = try PerCPUArray<UInt64>(name: "counters", maxEntries: 1)
        let passing = try Program.loadXDP(name: "passing", instructions: countingProgram(.pass), maps: ["counters": counters.map])
        let dropping = try Program.loadXDP(name: "dropping", instructions: countingProgram(.drop), maps: ["counters": counters.map])
        func received() throws -> UInt64 { try counters.get(0)?.reduce(0, +) ?? 0 }

        let link = try XDPLink(attaching: passing, to: lab.device, mode: .auto)
        #expect(try link.mode == .native, "veth has native XDP")
        #expect(XDPLink.attachedProgramID(lab.device) == passing.id)

        try lab.inNamespace([Self.xdpflow, "gen", "dev", lab.peerName, "--count", "100"])
        let first = try settled(at: 100, received)
        #expect(first == 100, "received \(first)")

        try link.update(to: dropping, expected: passing)
        #expect(XDPLink.attachedProgramID(lab.device) == dropping.id)
        let stale = #expect(throws: BPFError.self) { try link.update(to: passing, expected: passing) }
        #expect(stale?.description.contains("EPERM") == true)

        try lab.inNamespace([Self.xdpflow, "gen", "dev", lab.peerName, "--count", "50"])
        let second = try settled(at: 150, received)
        #expect(second == 150, "received \(second)")

        try BPFFS.mountIfNeeded()
        let pin = FilePath("/sys/fs/bpf/\(lab.namespace)-link")
        try link.pin(at: pin)
        defer { try? unpin(pin) }
        let reopened = try XDPLink(pinnedAt: pin)
        #expect(reopened.device == lab.device)
        #expect(try reopened.mode == .native)

        try reopened.detach()
        #expect(XDPLink.attachedProgramID(lab.device) == nil)
    }

    @Test func genericModeOnRequest() throws {
        let lab = try VethLab()
        let counters = try PerCPUArray<UInt64>(name: "counters", maxEntries: 1)
        let program = try Program.loadXDP(name: "generic", instructions: countingProgram(.pass), maps: ["counters": counters.map])
        let link = try XDPLink(attaching: program, to: lab.device, mode: .generic)
        #expect(try link.mode == .generic)
        #expect(XDPLink.attachedProgramID(lab.device) == program.id)
        try link.detach()
        #expect(XDPLink.attachedProgramID(lab.device) == nil)
    }

    @Test func aSecondAttachFindsTheDeviceBusy() throws {
        let lab = try VethLab()
        var asm = Assembler()
        asm.emit(Instruction.return(XDPAction.pass))
        let program = try Program.loadXDP(name: "first", instructions: try asm.assemble())
        let first = try XDPLink(attaching: program, to: lab.device, mode: .native)
        let error = #expect(throws: BPFError.self) { try XDPLink(attaching: program, to: lab.device, mode: .native) }
        #expect(error?.description.contains("already has an XDP program (id \(program.id))") == true)
        try first.detach()
    }

    @Test func reportsTheDriversFeatures() throws {
        let lab = try VethLab()
        let (features, source) = try lab.device.xdpFeatures()
        #expect(source == .netlink)
        #expect(features.contains(.basic))
        #expect(features.contains(.redirect))
    }

    @Test func namesAMissingDevice() {
        let error = #expect(throws: BPFError.self) { try NetworkInterface(named: "xft-nonexistent") }
        #expect(error?.description == "device xft-nonexistent does not exist")
    }
}

import ArgumentParser
import BPFKernel
import FlowCompiler
import FlowOffload
import FoundationEssentials
import Glibc

/// `xdpflow attach dev DEV [mode auto|native|generic] [unparsed pass|drop] [metadata mark|rule]`.
struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load the program for a device's rules and attach it.",
        usage: "xdpflow attach dev DEV [mode auto|native|generic] [unparsed pass|drop] [metadata mark|rule]",
        discussion: """
            Mounts bpffs when needed, compiles the device's rules (none yet: a program \
            that passes and counts every frame), loads it through the verifier, attaches \
            it with a bpf_link and pins link and maps under /sys/fs/bpf/xdpflow/DEV/. \
            The offload stays when xdpflow exits; "xdpflow detach" removes it.

            mode auto (the default) takes native XDP when the driver has it, else generic, \
            and says which it got. unparsed drop drops frames the program cannot classify \
            with certainty instead of passing them to the stack (both are counted). \
            metadata rule has the program name the deciding rule (prio and handle) in the \
            metadata in front of every frame a rule decides, for AF_XDP and tc readers \
            (docs/compiler.md, "Metadata"); by default (metadata mark) it writes only the \
            marks of skbedit mark.
            """)

    @Argument(help: ArgumentHelp("dev DEV [mode MODE] [unparsed pass|drop] [metadata mark|rule]", valueName: "words"))
    var words: [String]

    func run() throws {
        var device: String?
        var mode = XDPMode.auto
        var unparsedDrop = false
        var metadata = FlowMetadata.Layout.mark
        var rest = words[...]
        while let word = rest.popFirst() {
            guard ["dev", "device", "mode", "unparsed", "metadata"].contains(word) else {
                throw CommandError.usage("attach: unknown word '\(word)'; expected dev DEV, mode, unparsed or metadata")
            }
            guard let value = rest.popFirst() else { throw CommandError.usage("attach: '\(word)' needs a value") }
            switch word {
            case "dev", "device": device = value
            case "mode":
                guard let parsed = XDPMode(rawValue: value) else {
                    throw CommandError.usage("attach: mode '\(value)': expected auto, native or generic")
                }
                mode = parsed
            case "unparsed":
                guard value == "pass" || value == "drop" else {
                    throw CommandError.usage("attach: unparsed '\(value)': expected pass or drop")
                }
                unparsedDrop = value == "drop"
            case "metadata":
                guard let layout = FlowMetadata.Layout(rawValue: value) else {
                    throw CommandError.usage("attach: metadata '\(value)': expected mark or rule")
                }
                metadata = layout
            default:
                throw CommandError.usage("attach: unknown word '\(word)'; expected dev, mode or unparsed")
            }
        }
        guard let device else { throw CommandError.usage("attach: expected 'dev DEV'") }
        if device == "lo" {
            printError("Warning: lo carries this host's own traffic: its rules act on local connections, in generic mode\n")
        }
        let attached = try Offload(device: device).attach(mode: mode, unparsedDrop: unparsedDrop, metadata: metadata)
        if let recovery = attached.recovery { printError("Warning: \(recovery)\n") }
        print("\(device): attached in \(attached.mode) mode, program id \(attached.programID), "
            + "\(attached.rules) rules in "
            + (attached.tables > 0 ? "\(attached.tables) tables" : "\(attached.subtables) subtables"))
    }
}

/// `xdpflow detach dev DEV`.
struct Detach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Detach a device's program and remove its pins and rules.",
        usage: "xdpflow detach dev DEV",
        discussion: "Leaves the device as it was before attach: no XDP program, no pins under "
            + "/sys/fs/bpf/xdpflow/DEV/, no state in the state directory.")

    @Argument(help: ArgumentHelp("dev DEV", valueName: "dev DEV"))
    var words: [String]

    func run() throws {
        let device = try DeviceWords.device(in: words, command: "detach")
        try Offload(device: device).detach()
    }
}

import ArgumentParser
import FlowOffload
import FoundationEssentials
import Glibc

/// `xdpflow check [dev DEV]`: whether the kernel holds what the stored rules say.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Audit the kernel against the stored rules; exit 1 on any difference.",
        usage: "xdpflow [-j [-p]] check [dev DEV]",
        discussion: """
            Finishes or rolls back first what a command that died left pending (and says \
            which), then compares, for DEV or every device xdpflow holds in this network \
            namespace: the device runs xdpflow's entry program through its link; the slot \
            holds the program the journal recorded; every map the stored rules need is \
            pinned with its size; every stored rule's subtable entries are present with its \
            counter slot, handle and action, and no other entry is; every action program is \
            the rules' own; nothing else is pinned.

            OUTPUT
              DEV: ok (R rules)
              DEV: N differences
                WHAT differs, and what to do
              -j prints a JSON array, one object per device: "dev", "ok", "recovered"
              (what was finished or rolled back, or null) and "differences" (strings).

            EXIT STATUS
              0 every device agrees; 1 a difference, or the command could not be
              read; 2 the command failed (not root: the kernel's objects need it).
            """)

    @OptionGroup(visibility: .hidden) var global: GlobalOptions

    @Argument(help: ArgumentHelp("dev DEV", valueName: "dev DEV"))
    var words: [String] = []

    func run() throws {
        let device = words.isEmpty ? nil : try DeviceWords.device(in: words, command: "check")
        var failed = false
        var text = "", json: [JSON] = []
        for name in try device.map({ [$0] }) ?? Offload.devices() {
            let offload = Offload(device: name)
            guard let (recovery, differences) = try offload.check() else {
                throw CommandError.refused(OffloadError.notAttached(name))
            }
            failed = failed || !differences.isEmpty
            if let recovery { printError("Warning: \(recovery)\n") }
            text += differences.isEmpty
                ? "\(name): ok\n"
                : "\(name): \(differences.count) difference\(differences.count == 1 ? "" : "s")\n"
                    + differences.map { "  \($0)\n" }.joined()
            json.append(.object([("dev", .string(name)), ("ok", .bool(differences.isEmpty)),
                                 ("recovered", recovery.map(JSON.string) ?? .null),
                                 ("differences", .array(differences.map(JSON.string)))]))
        }
        global.print(json: .array(json), text: text)
        // The differences are the output: the status says there are some.
        if failed { throw ExitCode(1) }
    }
}

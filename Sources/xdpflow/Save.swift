import ArgumentParser
import FlowOffload
import FlowRules
import FoundationEssentials
import Glibc

/// `xdpflow save [dev DEV]`: the rules as a `-batch` file.
struct Save: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the rules as a -batch file, to restore them elsewhere.",
        usage: "xdpflow save [dev DEV] > FILE",
        discussion: saveManual)

    @Argument(help: ArgumentHelp("dev DEV", valueName: "dev DEV"))
    var words: [String] = []

    func run() throws {
        let device = words.isEmpty ? nil : try DeviceWords.device(in: words, command: "save")
        let devices = try device.map { [$0] } ?? FileRuleSetStore().devices()
        // Read as stored, without root too; a pending record is left for root, and said.
        let stored = try devices.map { device in
            let offload = Offload(device: device)
            return (device, try offload.stored(), try NFTRulesetSource.band(of: offload))
        }
        let pending = stored.compactMap { $0.1.pending.map { "Warning: \($0)\n" } }
        printError(pending.joined())
        print(Self.text(stored), terminator: "")
    }

    /// The offload of nftables' chains is left out: `xdpflow nft sync` makes it again.
    static func text(_ devices: [(name: String, state: Offload.StoredState, nftables: PartialRangeFrom<UInt16>?)],
                     date: Date = Date()) -> String {
        let host = ProcessInfo.processInfo.hostName
        var lines = ["# xdpflow save, \(date.formatted(.iso8601)), host \(host)",
                     "# restore with: xdpflow -batch FILE"]
        for (device, state, nftables) in devices {
            let (offloaded, rules) = NFTRulesetSource.split(state.rules.rules, band: nftables)
            lines.append("")
            lines.append("# dev \(device): \(rules.count) rules, \(state.isAttached ? "attached" : "not attached")")
            if let nftables {
                lines.append("# and \(offloaded.count) rule\(offloaded.count == 1 ? "" : "s") offloaded from nftables (prios \(nftables.lowerBound)-65535), "
                    + "left out: xdpflow nft sync makes them again")
            }
            lines += rules.map { $0.batchLine(device: device) }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

let saveManual = """
    Prints the rules of DEV, or of every device with rules in the state directory, \
    as a -batch file: one "filter add" line per rule, with its prio and handle, in \
    lookup order, after comment lines that say when, where and for which device.

        xdpflow save > rules          # here
        xdpflow -batch rules          # there: the same rules, all or nothing

    The batch restores the rules on a machine whose devices have the same names \
    (redirect targets included); on an attached device they go live as the batch \
    runs. Only rules are saved: attach modes and counters are not, nor the rules \
    offloaded from nftables (a comment line counts them): xdpflow nft sync makes \
    those again from the ruleset.

    Any user who can read the state directory may save; nothing is written. A change \
    a crash left pending is not in the file: a warning says so, and a command run as \
    root finishes or rolls it back.

    EXIT STATUS
      0 done (a device without rules prints only its comment line); 1 the command
      could not be read; 2 the state directory cannot be read.
    """

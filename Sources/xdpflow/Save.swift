import ArgumentParser
import FlowOffload
import FlowRules
import Foundation

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
        let store = FileRuleSetStore()
        print(try Self.text(devices: device.map { [$0] } ?? store.devices(), store: store), terminator: "")
    }

    static func text(devices: [String], store: FileRuleSetStore, date: Date = Date()) throws -> String {
        let host = ProcessInfo.processInfo.hostName
        var lines = ["# xdpflow save, \(ISO8601DateFormatter().string(from: date)), host \(host)",
                     "# restore with: xdpflow -batch FILE"]
        for device in devices {
            let rules = try store.rules(of: device).rules
            let attached = Offload(device: device, state: store.state).isAttached ? "attached" : "not attached"
            lines.append("")
            lines.append("# dev \(device): \(rules.count) rules, \(attached)")
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
    runs. Only rules are saved: attach modes and counters are not.

    EXIT STATUS
      0 done (a device without rules prints only its comment line); 1 the state
      directory cannot be read; 2 the command could not be read.
    """

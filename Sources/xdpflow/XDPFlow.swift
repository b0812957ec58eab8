import ArgumentParser
import Foundation

/// iproute2's global options, written before the object: `xdpflow -s -j filter show dev eth0`.
struct GlobalOptions: ParsableArguments {
    @Flag(name: [.customShort("s"), .customLong("stats", withSingleDash: true)],
          help: "Show each rule's counters (packets, bytes, last used).")
    var stats = false

    @Flag(name: [.customShort("j"), .customLong("json", withSingleDash: true)],
          help: "Print JSON (schemas in docs/flower.md and docs/compiler.md).")
    var json = false

    @Flag(name: [.customShort("p"), .customLong("pretty", withSingleDash: true)],
          help: "Indent JSON output.")
    var pretty = false

    @Option(name: .customLong("batch", withSingleDash: true),
            help: ArgumentHelp("Run the commands in FILE, one per line ('-' reads standard input); all or nothing. "
                               + "compile and trace run them in memory and compile the rules.",
                               valueName: "FILE"))
    var batch: String?
}

@main
struct XDPFlow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xdpflow",
        abstract: "Run tc flower rules in a generated XDP program.",
        version: "0.1.0",
        subcommands: [Filter.self, Attach.self, Detach.self, Show.self, Save.self, Compile.self, Trace.self,
                      Probe.self, Features.self, Gen.self]
    )

    @OptionGroup var global: GlobalOptions

    /// As ArgumentParser's, but a command line it cannot read exits with 2, as iproute2's
    /// usage errors do, instead of EX_USAGE (64).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(2)
        }
    }

    func run() throws {
        guard let path = global.batch else { throw CleanExit.helpRequest(self) }
        try FilterRunner(options: global).runBatch(path: path)
    }
}

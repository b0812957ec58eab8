import ArgumentParser
import FlowOffload
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

    @Option(name: [.customShort("n"), .customLong("netns", withSingleDash: true)],
            help: ArgumentHelp("Run the command in the network namespace NETNS (ip netns add NETNS), as ip -n does; "
                               + "state and pins are kept per namespace.", valueName: "NETNS"))
    var netns: String?

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
        subcommands: [Filter.self, Attach.self, Detach.self, Show.self, Check.self, Save.self, Compile.self, Trace.self,
                      Probe.self, Features.self, Gen.self]
    )

    @OptionGroup var global: GlobalOptions

    /// As ArgumentParser's, but a command line it cannot read exits with 2, as iproute2's
    /// usage errors do, instead of EX_USAGE (64); and whatever a subcommand throws is
    /// reported by `fail(_:)`, the one way.
    static func main() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        var command: any ParsableCommand
        do {
            if let name = try Self.takeNamespace(&arguments) {
                do {
                    try NamespaceID.enter(named: name)
                } catch {
                    fail(.failed(error))
                }
            }
            command = try parseAsRoot(arguments)
        } catch {
            // ArgumentParser's reading of the command line: its message, with the usage.
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(2)
        }
        do {
            try command.run()
        } catch let status as ExitCode {
            // A status without a message (check's differences, printed already).
            exit(withError: status)
        } catch let clean as CleanExit {
            exit(withError: clean)
        } catch {
            fail(CommandError(error))
        }
    }

    /// Takes `-n NETNS` (`-netns`, `--netns`) from the global options before the
    /// object: the namespace is entered before anything else runs, on the only thread.
    static func takeNamespace(_ arguments: inout [String]) throws -> String? {
        var index = 0
        while index < arguments.count, arguments[index].hasPrefix("-") {
            guard ["-n", "-netns", "--netns"].contains(arguments[index]) else {
                index += arguments[index] == "-batch" || arguments[index] == "--batch" ? 2 : 1
                continue
            }
            guard index + 1 < arguments.count else { throw ValidationError("\(arguments[index]) needs a value: NETNS") }
            let name = arguments[index + 1]
            arguments.removeSubrange(index ... index + 1)
            return name
        }
        return nil
    }

    func run() throws {
        guard let path = global.batch else { throw CleanExit.helpRequest(self) }
        try FilterRunner(options: global).runBatch(path: path)
    }
}

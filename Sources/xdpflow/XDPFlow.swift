import ArgumentParser
import FlowOffload
import FoundationEssentials
import Glibc

/// How a command prints: `-s`, `-j`, `-p` as plain values, for code that runs without
/// ArgumentParser (`FilterFastPath`).
struct OutputOptions {
    var stats = false
    var json = false
    var pretty = false

    func print(json: @autoclosure () -> JSON, text: @autoclosure () -> String) {
        Swift.print(self.json ? json().serialized(pretty: pretty) + "\n" : text(), terminator: "")
    }
}

/// iproute2's global options, written before the object: `xdpflow -s -j filter show dev eth0`.
struct GlobalOptions: ParsableArguments {
    @Flag(name: [.customShort("s"), .customLong("stats", withSingleDash: true)],
          help: "Show each rule's counters (bytes, packets, dropped, overlimits, last used).")
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

    @Flag(name: [.customShort("f"), .customLong("force", withSingleDash: true)],
          help: "With -batch: go on past the commands that fail, report each, and exit with the first one's status (tc's -force).")
    var force = false

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
                      Probe.self, Features.self, Gen.self, Capture.self, NFT.self]
    )

    @OptionGroup var global: GlobalOptions

    /// As ArgumentParser's, but a command line it cannot read exits with 1, as tc's
    /// parse errors do, instead of EX_USAGE (64); and whatever a subcommand throws is
    /// reported by `fail(_:)`, the one way.
    static func main() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments == [CommandServer.argument] { CommandServer.serve() }
        var command: any ParsableCommand
        do {
            if let name = try Self.takeNamespace(&arguments) {
                do {
                    try NamespaceID.enter(named: name)
                } catch {
                    fail(.refused(error))
                }
            }
            Self.runFast(arguments)
            if arguments.count > 1, arguments[0] == "help", let unknown = Self.unknownCommand(arguments[1...]) {
                fail(.usage("help: no command '\(unknown)'; commands: "
                    + configuration.subcommands.map { $0._commandName }.joined(separator: ", ")))
            }
            command = try parseAsRoot(arguments)
        } catch {
            // ArgumentParser's reading of the command line: its message, with the usage.
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            printError(fullMessage(for: error) + "\n")
            Glibc.exit(1)
        }
        report { try command.run() }
    }

    /// The first of `words` (a command path after `help`) that names no command.
    static func unknownCommand(_ words: ArraySlice<String>) -> String? {
        var commands: [any ParsableCommand.Type] = configuration.subcommands
        for word in words {
            guard let command = commands.first(where: { $0._commandName == word }) else { return word }
            commands = command.configuration.subcommands
        }
        return nil
    }

    /// `filter` commands and `-batch` without ArgumentParser (`FilterFastPath`), root's
    /// through the command server when one runs, and exits; returns for every other
    /// command line.
    static func runFast(_ arguments: [String]) {
        guard let invocation = FilterFastPath.invocation(arguments) else { return }
        if let status = CommandServer.forward(arguments) { Glibc.exit(status) }
        let status = FilterFastPath.status(running: invocation)
        CommandServer.startIfUseful()
        Glibc.exit(status)
    }

    /// Runs a command, reporting its failure the one way.
    static func report(_ body: () throws -> Void) {
        do {
            try body()
        } catch let status as ExitCode {
            // A status without a message (check's differences, printed already).
            exit(withError: status)
        } catch let clean as CleanExit {
            exit(withError: clean)
        } catch where exitCode(for: error) == .success {
            // ArgumentParser's own (help asked for, as `help COMMAND` does): it prints it.
            exit(withError: error)
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
        try FilterRunner(options: global.output).runBatch(path: path, force: global.force)
    }
}

/// `filter` commands and `-batch`, the commands an operator and a script run most, are
/// read without ArgumentParser: its reflection over the command tree costs about 7 ms
/// of every process (a third of a rule add; bench suite cli, section cli-breakdown).
/// Their words are FlowRules' grammar anyway; only the global flags are read here, and
/// anything else (help, an unknown flag) goes the usual way. Root's go to the command
/// server when one runs (`CommandServer`).
enum FilterFastPath {
    enum Invocation {
        case filter(words: [String], options: OutputOptions)
        case batch(path: String, force: Bool, options: OutputOptions)
    }

    /// The command `arguments` name, or nil for ArgumentParser.
    static func invocation(_ arguments: [String]) -> Invocation? {
        var options = OutputOptions()
        var force = false
        var rest = arguments[...]
        while let word = rest.first, word.hasPrefix("-") {
            switch word {
            case "-s", "-stats", "--stats": options.stats = true
            case "-j", "-json", "--json": options.json = true
            case "-p", "-pretty", "--pretty": options.pretty = true
            case "-f", "-force", "--force": force = true
            case "-batch", "--batch":
                guard rest.count == 2 else { return nil }
                return .batch(path: rest.last!, force: force, options: options)
            default: return nil
            }
            rest = rest.dropFirst()
        }
        guard rest.first == "filter", rest.count > 1,
              !["help", "--help", "-h"].contains(rest[rest.startIndex + 1])
        else { return nil }
        return .filter(words: Array(rest), options: options)
    }

    static func run(_ invocation: Invocation) throws {
        switch invocation {
        case .filter(let words, let options):
            try FilterRunner(options: options).run(words)
        case .batch(let path, let force, let options):
            try FilterRunner(options: options).runBatch(path: path, force: force)
        }
    }

    /// Runs `invocation` and returns its exit status, its failure reported the one way.
    static func status(running invocation: Invocation) -> Int32 {
        do {
            try run(invocation)
            return 0
        } catch let status as ExitCode {
            // A status without a message (a forced batch's, printed already).
            return status.rawValue
        } catch {
            return report(CommandError(error))
        }
    }
}

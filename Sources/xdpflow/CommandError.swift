import ArgumentParser
import BPFKernel
import FlowOffload
import FlowRules
import FoundationEssentials
import Glibc
import Packets

/// Every way a subcommand fails, as iproute2 reports it: one `Error: ...` line on standard
/// error (`fail(_:)`) and tc's exit status on this machine (docs/runtime.md, "Exit status"):
///
/// | status | cause |
/// |---|---|
/// | 1 | the command could not be read: an unknown word, a missing value, a usage error, a file that cannot be read, a device or namespace that does not exist (tc's `Cannot find device`) |
/// | 1 | `check` or `trace --check` found a difference (the output says which) |
/// | 2 | the command was read and refused: by the rule set (the rule exists, no such rule), by XDP (a rule it cannot run), by the kernel (the verifier, EPERM), or by the system (the state directory) |
///
/// Subcommands throw these, or any other error, which is a refusal (`refused`); a
/// `ValidationError` thrown while running is a usage error.
enum CommandError: Error, CustomStringConvertible {
    /// The command line cannot be read (a missing `dev`, a word out of place): exit 1.
    case usage(String)
    /// A command, or a rule file's commands, that cannot be read (a `ParseError`, a
    /// `BatchError` of the grammar), or a capture that cannot be read: exit 1.
    case unreadable(any Error)
    /// The command was read and refused: the rule set, XDP (a rule it cannot run), the
    /// kernel, the state directory: exit 2; but 1 when it names a device or namespace
    /// that does not exist, as tc's "Cannot find device".
    case refused(any Error)
    /// A `-batch` file that cannot be read from disk: exit 1.
    case unreadableFile(path: String, any Error)
    /// A capture whose frames are not Ethernet: exit 1.
    case notEthernet(path: String, linkType: UInt32)
    /// `trace --check`: frames on which the program and the reference classifier
    /// disagree, each with its differences: exit 1.
    case differences([String], frames: Int)
    /// `error` at a place, named first: a file, a line of it, a frame. Its status.
    indirect case at(String, CommandError)

    /// The exit status.
    var status: Int32 {
        switch self {
        case .usage, .unreadable, .unreadableFile, .notEthernet, .differences: 1
        case .refused(let error): Self.namesNothing(error) ? 1 : 2
        case .at(_, let error): error.status
        }
    }

    /// A device or namespace that does not exist: tc and ip read the name with the
    /// command ("Cannot find device"), so its status is a command's that cannot be read.
    static func namesNothing(_ error: any Error) -> Bool {
        switch error {
        case BPFError.noSuchDevice, OffloadError.kernel(.noSuchDevice), OffloadError.noSuchNamespace,
             OffloadError.missingTarget:
            true
        case let error as BatchError:
            if case .store(let inner) = error.reason { namesNothing(inner) } else { false }
        default:
            false
        }
    }

    var description: String {
        switch self {
        case .usage(let message): message
        case .unreadable(let error), .refused(let error): "\(error)"
        case .unreadableFile(let path, let error): "cannot read batch file \(path): \(error)"
        case .notEthernet(let path, let linkType):
            "\(path): link type \(linkType), not Ethernet (1); capture on a device, not 'any'"
        case .differences(let differences, let frames):
            "\(differences.count) of \(frames) frames differ from the reference classifier:\n"
                + differences.map { "  " + $0 }.joined(separator: "\n")
        case .at(let place, let error): "\(place): \(error)"
        }
    }

    /// `error` as the command line reports it: a `CommandError` as it is, a
    /// `ValidationError` (a subcommand's own reading of its words) a usage error, any
    /// other error a refusal.
    init(_ error: any Error) {
        switch error {
        case let error as CommandError: self = error
        case let error as ValidationError: self = .usage(error.message)
        default: self = .refused(error)
        }
    }
}

/// A command's notes (`FilterCommand.notes`) as `Warning: ...` lines on standard error,
/// each after `place` (a file's line) when there is one.
func warn(_ notes: [ParseError], at place: String? = nil) {
    guard !notes.isEmpty else { return }
    let prefix = place.map { "Warning: \($0): " } ?? "Warning: "
    printError(notes.map { prefix + "\($0)\n" }.joined())
}

/// The one way a subcommand's failure reaches the operator: `Error: DESCRIPTION` on
/// standard error, and the exit status of its case.
func fail(_ error: CommandError) -> Never {
    exit(report(error))
}

/// Reports `error` as `fail` does, for a caller that goes on; returns its exit status.
func report(_ error: CommandError) -> Int32 {
    printError("Error: \(error)\n")
    return error.status
}

/// Writes `text` to standard error, whole (FileHandle is Foundation proper, which
/// xdpflow does not link: FoundationEssentials and no ICU start faster).
func printError(_ text: String) {
    var text = text
    // Nowhere left to say that standard error failed.
    text.withUTF8 { try? FileBytes.write(UnsafeRawBufferPointer($0), to: STDERR_FILENO) }
}

import ArgumentParser
import Foundation

/// Every way a subcommand fails, as iproute2 reports it: one `Error: ...` line on standard
/// error (`fail(_:)`), exit status 2 for a command that cannot be read, 1 for one that
/// could be read but failed. Subcommands throw these, or any other error, which is a
/// failure (`failed`); a `ValidationError` thrown while running is a usage error.
enum CommandError: Error, CustomStringConvertible {
    /// The command line cannot be read (a missing `dev`, a word out of place): exit 2.
    case usage(String)
    /// A command, or a rule file's commands, that cannot be read (a `ParseError`, a
    /// `BatchError` of the grammar): exit 2.
    case unreadable(any Error)
    /// The rules `compile` and `trace` read cannot be compiled (a rule set error, a rule
    /// XDP cannot run): exit 2, as rules that cannot be read.
    case uncompilable(any Error)
    /// The command could be read but failed (the kernel, the state, a device): exit 1.
    case failed(any Error)
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
        case .usage, .unreadable, .uncompilable: 2
        case .failed, .unreadableFile, .notEthernet, .differences: 1
        case .at(_, let error): error.status
        }
    }

    var description: String {
        switch self {
        case .usage(let message): message
        case .unreadable(let error), .uncompilable(let error), .failed(let error): "\(error)"
        case .unreadableFile(let path, let error): "cannot read batch file \(path): \(error.localizedDescription)"
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
    /// other error a failure.
    init(_ error: any Error) {
        switch error {
        case let error as CommandError: self = error
        case let error as ValidationError: self = .usage(error.message)
        default: self = .failed(error)
        }
    }
}

/// The one way a subcommand's failure reaches the operator: `Error: DESCRIPTION` on
/// standard error, and the exit status of its case.
func fail(_ error: CommandError) -> Never {
    FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
    exit(error.status)
}

import BPFKernel
import Foundation

/// Whether this process can use BPF and XDP, for tests that need the kernel.
///
/// Elsewhere such tests skip with the reason; under `CI=true` they always run, so a
/// missing capability fails the run instead of hiding behind a skip.
public enum Kernel {
    public static let isCI = ProcessInfo.processInfo.environment["CI"] == "true"

    /// Why kernel tests cannot run here, or nil when they can.
    public static let unavailableReason: String? = {
        if isCI { return nil }
        guard geteuid() == 0 else { return "kernel tests need root (BPF, XDP, netns)" }
        do {
            _ = try Map(MapSpec(name: "probe", type: .array, keySize: 4, valueSize: 4, maxEntries: 1))
        } catch {
            return "BPF is not available: \(error)"
        }
        return nil
    }()

    public static var isAvailable: Bool { unavailableReason == nil }
}

/// What a command printed and how it exited.
public struct CommandResult: Sendable, Equatable {
    public var status: Int32
    public var output: String
    public var errors: String

    public init(status: Int32, output: String, errors: String) {
        self.status = status
        self.output = output
        self.errors = errors
    }
}

/// Runs a command (a name looked up in PATH, or a path) to its end, with `environment`
/// when given. Its streams go to files, not pipes, so neither can fill up and stall it
/// while the other is read.
public func execute(_ arguments: [String], environment: [String: String]? = nil) throws -> CommandResult {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("xft-run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let output = directory.appendingPathComponent("stdout"), errors = directory.appendingPathComponent("stderr")
    for file in [output, errors] { _ = FileManager.default.createFile(atPath: file.path, contents: nil) }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    if let environment { process.environment = environment }
    process.standardOutput = try FileHandle(forWritingTo: output)
    process.standardError = try FileHandle(forWritingTo: errors)
    try process.run()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus, output: try String(contentsOf: output, encoding: .utf8),
                         errors: try String(contentsOf: errors, encoding: .utf8))
}

/// Runs a command and returns its standard output; throws with its standard error.
@discardableResult
public func run(_ arguments: [String]) throws -> String {
    let result = try execute(arguments)
    guard result.status == 0 else {
        throw CommandFailed(command: arguments.joined(separator: " "), status: result.status, errors: result.errors)
    }
    return result.output
}

public struct CommandFailed: Error, CustomStringConvertible {
    public let command: String
    public let status: Int32
    public let errors: String
    public var description: String { "\(command) exited \(status): \(errors)" }
}

/// Polls `value` until it equals `expected` or `timeout` passes, and returns the last
/// value read. Frames sent to a veth are received asynchronously (NAPI), so a counter
/// read right after sending may not have seen them all yet.
public func settled<T: Equatable>(at expected: T, timeout: Duration = .seconds(2),
                                  _ value: () throws -> T) throws -> T {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    var current = try value()
    while current != expected && clock.now < deadline {
        Thread.sleep(forTimeInterval: 0.01)
        current = try value()
    }
    return current
}

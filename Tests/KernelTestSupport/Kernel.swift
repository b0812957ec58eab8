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

/// Runs a command and returns its standard output; throws with its standard error.
@discardableResult
public func run(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let output = Pipe(), errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let out = output.fileHandleForReading.readDataToEndOfFile()
    let err = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CommandFailed(command: arguments.joined(separator: " "), status: process.terminationStatus,
                            errors: String(decoding: err, as: UTF8.self))
    }
    return String(decoding: out, as: UTF8.self)
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

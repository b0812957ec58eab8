import Foundation
import Synchronization

/// Runs the tools the benchmarks drive (ip, ethtool, nft, tc, xdp-filter, xdpflow).
/// Output goes to files, not pipes, so a long listing (nft's 10,000 rules) cannot fill a
/// pipe and stall the tool while the other stream is read.
enum Shell {
    /// The xdpflow binary beside xdpflow-bench (a release build builds both).
    static func xdpflowBinary() throws -> String {
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let path = me.deletingLastPathComponent().appendingPathComponent("xdpflow").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw BenchError("no xdpflow beside xdpflow-bench (\(path)): swift build -c release builds both")
        }
        return path
    }

    /// Runs `arguments` to its end; throws with its standard error when it fails, unless
    /// its exit status is in `accepting`.
    @discardableResult
    static func run(_ arguments: [String], environment: [String: String] = [:],
                    accepting: Set<Int32> = [0]) throws -> String {
        try start(arguments, environment: environment).wait(accepting: accepting)
    }

    /// Runs `arguments` and returns whether it succeeded, for cleanup steps that may
    /// find nothing to remove.
    @discardableResult
    static func attempt(_ arguments: [String], environment: [String: String] = [:]) -> Bool {
        (try? run(arguments, environment: environment)) != nil
    }

    /// Starts `arguments` in the background (`PATH` lookup, the environment plus `environment`).
    /// Once `stop()` has run, the main thread starts nothing more.
    static func start(_ arguments: [String], environment: [String: String] = [:]) throws -> Running {
        if Thread.isMainThread, children.withLock({ $0.stopping }) {
            throw BenchError("stopped: \(arguments.joined(separator: " ")) not run")
        }
        return try Running(arguments, environment: environment)
    }

    /// The commands running now, so that a signal can end them before the lab is taken down
    /// (one still writing state there would race with the removal).
    private static let children = Mutex(Children())

    private struct Children {
        var stopping = false
        var running: [ObjectIdentifier: (process: Process, directory: URL)] = [:]
    }

    /// Ends the running commands and waits for them; the main thread starts no more.
    static func stop() {
        let running = children.withLock { children in
            children.stopping = true
            return Array(children.running.values)
        }
        for (process, _) in running where process.isRunning { process.terminate() }
        for (process, directory) in running {
            process.waitUntilExit()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    final class Running {
        let command: String
        private let process = Process()
        private let directory: URL

        fileprivate init(_ arguments: [String], environment: [String: String]) throws {
            command = arguments.joined(separator: " ")
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("xfb-run-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
            process.standardOutput = try file("stdout")
            process.standardError = try file("stderr")
            do {
                try process.run()
                Shell.children.withLock { [process, directory] in
                    $0.running[ObjectIdentifier(process)] = (process, directory)
                }
            } catch {
                try? FileManager.default.removeItem(at: directory)
                throw error
            }
        }

        private func file(_ name: String) throws -> FileHandle {
            let path = directory.appendingPathComponent(name).path
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            return try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        }

        var pid: Int32 { process.processIdentifier }

        /// What it wrote to standard error so far (a tool says it is ready there).
        func errorsSoFar() -> String { read("stderr") }

        private func read(_ name: String) -> String {
            (try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)) ?? ""
        }

        /// SIGINT, as a capture tool is stopped at a terminal.
        func interrupt() { process.interrupt() }

        /// Waits for the command and returns its standard output.
        func wait(accepting: Set<Int32> = [0]) throws -> String {
            try finish(accepting: accepting).output
        }

        /// Waits for the command and returns both its streams (capture tools count on
        /// standard error).
        func finish(accepting: Set<Int32> = [0]) throws -> (output: String, errors: String) {
            process.waitUntilExit()
            Shell.children.withLock { _ = $0.running.removeValue(forKey: ObjectIdentifier(process)) }
            defer { try? FileManager.default.removeItem(at: directory) }
            guard accepting.contains(process.terminationStatus) else {
                throw BenchError("\(command) exited \(process.terminationStatus): \(read("stderr"))")
            }
            return (read("stdout"), read("stderr"))
        }
    }
}

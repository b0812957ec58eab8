import Glibc

/// Other programs (`nft`), run without a shell.
enum Subprocess {
    struct Failure: Error, CustomStringConvertible {
        var command: [String]
        var status: Int32
        var message: String
        var description: String {
            "\(command.joined(separator: " ")) exited with \(status)"
                + (message.isEmpty ? "" : ": " + message.split(separator: "\n").joined(separator: "; "))
        }
    }

    /// A program that runs, its standard output read through `output`; its standard
    /// error through `errors`, or ours when not asked for; our environment, with
    /// `environment`'s variables set.
    final class Running {
        let command: [String]
        let pid: pid_t
        let output: Int32
        let errors: Int32?
        private var exitStatus: Int32?

        init(_ command: [String], capturingErrors: Bool, environment: [String: String] = [:]) throws {
            self.command = command
            var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1]
            guard pipe(&out) == 0, !capturingErrors || pipe(&err) == 0 else {
                let message = String(cString: strerror(errno))
                for descriptor in out + err where descriptor >= 0 { close(descriptor) }
                throw Failure(command: command, status: -1, message: message)
            }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO)
            if capturingErrors { posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO) }
            // The child gets the write ends as its streams and nothing else of ours.
            for descriptor in out + err where descriptor >= 0 { _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC) }
            let argv = command.map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            // Ours as it is, unless variables are set: then a copy without their old values.
            var envp: [UnsafeMutablePointer<CChar>?] = []
            if !environment.isEmpty {
                var inherited: [String] = []
                var variable = environ
                while let entry = variable.pointee {
                    let text = String(cString: entry)
                    if environment[String(text.prefix { $0 != "=" })] == nil { inherited.append(text) }
                    variable += 1
                }
                envp = (inherited + environment.map { "\($0)=\($1)" }).map { strdup($0) } + [nil]
            }
            defer { envp.forEach { free($0) } }
            var pid: pid_t = 0
            let spawned = envp.isEmpty ? posix_spawnp(&pid, command[0], &actions, nil, argv, environ)
                : posix_spawnp(&pid, command[0], &actions, nil, argv, envp)
            close(out[1])
            if capturingErrors { close(err[1]) }
            guard spawned == 0 else {
                close(out[0])
                if capturingErrors { close(err[0]) }
                throw Failure(command: command, status: -1, message: String(cString: strerror(spawned)))
            }
            self.pid = pid
            output = out[0]
            errors = capturingErrors ? err[0] : nil
        }

        /// Waits for the program's end: its exit status, or 128 + the signal.
        func wait() -> Int32 {
            if let exitStatus { return exitStatus }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0, errno == EINTR {}
            let exited = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            exitStatus = exited
            return exited
        }

        func terminate() {
            guard exitStatus == nil else { return }
            kill(pid, SIGTERM)
            _ = wait()
        }

        deinit {
            terminate()
            close(output)
            if let errors { close(errors) }
        }
    }

    /// Runs `command` to its end and returns its standard output.
    static func output(of command: [String]) throws -> [UInt8] {
        var output: [UInt8] = []
        try run(command) { output += $0 }
        return output
    }

    /// Runs `command` to its end, handing its standard output to `take` as it comes.
    /// A failed program's status is the error, before any `take` threw (which then
    /// sees no more, while the program is read to its end).
    static func run(_ command: [String], environment: [String: String] = [:],
                    output take: (ArraySlice<UInt8>) throws -> Void) throws {
        let running = try Running(command, capturingErrors: true, environment: environment)
        // Both pipes at once: a full one would stop the program.
        var errors: [UInt8] = []
        var refusal: (any Error)?
        var open = [running.output, running.errors!]
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !open.isEmpty {
            var polled = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&polled, nfds_t(polled.count), -1) >= 0 else {
                if errno == EINTR { continue }
                break
            }
            for entry in polled where entry.revents != 0 {
                let count = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    if entry.fd != running.output {
                        errors += buffer[..<count]
                    } else if refusal == nil {
                        do { try take(buffer[..<count]) } catch { refusal = error }
                    }
                } else if count == 0 || errno != EINTR {
                    open.removeAll { $0 == entry.fd }
                }
            }
        }
        let status = running.wait()
        guard status == 0 else {
            throw Failure(command: command, status: status, message: String(decoding: errors, as: UTF8.self))
        }
        if let refusal { throw refusal }
    }
}

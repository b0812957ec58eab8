import FlowOffload
import FoundationEssentials
import Glibc
import Packets

/// Root's `filter` commands and batches, run by a process that stays: the command
/// server. A command that starts a process pays for it in every run (the Swift runtime's
/// first use of each type, the state on disk read and planned again: 7 ms with 10 rules,
/// seconds with 100,000), while what it changes is a few map writes and one synced journal
/// record. The server keeps each device's stored state and plan from one change to the
/// next (`Offload.keepsState`; no kernel object: those are opened from their pins by each
/// command), so a command costs the same with 10 rules or 100,000.
///
/// The first such command runs itself and then starts the server; later ones hand it
/// their words, standard input, output and error and working directory (SCM_RIGHTS) and
/// exit with the status it sends back. It runs one command at a time, under the same lock,
/// journal and checks as any other, and exits after `idleSeconds` without one, or once its
/// state directory is gone. It serves one state directory, pin root, mount namespace, user
/// and binary, on an abstract unix socket (so per network namespace too, and gone with
/// the process): an upgraded binary or other settings never reach it. Anything that fails
/// to reach it runs the command here instead; `XDPFLOW_COMMAND_SERVER=off` always does.
enum CommandServer {
    static let idleSeconds = 30
    /// The status a server sends for a command it does not run: the client runs it.
    static let declined = Int32.min
    static let argument = "--command-server"

    static var enabled: Bool {
        geteuid() == 0 && getenv("XDPFLOW_COMMAND_SERVER").map { String(cString: $0) } != "off"
    }

    // MARK: - The client

    /// Runs `arguments` in the server and returns its exit status; nil when no server
    /// took the command (the caller runs it itself).
    static func forward(_ arguments: [String]) -> Int32? {
        guard enabled, let address = Address.current() else { return nil }
        let socket = Glibc.socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { return nil }
        defer { close(socket) }
        guard address.withSockaddr({ connect(socket, $0, $1) }) == 0 else { return nil }
        let directory = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { return nil }
        defer { close(directory) }
        var words: [UInt8] = []
        for (index, argument) in arguments.enumerated() {
            if index > 0 { words.append(0) }
            words.append(contentsOf: argument.utf8)
        }
        guard send(words, descriptors: [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO, directory], on: socket) else {
            return nil
        }
        var status: Int32 = 0
        let received = withUnsafeMutableBytes(of: &status) { recv(socket, $0.baseAddress, $0.count, 0) }
        guard received == MemoryLayout<Int32>.size else {
            // It took the command and stopped before it answered (killed): the command may
            // have been carried or not, and the next one finishes or rolls it back.
            printError("Error: the xdpflow command server stopped before the command finished; "
                + "the next command finishes or rolls back what it did (xdpflow check)\n")
            return 2
        }
        return status == declined ? nil : status
    }

    /// After root ran a command here: starts a server for the next ones, unless one runs.
    static func startIfUseful() {
        // Its own path rather than /proc/self/exe, which would name the process "exe".
        guard enabled, let address = Address.current(), let binary = Address.link("/proc/self/exe") else { return }
        // The server's settings are the client's, as absolute paths (`Address`).
        setenv("XDPFLOW_STATE_DIR", address.stateDirectory, 1)
        setenv("XDPFLOW_PIN_DIR", address.pinRoot, 1)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Nothing of the client's: a caller reading its output to the end must not wait
        // for the server.
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDWR, 0)
        posix_spawn_file_actions_adddup2(&actions, STDIN_FILENO, STDOUT_FILENO)
        posix_spawn_file_actions_adddup2(&actions, STDIN_FILENO, STDERR_FILENO)
        closeOnExec()
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own session, out of the terminal's reach, with no signal blocked or ignored.
        var signals = sigset_t()
        sigemptyset(&signals)
        posix_spawnattr_setsigmask(&attributes, &signals)
        sigfillset(&signals)
        posix_spawnattr_setsigdefault(&attributes, &signals)
        posix_spawnattr_setflags(&attributes, Int16(spawnSetSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ["xdpflow", argument].map { (word: String) in strdup(word) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        _ = posix_spawn(&pid, binary, &actions, &attributes, argv, environ)
    }

    /// glibc's POSIX_SPAWN_SETSID, which Swift does not see (_GNU_SOURCE).
    private static let spawnSetSID: Int32 = 0x80

    /// Marks every descriptor past standard error close-on-exec (glibc's
    /// posix_spawn_file_actions_addclosefrom_np, which Swift does not see).
    private static func closeOnExec() {
        guard let directory = opendir("/proc/self/fd") else { return }
        defer { closedir(directory) }
        let own = dirfd(directory)
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let descriptor = Int32(name), descriptor > 2, descriptor != own {
                _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
            }
        }
    }

    // MARK: - The server

    /// Serves commands until idle; exits at once when another server holds the address.
    static func serve() -> Never {
        guard let address = Address.current() else { exit(1) }
        let listener = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard listener >= 0, address.withSockaddr({ bind(listener, $0, $1) }) == 0, listen(listener, 64) == 0 else {
            exit(0)
        }
        signal(SIGPIPE, SIG_IGN)
        chdir("/")
        // As ps and top name it (the kernel keeps 15 bytes).
        let comm = open("/proc/self/comm", O_WRONLY | O_CLOEXEC)
        if comm >= 0 {
            _ = try? FileBytes.write(Array("xdpflow-server".utf8), to: comm)
            close(comm)
        }
        Offload.keepsState = true
        var idle = 0
        while idle < idleSeconds * 1000 {
            var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 1000) > 0 else {
                idle += 1000
                if access(address.stateDirectory, F_OK) != 0 { exit(0) }
                continue
            }
            idle = 0
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            serve(client)
            close(client)
        }
        exit(0)
    }

    /// One command: run with the client's standard streams and directory, its status sent
    /// back. Another user's, or one whose message cannot be read, is declined.
    private static func serve(_ client: Int32) {
        var credentials = PeerCredentials()
        var length = socklen_t(MemoryLayout<PeerCredentials>.size)
        let trusted = getsockopt(client, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0
            && credentials.uid == geteuid()
        let (words, descriptors) = (trusted ? receive(on: client) : nil) ?? ([], [])
        defer { descriptors.forEach { close($0) } }
        let arguments = String(decoding: words, as: UTF8.self)
            .split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
        var status = declined
        if descriptors.count == 4, let invocation = FilterFastPath.invocation(arguments) {
            for (stream, descriptor) in descriptors.prefix(3).enumerated() { dup2(descriptor, Int32(stream)) }
            fchdir(descriptors[3])
            status = FilterFastPath.status(running: invocation)
            // Out before the streams go back (glibc drops what a broken stream refused).
            fflush(nil)
            let null = open("/dev/null", O_RDWR)
            for stream in 0..<3 { dup2(null, Int32(stream)) }
            close(null)
            chdir("/")
        }
        _ = withUnsafeBytes(of: status) { Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// `struct ucred`, which Swift does not see (_GNU_SOURCE).
    private struct PeerCredentials {
        var pid: pid_t = 0
        var uid: uid_t = 0
        var gid: gid_t = 0
    }

    // MARK: - Messages

    /// The size of a control message header (`struct cmsghdr`), to which its data is aligned.
    private static let headerSize = MemoryLayout<cmsghdr>.stride
    private static let maximumDescriptors = 4

    private static func controlSize(_ count: Int) -> Int {
        headerSize + (count * MemoryLayout<Int32>.size + 7) & ~7
    }

    /// A message over `payload` (one iovec) and `control`, for sendmsg and recvmsg.
    private static func withMessage<T>(_ payload: inout [UInt8], _ control: inout [UInt8],
                                       _ body: (inout msghdr) -> T) -> T {
        payload.withUnsafeMutableBytes { payload in
            control.withUnsafeMutableBytes { control in
                var vector = iovec(iov_base: payload.baseAddress, iov_len: payload.count)
                return withUnsafeMutablePointer(to: &vector) { vector in
                    var message = msghdr(msg_name: nil, msg_namelen: 0, msg_iov: vector, msg_iovlen: 1,
                                         msg_control: control.baseAddress, msg_controllen: control.count, msg_flags: 0)
                    return body(&message)
                }
            }
        }
    }

    /// Sends `bytes` with `descriptors` attached, in one message.
    private static func send(_ bytes: [UInt8], descriptors: [Int32], on socket: Int32) -> Bool {
        var control = [UInt8](repeating: 0, count: controlSize(descriptors.count))
        control.withUnsafeMutableBytes { buffer in
            let header = buffer.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
            header.pointee.cmsg_len = headerSize + descriptors.count * MemoryLayout<Int32>.size
            header.pointee.cmsg_level = SOL_SOCKET
            header.pointee.cmsg_type = Int32(SCM_RIGHTS)
            for (index, descriptor) in descriptors.enumerated() {
                buffer.storeBytes(of: descriptor, toByteOffset: headerSize + index * 4, as: Int32.self)
            }
        }
        var payload = bytes
        return withMessage(&payload, &control) { sendmsg(socket, &$0, 0) == bytes.count }
    }

    /// A message and the descriptors attached to it.
    private static func receive(on socket: Int32) -> ([UInt8], [Int32])? {
        var payload = [UInt8](repeating: 0, count: 64 << 10)
        var control = [UInt8](repeating: 0, count: controlSize(maximumDescriptors))
        let received = withMessage(&payload, &control) { message in
            (recvmsg(socket, &message, Int32(MSG_CMSG_CLOEXEC)), message.msg_controllen, message.msg_flags)
        }
        guard received.0 >= 0 else { return nil }
        var descriptors: [Int32] = []
        control.withUnsafeBytes { buffer in
            guard received.1 >= headerSize else { return }
            let header = buffer.load(as: cmsghdr.self)
            guard header.cmsg_level == SOL_SOCKET, header.cmsg_type == Int32(SCM_RIGHTS) else { return }
            let count = (Int(header.cmsg_len) - headerSize) / MemoryLayout<Int32>.size
            for index in 0..<min(count, maximumDescriptors) {
                descriptors.append(buffer.load(fromByteOffset: headerSize + index * 4, as: Int32.self))
            }
        }
        // A cut message (MSG_TRUNC, MSG_CTRUNC) is not run.
        guard received.2 & Int32(MSG_TRUNC | MSG_CTRUNC) == 0 else {
            descriptors.forEach { close($0) }
            return nil
        }
        return (Array(payload.prefix(received.0)), descriptors)
    }

    // MARK: - The address

    /// The abstract socket of the server for this process's settings: its state directory
    /// and pin root (absolute), mount namespace, user and binary, hashed into the name.
    struct Address {
        var stateDirectory: String
        var pinRoot: String
        var name: [UInt8]

        /// Runs in every client, so it stays off the Swift runtime's slow paths: generic
        /// code the stdlib does not specialise (`joined`, a `some Sequence` parameter)
        /// looks its types up by name at first use, a scan of every conformance in the
        /// binary (a third of a served command's CPU).
        static func current() -> Address? {
            guard let cwd = getcwd(nil, 0) else { return nil }
            defer { free(cwd) }
            func absolute(_ path: String) -> String { path.hasPrefix("/") ? path : String(cString: cwd) + "/" + path }
            var binary = stat()
            guard stat("/proc/self/exe", &binary) == 0, let mounts = link("/proc/self/ns/mnt") else { return nil }
            let state = absolute(StateDirectory.default.path.string)
            let pins = absolute(Offload.defaultPinRoot.string)
            let key = [state, pins, mounts, String(geteuid()), String(binary.st_dev), String(binary.st_ino),
                       String(binary.st_size), String(binary.st_mtim.tv_sec), String(binary.st_mtim.tv_nsec)]
            // A name, not a secret (the server checks who connects).
            var hash = FNV1a()
            for part in key {
                for byte in part.utf8 { hash.mix(byte) }
                hash.mix(0)
            }
            return Address(stateDirectory: state, pinRoot: pins,
                           name: [0] + Array("xdpflow-server-\(String(hash.value, radix: 16).leftPadded(to: 16))".utf8))
        }

        static func link(_ path: String) -> String? {
            var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
            let count = readlink(path, &buffer, buffer.count - 1)
            return count > 0 ? String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
        }

        func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { path in
                for (index, byte) in name.prefix(path.count).enumerated() { path[index] = byte }
            }
            let length = MemoryLayout<sa_family_t>.size + min(name.count, MemoryLayout.size(ofValue: address.sun_path))
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(length)) }
            }
        }
    }
}

import CLibBPF
import Foundation

/// Code that runs inside a named network namespace (`ip netns add NAME`) without a
/// helper process: a thread of its own enters the namespace with setns, which changes
/// that thread's namespace only. Sockets it opens and devices it looks up belong to the
/// namespace, and stay usable from any thread afterwards; BPF test runs it makes see the
/// namespace's devices (the traffic generator sends out of a peer this way).
public enum NetworkNamespace {
    /// Runs `body` in the namespace `name` and waits for it.
    public static func run<T>(in name: String, _ body: @escaping () throws -> T) throws -> T {
        try start(in: name, body).join()
    }

    /// Starts `body` in the namespace `name` on a thread of its own; `join` waits for it.
    public static func start<T>(in name: String, _ body: @escaping () throws -> T) -> Running<T> {
        let running = Running<T>()
        let work = UncheckedBox(body)
        let thread = Thread {
            running.finish(Result { try enter(name); return try work.value() })
        }
        thread.stackSize = 8 << 20
        thread.start()
        return running
    }

    /// A thread started in a namespace.
    public final class Running<T>: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var result: Result<T, any Error>?

        fileprivate func finish(_ result: Result<T, any Error>) {
            self.result = result
            done.signal()
        }

        /// Waits for the thread and returns what its body returned (or throws what it threw).
        public func join() throws -> T {
            done.wait()
            done.signal()   // later joins return at once
            return try result!.get()
        }
    }

    /// Moves the calling thread into the namespace `name`.
    private static func enter(_ name: String) throws {
        let fd = open("/var/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw NamespaceError("cannot open namespace \(name): errno \(errno)") }
        defer { close(fd) }
        guard setns(fd, XDPFLOW_CLONE_NEWNET) == 0 else {
            throw NamespaceError("cannot enter namespace \(name): errno \(errno)")
        }
    }
}

public struct NamespaceError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Hands a value to another thread when the code guarantees no concurrent use.
private struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

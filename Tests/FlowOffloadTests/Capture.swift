import Foundation
import KernelTestSupport

/// The frames a device receives, as its kernel stack sees them: an AF_PACKET socket
/// bound to the device (opened inside the device's namespace when given one), read by a
/// thread of its own from the moment of creation until `stop` or deinit.
///
/// What an AF_PACKET socket sees is what XDP passed (or, on a redirect target's peer,
/// what arrived): frames an XDP program dropped never reach it. VLAN tags the kernel
/// moved into metadata are put back where they were on the wire, as libpcap does.
final class Capture {
    struct Frame: Sendable {
        var bytes: [UInt8]
        /// When the stack received it: CLOCK_REALTIME nanoseconds (SO_TIMESTAMPNS).
        var time: UInt64
    }

    let device: String
    private let socket: Int32
    private let reader: Reader

    init(device: String, namespace: String? = nil) throws {
        self.device = device
        let open = { try Capture.openSocket(bound: device) }
        socket = try namespace.map { try NetworkNamespace.run(in: $0, open) } ?? open()
        reader = Reader(socket: socket)
        Thread { [reader] in reader.readUntilStopped() }.start()
    }

    deinit {
        reader.stop()
        close(socket)
    }

    /// All frames received so far.
    var frames: [Frame] { reader.frames }

    /// Frames received so far that satisfy `isWanted` (tests pick their own frames by
    /// addresses, so that anything else the kernel sends does not count).
    func frames(where isWanted: ([UInt8]) -> Bool) -> [Frame] { frames.filter { isWanted($0.bytes) } }

    /// Frames the socket had to drop for want of buffer space since the last call: a
    /// capture that dropped frames proves nothing about frames that did not arrive.
    func drops() throws -> UInt32 { try Self.drops(socket, device) }

    /// Stops reading; the frames read so far stay.
    func stop() { reader.stop() }

    private static func drops(_ socket: Int32, _ device: String) throws -> UInt32 {
        var stats = (packets: UInt32(0), drops: UInt32(0))   // struct tpacket_stats
        var length = socklen_t(MemoryLayout.size(ofValue: stats))
        guard getsockopt(socket, PacketSocket.level, PacketSocket.statistics, &stats, &length) == 0 else {
            throw CaptureError("PACKET_STATISTICS on \(device): errno \(errno)")
        }
        return stats.drops
    }

    // MARK: - The socket

    private static func openSocket(bound device: String) throws -> Int32 {
        // Protocol 0 receives nothing until bind names the device and ETH_P_ALL, so no
        // frame of another device gets in first.
        let fd = Glibc.socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CaptureError("socket(AF_PACKET): errno \(errno)") }
        do {
            let index = if_nametoindex(device)
            guard index != 0 else { throw CaptureError("no device \(device) to capture on") }
            try setOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20, "SO_RCVBUFFORCE")
            try setOption(fd, SOL_SOCKET, SO_TIMESTAMPNS, 1, "SO_TIMESTAMPNS")
            try setOption(fd, PacketSocket.level, PacketSocket.auxiliaryData, 1, "PACKET_AUXDATA")
            try setOption(fd, PacketSocket.level, PacketSocket.ignoreOutgoing, 1, "PACKET_IGNORE_OUTGOING")
            var address = [UInt8](repeating: 0, count: 20)   // struct sockaddr_ll
            address.withUnsafeMutableBytes { raw in
                raw.storeBytes(of: UInt16(AF_PACKET), toByteOffset: 0, as: UInt16.self)
                raw.storeBytes(of: PacketSocket.allProtocols.bigEndian, toByteOffset: 2, as: UInt16.self)
                raw.storeBytes(of: Int32(index), toByteOffset: 4, as: Int32.self)
            }
            let bound = address.withUnsafeBytes {
                bind(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
            }
            guard bound == 0 else { throw CaptureError("bind to \(device): errno \(errno)") }
            _ = try drops(fd, device)   // counts from here on
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    private static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ label: String) throws {
        var value = value
        guard setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw CaptureError("\(label): errno \(errno)")
        }
    }

    /// Reads the socket on a thread of its own into `frames`.
    private final class Reader: @unchecked Sendable {
        let socket: Int32
        private let lock = NSLock()
        private var received: [Frame] = []
        private var stopping = false
        private let stopped = DispatchSemaphore(value: 0)

        init(socket: Int32) { self.socket = socket }

        var frames: [Frame] { lock.withLock { received } }

        /// Asks the thread to stop and waits until it has read what had arrived.
        func stop() {
            let wait = lock.withLock {
                defer { stopping = true }
                return !stopping
            }
            if wait { stopped.wait() }
        }

        func readUntilStopped() {
            var buffer = [UInt8](repeating: 0, count: 4096)
            var control = [UInt8](repeating: 0, count: 256)
            var batch: [Frame] = []
            while true {
                var pending = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
                if poll(&pending, 1, 50) > 0 {
                    // Frames come in bursts: take what is there before touching the lock.
                    while batch.count < 1024, let frame = receive(&buffer, &control) { batch.append(frame) }
                    lock.withLock { received += batch }
                    batch.removeAll(keepingCapacity: true)
                    continue
                }
                if lock.withLock({ stopping }) { break }
            }
            // Whatever arrived before stop was asked for is read first.
            while let frame = receive(&buffer, &control) { batch.append(frame) }
            lock.withLock { received += batch }
            stopped.signal()
        }

        /// One frame, or nil when none is waiting.
        private func receive(_ buffer: inout [UInt8], _ control: inout [UInt8]) -> Frame? {
            buffer.withUnsafeMutableBytes { data in
                control.withUnsafeMutableBytes { control in
                    var vector = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    var message = msghdr()
                    message.msg_iovlen = 1
                    message.msg_control = control.baseAddress
                    message.msg_controllen = control.count
                    let length = withUnsafeMutablePointer(to: &vector) { vector in
                        message.msg_iov = vector
                        return recvmsg(socket, &message, Int32(MSG_DONTWAIT))
                    }
                    guard length > 0 else { return nil }
                    return Self.frame(UnsafeRawBufferPointer(rebasing: data[..<min(length, data.count)]),
                                      control: UnsafeRawBufferPointer(rebasing: control[..<Int(message.msg_controllen)]))
                }
            }
        }

        /// The frame with its receive time and VLAN tag from the control messages
        /// (struct cmsghdr: u64 length, i32 level, i32 type, data; each aligned to 8 bytes).
        private static func frame(_ data: UnsafeRawBufferPointer, control: UnsafeRawBufferPointer) -> Frame {
            var frame = Frame(bytes: Array(data), time: 0)
            var offset = 0
            while offset + 16 <= control.count {
                let length = Int(control.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                guard length >= 16, offset + length <= control.count else { break }
                let level = control.loadUnaligned(fromByteOffset: offset + 8, as: Int32.self)
                let type = control.loadUnaligned(fromByteOffset: offset + 12, as: Int32.self)
                let body = offset + 16
                if level == SOL_SOCKET && type == SO_TIMESTAMPNS && length >= 32 {   // struct timespec
                    let seconds = control.loadUnaligned(fromByteOffset: body, as: Int64.self)
                    let nanoseconds = control.loadUnaligned(fromByteOffset: body + 8, as: Int64.self)
                    frame.time = UInt64(seconds) * 1_000_000_000 + UInt64(nanoseconds)
                }
                if level == PacketSocket.level && type == PacketSocket.auxiliaryData && length >= 36 {
                    // struct tpacket_auxdata: status, len, snaplen (u32), mac, net, vlan_tci, vlan_tpid (u16)
                    let status = control.loadUnaligned(fromByteOffset: body, as: UInt32.self)
                    if status & PacketSocket.vlanValid != 0 && frame.bytes.count >= 12 {
                        let tci = control.loadUnaligned(fromByteOffset: body + 16, as: UInt16.self)
                        let tpid = status & PacketSocket.vlanTPIDValid != 0
                            ? control.loadUnaligned(fromByteOffset: body + 18, as: UInt16.self) : 0x8100
                        frame.bytes.insert(contentsOf: [UInt8(tpid >> 8), UInt8(tpid & 0xff),
                                                        UInt8(tci >> 8), UInt8(tci & 0xff)], at: 12)
                    }
                }
                offset += (length + 7) & ~7
            }
            return frame
        }
    }
}

/// AF_PACKET constants from <linux/if_packet.h>, which Swift's Glibc module does not import.
private enum PacketSocket {
    static let level: Int32 = 263            // SOL_PACKET
    static let statistics: Int32 = 6         // PACKET_STATISTICS
    static let auxiliaryData: Int32 = 8      // PACKET_AUXDATA
    static let ignoreOutgoing: Int32 = 23    // PACKET_IGNORE_OUTGOING
    static let allProtocols: UInt16 = 0x0003 // ETH_P_ALL
    static let vlanValid: UInt32 = 1 << 4    // TP_STATUS_VLAN_VALID
    static let vlanTPIDValid: UInt32 = 1 << 6
}

struct CaptureError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

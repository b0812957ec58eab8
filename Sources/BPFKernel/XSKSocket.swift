import CLibBPF
import BPFAssembly
import CLibXDP
import SystemPackage

/// How an AF_XDP socket is bound to its queue (`bind_flags`).
public enum XSKMode: Sendable {
    /// Zero-copy where the driver has it, else copy (the kernel falls back by itself).
    case auto
    /// Frames are copied into the umem: every driver with XDP, veth included.
    case copy
    /// Refused where the driver cannot.
    case zeroCopy

    var bindFlags: UInt16 {
        switch self {
        case .auto: 0
        case .copy: UInt16(XDP_COPY)
        case .zeroCopy: UInt16(XDP_ZEROCOPY)
        }
    }
}

/// Sizes of a socket's umem and rings. Ring sizes are powers of two (the kernel's rule).
public struct XSKConfiguration: Hashable, Sendable {
    /// Bytes per frame: 2048 or 4096 in aligned mode (a frame holds one received frame).
    public var frameSize: Int
    /// Frames in the umem: the first half is lent to the kernel for receiving (the fill
    /// ring), the second half is kept for sending.
    public var frameCount: Int
    /// Descriptors in each of the rx, tx, fill and completion rings.
    public var ringSize: Int
    public var mode: XSKMode

    public init(frameSize: Int = Int(XSK_UMEM__DEFAULT_FRAME_SIZE), frameCount: Int = 4096,
                ringSize: Int = Int(XSK_RING_CONS__DEFAULT_NUM_DESCS), mode: XSKMode = .auto) {
        self.frameSize = frameSize
        self.frameCount = frameCount
        self.ringSize = ringSize
        self.mode = mode
    }
}

/// The kernel's counters of an AF_XDP socket (`struct xdp_statistics`, XDP_STATISTICS).
public struct XSKStatistics: Hashable, Sendable {
    /// Frames the socket dropped for reasons other than an empty fill ring.
    public var rxDropped: UInt64
    public var rxInvalidDescriptors: UInt64
    public var txInvalidDescriptors: UInt64
    /// Frames dropped because the rx ring was full.
    public var rxRingFull: UInt64
    /// Times the kernel found the fill ring empty.
    public var fillRingEmpty: UInt64
    /// Times the kernel found the tx ring empty when asked to send.
    public var txRingEmpty: UInt64

    public static let zero = XSKStatistics(rxDropped: 0, rxInvalidDescriptors: 0, txInvalidDescriptors: 0,
                                           rxRingFull: 0, fillRingEmpty: 0, txRingEmpty: 0)

    /// The counters of two sockets added up (a capture's, over its queues).
    public static func + (a: XSKStatistics, b: XSKStatistics) -> XSKStatistics {
        XSKStatistics(rxDropped: a.rxDropped + b.rxDropped,
                      rxInvalidDescriptors: a.rxInvalidDescriptors + b.rxInvalidDescriptors,
                      txInvalidDescriptors: a.txInvalidDescriptors + b.txInvalidDescriptors,
                      rxRingFull: a.rxRingFull + b.rxRingFull, fillRingEmpty: a.fillRingEmpty + b.fillRingEmpty,
                      txRingEmpty: a.txRingEmpty + b.txRingEmpty)
    }
}

/// A received frame, lent in place: its bytes, and the bytes of its umem frame in front
/// of them, whose end holds the XDP metadata area when the program wrote one (AF_XDP
/// copies the area with the frame; a descriptor does not say its length).
public struct XSKFrame {
    /// Bytes of headroom cleared after each frame, so that an area is never read twice:
    /// more than XDPFlow writes (20), and what older kernels allowed any program (32).
    public static let metadataLimit = 32

    public let bytes: UnsafeRawBufferPointer
    public let headroom: UnsafeRawBufferPointer
}

/// A umem: page-aligned memory the kernel reads and writes frames in, registered with
/// the kernel (`xsk_umem__create`), and its fill and completion rings. Owned: deleted
/// once, after every socket that uses it (each holds a reference).
public final class XSKUmem {
    let umem: OpaquePointer
    /// `frameCount` x `frameSize` bytes.
    let area: UnsafeMutableRawPointer
    let areaSize: Int
    /// libxdp keeps the addresses of the two rings: they live on the heap, never moved.
    let fill = UnsafeMutablePointer<xsk_ring_prod>.allocate(capacity: 1)
    let completion = UnsafeMutablePointer<xsk_ring_cons>.allocate(capacity: 1)
    public let configuration: XSKConfiguration

    public init(_ configuration: XSKConfiguration = XSKConfiguration()) throws(BPFError) {
        for (ring, size) in [("frames", configuration.frameCount), ("rings", configuration.ringSize)]
        where size <= 0 || size & (size - 1) != 0 {
            throw .xskSize(what: ring, size: size)
        }
        self.configuration = configuration
        areaSize = configuration.frameCount * configuration.frameSize
        // MAP_FAILED is (void *)-1, which Swift does not import.
        guard let area = mmap(nil, areaSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              Int(bitPattern: area) != -1 else {
            fill.deallocate()
            completion.deallocate()
            throw .call("mmap", subject: "umem of \(areaSize) bytes", errno: .current)
        }
        self.area = area
        fill.initialize(to: xsk_ring_prod())
        completion.initialize(to: xsk_ring_cons())
        var config = xsk_umem_config(fill_size: UInt32(configuration.ringSize), comp_size: UInt32(configuration.ringSize),
                                     frame_size: UInt32(configuration.frameSize),
                                     frame_headroom: UInt32(XSK_UMEM__DEFAULT_FRAME_HEADROOM), flags: 0)
        var umem: OpaquePointer?
        let result = xsk_umem__create(&umem, area, UInt64(areaSize), fill, completion, &config)
        guard result == 0, let umem else {
            munmap(area, areaSize)
            fill.deallocate()
            completion.deallocate()
            throw .call("xsk_umem__create", subject: "\(configuration.frameCount) frames of \(configuration.frameSize) bytes",
                        errno: Errno(rawValue: -result))
        }
        self.umem = umem
    }

    deinit {
        xsk_umem__delete(umem)
        munmap(area, areaSize)
        fill.deallocate()
        completion.deallocate()
    }

    func bytes(at address: UInt64) -> UnsafeMutableRawPointer { area + Int(address) }
}

/// An AF_XDP socket bound to one receive queue of a device, with its rx and tx rings,
/// over a umem of its own (libxdp's xsk API; no ring code by hand). It loads no XDP
/// program (`XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD`): frames reach it through an XSKMAP
/// that some program redirects into, XDPFlow's `xf_xsks` for `action xsk`: `insert(into:)`.
///
/// Frames come in through the fill ring (the first half of the umem is lent to the
/// kernel) and are copied out by `receive`, their umem frames given straight back;
/// `send` copies into the second half, reclaimed from the completion ring. Wakeups are
/// asked for (XDP_USE_NEED_WAKEUP): a syscall only when the kernel says it sleeps.
public final class XSKSocket {
    let socket: OpaquePointer
    public let umem: XSKUmem
    public let device: NetworkInterface
    public let queue: UInt32
    let rx = UnsafeMutablePointer<xsk_ring_cons>.allocate(capacity: 1)
    let tx = UnsafeMutablePointer<xsk_ring_prod>.allocate(capacity: 1)
    /// Umem addresses of the send half not in flight.
    private var freeFrames: [UInt64]
    /// Frames handed to the tx ring and not yet completed.
    public private(set) var framesInFlight = 0

    public init(device: NetworkInterface, queue: UInt32, umem: XSKUmem) throws(BPFError) {
        let config = umem.configuration
        self.umem = umem
        self.device = device
        self.queue = queue
        rx.initialize(to: xsk_ring_cons())
        tx.initialize(to: xsk_ring_prod())
        var socketConfig = xsk_socket_config()
        socketConfig.rx_size = UInt32(config.ringSize)
        socketConfig.tx_size = UInt32(config.ringSize)
        socketConfig.libxdp_flags = UInt32(XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD)
        socketConfig.bind_flags = config.mode.bindFlags | UInt16(XDP_USE_NEED_WAKEUP)
        var socket: OpaquePointer?
        let result = xsk_socket__create(&socket, device.name, queue, umem.umem, rx, tx, &socketConfig)
        guard result == 0, let socket else {
            rx.deallocate()
            tx.deallocate()
            throw .call("xsk_socket__create", subject: "\(device) queue \(queue)", errno: Errno(rawValue: -result))
        }
        self.socket = socket
        let frameSize = UInt64(config.frameSize), half = config.frameCount / 2
        freeFrames = (half ..< config.frameCount).map { UInt64($0) * frameSize }
        // Lend the receive half to the kernel; the fill ring holds at least as many.
        let lent = (0 ..< min(half, config.ringSize)).map { UInt64($0) * frameSize }
        refill(lent)
    }

    deinit {
        xsk_socket__delete(socket)
        rx.deallocate()
        tx.deallocate()
    }

    public var fd: Int32 { xsk_socket__fd(socket) }

    /// Puts the socket in `map` (an XSKMAP) at its queue, where `bpf_redirect_map` finds it.
    public func insert(into map: Map) throws(BPFError) {
        guard map.spec.type == .xskmap else {
            throw .mapTypeMismatch(map: map.name, expected: [.xskmap], actual: map.spec.type)
        }
        try map.update(queue.encodedBytes, fd.encodedBytes)
    }

    /// Removes whatever socket `map` holds at this socket's queue.
    public func remove(from map: Map) throws(BPFError) {
        _ = try map.delete(queue.encodedBytes)
    }

    // MARK: Receive

    /// Up to `limit` received frames, each copied out, oldest first; their umem frames
    /// go straight back to the fill ring. Waits up to `timeout` milliseconds for the
    /// first (0: returns at once, -1: forever).
    public func receive(limit: Int = 64, timeoutMilliseconds timeout: Int32 = 0) throws(BPFError) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        try receive(limit: limit, timeoutMilliseconds: timeout) { frames.append(Array($0.bytes)) }
        return frames
    }

    /// As `receive(limit:timeoutMilliseconds:)`, lending each frame to `body` in place
    /// (valid only during the call). Returns how many frames it saw.
    @discardableResult
    public func receive(limit: Int, timeoutMilliseconds timeout: Int32 = 0,
                        _ body: (XSKFrame) throws(BPFError) -> Void) throws(BPFError) -> Int {
        var index: UInt32 = 0
        var count = xsk_ring_cons__peek(rx, UInt32(limit), &index)
        if count == 0 {
            // The kernel fills the rx ring only from frames it has room for: wake it when
            // it sleeps on an empty fill ring, then wait.
            if xsk_ring_prod__needs_wakeup(umem.fill) != 0 || timeout != 0 {
                _ = try Self.wait(for: [self], timeoutMilliseconds: timeout)
            }
            count = xsk_ring_cons__peek(rx, UInt32(limit), &index)
            guard count > 0 else { return 0 }
        }
        var addresses: [UInt64] = []
        addresses.reserveCapacity(Int(count))
        defer {
            xsk_ring_cons__release(rx, count)
            refill(addresses)
        }
        for offset in 0 ..< count {
            let descriptor = xsk_ring_cons__rx_desc(rx, index &+ offset)!.pointee
            let base = xsk_umem__extract_addr(descriptor.addr)
            addresses.append(base)
            // Aligned mode: the address is the frame's data; its umem frame starts at the
            // frame size below (a power of two), after it comes the headroom.
            let frameStart = umem.bytes(at: base & ~UInt64(umem.configuration.frameSize - 1))
            let start = umem.bytes(at: xsk_umem__add_offset_to_addr(descriptor.addr))
            let headroom = UnsafeMutableRawBufferPointer(start: frameStart, count: start - frameStart)
            try body(XSKFrame(bytes: UnsafeRawBufferPointer(start: start, count: Int(descriptor.len)),
                              headroom: UnsafeRawBufferPointer(headroom)))
            // The kernel copies a metadata area only when there is one: clear where this
            // one ended, so that the next frame in this umem frame is not read with it.
            let stale = UnsafeMutableRawBufferPointer(rebasing: headroom.suffix(XSKFrame.metadataLimit))
            stale.initializeMemory(as: UInt8.self, repeating: 0)
        }
        return Int(count)
    }

    /// Waits up to `timeout` milliseconds (-1: forever) until one of `sockets` has frames
    /// to receive. False when none has: the time ran out, or a signal came.
    public static func wait(for sockets: [XSKSocket], timeoutMilliseconds timeout: Int32) throws(BPFError) -> Bool {
        var descriptors = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        let ready = poll(&descriptors, nfds_t(descriptors.count), timeout)
        guard ready >= 0 else {
            let errno = Errno.current
            if errno == .interrupted { return false }
            throw .call("poll", subject: sockets.map(\.description).joined(separator: ", "), errno: errno)
        }
        return ready > 0
    }

    /// Gives umem frames to the kernel to receive into. The fill ring has room for
    /// every frame of the receive half, so the reservation cannot fall short.
    private func refill(_ addresses: [UInt64]) {
        guard !addresses.isEmpty else { return }
        var index: UInt32 = 0
        let reserved = xsk_ring_prod__reserve(umem.fill, UInt32(addresses.count), &index)
        for (offset, address) in addresses.prefix(Int(reserved)).enumerated() {
            xsk_ring_prod__fill_addr(umem.fill, index &+ UInt32(offset))!.pointee = address
        }
        xsk_ring_prod__submit(umem.fill, reserved)
    }

    // MARK: Send

    /// Queues as many of `frames` as there are free umem frames and tx descriptors for,
    /// in order, and kicks the kernel if it sleeps. Returns how many were queued; call
    /// again with the rest (`completeSends` reclaims frames the kernel sent).
    @discardableResult
    public func send(_ frames: [[UInt8]]) throws(BPFError) -> Int {
        completeSends()
        let frameSize = umem.configuration.frameSize
        if let long = frames.first(where: { $0.count > frameSize }) {
            throw .xskFrameTooLong(length: long.count, frameSize: frameSize)
        }
        let wanted = min(frames.count, freeFrames.count)
        var index: UInt32 = 0
        let reserved = Int(xsk_ring_prod__reserve(tx, UInt32(wanted), &index))
        for (offset, frame) in frames.prefix(reserved).enumerated() {
            let address = freeFrames.removeLast()
            frame.withUnsafeBytes { umem.bytes(at: address).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            let descriptor = xsk_ring_prod__tx_desc(tx, index &+ UInt32(offset))!
            descriptor.pointee.addr = address
            descriptor.pointee.len = UInt32(frame.count)
            descriptor.pointee.options = 0
        }
        xsk_ring_prod__submit(tx, UInt32(reserved))
        framesInFlight += reserved
        // Copy mode sends only from a syscall; with need_wakeup, only when asked.
        if reserved > 0, xsk_ring_prod__needs_wakeup(tx) != 0, sendto(fd, nil, 0, Int32(MSG_DONTWAIT), nil, 0) < 0 {
            let errno = Errno.current
            // The kernel is still sending an earlier batch, or has no room yet: retried on the next kick.
            guard [.resourceTemporarilyUnavailable, .noBufferSpace, .resourceBusy, .networkDown].contains(errno) else {
                throw .call("sendto", subject: "\(self)", errno: errno)
            }
        }
        return reserved
    }

    /// Takes back the umem frames the kernel has sent. Returns how many.
    @discardableResult
    public func completeSends() -> Int {
        var index: UInt32 = 0
        let count = xsk_ring_cons__peek(umem.completion, UInt32(umem.configuration.ringSize), &index)
        for offset in 0 ..< count {
            freeFrames.append(xsk_ring_cons__comp_addr(umem.completion, index &+ offset)!.pointee)
        }
        xsk_ring_cons__release(umem.completion, count)
        framesInFlight -= Int(count)
        return Int(count)
    }

    // MARK: Statistics

    /// The kernel's counters for this socket (getsockopt SOL_XDP, XDP_STATISTICS).
    public func statistics() throws(BPFError) -> XSKStatistics {
        var stats = xdp_statistics()
        var length = socklen_t(MemoryLayout<xdp_statistics>.size)
        guard getsockopt(fd, SOL_XDP, XDP_STATISTICS, &stats, &length) == 0 else {
            throw .call("getsockopt(XDP_STATISTICS)", subject: "\(self)", errno: .current)
        }
        return XSKStatistics(rxDropped: stats.rx_dropped, rxInvalidDescriptors: stats.rx_invalid_descs,
                             txInvalidDescriptors: stats.tx_invalid_descs, rxRingFull: stats.rx_ring_full,
                             fillRingEmpty: stats.rx_fill_ring_empty_descs, txRingEmpty: stats.tx_ring_empty_descs)
    }
}

extension XSKSocket: CustomStringConvertible {
    public var description: String { "AF_XDP socket on \(device) queue \(queue)" }
}

import CLibBPF

/// Reads records from a BPF ring buffer map (libbpf's ring_buffer__poll).
public final class RingBufferReader {
    private let map: Map
    private var ring: OpaquePointer?
    private let box: Box

    /// Holds the handler where the C callback can reach it.
    private final class Box {
        let handler: ([UInt8]) -> Void
        init(_ handler: @escaping ([UInt8]) -> Void) { self.handler = handler }
    }

    public init(_ map: Map, handler: @escaping (_ record: [UInt8]) -> Void) throws(BPFError) {
        guard map.spec.type == .ringBuffer else {
            throw .mapTypeMismatch(map: map.name, expected: [.ringBuffer], actual: map.spec.type)
        }
        self.map = map
        box = Box(handler)
        ring = ring_buffer__new(map.descriptor.rawValue, { context, data, size in
            let box = Unmanaged<Box>.fromOpaque(context!).takeUnretainedValue()
            box.handler(Array(UnsafeRawBufferPointer(start: data, count: size)))
            return 0
        }, Unmanaged.passUnretained(box).toOpaque(), nil)
        if ring == nil { throw .call("ring_buffer__new", subject: map.name, errno: .current) }
    }

    /// Waits up to `timeout` milliseconds for records, hands each to the handler,
    /// and returns how many there were.
    @discardableResult
    public func poll(timeout milliseconds: Int32 = 0) throws(BPFError) -> Int {
        Int(try check("ring_buffer__poll", map.name, ring_buffer__poll(ring, milliseconds)))
    }

    deinit { ring_buffer__free(ring) }
}

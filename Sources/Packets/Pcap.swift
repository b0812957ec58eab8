#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A packet capture: what tcpdump and Wireshark read and write.
///
/// Reading takes classic libpcap files (magic a1b2c3d4 for microsecond and a1b23c4d for
/// nanosecond timestamps, in either byte order) and pcapng (section header, interface
/// description, enhanced and simple packet blocks; other blocks are skipped). Writing
/// always produces classic pcap, little-endian, microsecond timestamps, which every tool
/// reads. A record whose captured length is below its original length is kept as
/// captured.
public struct PcapFile: Hashable, Sendable {
    /// LINKTYPE_ETHERNET (DLT_EN10MB).
    public static let ethernet: UInt32 = 1
    /// libpcap's largest snapshot length; a record longer than this and than the file's
    /// snapshot length is refused as corrupt, as libpcap does.
    public static let maximumSnapLength: UInt32 = 262_144

    public var linkType: UInt32
    public var snapLength: UInt32
    public var records: [PcapRecord]

    public init(records: [PcapRecord] = [], linkType: UInt32 = Self.ethernet,
                snapLength: UInt32 = Self.maximumSnapLength) {
        self.records = records
        self.linkType = linkType
        self.snapLength = snapLength
    }

    /// Parses a classic pcap or a pcapng file.
    public init(parsing bytes: [UInt8]) throws(PcapError) {
        var cursor = ByteCursor(bytes)
        guard var probe = cursor.take(4), let magic = probe.read(UInt32.self) else {
            throw .truncatedFileHeader(length: bytes.count)
        }
        if magic == PcapNG.sectionHeaderType {
            self = try PcapNG.parse(bytes)
        } else {
            self = try Self.parseClassic(bytes)
        }
    }

    /// Classic pcap, little-endian, microsecond timestamps (nanoseconds are truncated,
    /// seconds beyond 2106 wrap, as the format's 32-bit fields require).
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.appendLittleEndian(ClassicMagic.microseconds)
        out.appendLittleEndian(UInt16(2))
        out.appendLittleEndian(UInt16(4))
        out.appendLittleEndian(UInt32(0))  // thiszone
        out.appendLittleEndian(UInt32(0))  // sigfigs
        out.appendLittleEndian(snapLength)
        out.appendLittleEndian(linkType)
        for record in records {
            out.appendLittleEndian(UInt32(truncatingIfNeeded: record.seconds))
            out.appendLittleEndian(record.nanoseconds / 1000)
            out.appendLittleEndian(UInt32(truncatingIfNeeded: record.data.count))
            out.appendLittleEndian(UInt32(truncatingIfNeeded: max(record.originalLength, record.data.count)))
            out += record.data
        }
        return out
    }

    public static func read(path: String) throws(PcapError) -> PcapFile {
        try PcapFile(parsing: FileBytes.contents(ofPath: path))
    }

    public func write(path: String) throws(PcapError) {
        try FileBytes.store(serialized(), path: path)
    }

    private enum ClassicMagic {
        static let microseconds: UInt32 = 0xa1b2_c3d4
        static let nanoseconds: UInt32 = 0xa1b2_3c4d
    }

    private static func parseClassic(_ bytes: [UInt8]) throws(PcapError) -> PcapFile {
        var cursor = ByteCursor(bytes)
        guard var header = cursor.take(24) else { throw .truncatedFileHeader(length: bytes.count) }
        var peek = header
        guard let magic = peek.read(UInt32.self) else { throw .truncatedFileHeader(length: bytes.count) }
        let order: ByteCursor.ByteOrder
        let nanosecondsPerTick: UInt32
        switch magic {
        case ClassicMagic.microseconds: (order, nanosecondsPerTick) = (.bigEndian, 1000)
        case ClassicMagic.nanoseconds: (order, nanosecondsPerTick) = (.bigEndian, 1)
        case ClassicMagic.microseconds.byteSwapped: (order, nanosecondsPerTick) = (.littleEndian, 1000)
        case ClassicMagic.nanoseconds.byteSwapped: (order, nanosecondsPerTick) = (.littleEndian, 1)
        default: throw .unknownMagic(magic)
        }
        guard header.skip(4),
              let major = header.read(UInt16.self, byteOrder: order),
              let minor = header.read(UInt16.self, byteOrder: order),
              header.skip(8),  // thiszone, sigfigs: always 0 in practice
              let snapLength = header.read(UInt32.self, byteOrder: order),
              let linkType = header.read(UInt32.self, byteOrder: order)
        else { throw .truncatedFileHeader(length: bytes.count) }
        guard major == 2 else { throw .unsupportedVersion(major: major, minor: minor) }

        var file = PcapFile(linkType: linkType & 0x03ff_ffff, snapLength: snapLength)  // high bits: FCS length
        let longest = max(snapLength, maximumSnapLength)
        while cursor.remaining > 0 {
            let offset = cursor.offset
            guard var record = cursor.take(16),
                  let seconds = record.read(UInt32.self, byteOrder: order),
                  let fraction = record.read(UInt32.self, byteOrder: order),
                  let capturedLength = record.read(UInt32.self, byteOrder: order),
                  let originalLength = record.read(UInt32.self, byteOrder: order)
            else { throw .truncatedRecordHeader(offset: offset, available: cursor.remaining) }
            guard capturedLength <= longest else {
                throw .recordTooLong(offset: offset, capturedLength: capturedLength, limit: longest)
            }
            guard let data = cursor.readBytes(Int(capturedLength)) else {
                throw .truncatedRecordData(offset: offset, capturedLength: capturedLength, available: cursor.remaining)
            }
            let fractionNanoseconds = fraction.multipliedReportingOverflow(by: nanosecondsPerTick)
            guard !fractionNanoseconds.overflow, fractionNanoseconds.partialValue < 1_000_000_000 else {
                throw .badTimestamp(offset: offset)
            }
            file.records.append(PcapRecord(
                seconds: UInt64(seconds), nanoseconds: fractionNanoseconds.partialValue,
                originalLength: Int(originalLength), data: Array(data)))
        }
        return file
    }
}

public struct PcapRecord: Hashable, Sendable {
    /// Since the Unix epoch.
    public var seconds: UInt64
    /// 0 ..< 1_000_000_000.
    public var nanoseconds: UInt32
    /// The frame's length on the wire; `data` may be shorter (snapshot length).
    public var originalLength: Int
    /// The captured bytes.
    public var data: [UInt8]
    /// A pcapng packet's comment (opt_comment); classic pcap has none.
    public var comment: String?

    public init(seconds: UInt64 = 0, nanoseconds: UInt32 = 0, originalLength: Int? = nil, data: [UInt8],
                comment: String? = nil) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
        self.originalLength = originalLength ?? data.count
        self.data = data
        self.comment = comment
    }
}

/// Why a capture could not be read or written. Offsets count bytes from the start of the
/// file and name the record or block at fault.
public enum PcapError: Error, Hashable, Sendable, CustomStringConvertible {
    case truncatedFileHeader(length: Int)
    case unknownMagic(UInt32)
    case unsupportedVersion(major: UInt16, minor: UInt16)
    case truncatedRecordHeader(offset: Int, available: Int)
    case truncatedRecordData(offset: Int, capturedLength: UInt32, available: Int)
    case recordTooLong(offset: Int, capturedLength: UInt32, limit: UInt32)
    case badTimestamp(offset: Int)
    /// pcapng: a block whose length fields are too small, not a multiple of 4, disagree,
    /// or run past the end of the file.
    case badBlock(offset: Int, reason: String)
    /// pcapng: a packet block before any section header or interface description.
    case unknownInterface(offset: Int, interface: UInt32)
    /// pcapng: interfaces with different link types in one file.
    case mixedLinkTypes(offset: Int, first: UInt32, other: UInt32)
    case unsupportedTimestampResolution(offset: Int, code: UInt8)
    case io(path: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case .truncatedFileHeader(let length):
            "not a capture file: \(length) bytes, shorter than a pcap file header"
        case .unknownMagic(let magic):
            "not a pcap or pcapng file: magic 0x\(String(magic, radix: 16)) at offset 0"
        case .unsupportedVersion(let major, let minor):
            "unsupported pcap version \(major).\(minor) (expected 2.x)"
        case .truncatedRecordHeader(let offset, let available):
            "record header at offset \(offset) is truncated: \(available) of 16 bytes"
        case .truncatedRecordData(let offset, let capturedLength, let available):
            "record at offset \(offset) is truncated: captured length \(capturedLength), \(available) bytes left"
        case .recordTooLong(let offset, let capturedLength, let limit):
            "record at offset \(offset) has captured length \(capturedLength), over the limit \(limit)"
        case .badTimestamp(let offset):
            "record at offset \(offset) has a sub-second timestamp of a second or more"
        case .badBlock(let offset, let reason):
            "pcapng block at offset \(offset): \(reason)"
        case .unknownInterface(let offset, let interface):
            "pcapng packet block at offset \(offset) names interface \(interface), which is not described"
        case .mixedLinkTypes(let offset, let first, let other):
            "pcapng interface at offset \(offset) has link type \(other), the file's first has \(first)"
        case .unsupportedTimestampResolution(let offset, let code):
            "pcapng interface at offset \(offset) has timestamp resolution code 0x\(String(code, radix: 16))"
        case .io(let path, let operation, let errno):
            "\(path): \(operation) failed: \(String(cString: strerror(errno)))"
        }
    }
}

extension [UInt8] {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        for shift in stride(from: 0, to: T.bitWidth, by: 8) {
            append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }
}

/// Whole-file reads and writes with the C library, so Packets needs no Foundation; and
/// the loops that short reads and writes and EINTR ask for, which the command line's
/// streams use too.
public enum FileBytes {
    /// A read or write that failed: the C library's errno.
    public struct Failure: Error, Sendable {
        public let errno: Int32
    }

    /// Everything left to read from `descriptor`.
    public static func contents(of descriptor: Int32) throws(Failure) -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Failure(errno: errno)
            }
            if count == 0 { return bytes }
            bytes += chunk[..<count]
        }
    }

    /// Writes all of `bytes` to `descriptor`.
    public static func write(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32) throws(Failure) {
        var written = 0
        while written < bytes.count {
            let count = Glibc.write(descriptor, bytes.baseAddress! + written, bytes.count - written)
            if count < 0 {
                if errno == EINTR { continue }
                throw Failure(errno: errno)
            }
            written += count
        }
    }

    /// Writes all of `bytes` to `descriptor`.
    public static func write(_ bytes: [UInt8], to descriptor: Int32) throws(Failure) {
        // withUnsafeBytes rethrows untyped: the failure comes out as a value.
        let failure = bytes.withUnsafeBytes { raw -> Failure? in
            do throws(Failure) {
                try write(raw, to: descriptor)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    static func contents(ofPath path: String) throws(PcapError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, operation: "open", errno: errno) }
        defer { close(fd) }
        do {
            return try contents(of: fd)
        } catch {
            throw .io(path: path, operation: "read", errno: error.errno)
        }
    }

    static func store(_ bytes: [UInt8], path: String) throws(PcapError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(path: path, operation: "open", errno: errno) }
        do {
            try write(bytes, to: fd)
        } catch {
            close(fd)
            throw .io(path: path, operation: "write", errno: error.errno)
        }
        guard close(fd) == 0 else { throw .io(path: path, operation: "close", errno: errno) }
    }
}

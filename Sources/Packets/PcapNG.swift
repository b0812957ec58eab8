/// Reading pcapng (draft-ietf-opsawg-pcapng): section header, interface description,
/// enhanced and simple packet blocks. Other blocks (name resolution, statistics, ...) are
/// skipped; each section sets its own byte order and interfaces.
enum PcapNG {
    static let sectionHeaderType: UInt32 = 0x0a0d_0d0a
    static let interfaceDescriptionType: UInt32 = 1
    private static let simplePacketType: UInt32 = 3
    static let enhancedPacketType: UInt32 = 6
    static let byteOrderMagic: UInt32 = 0x1a2b_3c4d
    static let endOfOptions: UInt16 = 0
    /// opt_comment, in every block: UTF-8 text.
    static let commentOption: UInt16 = 1
    static let interfaceNameOption: UInt16 = 2
    static let timestampResolutionOption: UInt16 = 9
    /// Type, total length, and the trailing copy of the total length.
    private static let blockOverhead = 12

    private struct Interface {
        var snapLength: UInt32
        /// Timestamp units per second.
        var ticksPerSecond: UInt64
    }

    static func parse(_ bytes: [UInt8]) throws(PcapError) -> PcapFile {
        var cursor = ByteCursor(bytes)
        var file: PcapFile?
        var interfaces: [Interface] = []
        var order = ByteCursor.ByteOrder.bigEndian
        var records: [PcapRecord] = []

        while cursor.remaining > 0 {
            let offset = cursor.offset
            var peek = cursor
            guard let type = peek.read(UInt32.self, byteOrder: order) else {
                throw .badBlock(offset: offset, reason: "truncated block header")
            }
            if type == sectionHeaderType {
                // The byte order of a section is that of its byte-order magic.
                guard peek.skip(4), let magic = peek.read(UInt32.self) else {
                    throw .badBlock(offset: offset, reason: "truncated section header")
                }
                switch magic {
                case byteOrderMagic: order = .bigEndian
                case byteOrderMagic.byteSwapped: order = .littleEndian
                default: throw .badBlock(offset: offset, reason: "byte-order magic 0x\(String(magic, radix: 16))")
                }
                interfaces = []
            }
            var body = try block(&cursor, order: order)
            switch type {
            case sectionHeaderType:
                guard body.skip(4), let major = body.read(UInt16.self, byteOrder: order) else {
                    throw .badBlock(offset: offset, reason: "section header too short")
                }
                guard major == 1 else { throw .badBlock(offset: offset, reason: "unsupported pcapng version \(major)") }

            case interfaceDescriptionType:
                guard let linkType = body.read(UInt16.self, byteOrder: order), body.skip(2),
                      let snapLength = body.read(UInt32.self, byteOrder: order)
                else { throw .badBlock(offset: offset, reason: "interface description too short") }
                if let first = file?.linkType, first != UInt32(linkType) {
                    throw .mixedLinkTypes(offset: offset, first: first, other: UInt32(linkType))
                }
                if file == nil {
                    file = PcapFile(linkType: UInt32(linkType), snapLength: snapLength == 0 ? PcapFile.maximumSnapLength : snapLength)
                }
                let resolution = try timestampResolution(try options(&body, order: order, offset: offset), offset: offset)
                interfaces.append(Interface(snapLength: snapLength, ticksPerSecond: resolution))

            case enhancedPacketType:
                guard let interfaceID = body.read(UInt32.self, byteOrder: order),
                      let high = body.read(UInt32.self, byteOrder: order),
                      let low = body.read(UInt32.self, byteOrder: order),
                      let capturedLength = body.read(UInt32.self, byteOrder: order),
                      let originalLength = body.read(UInt32.self, byteOrder: order)
                else { throw .badBlock(offset: offset, reason: "enhanced packet block too short") }
                guard interfaces.indices.contains(Int(interfaceID)) else {
                    throw .unknownInterface(offset: offset, interface: interfaceID)
                }
                guard let data = body.readBytes(Int(capturedLength)) else {
                    throw .badBlock(offset: offset, reason: "captured length \(capturedLength) runs past the block")
                }
                // Options follow the data's padding; a block that ends without it has none.
                let comment = body.skip(padding(Int(capturedLength)))
                    ? try options(&body, order: order, offset: offset).first { $0.code == commentOption } : nil
                let ticks = UInt64(high) << 32 | UInt64(low)
                let perSecond = interfaces[Int(interfaceID)].ticksPerSecond
                let nanoseconds = UInt128(ticks % perSecond) * 1_000_000_000 / UInt128(perSecond)
                records.append(PcapRecord(seconds: ticks / perSecond, nanoseconds: UInt32(nanoseconds),
                                          originalLength: Int(originalLength), data: Array(data),
                                          comment: comment.map { String(decoding: $0.value, as: UTF8.self) }))

            case simplePacketType:
                // No timestamp; the captured length is implied by interface 0's snapshot length.
                guard let interface = interfaces.first else { throw .unknownInterface(offset: offset, interface: 0) }
                guard let originalLength = body.read(UInt32.self, byteOrder: order) else {
                    throw .badBlock(offset: offset, reason: "simple packet block too short")
                }
                let limit = interface.snapLength == 0 ? originalLength : min(originalLength, interface.snapLength)
                guard let data = body.readBytes(Int(limit)) else {
                    throw .badBlock(offset: offset, reason: "packet of \(limit) bytes runs past the block")
                }
                records.append(PcapRecord(originalLength: Int(originalLength), data: Array(data)))

            default:
                continue
            }
        }
        // As libpcap: a capture needs an interface to say what its packets are.
        guard var file else { throw .badBlock(offset: 0, reason: "no interface description block in the file") }
        file.records = records
        return file
    }

    /// Moves past one block and returns its body; checks both length fields.
    private static func block(_ cursor: inout ByteCursor, order: ByteCursor.ByteOrder) throws(PcapError) -> ByteCursor {
        let offset = cursor.offset
        var header = cursor
        guard header.skip(4), let length = header.read(UInt32.self, byteOrder: order) else {
            throw .badBlock(offset: offset, reason: "truncated block header")
        }
        guard length >= blockOverhead, length % 4 == 0 else {
            throw .badBlock(offset: offset, reason: "block length \(length) is below 12 or not a multiple of 4")
        }
        guard var whole = cursor.take(Int(length)) else {
            throw .badBlock(offset: offset, reason: "block length \(length) runs past the end of the file")
        }
        guard whole.skip(8), let body = whole.take(Int(length) - blockOverhead),
              let trailer = whole.read(UInt32.self, byteOrder: order), trailer == length
        else { throw .badBlock(offset: offset, reason: "trailing block length differs from \(length)") }
        return body
    }

    /// A block's options, up to opt_endofopt or the end of the body.
    private static func options(_ body: inout ByteCursor, order: ByteCursor.ByteOrder,
                                offset: Int) throws(PcapError) -> [(code: UInt16, value: [UInt8])] {
        var options: [(code: UInt16, value: [UInt8])] = []
        while let code = body.read(UInt16.self, byteOrder: order),
              let length = body.read(UInt16.self, byteOrder: order), code != endOfOptions {
            guard let value = body.readBytes(Int(length)), body.skip(padding(Int(length)))
            else { throw .badBlock(offset: offset, reason: "option \(code) runs past the block") }
            options.append((code, Array(value)))
        }
        return options
    }

    /// if_tsresol (option 9): 10^-n seconds, or 2^-n with the high bit set; default 10^-6.
    private static func timestampResolution(_ options: [(code: UInt16, value: [UInt8])],
                                            offset: Int) throws(PcapError) -> UInt64 {
        guard let resolution = options.first(where: { $0.code == timestampResolutionOption })?.value.first else {
            return 1_000_000
        }
        let exponent = UInt64(resolution & 0x7f)
        if resolution & 0x80 != 0 {
            guard exponent < 64 else { throw .unsupportedTimestampResolution(offset: offset, code: resolution) }
            return 1 << exponent
        }
        guard exponent <= 19 else { throw .unsupportedTimestampResolution(offset: offset, code: resolution) }
        return (0 ..< exponent).reduce(1) { power, _ in power * 10 }
    }

    /// Bytes that pad a field of `length` bytes to 32 bits.
    static func padding(_ length: Int) -> Int { (4 - length % 4) % 4 }
}

/// Writing pcapng as a stream, as a capture does: `header` once (a section header and
/// one interface description with nanosecond timestamps), then `appendPacket` for each
/// frame, an enhanced packet block with an optional comment (opt_comment), which
/// tcpdump reads and Wireshark shows. Little-endian, as the section's magic says.
public enum PcapNGWriter {
    public static func header(interfaceName: String?, linkType: UInt16 = UInt16(PcapFile.ethernet),
                              snapLength: UInt32 = PcapFile.maximumSnapLength) -> [UInt8] {
        var out: [UInt8] = []
        block(PcapNG.sectionHeaderType, into: &out) { body in
            body.appendLittleEndian(PcapNG.byteOrderMagic)
            body.appendLittleEndian(UInt16(1))      // major
            body.appendLittleEndian(UInt16(0))      // minor
            body.appendLittleEndian(UInt64.max)     // section length: not given
            option(PcapNG.endOfOptions, [], into: &body)
        }
        block(PcapNG.interfaceDescriptionType, into: &out) { body in
            body.appendLittleEndian(linkType)
            body.appendLittleEndian(UInt16(0))
            body.appendLittleEndian(snapLength)
            if let interfaceName { option(PcapNG.interfaceNameOption, Array(interfaceName.utf8), into: &body) }
            option(PcapNG.timestampResolutionOption, [9], into: &body)   // 10^-9 s
            option(PcapNG.endOfOptions, [], into: &body)
        }
        return out
    }

    /// A packet comment (opt_comment) as it is written: encoded once, appended to every
    /// packet that carries it.
    public struct Comment: Hashable, Sendable {
        /// The option and the end of options.
        let options: [UInt8]

        public init(_ text: String) {
            var options: [UInt8] = []
            PcapNGWriter.option(PcapNG.commentOption, Array(text.utf8), into: &options)
            PcapNGWriter.option(PcapNG.endOfOptions, [], into: &options)
            self.options = options
        }
    }

    /// Appends `data` as a packet of interface 0, received at `nanoseconds` since the Unix
    /// epoch, `originalLength` bytes on the wire (default: as captured). A capture calls
    /// it for every frame: the block is written front to back, its length known first.
    public static func appendPacket(_ data: UnsafeRawBufferPointer, nanoseconds: UInt64, originalLength: Int? = nil,
                                    comment: Comment? = nil, to out: inout [UInt8]) {
        let padding = PcapNG.padding(data.count)
        let length = UInt32(28 + data.count + padding + (comment?.options.count ?? 0) + 4)
        // Type, length, interface, timestamp (high, low), captured and original lengths.
        let header = (PcapNG.enhancedPacketType.littleEndian, length.littleEndian, UInt32(0),
                      UInt32(truncatingIfNeeded: nanoseconds >> 32).littleEndian,
                      UInt32(truncatingIfNeeded: nanoseconds).littleEndian, UInt32(data.count).littleEndian,
                      UInt32(max(originalLength ?? data.count, data.count)).littleEndian)
        withUnsafeBytes(of: header) { out.append(contentsOf: $0) }
        out.append(contentsOf: data)
        out.append(contentsOf: repeatElement(0, count: padding))
        if let comment { out += comment.options }
        out.appendLittleEndian(length)
    }

    /// A block: type, total length, `body`, total length again. The body is written in
    /// place, its length filled in after.
    private static func block(_ type: UInt32, into out: inout [UInt8], _ body: (inout [UInt8]) -> Void) {
        let start = out.count
        out.appendLittleEndian(type)
        out.appendLittleEndian(UInt32(0))
        body(&out)
        let length = UInt32(out.count - start + 4)
        withUnsafeBytes(of: length.littleEndian) { out.replaceSubrange(start + 4 ..< start + 8, with: $0) }
        out.appendLittleEndian(length)
    }

    private static func option(_ code: UInt16, _ value: [UInt8], into out: inout [UInt8]) {
        out.appendLittleEndian(code)
        out.appendLittleEndian(UInt16(value.count))
        out += value
        out.append(contentsOf: repeatElement(0, count: PcapNG.padding(value.count)))
    }
}

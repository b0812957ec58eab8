/// Reading pcapng (draft-ietf-opsawg-pcapng): section header, interface description,
/// enhanced and simple packet blocks. Other blocks (name resolution, statistics, ...) are
/// skipped; each section sets its own byte order and interfaces.
enum PcapNG {
    static let sectionHeaderType: UInt32 = 0x0a0d_0d0a
    private static let interfaceDescriptionType: UInt32 = 1
    private static let simplePacketType: UInt32 = 3
    private static let enhancedPacketType: UInt32 = 6
    private static let byteOrderMagic: UInt32 = 0x1a2b_3c4d
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
                let resolution = try timestampResolution(options: &body, order: order, offset: offset)
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
                let ticks = UInt64(high) << 32 | UInt64(low)
                let perSecond = interfaces[Int(interfaceID)].ticksPerSecond
                let nanoseconds = UInt128(ticks % perSecond) * 1_000_000_000 / UInt128(perSecond)
                records.append(PcapRecord(seconds: ticks / perSecond, nanoseconds: UInt32(nanoseconds),
                                          originalLength: Int(originalLength), data: Array(data)))

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

    /// if_tsresol (option 9): 10^-n seconds, or 2^-n with the high bit set; default 10^-6.
    private static func timestampResolution(options: inout ByteCursor, order: ByteCursor.ByteOrder,
                                            offset: Int) throws(PcapError) -> UInt64 {
        while let code = options.read(UInt16.self, byteOrder: order),
              let length = options.read(UInt16.self, byteOrder: order), code != 0 {
            guard let value = options.readBytes(Int(length)), options.skip((4 - Int(length) % 4) % 4)
            else { throw .badBlock(offset: offset, reason: "option \(code) runs past the block") }
            guard code == 9, let resolution = value.first else { continue }
            let exponent = UInt64(resolution & 0x7f)
            if resolution & 0x80 != 0 {
                guard exponent < 64 else { throw .unsupportedTimestampResolution(offset: offset, code: resolution) }
                return 1 << exponent
            }
            guard exponent <= 19 else { throw .unsupportedTimestampResolution(offset: offset, code: resolution) }
            return (0 ..< exponent).reduce(1) { power, _ in power * 10 }
        }
        return 1_000_000
    }
}

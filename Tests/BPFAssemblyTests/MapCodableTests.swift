import PropertyBased
import Testing
import BPFAssembly

/// The codec every map key and value goes through: integers in host order (little-endian
/// here), fixed arrays element by element, enums as their raw value.
@Suite struct MapCodableTests {
    @Test func integersRoundTripInLittleEndian() async {
        await propertyCheck(count: 500, input: Gen<UInt64>.value()) { word in
            expectRoundTrip(UInt8(truncatingIfNeeded: word))
            expectRoundTrip(UInt16(truncatingIfNeeded: word))
            expectRoundTrip(UInt32(truncatingIfNeeded: word))
            expectRoundTrip(word)
            expectRoundTrip(Int8(truncatingIfNeeded: word))
            expectRoundTrip(Int16(truncatingIfNeeded: word))
            expectRoundTrip(Int32(truncatingIfNeeded: word))
            expectRoundTrip(Int64(bitPattern: word))
            #expect(word.encodedBytes == withUnsafeBytes(of: word.littleEndian, Array.init))
            #expect(UInt32(truncatingIfNeeded: word).encodedBytes == Array(word.encodedBytes.prefix(4)))
        }
    }

    @Test func fixedArraysAreTheirElementsEndToEnd() async {
        await propertyCheck(count: 300, input: Gen.uint8().array(of: 6 ... 6), Gen<UInt16>.value()) { mac, port in
            let address = InlineArray<6, UInt8> { mac[$0] }
            #expect(InlineArray<6, UInt8>.byteCount == 6)
            #expect(address.encodedBytes == mac)
            let decoded = try? InlineArray<6, UInt8>(decoding: mac)
            #expect(decoded.map { d in (0 ..< 6).map { d[$0] } } == mac)

            let ports = InlineArray<3, UInt16>(repeating: port)
            #expect(InlineArray<3, UInt16>.byteCount == 6)
            #expect(ports.encodedBytes == port.encodedBytes + port.encodedBytes + port.encodedBytes)
        }
    }

    @Test func enumsAreTheirRawValue() throws {
        #expect(Colour.byteCount == 2)
        #expect(Colour.blue.encodedBytes == [0x02, 0x01])
        #expect(try Colour(decoding: [0x01, 0x00]) == .red)
        #expect(throws: ByteDecodingError.invalidField(type: "Colour", offset: 0, value: 7)) {
            try Colour(decoding: [0x07, 0x00])
        }
    }

    @Test func structsWriteTheirFieldsInOrder() async {
        await propertyCheck(count: 300, input: Gen<UInt32>.value(), Gen<UInt16>.value(), Gen<UInt8>.value()) {
            a, b, c in
            let pair = Entry(index: a, port: b, colour: c % 2 == 0 ? .red : .blue)
            #expect(pair.encodedBytes == a.encodedBytes + b.encodedBytes + pair.colour.encodedBytes + [0, 0])
            #expect((try? Entry(decoding: pair.encodedBytes)) == pair)
        }
    }

    @Test func refusesBytesOfTheWrongLength() {
        #expect(throws: ByteDecodingError.truncated(type: "UInt32", needed: 4, available: 3)) {
            try UInt32(decoding: [1, 2, 3])
        }
        #expect(throws: ByteDecodingError.trailingBytes(type: "UInt16", count: 1)) {
            try UInt16(decoding: [1, 2, 3])
        }
        #expect(ByteDecodingError.truncated(type: "Entry", needed: 10, available: 3).description
            == "Entry needs 10 bytes, only 3 left")
    }

    @Test func writerPadsFieldsAndReaderSkipsThem() throws {
        var writer = ByteWriter()
        writer.write(bytes: [0xaa, 0xbb], paddedTo: 4)
        writer.write(UInt16(0x0102))
        #expect(writer.bytes == [0xaa, 0xbb, 0, 0, 0x02, 0x01])
        var reader = ByteReader(writer.bytes)
        #expect(try reader.read(byteCount: 2) == [0xaa, 0xbb])
        try reader.skip(2)
        #expect(try reader.peekByte() == 0x02)
        #expect(try reader.read(UInt16.self) == 0x0102)
        #expect(reader.remaining == 0)
    }

    private func expectRoundTrip<T: MapCodable & FixedWidthInteger>(_ value: T) {
        #expect(value.encodedBytes.count == T.byteCount)
        #expect(T.byteCount == MemoryLayout<T>.size)
        #expect((try? T(decoding: value.encodedBytes)) == value)
    }
}

private enum Colour: UInt16, MapCodable {
    case red = 1, blue = 0x0102
}

/// A key as a program might declare one: a u32, a u16, an enum, two bytes of padding.
private struct Entry: MapCodable, Equatable {
    var index: UInt32
    var port: UInt16
    var colour: Colour

    init(index: UInt32, port: UInt16, colour: Colour) {
        self.index = index
        self.port = port
        self.colour = colour
    }

    static let byteCount = 10

    func encode(into writer: inout ByteWriter) {
        writer.write(index)
        writer.write(port)
        writer.write(colour)
        writer.writeZeros(2)
    }

    init(from reader: inout ByteReader) throws(ByteDecodingError) {
        index = try reader.read()
        port = try reader.read()
        colour = try reader.read()
        try reader.skip(2)
    }
}

import Packets
import Testing

@Suite struct ByteCursorTests {
    @Test func readsNetworkOrderByDefaultAndLittleEndianOnRequest() {
        var cursor = ByteCursor([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde])
        #expect(cursor.read(UInt16.self) == 0x1234)
        #expect(cursor.read(UInt32.self, byteOrder: .littleEndian) == 0xbc9a_7856)
        #expect(cursor.read(UInt8.self) == 0xde)
        #expect(cursor.offset == 7)
        #expect(cursor.remaining == 0)
    }

    @Test func aReadPastTheEndReturnsNilAndDoesNotMove() {
        var cursor = ByteCursor([1, 2, 3])
        #expect(cursor.read(UInt32.self) == nil)
        #expect(cursor.readBytes(4) == nil)
        let skipped = cursor.skip(4)
        #expect(!skipped)
        #expect(cursor.take(4) == nil)
        #expect(cursor.offset == 0)
        #expect(cursor.read(UInt16.self) == 0x0102)
        #expect(cursor.read(UInt16.self) == nil)
        #expect(cursor.read(UInt8.self) == 3)
        #expect(cursor.read(UInt8.self) == nil)
    }

    @Test func negativeCountsAreRefused() {
        var cursor = ByteCursor([1, 2, 3])
        let skipped = cursor.skip(-1)
        #expect(!skipped)
        #expect(cursor.readBytes(-1) == nil)
        #expect(cursor.offset == 0)
    }

    @Test func takeBoundsTheSubCursorAndMovesPastIt() throws {
        var cursor = ByteCursor([1, 2, 3, 4, 5])
        let taken = cursor.take(2)
        var header = try #require(taken)
        #expect(header.read(UInt16.self) == 0x0102)
        #expect(header.read(UInt8.self) == nil)  // byte 3 belongs to the outer cursor
        #expect(cursor.offset == 2)
        #expect(cursor.read(UInt8.self) == 3)
    }

    @Test func slicesReadFromTheirOwnStart() {
        let bytes: [UInt8] = [9, 9, 0xab, 0xcd]
        var cursor = ByteCursor(bytes[2...])
        #expect(cursor.offset == 0)
        #expect(cursor.read(UInt16.self) == 0xabcd)
        #expect(cursor.offset == 2)
    }
}

import Packets
import Testing

/// dst 02:00:00:00:00:01, src 02:00:00:00:00:02, EtherType IPv4, 4 payload bytes.
private let untagged: [UInt8] = [
    0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef,
]

/// The frame after `edit`, or nil when the edit refused; a refused edit must leave the
/// frame unchanged.
private func applying(_ edit: (inout [UInt8]) -> Bool, to frame: [UInt8],
                      sourceLocation: SourceLocation = #_sourceLocation) -> [UInt8]? {
    var copy = frame
    guard edit(&copy) else {
        #expect(copy == frame, "a refused edit changed the frame", sourceLocation: sourceLocation)
        return nil
    }
    return copy
}

private func push(_ tag: VLANTag) -> (inout [UInt8]) -> Bool { { $0.pushVLAN(tag) } }
private func modify(_ tag: VLANTag) -> (inout [UInt8]) -> Bool { { $0.modifyVLAN(tag) } }
private func pop(_ frame: inout [UInt8]) -> Bool { frame.popVLAN() }

@Suite struct FrameEditsTests {
    @Test func pushWritesTPIDAndTCIAfterTheMACs() {
        let pushed = applying(push(VLANTag(tpid: 0x8100, priority: 5, id: 0x123)), to: untagged)
        #expect(pushed == Array(untagged[0 ..< 12]) + [0x81, 0x00, 0xa1, 0x23] + Array(untagged[12...]))
    }

    @Test func pushTwiceStacksTheNewTagOutermost() throws {
        let inner = try #require(applying(push(VLANTag(tpid: 0x8100, priority: 0, id: 10)), to: untagged))
        let outer = try #require(applying(push(VLANTag(tpid: 0x88a8, priority: 7, id: 4095)), to: inner))
        #expect(Array(outer[12 ..< 20]) == [0x88, 0xa8, 0xef, 0xff, 0x81, 0x00, 0x00, 0x0a])
    }

    @Test(arguments: 0 ... 13)
    func pushRefusesFramesWithoutAnEtherType(length: Int) {
        #expect(applying(push(VLANTag(tpid: 0x8100, priority: 0, id: 1)), to: Array(untagged.prefix(length))) == nil)
    }

    @Test func pushOnAnExactly14ByteFrame() {
        let pushed = applying(push(VLANTag(tpid: 0x8100, priority: 0, id: 1)), to: Array(untagged.prefix(14)))
        #expect(pushed == Array(untagged[0 ..< 12]) + [0x81, 0x00, 0x00, 0x01, 0x08, 0x00])
    }

    @Test(arguments: [UInt16(0x8100), 0x88a8], 0 ... 7)
    func popUndoesPush(tpid: UInt16, priority: Int) throws {
        let pushed = try #require(applying(push(VLANTag(tpid: tpid, priority: UInt8(priority), id: 42)), to: untagged))
        #expect(applying(pop, to: pushed) == untagged)
    }

    @Test func popRemovesOnlyTheOuterTag() throws {
        let single = try #require(applying(push(VLANTag(tpid: 0x8100, priority: 1, id: 100)), to: untagged))
        let double = try #require(applying(push(VLANTag(tpid: 0x88a8, priority: 2, id: 200)), to: single))
        #expect(applying(pop, to: double) == single)
    }

    @Test func popIgnoresOtherEtherTypes() {
        #expect(applying(pop, to: untagged) == nil)
        // 0x9100, an old QinQ TPID, is not a tag for tc flower's dissector either.
        let oldQinQ = Array(untagged[0 ..< 12]) + [0x91, 0x00, 0x00, 0x05] + Array(untagged[12...])
        #expect(applying(pop, to: oldQinQ) == nil)
    }

    /// A tag needs its TPID, TCI and the following EtherType: 18 bytes in all.
    @Test(arguments: 12 ... 17)
    func popRefusesATruncatedTag(length: Int) throws {
        let tagged = try #require(applying(push(VLANTag(tpid: 0x8100, priority: 0, id: 7)), to: untagged))
        #expect(applying(pop, to: Array(tagged.prefix(length))) == nil)
        #expect(applying(pop, to: Array(tagged.prefix(18))) == Array(untagged.prefix(14)))
    }

    @Test func modifyRewritesTPIDPriorityAndIdAndKeepsDEI() {
        // priority 1, DEI 1, id 5
        let tagged = Array(untagged[0 ..< 12]) + [0x81, 0x00, 0x30, 0x05] + Array(untagged[12...])
        let modified = applying(modify(VLANTag(tpid: 0x88a8, priority: 6, id: 0xabc)), to: tagged)
        #expect(modified == Array(untagged[0 ..< 12]) + [0x88, 0xa8, 0xda, 0xbc] + Array(untagged[12...]))
    }

    @Test func modifyThenModifyBackRestoresTheFrame() throws {
        let tagged = try #require(applying(push(VLANTag(tpid: 0x8100, priority: 3, id: 300)), to: untagged))
        let modified = try #require(applying(modify(VLANTag(tpid: 0x88a8, priority: 0, id: 1)), to: tagged))
        #expect(modified != tagged)
        #expect(applying(modify(VLANTag(tpid: 0x8100, priority: 3, id: 300)), to: modified) == tagged)
    }

    @Test func modifyNeedsACompleteTag() {
        #expect(applying(modify(VLANTag(tpid: 0x8100, priority: 0, id: 1)), to: untagged) == nil)
        let truncated = Array(untagged[0 ..< 12]) + [0x81, 0x00, 0x00, 0x05, 0x08]
        #expect(applying(modify(VLANTag(tpid: 0x8100, priority: 0, id: 1)), to: truncated) == nil)
    }

    @Test func setMACsWriteTheFirstOctetFirst() {
        let edited = applying({
            $0.setDestinationMAC(MACAddress(rawValue: 0xaabb_ccdd_eeff))
                && $0.setSourceMAC(MACAddress(rawValue: 0x1122_3344_5566))
        }, to: untagged)
        #expect(edited == [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66]
            + Array(untagged[12...]))
    }

    @Test func setMACsNeedTheirBytes() {
        let mac = MACAddress(rawValue: 0x0102_0304_0506)
        #expect(applying({ $0.setDestinationMAC(mac) }, to: Array(repeating: 0, count: 5)) == nil)
        #expect(applying({ $0.setDestinationMAC(mac) }, to: Array(repeating: 0, count: 6)) == [1, 2, 3, 4, 5, 6])
        #expect(applying({ $0.setSourceMAC(mac) }, to: Array(repeating: 0, count: 11)) == nil)
        #expect(applying({ $0.setSourceMAC(mac) }, to: Array(repeating: 0, count: 12))
            == [0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6])
    }
}

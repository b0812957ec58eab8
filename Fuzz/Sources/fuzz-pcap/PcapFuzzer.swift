import Packets

/// libFuzzer's entry point: the input is a capture file, classic pcap or pcapng, as
/// `xdpflow trace` and `xdpflow gen --pcap` read one. Reading must refuse what it cannot
/// read with an error, never trap; a file it reads must survive the writer (what it
/// writes reads back as the same records, but for the losses the writer documents);
/// and every record's bytes go through the dissector, as they do in trace.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPcap(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let capture = try? PcapFile(parsing: Array(UnsafeBufferPointer(start: data, count: size))) else {
        return 0
    }
    let expected = PcapFile(records: capture.records.map(asWritten), linkType: capture.linkType,
                            snapLength: capture.snapLength)
    do {
        let reread = try PcapFile(parsing: capture.serialized())
        guard reread == expected else { fatalError("a capture read back differs from what was written") }
    } catch {
        fatalError("a capture that was read was written as one that cannot be read: \(error)")
    }
    for record in capture.records { _ = FlowKeys(dissecting: record.data) }
    return 0
}

/// What the writer keeps of a record: classic pcap's 32-bit seconds and microseconds, and
/// an original length no shorter than the captured bytes.
func asWritten(_ record: PcapRecord) -> PcapRecord {
    PcapRecord(seconds: record.seconds & 0xffff_ffff, nanoseconds: record.nanoseconds / 1000 * 1000,
               originalLength: Int(UInt32(truncatingIfNeeded: max(record.originalLength, record.data.count))),
               data: record.data)
}

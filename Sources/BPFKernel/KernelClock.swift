import BPFAssembly

/// The kernel's jiffies, as `bpf_jiffies64` reads them in a program: the clock of the
/// rule counters' last-hit times. The verifier inlines `bpf_jiffies64`, where
/// `bpf_ktime_get_ns` is a helper call costing tens of nanoseconds a packet.
///
/// Userspace has no jiffies of its own, so a small program reads them (with
/// `bpf_ktime_get_ns`) into a map under BPF_PROG_TEST_RUN; HZ is measured across two
/// ticks and rounded to the nearest CONFIG_HZ choice.
public struct KernelClock: Sendable {
    public let jiffies: UInt64
    public let hz: UInt64

    /// Seconds from `then` (jiffies) to this clock's reading; nil for 0 (never).
    public func seconds(since then: UInt64) -> UInt64? {
        then == 0 ? nil : (jiffies &- then) / hz
    }

    public static func now() throws(BPFError) -> KernelClock {
        let reader = try Reader()
        var first = try reader.sample()
        var start: (jiffies: UInt64, nanoseconds: UInt64)?
        // Time from one tick to the next (at most 10 ms for HZ 100).
        while true {
            let sample = try reader.sample()
            guard sample.jiffies != first.jiffies else { continue }
            if let start {
                let perTick = Double(sample.nanoseconds - start.nanoseconds) / Double(sample.jiffies - start.jiffies)
                let measured = 1e9 / perTick
                let hz = [100, 250, 300, 1000].min { abs(Double($0) - measured) < abs(Double($1) - measured) }!
                return KernelClock(jiffies: sample.jiffies, hz: UInt64(hz))
            }
            start = sample
            first = sample
        }
    }

    /// A program that writes jiffies and CLOCK_MONOTONIC nanoseconds to its map.
    private struct Reader {
        let map: ArrayMap<Sample>
        let program: Program

        /// What the program writes: the two clocks, read one after the other.
        struct Sample: MapCodable {
            var jiffies: UInt64
            var nanoseconds: UInt64

            static let byteCount = 16

            func encode(into writer: inout ByteWriter) {
                writer.write(jiffies)
                writer.write(nanoseconds)
            }

            init(from reader: inout ByteReader) throws(ByteDecodingError) {
                jiffies = try reader.read()
                nanoseconds = try reader.read()
            }
        }

        init() throws(BPFError) {
            map = try ArrayMap(name: "xf_clock", maxEntries: 1)
            var asm = Assembler()
            asm.emit([.store(.word, to: .fp, -4, 0), .loadMap(.r1, "xf_clock"), .mov(.r2, .fp), .alu(.add, .r2, -4),
                      .call(.mapLookupElem), .jump(.equal, .r0, 0, to: "out"), .mov(.r6, .r0),
                      .call(.jiffies64), .store(.double, to: .r6, 0, .r0),
                      .call(.ktimeGetNs), .store(.double, to: .r6, 8, .r0)])
            asm.label("out")
            asm.emit(Instruction.return(XDPAction.pass))
            let instructions: [Instruction]
            do {
                instructions = try asm.assemble()
            } catch {
                throw .assembly(program: "xdpflow_clock", error)
            }
            program = try Program.loadXDP(name: "xdpflow_clock", instructions: instructions, maps: ["xf_clock": map.map])
        }

        func sample() throws(BPFError) -> (jiffies: UInt64, nanoseconds: UInt64) {
            _ = try program.testRun(TestRun(packet: [UInt8](repeating: 0, count: 14)))
            let sample = try map.get(0)
            return (sample?.jiffies ?? 0, sample?.nanoseconds ?? 0)
        }
    }
}

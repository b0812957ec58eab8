import BPFAssembly

/// The tc ingress program that hands XDP's mark to the stack. XDP has no skb to mark: the
/// XDP program writes the mark into the frame's metadata (`FlowMetadata`), which the
/// kernel keeps in front of the skb's data, and this program, run at tc ingress (before
/// netfilter's ingress hook, routing and sockets), copies it into `skb->mark`, as tc's
/// `skbedit mark` would have. A frame without XDPFlow's metadata is left as it is.
///
/// It returns TCX_NEXT, so it decides nothing: what runs after it (other tcx programs,
/// classic tc) sees the frame as if it were not there, mark aside.
public enum MarkCompanion {
    public static let name = "xdpflow_mark"

    /// TCX_NEXT (-1): "no verdict, go on to the next program" (TC_ACT_UNSPEC for classic tc).
    public static let next: Int32 = -1

    /// The program, labels resolved. Metadata is read only when the whole area,
    /// `FlowMetadata.length` bytes, lies before the packet data, and it is XDPFlow's when
    /// both header words are (magic, version, length, and the mark's offset).
    public static func instructions() throws(AssemblyError) -> [Instruction] {
        let header = FlowMetadata.header
        let words = [0, 4].map { start in
            (0 ..< 4).reduce(UInt32(0)) { $0 | UInt32(header[start + $1]) << ($1 * 8) }
        }
        var asm = Assembler()
        asm.emit([.load(.r2, .word, from: .r1, SKBuffContext.dataMeta), .load(.r3, .word, from: .r1, SKBuffContext.data),
                  .mov(.r4, .r2), .alu(.add, .r4, Int32(FlowMetadata.length)), .jump(.greater, .r4, .r3, to: "out"),
                  // 32-bit compares: a header word is a u32, and a 64-bit compare would
                  // sign-extend the immediate.
                  .load(.r4, .word, from: .r2, 0),
                  .jump(.notEqual, .r4, Int32(bitPattern: words[0]), to: "out", .bits32),
                  .load(.r4, .word, from: .r2, 4),
                  .jump(.notEqual, .r4, Int32(bitPattern: words[1]), to: "out", .bits32),
                  .load(.r4, .word, from: .r2, Int16(FlowMetadata.markOffset)),
                  .store(.word, to: .r1, SKBuffContext.mark, .r4)])
        asm.label("out")
        asm.emit(Instruction.return(next))
        return try asm.assemble()
    }
}

/// Offsets of the fields of `struct __sk_buff` the companion uses (linux/bpf.h; the same
/// in every kernel since 4.15, as uapi fields never move).
public enum SKBuffContext {
    public static let mark: Int16 = 8
    public static let data: Int16 = 76
    public static let dataEnd: Int16 = 80
    public static let dataMeta: Int16 = 140
    /// sizeof(struct __sk_buff) in the 6.1 uapi header, for test runs that pass a context.
    public static let size = 192
}

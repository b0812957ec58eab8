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

    /// The program for areas of `layout`, labels resolved. The area is read only when it
    /// is exactly the layout's length (XDPFlow's program is the metadata's one writer),
    /// its trailer is XDPFlow's (magic, version, length) and it holds a mark.
    public static func instructions(for layout: FlowMetadata.Layout = .mark) throws(AssemblyError) -> [Instruction] {
        let length = Int32(layout.length)
        var asm = Assembler()
        asm.emit([.load(.r2, .word, from: .r1, SKBuffContext.dataMeta), .load(.r3, .word, from: .r1, SKBuffContext.data),
                  .mov(.r4, .r2), .alu(.add, .r4, length), .jump(.greater, .r4, .r3, to: "out"),
                  .jump(.notEqual, .r4, .r3, to: "out"),
                  // A 32-bit compare: the trailer is a u32, and a 64-bit compare would
                  // sign-extend the immediate.
                  .load(.r4, .word, from: .r2, Int16(layout.trailerOffset)),
                  .jump(.notEqual, .r4, Int32(bitPattern: layout.trailerWord), to: "out", .bits32),
                  .load(.r4, .byte, from: .r2, Int16(FlowMetadata.Key.mark.rawValue)), .jump(.equal, .r4, 0, to: "out"),
                  .load(.r4, .word, from: .r2, Int16(FlowMetadata.Layout.markOffset)),
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

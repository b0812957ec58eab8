/// What XDPFlow's program tells whoever handles a frame next, in the XDP metadata area in
/// front of the frame: a contract for readers outside XDPFlow (tc programs such as the
/// mark companion, AF_XDP consumers), specified in docs/compiler.md ("Metadata").
///
///     offset      size  field
///     0           4     offset of key 0, 1, 2, 3 (a byte each) from the area's start;
///                       0 = absent
///     4 ...             values, 4-byte aligned, host byte order
///     length - 4  4     trailer: 'x' 'f', version (2), length (a multiple of 4)
///
/// The area ends where the frame's data begins, so a reader that knows only where the
/// frame starts (an AF_XDP descriptor's address) finds the trailer just before it, and
/// from its length the rest. Keys: 0 the mark (u32), 1 the priority (u32; no action
/// writes it yet), 2 the rule that decided (u32 prio, u32 handle), 3 reserved.
public struct FlowMetadata: Hashable, Sendable {
    public static let magic: [UInt8] = [0x78, 0x66]
    public static let version: UInt8 = 2

    public enum Key: Int, CaseIterable, Sendable {
        case mark = 0, priority = 1, rule = 2

        /// Bytes of the key's value.
        public var size: Int { self == .rule ? 8 : 4 }
    }

    /// The areas XDPFlow's program writes: the mark only when an action sets one
    /// (`mark`), or on every frame a rule decides, the rule and the mark (`rule`: a
    /// consumer asked, `attach ... metadata rule`).
    public enum Layout: String, Hashable, Sendable, Codable, CaseIterable {
        case mark, rule

        /// The area's length.
        public var length: Int { self == .rule ? 20 : 12 }
        /// Where each key's value is in the area: the mark right after the offsets, the
        /// rule after the mark.
        public static let markOffset = 4
        public static let ruleOffset = 8
        public var trailerOffset: Int { length - 4 }

        /// The offsets word as a little-endian u32, with or without the mark.
        public func offsetsWord(mark: Bool) -> UInt32 {
            (mark ? UInt32(Self.markOffset) : 0) | (self == .rule ? UInt32(Self.ruleOffset) << 16 : 0)
        }

        /// The trailer as a little-endian u32.
        public var trailerWord: UInt32 {
            UInt32(magic[0]) | UInt32(magic[1]) << 8 | UInt32(version) << 16 | UInt32(length) << 24
        }
    }

    public var mark: UInt32?
    public var priority: UInt32?
    /// The rule that decided the frame (the last, when rules continue).
    public var rule: (prio: UInt32, handle: UInt32)? {
        get { ruleWord.map { (UInt32(truncatingIfNeeded: $0 >> 32), UInt32(truncatingIfNeeded: $0)) } }
        set { ruleWord = newValue.map { UInt64($0.prio) << 32 | UInt64($0.handle) } }
    }

    /// The rule as one value (prio, handle), so that the type stays Hashable.
    private var ruleWord: UInt64?

    public init(mark: UInt32? = nil, priority: UInt32? = nil, rule: (prio: UInt32, handle: UInt32)? = nil) {
        self.mark = mark
        self.priority = priority
        self.rule = rule
    }

    /// Reads the area at the end of `bytes` (everything before the frame's data, or just
    /// the area); nil unless it is a well-formed area of this version: the trailer's
    /// magic and version, a length that fits, and every present key's value inside the
    /// area, aligned, clear of the offsets and the trailer. Unknown keys are skipped.
    /// Reads in place, specialised where it is called: an AF_XDP consumer calls it for
    /// every frame.
    @inlinable
    public init?<Bytes: RandomAccessCollection<UInt8>>(endingAt bytes: Bytes) {
        guard bytes.count >= 8 else { return nil }
        func byte(_ fromEnd: Int) -> UInt8 { bytes[bytes.index(bytes.endIndex, offsetBy: -fromEnd)] }
        guard byte(4) == Self.magic[0], byte(3) == Self.magic[1], byte(2) == Self.version else { return nil }
        let length = Int(byte(1))
        guard length >= 8, length % 4 == 0, length <= bytes.count else { return nil }
        // Bytes of the area by their offset from its start.
        func at(_ offset: Int) -> UInt8 { byte(length - offset) }
        func word(_ offset: Int) -> UInt32 { (0 ..< 4).reduce(UInt32(0)) { $0 | UInt32(at(offset + $1)) << ($1 * 8) } }
        var offsets: (mark: Int?, priority: Int?, rule: Int?)
        for key in [Key.mark, .priority, .rule] {
            let offset = Int(at(key.rawValue))
            guard offset != 0 else { continue }
            guard offset >= 4, offset % 4 == 0, offset + key.size <= length - 4 else { return nil }
            switch key {
            case .mark: offsets.mark = offset
            case .priority: offsets.priority = offset
            case .rule: offsets.rule = offset
            }
        }
        self.init(mark: offsets.mark.map(word), priority: offsets.priority.map(word),
                  rule: offsets.rule.map { (word($0), word($0 + 4)) })
    }

    /// The area for `layout` holding these values: what the program writes, for tests
    /// and for readers' own tests. The priority has no place in either layout.
    public func area(_ layout: Layout) -> [UInt8] {
        var words = [layout.offsetsWord(mark: mark != nil), mark ?? 0]
        if layout == .rule { words += [rule?.prio ?? 0, rule?.handle ?? 0] }
        words.append(layout.trailerWord)
        return words.flatMap { word in (0 ..< 4).map { UInt8(truncatingIfNeeded: word >> ($0 * 8)) } }
    }
}

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
        get { ruleWords.map { ($0[0], $0[1]) } }
        set { ruleWords = newValue.map { [$0.prio, $0.handle] } }
    }

    private var ruleWords: [UInt32]?

    public init(mark: UInt32? = nil, priority: UInt32? = nil, rule: (prio: UInt32, handle: UInt32)? = nil) {
        self.mark = mark
        self.priority = priority
        self.rule = rule
    }

    /// Reads the area at the end of `bytes` (everything before the frame's data, or just
    /// the area); nil unless it is a well-formed area of this version: the trailer's
    /// magic and version, a length that fits, and every present key's value inside the
    /// area, aligned, clear of the offsets and the trailer. Unknown keys are skipped.
    public init?(endingAt bytes: some Collection<UInt8>) {
        let bytes = Array(bytes)
        guard bytes.count >= 8 else { return nil }
        let trailer = bytes.count - 4
        guard Array(bytes[trailer ..< trailer + 3]) == Self.magic + [Self.version] else { return nil }
        let length = Int(bytes[trailer + 3])
        guard length >= 8, length % 4 == 0, length <= bytes.count else { return nil }
        let area = Array(bytes[(bytes.count - length)...])
        func word(_ at: Int) -> UInt32 { (0 ..< 4).reduce(UInt32(0)) { $0 | UInt32(area[at + $1]) << ($1 * 8) } }
        var values: [Key: Int] = [:]
        for key in Key.allCases {
            let offset = Int(area[key.rawValue])
            guard offset != 0 else { continue }
            guard offset >= 4, offset % 4 == 0, offset + key.size <= length - 4 else { return nil }
            values[key] = offset
        }
        self.init(mark: values[.mark].map(word), priority: values[.priority].map(word),
                  rule: values[.rule].map { (word($0), word($0 + 4)) })
    }

    /// The area for `layout` holding these values: what the program writes, for tests
    /// and for readers' own tests. The priority has no place in either layout.
    public func area(_ layout: Layout) -> [UInt8] {
        var words = [layout.offsetsWord(mark: mark != nil), mark ?? 0]
        if layout == .rule { words += ruleWords ?? [0, 0] }
        words.append(layout.trailerWord)
        return words.flatMap { word in (0 ..< 4).map { UInt8(truncatingIfNeeded: word >> ($0 * 8)) } }
    }
}

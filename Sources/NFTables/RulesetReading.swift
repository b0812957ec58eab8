import FlowRules

/// Why `nft -j` output cannot be read: the document and the object that failed.
public struct RulesetError: Error, Hashable, Sendable, CustomStringConvertible {
    public var what: String

    public init(_ what: String) { self.what = what }

    public var description: String { "nft -j: \(what)" }
}

extension Ruleset {
    /// Reads `nft -j list ruleset`. nft 1.0.6 leaves the devices of a netdev chain out
    /// of its JSON (`addDevices(fromListing:)` takes them from the text).
    public init(json: [UInt8]) throws(RulesetError) {
        var reader = Reader()
        try reader.read(json)
        self = try reader.finish()
    }

    /// `nft -j list ruleset` read as nft prints it: each object of its `"nftables"` array
    /// as soon as it is whole (`JSONValue.ArrayStream`).
    public struct Reader {
        private var ruleset = Ruleset()
        private var objects = JSONValue.ArrayStream(key: "nftables")

        public init() {}

        /// The document's next bytes.
        public mutating func read(_ bytes: some Collection<UInt8>) throws(RulesetError) {
            let read: [JSONValue]
            do {
                read = try objects.read(bytes)
            } catch {
                throw RulesetError("not JSON: \(error)")
            }
            for object in read { try ruleset.add(object) }
        }

        /// The ruleset, once the document ended whole.
        public func finish() throws(RulesetError) -> Ruleset {
            do {
                try objects.finish()
            } catch {
                throw RulesetError("not JSON: \(error)")
            }
            return ruleset
        }
    }

    /// One object of the `"nftables"` array: a table, chain, set, map or rule (the
    /// others, metainfo and what is not offloaded, are left out).
    mutating func add(_ object: JSONValue) throws(RulesetError) {
        guard let (kind, body) = object.singleMember else { return }
        switch kind {
        case "table":
            // nft 1.0.6 writes the table's name where its flags go (or stops its output
            // there, which is then no JSON): a flag it cannot name is taken for dormant
            // here, until the text says.
            let flags = Self.flags(body).filter { $0 != "owner" && $0 != "persist" }
            let unread = flags.contains { $0 != "dormant" }
            tables.append(Table(id: try Self.tableID(body), handle: body["handle"]?.integer ?? 0,
                                isDormant: unread || !flags.isEmpty, flagsUnread: unread))
        case "chain":
            var chain = Chain(table: try Self.tableID(body), name: try Self.name(body),
                              handle: body["handle"]?.integer ?? 0)
            if let hook = body["hook"]?.string {
                let listed = body["dev"].map { $0.array?.compactMap(\.string) ?? [$0.string].compactMap { $0 } } ?? []
                chain.base = BaseChain(type: body["type"]?.string ?? "filter", hook: hook,
                                       priority: body["prio"]?.integer ?? 0,
                                       policy: body["policy"]?.string == "drop" ? .drop : .accept,
                                       devices: listed)
            }
            chains.append(chain)
        case "set", "map":
            let elements = body["elem"]?.array ?? []
            let expiring = elements.contains { $0["elem"]?["timeout"] != nil || $0["elem"]?["expires"] != nil }
            let flags = Self.flags(body)
            sets.append(NamedSet(table: try Self.tableID(body), name: try Self.name(body), isMap: kind == "map",
                                 elements: elements.map(Expression.init(json:)),
                                 changesUnseen: flags.contains("dynamic") || flags.contains("timeout")
                                     || body["timeout"] != nil || expiring))
        case "rule":
            rules.append(try Self.rule(body))
        default:
            return
        }
    }

    /// A `"rule"` object's body.
    static func rule(_ body: JSONValue) throws(RulesetError) -> Rule {
        guard let chain = body["chain"]?.string, let handle = body["handle"]?.integer else {
            throw RulesetError("a rule without its chain or handle")
        }
        return Rule(table: try tableID(body), chain: chain, handle: handle,
                    statements: (body["expr"]?.array ?? []).map(Statement.init(json:)), comment: body["comment"]?.string)
    }

    /// `"flags": "dormant"` or `"flags": ["interval", ...]`.
    private static func flags(_ body: JSONValue) -> [String] {
        body["flags"].map { $0.array?.compactMap(\.string) ?? [$0.string].compactMap { $0 } } ?? []
    }

    static func tableID(_ body: JSONValue) throws(RulesetError) -> TableID {
        guard let familyName = body["family"]?.string, let family = Family(rawValue: familyName),
              let table = body["table"]?.string ?? body["name"]?.string else {
            throw RulesetError("an object without its family and table: \(body.serialized(pretty: false))")
        }
        return TableID(family, table)
    }

    static func name(_ body: JSONValue) throws(RulesetError) -> String {
        guard let name = body["name"]?.string else {
            throw RulesetError("an object without its name: \(body.serialized(pretty: false))")
        }
        return name
    }

    /// The devices of the base chains the JSON left without, from `nft list chains`'
    /// (or `list ruleset`'s) text: `device "X"` or `devices = { X, Y }` on the chain's
    /// `type ... hook ...` line.
    public mutating func addDevices(fromListing listing: String) {
        var table: TableID?
        var chain: String?
        for words in Self.words(ofLines: listing) {
            if words.first == "table", words.count >= 3, let family = Family(rawValue: String(words[1])) {
                table = TableID(family, Self.unquoted(words[2]))
            } else if words.first == "chain", words.count >= 2 {
                chain = Self.unquoted(words[1])
            } else if words.first == "type", let table, let chain,
                      let at = words.firstIndex(where: { $0 == "device" || $0 == "devices" }),
                      let index = chains.firstIndex(where: { $0.table == table && $0.name == chain }),
                      chains[index].base?.devices.isEmpty == true {
                // The names up to `priority`, without the set's punctuation.
                chains[index].base?.devices = words[(at + 1)...].prefix { $0 != "priority" }
                    .flatMap { $0.split(whereSeparator: { "={},;".contains($0) }) }
                    .map(Self.unquoted).filter { !$0.isEmpty }
            }
        }
    }

    /// Whether `nft list table FAMILY NAME`'s text says `flags dormant`.
    public static func dormant(inListing listing: String) -> Bool {
        words(ofLines: listing).contains { words in
            words.first == "flags" && words.dropFirst().contains { Self.unquoted($0) == "dormant" }
        }
    }

    /// Each line of nft's text as its words.
    private static func words(ofLines text: String) -> [[Substring]] {
        text.split(separator: "\n").map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }) }
    }

    /// A word without its closing `;` or `,` and its quotes.
    private static func unquoted(_ word: Substring) -> String {
        var word = word
        if word.hasSuffix(";") || word.hasSuffix(",") { word = word.dropLast() }
        if word.count >= 2, word.hasPrefix("\""), word.hasSuffix("\"") { word = word.dropFirst().dropLast() }
        return String(word)
    }
}

extension Statement {
    init(json: JSONValue) {
        guard let (kind, body) = json.singleMember else {
            self = .other(json.serialized(pretty: false))
            return
        }
        switch kind {
        case "match":
            self = .match(Match(op: body["op"]?.string ?? "==", left: Expression(json: body["left"] ?? .null),
                                right: Expression(json: body["right"] ?? .null)))
        case "counter":
            self = .counter(packets: UInt64(body["packets"]?.integer ?? 0), bytes: UInt64(body["bytes"]?.integer ?? 0))
        case "mangle" where body["key"]?["meta"]?["key"]?.string == "mark":
            self = .setMark
        case "vmap":
            self = .verdictMap(key: Expression(json: body["key"] ?? .null), map: Expression(json: body["data"] ?? .null))
        default:
            if let verdict = Verdict(json: json) {
                self = .verdict(verdict)
            } else {
                self = .other(kind)
            }
        }
    }
}

extension Verdict {
    /// `{"accept": null}`, `{"jump": {"target": "NAME"}}`, ...; nil for anything else.
    init?(json: JSONValue) {
        guard let (kind, body) = json.singleMember else { return nil }
        switch kind {
        case "accept": self = .accept
        case "drop": self = .drop
        case "continue": self = .continue
        case "return": self = .return
        case "jump": guard let target = body["target"]?.string else { return nil }; self = .jump(target)
        case "goto": guard let target = body["target"]?.string else { return nil }; self = .goto(target)
        default: return nil
        }
    }
}

extension Expression {
    init(json: JSONValue) {
        switch json {
        case .string(let text) where text.hasPrefix("@"):
            self = .reference(String(text.dropFirst()))
        case .string, .number, .real, .bool:
            self = .value(json)
        case .array(let items):
            // A map element as `[KEY, DATA]`.
            if items.count == 2 {
                self = .mapping(Expression(json: items[0]), Verdict(json: items[1]).map(MapData.verdict) ?? .other)
            } else {
                self = .other("array")
            }
        default:
            guard let (kind, body) = json.singleMember else {
                self = .other(json.serialized(pretty: false))
                return
            }
            switch kind {
            case "payload":
                if let proto = body["protocol"]?.string, let field = body["field"]?.string {
                    self = .payload(protocol: proto, field: field)
                } else {
                    self = .other("raw payload")
                }
            case "meta":
                self = body["key"]?.string.map(Expression.meta) ?? .other("meta")
            case "concat":
                self = .concatenation((body.array ?? []).map(Expression.init(json:)))
            case "prefix":
                if let address = body["addr"]?.string, let length = body["len"]?.integer {
                    self = .prefix(address: address, length: length)
                } else {
                    self = .other("prefix")
                }
            case "range":
                let ends = body.array ?? []
                self = ends.count == 2 ? .range(Expression(json: ends[0]), Expression(json: ends[1])) : .other("range")
            case "set":
                // An anonymous set of one element is written without the array.
                self = .set((body.array ?? [body]).map(Expression.init(json:)))
            case "elem":
                self = Expression(json: body["val"] ?? .null)
            default:
                self = .other(kind)
            }
        }
    }
}

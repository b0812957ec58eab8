import ArgumentParser
import BPFAssembly
import FlowCompiler
import FlowOffload
import FlowRules
import FoundationEssentials
import Glibc

/// `xdpflow compile -batch FILE [dev DEV]`: the plan and program a rule file compiles
/// to, shown without touching a device.
struct Compile: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the subtables and XDP program a rule file compiles to.",
        usage: "xdpflow compile -batch FILE [-j [-p]] [--dump] [--verify] [dev DEV]",
        discussion: """
            The commands of FILE (filter add lines, as for 'xdpflow -batch') run on an empty \
            rule set kept in memory: the rule store is neither read nor written, and no \
            device needs to exist. DEV picks the device whose rules are compiled (default: \
            the one device FILE names); a redirect to DEV itself becomes XDP_TX.

            OUTPUT
              One line per subtable, in lookup order (within a prio every subtable is
              looked up and the lowest handle wins): prio, the BPF map, its storage
              (array N: indexed by the key, no hashing; hash N: capacity), entries, key
              bytes and each field with its mask (hex). Then the totals: rules, entries,
              subtables, instructions (8-byte slots, as the verifier counts) and the
              layers the program parses past Ethernet and VLAN tags. -j prints one JSON
              object (schema in docs/compiler.md).

            OPTIONS (also accepted before 'compile', as iproute2's global options)
              -batch FILE  the rules: filter commands, one per line ('-': standard
                           input), as 'xdpflow -batch' reads them
              -j, -json    print JSON; -p, -pretty indents it

            EXIT STATUS
              0 done; 1 the file cannot be read, or the kernel refused the program
              (--verify); 2 the rules cannot be compiled (a command that cannot be
              read, a rule set error, a rule XDP cannot run: the message names the line).
            """)

    /// Hidden: the discussion lists the ones that apply (-s does not).
    @OptionGroup(visibility: .hidden) var global: GlobalOptions

    @Argument(help: deviceHelp)
    var words: [String] = []

    @Flag(help: "Add the program's disassembly.")
    var dump = false

    @Flag(help: "Load the program through the kernel verifier (needs root; maps redirect targets to lo).")
    var verify = false

    func validate() throws { _ = try global.ruleSource(deviceWords: words, command: "compile") }

    func run() throws {
        let file = try RuleFile(global.ruleSource(deviceWords: words, command: "compile"))
        let plan = try file.plan()
        let listing: (instructions: [Instruction], labels: [Label: Int])
        do {
            listing = try CodeGenerator.listing(plan)
        } catch {
            throw CommandError.refused(OffloadError.assembly(error))
        }
        var report = PlanReport(plan: plan, instructions: listing.instructions, labels: listing.labels, dump: dump)
        if verify {
            report.verifiedSlots = try file.load(plan).program?.slotCount
        }
        global.print(json: report.json, text: report.text)
    }
}

let deviceHelp = ArgumentHelp("The device whose rules are compiled (default: the one FILE names); a redirect to it is XDP_TX.",
                              valueName: "dev DEV")

extension GlobalOptions {
    /// The rule file and device of `compile` and `trace`: -batch names the rules, `dev DEV`
    /// (optional) the device; -s has nothing to show.
    func ruleSource(deviceWords: [String], command: String) throws -> (path: String, device: String?) {
        guard !stats else { throw ValidationError("-s: \(command) has no counters to show") }
        guard let batch else { throw ValidationError("missing -batch FILE: the rules to compile") }
        return (batch, deviceWords.isEmpty ? nil : try DeviceWords.device(in: deviceWords, command: command))
    }

    var output: OutputOptions { OutputOptions(stats: stats, json: json, pretty: pretty) }

    func print(json: @autoclosure () -> JSON, text: @autoclosure () -> String) {
        output.print(json: json(), text: text())
    }
}

/// The rules of a `-batch` file as `compile` and `trace` read them: its commands run in
/// order on empty rule sets kept in memory, one per device, and one device's set is taken.
struct RuleFile {
    /// Redirect targets need not exist where rules are compiled: the devmap sends them all
    /// to lo (ifindex 1), which every network namespace has.
    static let redirectIndex: UInt32 = 1

    let path: String
    let device: String
    let rules: RuleSet
    /// The line of the command that last stored each rule, to name it in errors.
    let lines: [RuleID: Int]

    init(_ source: (path: String, device: String?)) throws {
        path = source.path
        let text = try BatchFile.text(at: path)
        let batch: Batch
        do {
            batch = try Batch(text: text)
        } catch {
            throw CommandError.at(path, .unreadable(error))
        }
        var sets: [String: RuleSet] = [:]
        var lines: [String: [RuleID: Int]] = [:]
        var devices: [String] = []
        for line in batch.lines {
            warn(line.command.notes, at: "\(path): line \(line.number)")
            let name = line.command.device
            if !devices.contains(name) { devices.append(name) }
            do {
                let named = try line.command.apply(to: &sets[name, default: RuleSet()])
                if case .delete = line.command.operation { continue }
                for rule in named { lines[name, default: [:]][RuleID(prio: rule.prio, handle: rule.handle)] = line.number }
            } catch {
                throw CommandError.at("\(path): line \(line.number)", .refused(error))
            }
        }
        if let requested = source.device {
            guard devices.isEmpty || devices.contains(requested) else {
                throw CommandError.usage("\(path) has no rules for dev \(requested); it names \(devices.joined(separator: ", "))")
            }
            device = requested
        } else {
            guard devices.count == 1 else {
                throw CommandError.usage(devices.isEmpty
                    ? "\(path) names no device: give dev DEV"
                    : "\(path) names devices \(devices.joined(separator: ", ")): choose one with dev DEV")
            }
            device = devices[0]
        }
        rules = sets[device] ?? RuleSet()
        self.lines = lines[device] ?? [:]
    }

    /// The plan of the device's rules; a rule it cannot compile is named by its line.
    func plan() throws -> Plan {
        do {
            return try Plan(rules, device: device)
        } catch {
            let rule: RuleID? = switch error {
            case .unsupported(let unsupported): RuleID(prio: unsupported.rule.prio, handle: unsupported.rule.handle)
            case .tooManySteps(let prio, let handle, _): RuleID(prio: prio, handle: handle)
            default: nil
            }
            let place = rule.flatMap { lines[$0] }.map { "\(path): line \($0)" } ?? path
            throw CommandError.at(place, .refused(error))
        }
    }

    /// The plan's maps and program in the kernel, through the verifier.
    func load(_ plan: Plan, options: CompileOptions = CompileOptions()) throws -> Datapath {
        do {
            return try Datapath(plan: plan, options: options, targetIndex: { _ in Self.redirectIndex })
        } catch {
            throw CommandError.refused(error)
        }
    }
}

/// What `compile` prints about a plan.
struct PlanReport {
    let plan: Plan
    let instructions: [Instruction]
    let labels: [Label: Int]
    let dump: Bool
    /// The program's size as the verifier accepted it (`--verify`).
    var verifiedSlots: Int?

    init(plan: Plan, instructions: [Instruction], labels: [Label: Int], dump: Bool) {
        self.labels = labels
        self.plan = plan
        self.instructions = instructions
        self.dump = dump
    }

    /// Devices that redirects send to, in devmap key order.
    var redirectTargets: [String] { plan.redirectTargets.sorted { $0.key < $1.key }.map(\.value) }
    /// The devices of each rule whose mirrors (and the redirect after them) are one
    /// devmap broadcast, in group order.
    var broadcastGroups: [[String]] { plan.broadcastIndex.indexes.sorted { $0.value < $1.value }.map(\.key) }

    /// In 8-byte slots: a 64-bit immediate load takes two.
    var slotCount: Int { instructions.reduce(0) { $0 + $1.slots } }

    var text: String {
        var lines: [String] = []
        if let tables = plan.tables {
            let rows = [["table", "best rule", "rules", "buckets", "mask"]] + tables.lookupOrder.map { table in
                [String(table.index), RuleID(prio: UInt16(table.rank >> 32), handle: UInt32(truncatingIfNeeded: table.rank)).description,
                 String(table.ruleCount), String(table.bucketCount), table.mask.description]
            }
            lines += Table(rows: rows, rightAligned: [2, 3]).lines
        } else if plan.subtables.isEmpty {
            lines.append("no subtables: every frame passes")
        } else {
            let rows = [["prio", "map", "storage", "entries", "key"]] + plan.subtables.map { subtable in
                let fields = subtable.guards.keys.sorted().map { "\($0.name)=\(hex(subtable.guards[$0]!))" }
                    + subtable.mask.fields.keys.sorted().map { "\($0.name)/\(hex(subtable.mask.fields[$0]!))" }
                return [String(subtable.prio), subtable.mapName, "\(subtable.storageName) \(subtable.capacity)",
                        String(subtable.entries.count),
                        "\(subtable.keySize) byte\(subtable.keySize == 1 ? "" : "s")  " + fields.joined(separator: " ")]
            }
            lines += Table(rows: rows, rightAligned: [3]).lines
        }
        let classifier = plan.tables.map { "tables \($0.tables.count)" } ?? "subtables \(plan.subtables.count)"
        lines.append("dev \(plan.device)  rules \(plan.rules.count)  entries \(plan.entryCount)  "
            + "\(classifier)  instructions \(slotCount)")
        let layers = plan.keyLayers.names
        lines.append("layers: " + (layers.isEmpty ? "none past Ethernet" : layers.joined(separator: " ")))
        if !redirectTargets.isEmpty {
            lines.append("redirects: " + redirectTargets.joined(separator: " "))
        }
        for group in broadcastGroups {
            lines.append("broadcast: " + group.joined(separator: " "))
        }
        if let verifiedSlots { lines.append("verifier: accepted, \(verifiedSlots) instructions") }
        if dump { lines.append(instructions.disassembly(labels: labels)) }
        return lines.map { $0 + "\n" }.joined()
    }

    var json: JSON {
        var fields: [(String, JSON)] = [
            ("dev", .string(plan.device)),
            ("subtables", .array(plan.subtables.map { subtable in
                .object([
                    ("prio", .integer(subtable.prio)),
                    ("map", .string(subtable.mapName)),
                    ("storage", .string(subtable.storageName)),
                    ("capacity", .integer(subtable.capacity)),
                    ("entries", .integer(subtable.entries.count)),
                    ("key_bytes", .integer(subtable.keySize)),
                    ("guards", .array(subtable.guards.keys.sorted().map { field in
                        .object([("field", .string(field.name)), ("value", .string(hex(subtable.guards[field]!)))])
                    })),
                    ("fields", .array(subtable.mask.fields.keys.sorted().map { field in
                        .object([("field", .string(field.name)), ("mask", .string(hex(subtable.mask.fields[field]!)))])
                    })),
                ])
            })),
            ("tables", .array((plan.tables?.lookupOrder ?? []).map { table in
                .object([
                    ("index", .integer(table.index)),
                    ("prio", .integer(UInt16(table.rank >> 32))),
                    ("handle", .integer(UInt32(truncatingIfNeeded: table.rank))),
                    ("rules", .integer(table.ruleCount)),
                    ("buckets", .integer(table.bucketCount)),
                    ("fields", .array(table.mask.fields.map { field in
                        .object([("field", .string(field.name)), ("mask", .string(hex(table.mask.field(field))))])
                    })),
                ])
            })),
            ("rules", .integer(plan.rules.count)),
            ("entries", .integer(plan.entryCount)),
            ("instructions", .integer(slotCount)),
            ("layers", .array(plan.keyLayers.names.map(JSON.string))),
            ("redirect_targets", .array(redirectTargets.map(JSON.string))),
            ("broadcast_groups", .array(broadcastGroups.map { .array($0.map(JSON.string)) })),
        ]
        if let verifiedSlots {
            fields.append(("verifier", .object([("accepted", .bool(true)), ("instructions", .integer(verifiedSlots))])))
        }
        if dump {
            fields.append(("disassembly", .array(instructions.disassembly(labels: labels).split(separator: "\n").map { .string(String($0)) })))
        }
        return .object(fields)
    }
}

extension Subtable {
    /// `array`: indexed by the key itself; `hash`: a hash table.
    var storageName: String {
        switch storage {
        case .direct: "array"
        case .hash: "hash"
        }
    }

    /// The map's entries: every key of an array, the capacity of a hash.
    var capacity: Int {
        switch storage {
        case .direct: 1 << (8 * keySize)
        case .hash(let capacity): capacity
        }
    }
}

extension KeyLayers {
    /// The headers the program parses past Ethernet and VLAN tags, as `compile` names them.
    var names: [String] {
        let named: [(KeyLayers, String)] = [
            (.etherType, "ethertype"), (.arp, "arp"), (.ipv4, "ipv4"), (.ipv4Transport, "ipv4-l4"),
            (.ipv6, "ipv6"), (.ipv6Protocol, "ipv6-ext"), (.ipv6Transport, "ipv6-l4"),
        ]
        return named.filter { contains($0.0) }.map(\.1)
    }
}

/// Columns padded to their widest cell, two spaces apart, as `ip -s` prints.
struct Table {
    var rows: [[String]]
    /// Columns of numbers, aligned right.
    var rightAligned: Set<Int> = []

    var widths: [Int] {
        (0 ..< (rows.map(\.count).max() ?? 0)).map { column in
            rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0
        }
    }

    /// Where `column` starts on a line.
    func offset(of column: Int) -> Int { widths.prefix(column).reduce(0) { $0 + $1 + 2 } }

    var lines: [String] {
        let widths = widths
        return rows.map { row in
            row.enumerated().map { column, cell in
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                if rightAligned.contains(column) { return padding + cell }
                return column == row.count - 1 ? cell : cell + padding
            }.joined(separator: "  ")
        }
    }
}

/// Bytes as lowercase hex digits, no separators.
func hex(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 0x10 ? "0" : "") + String($0, radix: 16) }.joined()
}

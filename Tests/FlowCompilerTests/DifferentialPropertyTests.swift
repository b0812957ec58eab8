import FlowCompiler
import FlowRules
import Foundation
import Packets
import PropertyBased
import Testing

/// The proof that the compiled program classifies as the reference does: random rule
/// sets (`RuleGenerator`), each loaded once, with many random and adversarial frames
/// (`FrameGenerator`), compared frame by frame by `disagreements`.
///
/// Every case is a function of one seed. A failure names the seed and a minimised
/// reproduction (fewest rules, one frame where one suffices); `XDPFLOW_FUZZ_SEED=SEED`
/// replays that case alone. `XDPFLOW_FUZZ_SCALE` multiplies the number of cases
/// (`make fuzz`).
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized, .shrinking(false))
struct DifferentialPropertyTests {
    /// Seeds do not shrink: a smaller seed is just another case. `Reproduction` shrinks
    /// the rules and frames instead.
    private static let seeds = Generator<UInt64, Shrink.None<UInt64>>(run: { rng in rng.next() })

    @Test func smallRuleSetsAgreeWithTheReference() async {
        await check(.small)
    }

    @Test func largeRuleSetsAgreeWithTheReference() async {
        await check(.large)
    }

    /// The same rule sets classified by tables (`Plan.inlineLimit` 0), as rule sets
    /// past the inline limit are.
    @Test func smallRuleSetsInTablesAgreeWithTheReference() async {
        await check(.small.inTables)
    }

    @Test func largeRuleSetsInTablesAgreeWithTheReference() async {
        await check(.large.inTables)
    }

    private func check(_ profile: FuzzProfile) async {
        if let seed = FuzzSettings.seed {
            verify(FuzzCase(seed: seed, profile: profile))
        } else {
            await propertyCheck(count: FuzzSettings.cases(profile.cases), input: Self.seeds) { seed in
                verify(FuzzCase(seed: seed, profile: profile))
            }
        }
    }

    /// Records an issue for a failing case, with its minimised reproduction.
    private func verify(_ fuzzCase: FuzzCase) {
        FuzzSettings.note("\(fuzzCase)")
        let limit = fuzzCase.profile.inlineLimit
        guard let failure = Reproduction.failure(fuzzCase.rules.rules, fuzzCase.frames, inlineLimit: limit) else { return }
        Issue.record("""
            \(fuzzCase): \(failure.summary)
            Replay: XDPFLOW_FUZZ_SEED=\(fuzzCase.seedText) swift test --filter DifferentialPropertyTests/\(fuzzCase.profile.name)
            Minimised:
            \(Reproduction.minimised(fuzzCase.rules.rules, fuzzCase.frames, inlineLimit: limit))
            """)
    }
}

/// Environment knobs, read once.
enum FuzzSettings {
    /// Multiplies every test's number of cases; 1 in `make test`.
    static let scale: Double = ProcessInfo.processInfo.environment["XDPFLOW_FUZZ_SCALE"].flatMap(Double.init) ?? 1

    /// One case to replay instead of random ones (decimal, or hex with 0x).
    static let seed: UInt64? = ProcessInfo.processInfo.environment["XDPFLOW_FUZZ_SEED"].flatMap { text in
        text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
    }

    static func cases(_ base: Int) -> Int { max(1, Int((Double(base) * scale).rounded())) }

    /// `XDPFLOW_FUZZ_VERBOSE`: each case's seed on standard error as it starts, so that a
    /// crash or a hang names its case.
    static let verbose = ProcessInfo.processInfo.environment["XDPFLOW_FUZZ_VERBOSE"] != nil

    static func note(_ text: String) {
        if verbose { FileHandle.standardError.write(Data((text + "\n").utf8)) }
    }
}

/// How big a test's rule sets are, how many it draws, and how many frames each gets.
struct FuzzProfile: Sendable, CustomTestStringConvertible {
    var name: String
    var cases: Int
    var frames: Int
    var ruleCount: @Sendable (inout SeededRandom) -> Int
    var inlineLimit = Plan.defaultInlineLimit

    var testDescription: String { name }

    /// This profile with every rule set classified by tables, a third of the cases (a
    /// table program takes longer to verify; make fuzz runs more).
    var inTables: FuzzProfile {
        var profile = self
        profile.name += "-tables"
        profile.inlineLimit = 0
        profile.cases = max(1, cases / 3)
        return profile
    }

    /// A few rules, most frames near them: exact edges and damage.
    static let small = FuzzProfile(name: "small", cases: 300, frames: 60) { $0.int(1 ... 8) }
    /// Up to 200 rules: lookup order, handles, shared masks; past the inline limit, tables.
    static let large = FuzzProfile(name: "large", cases: 100, frames: 50) { rng in
        rng.chance(0.6) ? rng.int(9 ... 50) : rng.int(51 ... 200)
    }
}

/// One rule set and the frames run through it, all drawn from `seed`.
struct FuzzCase: CustomStringConvertible {
    let seed: UInt64
    let profile: FuzzProfile
    let rules: RuleSet
    let frames: [[UInt8]]

    init(seed: UInt64, profile: FuzzProfile) {
        self.seed = seed
        self.profile = profile
        var rng = SeededRandom(seed: seed)
        let pool = ValuePool(&rng)
        rules = RuleGenerator(pool: pool, &rng).ruleSet(count: profile.ruleCount(&rng), &rng)
        frames = FrameGenerator(pool: pool).frames(count: profile.frames, for: rules.rules, &rng)
    }

    var seedText: String { "0x" + String(seed, radix: 16) }

    var description: String {
        "seed \(seedText) (\(profile.name): \(rules.rules.count) rules, \(frames.count) frames)"
    }
}

/// A failing rule set and frames, and what goes wrong with them.
struct Reproduction: CustomStringConvertible {
    var rules: [FlowRule]
    var frames: [[UInt8]]
    var failure: Failure

    enum Failure {
        /// Frame by frame, from `disagreements`.
        case disagreements([String])
        /// Planning, assembly or loading (the verifier) threw.
        case error(String)

        var summary: String {
            switch self {
            case .disagreements(let lines): "\(lines.count) frames disagree; first: \(lines[0])"
            case .error(let text): "the rule set does not compile or load: \(text)"
            }
        }

        /// What kind of failure this is, to minimise without drifting to another fault:
        /// the error's first line without numbers, or which fields the first frame gets
        /// wrong ("verdict", "redirect", "matched", "unparsed", "output", "mark").
        var signature: String {
            switch self {
            case .error(let text):
                return String(text.prefix { $0 != "\n" }.filter { !$0.isNumber })
            case .disagreements(let lines):
                let problems = lines[0].split(separator: ": ", maxSplits: 1).last ?? ""
                return problems.split(separator: "; ").map { $0.prefix { $0 != " " } }.joined(separator: ",")
            }
        }
    }

    /// What goes wrong with `rules` and `frames`; nil when the program agrees with the
    /// reference on every frame.
    static func failure(_ rules: [FlowRule], _ frames: [[UInt8]], inlineLimit: Int) -> Failure? {
        FuzzSettings.note("  trying \(rules.count) rules, \(frames.count) frames")
        do {
            let found = try disagreements(RuleSet(rules), frames, inlineLimit: inlineLimit)
            return found.isEmpty ? nil : .disagreements(found)
        } catch {
            return .error("\(error)")
        }
    }

    /// The fewest frames (one, unless police state needs the frames before it) and then
    /// the fewest rules that still fail the same way (`Failure.signature`), greedily,
    /// within `attempts` loads (a set of thousands of rules would take as many to
    /// minimise fully: the rules go in halves, quarters, ... while the budget lasts).
    static func minimised(_ rules: [FlowRule], _ frames: [[UInt8]], inlineLimit: Int,
                          attempts: Int = .max) -> Reproduction {
        guard let original = failure(rules, frames, inlineLimit: inlineLimit) else {
            return Reproduction(rules: rules, frames: frames, failure: .error("did not fail again"))
        }
        var current = Reproduction(rules: rules, frames: frames, failure: original)
        var left = attempts
        /// Takes `rules` and `frames` when they fail as the original did.
        func keep(_ rules: [FlowRule], _ frames: [[UInt8]]) -> Bool {
            guard left > 0 else { return false }
            left -= 1
            guard let found = failure(rules, frames, inlineLimit: inlineLimit), found.signature == original.signature else { return false }
            current = Reproduction(rules: rules, frames: frames, failure: found)
            return true
        }
        switch original {
        case .error:
            _ = keep(rules, [])
        case .disagreements(let lines):
            guard let index = lines.first.flatMap(frameIndex) else { break }
            if !keep(rules, [frames[index]]) {
                _ = keep(rules, Array(frames.prefix(index + 1)))
                for position in (0 ..< index).reversed() {
                    var fewer = current.frames
                    fewer.remove(at: position)
                    _ = keep(rules, fewer)
                }
            }
        }
        var chunk = max(1, rules.count / 2)
        while left > 0 {
            var start = 0
            while start < current.rules.count, left > 0 {
                var fewer = current.rules
                fewer.removeSubrange(start ..< min(start + chunk, fewer.count))
                if !keep(fewer, current.frames) { start += chunk }
            }
            if chunk == 1 { break }
            chunk = max(1, chunk / 2)
        }
        return current
    }

    /// The frame index `disagreements` puts first on its lines ("frame 3 ...").
    private static func frameIndex(_ line: String) -> Int? {
        line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }

    var description: String {
        var lines = rules.map { rule in
            "  xdpflow " + rule.commandLine(device: testDevice) + rule.maskNotes.map { "   # \($0)" }.joined()
        }
        lines += frames.map { "  frame \(hex($0))" }
        switch failure {
        case .disagreements(let found): lines += found.map { "  => \($0)" }
        case .error(let text): lines.append("  => \(text)")
        }
        return lines.joined(separator: "\n")
    }
}

extension FlowRule {
    /// Masks the tc syntax cannot show: address masks that are not prefixes (the
    /// printer writes such an address without its mask).
    var maskNotes: [String] {
        let m = match
        var notes: [String] = []
        func note<Value>(_ name: String, _ masked: Masked<Value>?) where Value: CustomStringConvertible {
            if let masked, masked.prefixLength == nil { notes.append("\(name) mask \(masked.mask)") }
        }
        for (name, ip) in [("dst_ip", m.dstIP), ("src_ip", m.srcIP)] {
            switch ip {
            case .v4(let prefix)?: note(name, prefix)
            case .v6(let prefix)?: note(name, prefix)
            case nil: break
            }
        }
        note("arp_sip", m.arpSenderIP)
        note("arp_tip", m.arpTargetIP)
        return notes
    }
}

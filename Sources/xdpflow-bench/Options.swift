/// The command line; see `usage`.
struct Options {
    /// A reduced run (`make bench-quick`): fewer rounds, runs and rule-set sizes.
    var quick = false
    /// Recorded rounds of the packet cases (after a warm-up round).
    var rounds = 7
    /// Runs per BPF_PROG_TEST_RUN sample.
    var repeatCount = 1_000_000
    /// Recorded rounds of the compile cases.
    var compileRounds = 3
    /// Suites to run, by name; all when nil.
    var only: Set<String>?
    var jsonPath: String?
    /// Where `<date>-<host>.json`, `.md` and `.svg` go (`make bench`: bench/results).
    var resultsDirectory: String?
    /// The commit measured, as the Makefile names it (`git describe --always --dirty`).
    var commit = "unknown"
    /// A bpffs directory to pin each measured program in, for `bpftool prog dump`.
    var pinDirectory: String?

    static let usage = """
        usage: xdpflow-bench [--quick] [--only SUITE,...] [--rounds N] [--repeat N] [--compile-rounds N]
                             [--results DIR] [--json FILE] [--commit ID] [--pin DIR]

        Measures XDPFlow against its peers in one run, peers alternated round by round (A B A B),
        and prints the medians with their min-max as markdown. Needs root (BPF, XDP, namespaces).

          --quick             a reduced run (make bench-quick): fewer rounds and smaller rule sets
          --only SUITE,...    run only these suites (\(suiteNames))
          --rounds N          recorded rounds of the packet cases (default 7; quick 3)
          --repeat N          program runs per test-run sample (default 1000000; quick 200000)
          --compile-rounds N  recorded rounds of the compile cases (default 3; quick 1)
          --results DIR       write DIR/<date>-<host>.json, .md and .svg (the curves)
          --json FILE         also write the results as JSON to FILE
          --commit ID         the commit measured, for the report's header
          --pin DIR           pin each measured program in DIR (bpffs) for bpftool
        """

    static var suiteNames: String { Suite.all.map(\.name).joined(separator: ", ") }

    init(_ arguments: [String]) throws {
        var words = arguments[...]
        var explicit: Set<String> = []
        func value(of option: String) throws -> String {
            guard let value = words.popFirst() else { throw BenchError("\(option) needs a value\n\n\(Self.usage)") }
            explicit.insert(option)
            return value
        }
        func count(of option: String) throws -> Int {
            let text = try value(of: option)
            guard let count = Int(text), count > 0 else { throw BenchError("\(option) \(text): expected a positive number") }
            return count
        }
        while let word = words.popFirst() {
            switch word {
            case "--quick": quick = true
            case "--only": only = Set(try value(of: word).split(separator: ",").map(String.init))
            case "--rounds": rounds = try count(of: word)
            case "--repeat": repeatCount = try count(of: word)
            case "--compile-rounds": compileRounds = try count(of: word)
            case "--results": resultsDirectory = try value(of: word)
            case "--json": jsonPath = try value(of: word)
            case "--commit": commit = try value(of: word)
            case "--pin": pinDirectory = try value(of: word)
            case "-h", "--help": throw Help()
            default: throw BenchError("unknown argument \(word)\n\n\(Self.usage)")
            }
        }
        if quick {
            if !explicit.contains("--rounds") { rounds = 3 }
            if !explicit.contains("--repeat") { repeatCount = 200_000 }
            if !explicit.contains("--compile-rounds") { compileRounds = 1 }
        }
    }

    struct Help: Error {}
}

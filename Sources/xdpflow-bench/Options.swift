/// The command line: `xdpflow-bench [--rounds N] [--repeat N] [--compile-rounds N] [--json FILE] [--pin DIR]`.
struct Options {
    /// Recorded rounds of the packet cases (after a warm-up round).
    var rounds = 7
    /// Runs per BPF_PROG_TEST_RUN sample.
    var repeatCount = 1_000_000
    /// Recorded rounds of the compile cases.
    var compileRounds = 3
    var jsonPath: String?
    /// A bpffs directory to pin each measured program in, for `bpftool prog dump`.
    var pinDirectory: String?

    static let usage = """
        usage: xdpflow-bench [--rounds N] [--repeat N] [--compile-rounds N] [--json FILE] [--pin DIR]

        Times XDPFlow's generated programs with BPF_PROG_TEST_RUN against a trivial XDP_DROP
        program (peers alternated, one sample each per round; median and min-max), and the
        compiler's own phases. Needs root (BPF).

          --rounds N          recorded rounds of the packet cases (default 7)
          --repeat N          program runs per test-run sample (default 1000000)
          --compile-rounds N  recorded rounds of the compile cases (default 3)
          --json FILE         also write the results as JSON
          --pin DIR           pin each measured program in DIR (bpffs) for bpftool
        """

    init(_ arguments: [String]) throws {
        var words = arguments[...]
        func value(of option: String) throws -> String {
            guard let value = words.popFirst() else { throw BenchError("\(option) needs a value\n\n\(Self.usage)") }
            return value
        }
        func count(of option: String) throws -> Int {
            let text = try value(of: option)
            guard let count = Int(text), count > 0 else { throw BenchError("\(option) \(text): expected a positive number") }
            return count
        }
        while let word = words.popFirst() {
            switch word {
            case "--rounds": rounds = try count(of: word)
            case "--repeat": repeatCount = try count(of: word)
            case "--compile-rounds": compileRounds = try count(of: word)
            case "--json": jsonPath = try value(of: word)
            case "--pin": pinDirectory = try value(of: word)
            case "-h", "--help": throw Help()
            default: throw BenchError("unknown argument \(word)\n\n\(Self.usage)")
            }
        }
    }

    struct Help: Error {}
}

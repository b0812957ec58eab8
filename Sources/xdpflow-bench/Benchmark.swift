/// One thing measured: a sample yields a value for each of its metrics at once (a
/// compilation's phases come from the same run, so their sums are consistent).
struct Benchmark {
    var name: String
    var metrics: [String]
    var sample: () throws -> [Double]

    init(_ name: String, metrics: [String], sample: @escaping () throws -> [Double]) {
        self.name = name
        self.metrics = metrics
        self.sample = sample
    }

    /// Samples every benchmark once per round, in turn (A B C A B C ...), after one
    /// unrecorded warm-up round: drift in the machine's speed (frequency, other load)
    /// then falls on all of them alike instead of on whichever ran last.
    static func alternate(_ benchmarks: [Benchmark], rounds: Int) throws -> [Measurement] {
        var values = benchmarks.map { Array(repeating: [Double](), count: $0.metrics.count) }
        for round in 0 ... rounds {
            for (index, benchmark) in benchmarks.enumerated() {
                let sample = try benchmark.sample()
                precondition(sample.count == benchmark.metrics.count, "\(benchmark.name): one value per metric")
                guard round > 0 else { continue }
                for (metric, value) in sample.enumerated() { values[index][metric].append(value) }
            }
        }
        return zip(benchmarks, values).map { benchmark, values in
            Measurement(name: benchmark.name,
                        metrics: Dictionary(uniqueKeysWithValues: zip(benchmark.metrics, values.map(Samples.init))))
        }
    }
}

/// A benchmark's samples, by metric.
struct Measurement {
    var name: String
    var metrics: [String: Samples]

    subscript(metric: String) -> Samples { metrics[metric]! }
}

/// The values of one metric over the rounds.
struct Samples: Encodable {
    var values: [Double]
    var median: Double
    var min: Double
    var max: Double

    init(_ values: [Double]) {
        precondition(!values.isEmpty, "at least one round")
        let sorted = values.sorted()
        let middle = sorted.count / 2
        self.values = values
        median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
        min = sorted.first!
        max = sorted.last!
    }
}

/// Wall time of `body`, in nanoseconds, with its result.
func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
    let clock = ContinuousClock()
    let start = clock.now
    let result = try body()
    let elapsed = clock.now - start
    let (seconds, attoseconds) = elapsed.components
    return (result, Double(seconds) * 1e9 + Double(attoseconds) / 1e9)
}

// swift-tools-version: 6.1
import PackageDescription

// libFuzzer harnesses for everything that reads outside input. A package of its own, so
// that building XDPFlow never links libFuzzer; scripts/fuzz-run builds each harness with
// `--sanitize=fuzzer --sanitize=address` and runs it. Fuzz/README.md says more.
let package = Package(
    name: "XDPFlowFuzz",
    dependencies: [.package(name: "XDPFlow", path: "..")],
    targets: [
        // Batch files and filter commands: the reader, the grammar, printing, rule sets.
        .executableTarget(name: "fuzz-grammar", dependencies: [
            .product(name: "FlowRules", package: "XDPFlow"), .product(name: "Packets", package: "XDPFlow"),
        ]),
        // Capture files: classic pcap and pcapng, written back, records dissected.
        .executableTarget(name: "fuzz-pcap", dependencies: [.product(name: "Packets", package: "XDPFlow")]),
        // Frames: the dissector and the reference classifier's edits.
        .executableTarget(name: "fuzz-frame", dependencies: [
            .product(name: "FlowRules", package: "XDPFlow"), .product(name: "Packets", package: "XDPFlow"),
        ]),
        // Writes the binary seeds of Corpus/ (built without sanitizers; see scripts/fuzz-run).
        .executableTarget(name: "fuzz-seeds", dependencies: [.product(name: "Packets", package: "XDPFlow")]),
    ],
    swiftLanguageModes: [.v6]
)

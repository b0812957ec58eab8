// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "XDPFlow",
    products: [
        .executable(name: "xdpflow", targets: ["xdpflow"]),
        .executable(name: "xdpflow-bench", targets: ["xdpflow-bench"]),
        .library(name: "BPFAssembly", targets: ["BPFAssembly"]),
        .library(name: "BPFKernel", targets: ["BPFKernel"]),
        .library(name: "Packets", targets: ["Packets"]),
        .library(name: "FlowRules", targets: ["FlowRules"]),
        .library(name: "FlowCompiler", targets: ["FlowCompiler"]),
        .library(name: "FlowOffload", targets: ["FlowOffload"]),
        .library(name: "NFTables", targets: ["NFTables"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
    ],
    targets: [
        // libbpf from Debian's libbpf-dev, seen through a module map.
        .systemLibrary(
            name: "CLibBPF",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev"])]
        ),
        // libxdp's AF_XDP socket API (xsk.h), from Debian's libxdp-dev.
        .systemLibrary(
            name: "CLibXDP",
            pkgConfig: "libxdp",
            providers: [.apt(["libxdp-dev"])]
        ),
        // Pure Swift: eBPF instructions, assembler with labels, encoder, disassembler.
        .target(name: "BPFAssembly"),
        // Typed wrappers over libbpf: maps, programs, test runs, XDP links, bpffs; AF_XDP
        // sockets over libxdp.
        .target(
            name: "BPFKernel",
            dependencies: [
                "BPFAssembly", "CLibBPF", "CLibXDP",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // Pure Swift: frames as bytes. Dissector (bytes -> FlowKeys), builder, pcap files.
        .target(name: "Packets"),
        // Pure Swift: tc flower rules, their grammar, and the reference classifier.
        .target(name: "FlowRules", dependencies: ["Packets"]),
        // Pure Swift: rule set -> plan (subtables by prio and mask) -> XDP program.
        .target(name: "FlowCompiler", dependencies: ["BPFAssembly", "FlowRules", "Packets"]),
        // Pure Swift: nftables' ingress hooks (nft -j) as flower rules XDP can run.
        .target(name: "NFTables", dependencies: ["FlowRules", "Packets"]),
        // Per-device runtime: the rule store, loading a plan into the kernel, test-run traces.
        .target(
            name: "FlowOffload",
            dependencies: [
                "FlowRules", "FlowCompiler", "BPFKernel",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .executableTarget(
            name: "xdpflow",
            dependencies: [
                "BPFAssembly", "BPFKernel", "FlowRules", "FlowCompiler", "FlowOffload", "NFTables", "Packets",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Benchmarks: generated programs against a trivial XDP_DROP, and the compiler's phases.
        .executableTarget(
            name: "xdpflow-bench",
            dependencies: [
                "FlowCompiler", "FlowOffload", "FlowRules", "Packets", "BPFKernel", "BPFAssembly",
                // NetworkNamespace (frames sent from a peer namespace) and settled, for suite cli.
                "KernelTestSupport",
                // ClassBench and generated ACL rule sets, and frames that hit them.
                "RuleSetWorkloads",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .testTarget(
            name: "BPFAssemblyTests",
            dependencies: ["BPFAssembly", .product(name: "PropertyBased", package: "swift-property-based")]
        ),
        // Shared by the kernel and integration tests: capability checks, veth labs.
        .target(name: "KernelTestSupport", dependencies: ["BPFKernel", "CLibBPF"], path: "Tests/KernelTestSupport"),
        // Shared by the classifier's tests and the benchmarks: ClassBench rule sets, a seeded
        // ACL generator, and traces of frames that hit a rule set's rules.
        .target(name: "RuleSetWorkloads", dependencies: ["FlowRules", "Packets"], path: "Tests/RuleSetWorkloads"),
        .testTarget(name: "BPFKernelTests", dependencies: ["BPFKernel", "BPFAssembly", "KernelTestSupport"]),
        .testTarget(
            name: "PacketsTests",
            dependencies: [
                "Packets",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        // Plans and programs: pure tests, plus the differential tests against the
        // reference classifier through BPF_PROG_TEST_RUN (kernel).
        .testTarget(
            name: "FlowCompilerTests",
            dependencies: [
                "FlowCompiler", "FlowOffload", "FlowRules", "Packets", "BPFAssembly", "BPFKernel", "KernelTestSupport",
                "RuleSetWorkloads",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        // End to end: live offloads on veth labs, frames from the traffic generator,
        // captured on the far side; the CLI as an operator runs it (kernel).
        .testTarget(
            name: "FlowOffloadTests",
            dependencies: [
                "FlowOffload", "FlowCompiler", "FlowRules", "NFTables", "Packets", "BPFKernel", "BPFAssembly",
                "KernelTestSupport", .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .testTarget(name: "NFTablesTests", dependencies: ["NFTables", "FlowRules", "Packets", "RuleSetWorkloads"]),
        .testTarget(
            name: "FlowRulesTests",
            dependencies: [
                "FlowRules", "FlowOffload", "Packets",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)

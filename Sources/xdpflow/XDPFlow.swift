import ArgumentParser

@main
struct XDPFlow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xdpflow",
        abstract: "Run tc flower rules in a generated XDP program.",
        version: "0.1.0",
        subcommands: [Filter.self, Probe.self, Features.self, Gen.self]
    )
}

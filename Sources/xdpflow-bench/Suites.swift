/// A family of measurements, with the sections it adds to the report.
struct Suite: Sendable {
    var name: String
    var run: @Sendable (Options) throws -> [Section]

    /// Report order; `--only` picks some by name.
    static let all: [Suite] = [
        Suite(name: "packets", run: PacketCases.sections),
        Suite(name: "subtables", run: SubtableCurve.sections),
        Suite(name: "compile", run: CompileCases.sections),
        Suite(name: "update", run: UpdateCases.sections),
        Suite(name: "live", run: LiveCases.sections),
        Suite(name: "cli", run: CLICases.sections),
        Suite(name: "memory", run: MemoryCases.sections),
        Suite(name: "acl", run: ACLCases.sections),
        Suite(name: "capture", run: CaptureCases.sections),
        Suite(name: "nft", run: NFTCases.sections),
    ]
}

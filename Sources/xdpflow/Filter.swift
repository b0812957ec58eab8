import ArgumentParser

/// `xdpflow filter ...`: tc flower rules (owned by the rule-language work).
struct Filter: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Add, change, delete and show flower rules.")
}

import FlowRules
import Packets
import Testing

/// The differential tests prove little if their cases never reach a feature: this checks,
/// on fixed seeds and with the reference classifier alone (no kernel), that the generated
/// frames hit rules, reach every verdict and every reason to be unclassifiable, run
/// `continue` chains, edit frames and set marks, and match rules on every flower key.
@Suite struct GeneratorCoverageTests {
    @Test(arguments: [FuzzProfile.small, .large])
    func generatedCasesReachEveryFeature(_ profile: FuzzProfile) throws {
        var coverage = Coverage()
        for index in 0 ..< UInt64(profile.cases) {
            let fuzzCase = FuzzCase(seed: index &* 0x9e37_79b9_7f4a_7c15, profile: profile)
            coverage.readBack(fuzzCase.rules.rules)
            var reference = try ReferenceClassifier(rules: fuzzCase.rules, device: testDevice)
            for frame in fuzzCase.frames {
                #expect(frame.count >= 14)
                coverage.add(reference.classify(frame, now: 0), frame: frame)
            }
        }
        #expect(coverage.matched * 3 >= coverage.frames, "\(coverage)")
        #expect(coverage.chains * 100 >= coverage.frames, "continue chains: \(coverage)")
        #expect(coverage.verdicts.isSuperset(of: ["drop", "pass", "tx", "redirect"]), "\(coverage)")
        #expect(coverage.edited > 0 && coverage.marked > 0, "\(coverage)")
        #expect(coverage.unclassifiable == Set(["vlanTooDeep", "ipv6ExtensionsTooDeep", "malformedHeader"])
                || profile.name == "large", "\(coverage)")
        let unprintable = coverage.unprintable.prefix(3).joined(separator: "\n")
        #expect(coverage.unprintable.count == 0, "not read back as printed:\n\(unprintable)")
        if profile.name == "small" {
            #expect(coverage.verdicts.contains("aborted"), "\(coverage)")
            let keys = ["indev", "dst_mac", "src_mac", "vlan_id", "vlan_prio", "vlan_ethtype", "cvlan_id", "cvlan_prio",
                        "cvlan_ethtype", "ip_proto", "ip_tos", "ip_ttl", "dst_ip", "src_ip", "dst_port", "src_port",
                        "tcp_flags", "type", "code", "arp_tip", "arp_sip", "arp_op", "arp_sha", "arp_tha", "ip_flags"]
            #expect(Set(keys).subtracting(coverage.keys).isEmpty, "never matched on: \(Set(keys).subtracting(coverage.keys))")
        }
    }
}

/// What the reference did with the generated frames.
private struct Coverage: CustomStringConvertible {
    var frames = 0, matched = 0, chains = 0, edited = 0, marked = 0
    var verdicts: Set<String> = []
    var unclassifiable: Set<String> = []
    /// Flower keys of rules that matched some frame.
    var keys: Set<String> = []
    /// Generated rules the grammar does not read back as printed (the reproductions
    /// print rules): the generator must stay within the grammar.
    var unprintable: [String] = []

    /// Address masks that are not prefixes have no text form; the rest must round-trip.
    mutating func readBack(_ rules: [FlowRule]) {
        for rule in rules where rule.maskNotes.isEmpty {
            let words = rule.commandWords(device: testDevice)
            let parsed = try? FilterCommand.parse(words)
            guard case .add(let read)? = parsed?.operation, read == rule else {
                unprintable.append(words.joined(separator: " "))
                continue
            }
        }
    }

    mutating func add(_ result: Classification, frame: [UInt8]) {
        frames += 1
        if !result.matchedRules.isEmpty { matched += 1 }
        if result.matchedRules.count > 1 { chains += 1 }
        if result.frame != frame { edited += 1 }
        if result.mark != nil { marked += 1 }
        verdicts.insert(String("\(result.verdict)".prefix { $0 != "(" }))
        if let reason = result.unclassifiable { unclassifiable.insert("\(reason)") }
        for rule in result.matchedRules { keys.formUnion(rule.flowerKeys.map(\.keyword)) }
    }

    var description: String {
        "\(frames) frames: \(matched) matched, \(chains) chains, \(edited) edited, \(marked) marked; "
            + "verdicts \(verdicts.sorted()), unclassifiable \(unclassifiable.sorted())"
    }
}

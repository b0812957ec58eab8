import FlowRules
import Packets
import RuleSetWorkloads
import Testing

/// The rule sets the classifier is tested and measured with (RuleSetWorkloads): they must
/// say what their sources say, and the frames drawn for a rule must hit it. Pure: the
/// reference classifier is the judge.
@Suite struct WorkloadTests {
    @Test(arguments: ClassBench.shippedFiles.map(\.key))
    func shippedClassBenchFileParses(_ name: String) throws {
        let workload = try ClassBench.load(name)
        let expected = try #require(ClassBench.shippedFiles.first { $0.key == name }?.value)
        #expect(workload.lines.count == expected)
        #expect(workload.rules.count == expected)
        #expect(workload.rules.rules.map(\.prio) == (1 ... expected).map(UInt16.init))
    }

    @Test(arguments: [
        ("acl1_1000", 0, "@205.172.125.179/32\t161.229.225.173/32\t0 : 65535\t1715 : 1715\t0x06/0xFF\t0x1000/0x1000\t",
         "filter add dev eth0 ingress protocol ip prio 1 handle 1 flower src_ip 205.172.125.179/32 "
             + "dst_ip 161.229.225.173/32 ip_proto tcp dst_port 1715 action drop"),
        ("fw1_1000", 15, "@127.252.208.99/32\t124.166.118.246/32\t123 : 123\t1024 : 65535\t0x11/0xFF\t0x0000/0x0000\t",
         "filter add dev eth0 ingress protocol ip prio 16 handle 1 flower src_ip 127.252.208.99/32 "
             + "dst_ip 124.166.118.246/32 ip_proto udp src_port 123 dst_port 1024-65535 action pass"),
        ("fw1_1000", 699, "@3.105.96.0/29\t0.0.0.0/0\t0 : 65535\t0 : 65535\t0x00/0x00\t0x0000/0x0000\t",
         "filter add dev eth0 ingress protocol ip prio 700 handle 1 flower src_ip 3.105.96.0/29 action pass"),
    ])
    func classBenchLineBecomesItsCommand(file: String, index: Int, line: String, command: String) throws {
        #expect(try ClassBenchRule(Substring(line)).command(index: index, device: "eth0") == command)
        #expect(try ClassBench.load(file).lines[index] == command)
    }

    @Test func otherProtocolsAreWrittenInHex() throws {
        let rule = try ClassBenchRule("@127.252.208.107/32\t3.105.98.28/30\t0 : 65535\t0 : 65535\t0x2f/0xFF\t0x0000/0x0000\t")
        #expect(rule.command(index: 4, device: "xb0") == "filter add dev xb0 ingress protocol ip prio 5 handle 1 flower "
            + "src_ip 127.252.208.107/32 dst_ip 3.105.98.28/30 ip_proto 0x2f action drop")
    }

    @Test func classBenchErrorsNameFileAndLine() {
        let good = "@1.2.3.4/32\t5.6.7.8/32\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000"
        let badPrefix = "@1.2.3.4/33\t5.6.7.8/32\t0 : 65535\t80 : 80\t0x06/0xFF\t0x0000/0x0000"
        // Valid ClassBench that tc refuses: ports without a protocol.
        let portsWithoutProtocol = "@1.2.3.4/32\t5.6.7.8/32\t0 : 65535\t80 : 80\t0x00/0x00\t0x0000/0x0000"
        #expect(throws: WorkloadError(file: "f", line: 2, reason: "'1.2.3.4/33': expected an IPv4 ADDRESS/LEN")) {
            try ClassBench.workload(text: [good, badPrefix].joined(separator: "\n"), name: "f")
        }
        do {
            _ = try ClassBench.workload(text: [good, good, portsWithoutProtocol, ""].joined(separator: "\n"), name: "g")
            Issue.record("ports without a protocol were taken")
        } catch {
            #expect(error.file == "g" && error.line == 3, "\(error)")
        }
    }

    @Test func generatorIsDeterministicPerSeed() {
        let generator = ACLGenerator(ruleCount: 500, rulesPerPrio: 1 ... 3, ipv6Share: 0.3)
        #expect(generator.lines(seed: 7) == generator.lines(seed: 7))
        #expect(generator.lines(seed: 7) != generator.lines(seed: 8))
        let workload = generator.workload(seed: 7)
        #expect(workload.rules.count == 500)
        var traces = (TraceGenerator(rules: workload.rules, seed: 1), TraceGenerator(rules: workload.rules, seed: 1))
        #expect(traces.0.frames(count: 50, missShare: 0.3) == traces.1.frames(count: 50, missShare: 0.3))
    }

    @Test func generatedSetsHaveTheirShape() {
        let rules = ACLGenerator(ruleCount: 2000, ipv6Share: 0.25).workload(seed: 3).rules.rules
        #expect(rules.map(\.prio) == (1 ... 2000).map(UInt16.init), "one prio a rule")
        let ipv6 = rules.count { $0.l3EtherType == EtherType.ipv6 }
        #expect((400 ... 600).contains(ipv6), "\(ipv6) IPv6 rules")
        #expect(rules.contains { $0.filterProtocol == .vlan } && rules.contains { $0.match.tcpFlags != nil }
            && rules.contains { $0.match.ipTOS != nil } && rules.contains { $0.match.ipTTL != nil })
        #expect(rules.contains { $0.match.ipProto == nil } && rules.contains { $0.match.dstPort != nil })
        // Prefixes nest: some destination is inside another rule's, and longer.
        let destinations = Set(rules.compactMap { rule -> Masked<IPv4Address>? in
            if case .v4(let prefix)? = rule.match.dstIP { prefix } else { nil }
        })
        let nested = destinations.contains { inner in
            destinations.contains { $0.prefixLength! < inner.prefixLength! && $0.matches(inner.key) }
        }
        #expect(nested)

        let grouped = ACLGenerator(ruleCount: 300, rulesPerPrio: 2 ... 4).workload(seed: 3).rules.rules
        #expect(grouped.count == 300 && grouped.contains { $0.handle > 1 })
    }

    /// Random addresses miss a set of ACL shape: its rules name addresses.
    @Test func randomFramesMostlyMiss() throws {
        let rules = ACLGenerator(ruleCount: 1000).workload(seed: 4).rules
        var reference = try ReferenceClassifier(rules: rules, device: RuleSetWorkload.defaultDevice)
        var trace = TraceGenerator(rules: rules, seed: 2)
        let misses = trace.frames(count: 200, missShare: 1).count { reference.classify($0, now: 0).matchedRules.isEmpty }
        #expect(misses >= 180, "\(misses) of 200 random frames matched no rule")
    }

    /// Alone in a set, a rule matches every frame drawn for it.
    @Test func tracedFramesMatchTheirRule() throws {
        let generated = ACLGenerator(ruleCount: 300, rulesPerPrio: 1 ... 2, ipv6Share: 0.3).workload(seed: 11)
        let classBench = try ClassBench.load("fw1_1000").rules.rules
        let rules = generated.rules.rules + stride(from: 0, to: classBench.count, by: 7).map { classBench[$0] }
        var trace = TraceGenerator(rules: RuleSet(), seed: 5)
        for rule in rules {
            var reference = try ReferenceClassifier(rules: RuleSet([rule]), device: RuleSetWorkload.defaultDevice)
            for _ in 0 ..< 3 {
                let frame = trace.frame(matching: rule)
                #expect(reference.classify(frame, now: 0).matchedRules == [rule], "\(rule.match) \(frame)")
            }
        }
    }
}

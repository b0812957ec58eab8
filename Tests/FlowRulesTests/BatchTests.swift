import FlowRules
import Testing

@Suite struct BatchTests {
    @Test func commentsContinuationsAndQuotes() throws {
        let batch = try Batch(text: """
            # a comment line

            filter add dev eth0 prio 1 protocol ip flower \\
                ip_proto tcp dst_port 80 \\
                action drop   # the rest is a comment
            filter add dev "eth1" prio 2 flower action pass\r
            filter show dev eth0
            """)
        #expect(batch.lines.map(\.number) == [3, 6, 7])
        #expect(batch.lines[0].command == (try parse("filter add dev eth0 prio 1 protocol ip flower ip_proto tcp dst_port 80 action drop")))
        #expect(batch.lines[1].command.device == "eth1")
    }

    @Test func parseErrorsNameTheirLine() {
        #expect(throws: BatchError.self) { try Batch(text: "filter add dev eth0 flower\nfilter add dev eth0 flower dstport 1") }
        do {
            _ = try Batch(text: "filter add dev eth0 flower\n\nfilter add dev eth0 protocol ip flower \\\n dstport 1")
        } catch {
            #expect(error.line == 3)
            #expect(error.isUsageError)
            #expect(error.description == "line 3: word 8 'dstport': unknown flower key 'dstport'; did you mean 'dst_port'?")
        }
        #expect(throws: BatchError.self) { try Batch(text: "filter add dev 'eth0 flower") }
    }

    /// Words as iproute2's batch reader splits them: quoted runs keep white space and
    /// join what touches them, `#` comments only at a word's start, any newline ends a line.
    @Test func wordsAreSplitAsIproute2Does() {
        func word(_ text: String) -> String? {
            do {
                _ = try Batch(text: text)
                return nil
            } catch {
                guard case .parse(let parse) = error.reason else { return nil }
                return parse.description.split(separator: "'", omittingEmptySubsequences: false).dropFirst().first.map(String.init)
            }
        }
        #expect(word("filter add dev eth0 flower ds\"t po\"rt 1") == "dst port")
        #expect(word("filter add dev eth0 flower 'a'\"b\"c 1") == "abc")
        #expect(word("filter add dev eth0 flower a#b 1") == "a#b")
        #expect(word("filter add dev eth0 flower\u{a0}x\u{3000}1") == "x")
        #expect(word("filter add dev eth0 flower \"\" 1") == "")
        #expect(word("filter add dev eth0 flower  # x 1\r\nfilter add dev eth0 flower y") == "y")
        #expect(word("filter add dev eth0 flower\u{2028}filter add dev eth0 flower z") == "z")
    }

    /// Long batches are read in chunks on every core: the lines come back in file
    /// order, and the error is the first bad line's, whichever chunk holds it.
    @Test func aLongBatchKeepsItsOrderAndItsFirstError() throws {
        var lines = (1 ... 10_000).map { "filter add dev eth0 prio \($0) protocol ip flower ip_proto udp dst_port \($0) action drop" }
        lines[4_999] = "filter add dev eth0 prio 5000 protocol ip flower \\\n  ip_proto udp dst_port 5000 action drop"
        let batch = try Batch(text: lines.joined(separator: "\n") + "\n")
        #expect(batch.lines.count == 10_000)
        #expect(batch.lines.map(\.number) == (1 ... 5_000).map { $0 } + (5_002 ... 10_001).map { $0 })
        #expect(batch.lines.map { $0.command.operation } == lines.map { try! parse($0.replacingOccurrences(of: "\\\n ", with: "")).operation })

        lines[8_999] = "filter add dev eth0 flower dstport 1"
        lines[6_000] = "filter add dev eth0 flower srcport 1"
        #expect { try Batch(text: lines.joined(separator: "\n")) } throws: { error in
            (error as! BatchError).line == 6_002 && (error as! BatchError).description.contains("'srcport'")
        }
    }

    @Test func aTrailingBackslashIsAnErrorNamingItsLine() {
        for text in ["filter add dev eth0 flower action drop\nfilter add dev eth0 protocol ip flower \\",
                     "filter add dev eth0 flower action drop\nfilter add dev eth0 protocol ip flower \\\n"] {
            #expect { try Batch(text: text) } throws: { error in
                let error = error as! BatchError
                return error.line == 2 && error.isUsageError && error.description.contains("ends in '\\'")
            }
        }
        #expect(throws: Never.self) { try Batch(text: "filter add dev eth0 protocol ip flower \\\n action drop\n") }
    }

    @Test func runAppliesEverythingThenPrintsInOrder() throws {
        let store = InMemoryRuleSetStore()
        let batch = try Batch(text: """
            filter add dev eth0 prio 1 protocol ip flower ip_proto tcp action drop
            filter add dev eth1 flower action pass
            filter add dev eth0 prio 1 protocol ip flower ip_proto udp action pass
            filter show dev eth0
            filter del dev eth0 prio 1 handle 1 flower
            filter show dev eth0
            """)
        var shown: [[UInt32]] = []
        try batch.run(on: store) { line, rules in
            if case .show = line.command.operation { shown.append(rules.map(\.handle)) }
        }
        #expect(shown == [[1, 2], [2]])
        #expect(store.rules(of: "eth0").rules.map(\.match.ipProto) == [17])
        #expect(store.rules(of: "eth1").rules.count == 1)
    }

    @Test func aFailingCommandChangesNothing() throws {
        let store = InMemoryRuleSetStore()
        _ = try store.update(device: "eth0") { try $0.add(rule("filter add dev eth0 prio 5 flower action drop")) }
        let batch = try Batch(text: """
            filter add dev eth1 flower action pass
            filter add dev eth0 prio 1 flower action pass
            filter add dev eth0 prio 5 handle 1 flower action drop
            """)
        var printed = 0
        #expect(throws: BatchError.self) { try batch.run(on: store) { _, _ in printed += 1 } }
        do { try batch.run(on: store) { _, _ in } } catch {
            #expect(error.line == 3)
            #expect(!error.isUsageError)
            #expect(error.description == "line 3: prio 5 handle 0x1 already exists")
        }
        #expect(printed == 0)
        #expect(store.rules(of: "eth0").rules.count == 1)
        #expect(store.rules(of: "eth1").rules.isEmpty)
    }
}

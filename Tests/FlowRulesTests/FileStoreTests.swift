@testable import FlowOffload
import FlowRules
import Foundation
import SystemPackage
import Testing

@Suite struct FileStoreTests {
    let directory = FilePath(FileManager.default.temporaryDirectory.path)
        .appending("xft-store-\(UInt32.random(in: 0...UInt32.max))")

    func rule(_ text: String) throws -> FlowRule {
        guard case .add(let rule) = try FilterCommand.parse(text.split(separator: " ").map(String.init)).operation else {
            throw StoreTestError.notAnAdd(text)
        }
        return rule
    }

    enum StoreTestError: Error { case notAnAdd(String) }

    @Test func rulesOutliveTheStoreValue() throws {
        defer { try? FileManager.default.removeItem(atPath: directory.string) }
        let rule = try rule("filter add dev xft0 protocol ip prio 3 flower ip_proto udp dst_port 53 action drop")
        try FileRuleSetStore(directory: directory).update(device: "xft0") { _ = try $0.add(rule) }
        let reread = try FileRuleSetStore(directory: directory).rules(of: "xft0")
        #expect(reread.rules.count == 1)
        #expect(reread.rules.first?.prio == 3)
        #expect(try FileRuleSetStore(directory: directory).rules(of: "xft1").rules.isEmpty)
    }

    @Test func aFailedChangeLeavesTheFileAsItWas() throws {
        defer { try? FileManager.default.removeItem(atPath: directory.string) }
        let store = FileRuleSetStore(directory: directory)
        let first = try rule("filter add dev xft0 protocol ip prio 3 handle 1 flower ip_proto udp action drop")
        try store.update(device: "xft0") { _ = try $0.add(first) }
        let file = FileRuleSetStore(directory: directory).files.path.appending(FileRuleSetStore.file(of: "xft0")).string
        let before = try Data(contentsOf: URL(fileURLWithPath: file))
        #expect(throws: (any Error).self) {
            try store.update(device: "xft0") { set in
                _ = try set.add(try rule("filter add dev xft0 protocol ip prio 4 flower ip_proto tcp action drop"))
                _ = try set.add(first)   // the same handle again: refused, and so is the whole change
            }
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == before)
        #expect(try store.rules(of: "xft0").rules.count == 1)
    }

    @Test func aSnapshotTakesTheLinesARecordPrinted() throws {
        var set = RuleSet()
        for index in 1 ... 40 {
            _ = try set.add(try rule("filter add dev xft0 chain \(index % 3) prio \(index % 7 + 1) handle \(index) "
                + "protocol ip flower ip_proto udp dst_port \(index) action drop"))
        }
        let whole = FileRuleSetStore.text(of: set, sequence: 9, device: "xft0")
        let rules = Array(set.rules)
        for seed in 0 ..< 8 {
            let some = rules.indices.filter { ($0 * 7 + seed) % 3 == 0 }.map { rules[$0] }.shuffled()
            let printed = some.map { (rule: $0, line: $0.commandLine(device: "xft0")) }
            #expect(FileRuleSetStore.text(of: set, sequence: 9, device: "xft0", printed: printed) == whole)
        }
        // A printed line is taken as it is, in its rule's place.
        let marked = FileRuleSetStore.text(of: set, sequence: 9, device: "xft0", printed: [(rules[5], "marked")])
        #expect(marked.split(separator: "\n").filter { !$0.hasPrefix("#") }[5] == "marked")
    }

    @Test func theFileIsABatchOfTheRules() throws {
        defer { try? FileManager.default.removeItem(atPath: directory.string) }
        let store = FileRuleSetStore(directory: directory)
        let lines = ["filter add dev xft0 prio 3 handle 7 protocol ip flower ip_proto udp dst_port 53 action drop",
                     "filter add dev xft0 chain 2 prio 1 protocol 802.1Q flower skip_hw vlan_id 10 vlan_ethtype ipv4 "
                         + "src_ip 10.0.0.0/8 classid 1:10 action vlan pop action mirred egress redirect dev xft1"]
        try store.update(device: "xft0") { set in for line in lines { _ = try set.add(try rule(line)) } }
        let text = try String(contentsOfFile: FileRuleSetStore(directory: directory).files.path.appending(FileRuleSetStore.file(of: "xft0")).string, encoding: .utf8)
        let restored = InMemoryRuleSetStore()
        try Batch(text: text).run(on: restored) { _, _ in }
        #expect(try restored.rules(of: "xft0") == store.rules(of: "xft0"))
        #expect(try restored.rules(of: "xft0").rules.count == 2)
    }

    @Test func aDamagedLineNamesTheFileAndTheLine() throws {
        defer { try? FileManager.default.removeItem(atPath: directory.string) }
        let store = FileRuleSetStore(directory: directory)
        try store.update(device: "xft0") { _ = try $0.add(try rule("filter add dev xft0 prio 1 flower action drop")) }
        let file = FileRuleSetStore(directory: directory).files.path.appending(FileRuleSetStore.file(of: "xft0")).string
        try (String(contentsOfFile: file, encoding: .utf8) + "filter add dev xft0 flower dst_port 99999\n")
            .write(toFile: file, atomically: true, encoding: .utf8)
        let error = #expect(throws: StoreError.self) { try store.rules(of: "xft0") }
        #expect(error?.description.hasPrefix("\(file) cannot be read: line 3:") == true)
    }

    @Test func twoWritersAtOnceLoseNothing() async throws {
        defer { try? FileManager.default.removeItem(atPath: directory.string) }
        let directory = self.directory
        let rules = try (1...60).map { try rule("filter add dev xft0 protocol ip prio \($0) flower ip_proto tcp action drop") }
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<2 {
                group.addTask {
                    // Each writer opens its own store, as two processes would.
                    let store = FileRuleSetStore(directory: directory)
                    for rule in rules.enumerated().filter({ $0.offset % 2 == writer }).map(\.element) {
                        try? store.update(device: "xft0") { _ = try $0.add(rule) }
                    }
                }
            }
        }
        #expect(try FileRuleSetStore(directory: directory).rules(of: "xft0").rules.count == 60)
    }
}

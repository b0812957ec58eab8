import FlowRules
import Packets

/// libFuzzer's entry point: the input is a `-batch` file. Everything an operator can
/// write goes through here: the batch reader (lines, `\` continuations, quotes,
/// comments), the filter line and flower grammar, the rule set's operations, printing
/// (`save`, `show`, `-j show`) and the reference classifier. Any trap is a finding, and
/// so is a rule that does not read back as itself.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGrammar(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    // xdpflow refuses a batch file that is not UTF-8 before the library sees it; the
    // repaired text (U+FFFD for each bad sequence) is still text an operator could write.
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    // As `-force` reads it: every line that parses, so one bad line hides none of the others.
    let (batch, errors) = Batch.forced(text)
    for error in errors { _ = error.description }
    for line in batch.lines { checkPrintedFormReadsBack(line.command) }
    // A refused command (the rule exists, no such rule, ...) is the input's business: all
    // or nothing, then as `-force` runs it, every command that can be carried out.
    try? batch.run(on: InMemoryRuleSetStore()) { _, _ in }
    let store = InMemoryRuleSetStore()
    batch.runForced(on: store, output: { _, _ in }, failed: { _ = $0.description })
    for device in Set(batch.lines.map(\.command.device)).sorted() {
        let set = store.rules(of: device)
        let stats = { (rule: FlowRule) in
            RuleStats(rule: rule, packets: 3, bytes: 180, lastUsed: 1, dropped: 1, police: [0: (1, 2)])
        }
        _ = RuleShow(device: device, rules: set.rules, stats: stats).text
        _ = RuleShow(device: device, rules: set.rules, stats: stats).json(pretty: true)
        guard var classifier = try? ReferenceClassifier(rules: set, device: device) else { continue }
        classifier.boundQueues = [1]
        // Seconds apart, so that police refills its buckets at the fuzzed rates; on queues
        // with and without an AF_XDP socket, for xsk.
        for (index, frame) in sampleFrames.enumerated() {
            _ = classifier.classify(frame, now: UInt64(index) * 1_500_000_000, queue: UInt32(index & 1))
        }
    }
    return 0
}

/// The words of a rule (`commandWords`: the state directory keeps them split by spaces)
/// must read back as the same rule, and so must its line read as a `-batch` file
/// (`batchLine`, what `xdpflow save` prints): else a stored or saved rule set would come
/// back as another, or not at all.
func checkPrintedFormReadsBack(_ command: FilterCommand) {
    let rule: FlowRule
    switch command.operation {
    case .add(let written), .replace(let written), .change(let written): rule = written
    case .delete, .get, .show: return
    }
    let words = rule.commandWords(device: command.device)
    let reread: FilterCommand
    do {
        reread = try FilterCommand.parse(words)
    } catch {
        fatalError("the printed words of a rule do not parse: \(words) (\(error))")
    }
    guard case .add(let again) = reread.operation, again == rule else {
        fatalError("the printed words of a rule read back as another rule: \(words)")
    }
    let line = rule.batchLine(device: command.device)
    let batch: Batch
    do {
        batch = try Batch(text: line)
    } catch {
        fatalError("the printed line of a rule does not read as a batch: \(line) (\(error))")
    }
    guard batch.lines.count == 1, batch.lines[0].command.device == command.device,
          case .add(let restored) = batch.lines[0].command.operation, restored == rule
    else { fatalError("the printed line of a rule reads back as another command: \(line)") }
}

/// One frame per layer a rule can read, for the classifier to match fuzzed rules against.
let sampleFrames: [[UInt8]] = {
    let a = MACAddress(rawValue: 0x02_00_00_00_00_01), b = MACAddress(rawValue: 0x02_00_00_00_00_02)
    let v4a = IPv4Address(rawValue: 0x0a00_0001), v4b = IPv4Address(rawValue: 0x0a00_0002)
    let v6a = IPv6Address(rawValue: 0x2001_0db8 << 96 | 1), v6b = IPv6Address(rawValue: 0x2001_0db8 << 96 | 2)
    return [
        FrameBuilder().ethernet(dst: a, src: b).ipv4(src: v4a, dst: v4b).tcp(src: 1024, dst: 80).padded(),
        FrameBuilder().ethernet(dst: a, src: b).vlan(id: 100, priority: 3).ipv4(src: v4a, dst: v4b, moreFragments: true)
            .udp(src: 53, dst: 5353).padded(),
        FrameBuilder().ethernet(dst: a, src: b).ipv4(src: v4a, dst: v4b).icmp(type: 8, code: 0).padded(),
        FrameBuilder().ethernet(dst: a, src: b).vlan(id: 10, tpid: EtherType.qinq).vlan(id: 20)
            .ipv6(src: v6a, dst: v6b).udp(src: 1, dst: 2),
        FrameBuilder().ethernet(dst: a, src: b).ipv6(src: v6a, dst: v6b).icmpv6(type: 128, code: 0),
        FrameBuilder().ethernet(dst: a, src: b).arp(op: 1, sha: b, spa: v4a, tha: MACAddress(rawValue: 0), tpa: v4b)
            .padded(),
    ].map(\.bytes)
}()

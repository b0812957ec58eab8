import FlowCompiler
import FlowRules
import Packets
import Testing

/// The table classifier's bounds, held to the letter: 65,535 prios (one a rule) over
/// 10,032 distinct masks load through the verifier and classify as the reference does.
@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct ScaleTests {
    /// Rule i: prio i + 1, `dst_mac` under one of 48 prefix lengths and `src_mac` under one
    /// of 209 masks of its last byte (neither is coarsened into another table), drop or
    /// pass by parity.
    static func rule(_ index: Int) -> String {
        let length = 1 + index % 48, mask = 1 + index / 48 % 209
        return "filter add dev xft0 protocol ip prio \(index + 1) flower dst_mac \(Self.mac(index))/\(length) "
            + "src_mac \(Self.mac(index & mask, first: 0))/\(Self.mac(mask, first: 0)) "
            + "action \(index % 2 == 0 ? "drop" : "pass")"
    }

    static func mac(_ index: Int, first: Int = 0x02) -> String {
        [first, 0, 0, index >> 16 & 0xff, index >> 8 & 0xff, index & 0xff]
            .map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }
            .joined(separator: ":")
    }

    @Test func sixtyFiveThousandPriosOverTenThousandMasks() throws {
        let count = 65_535
        let rules = try ruleSet((0 ..< count).map(Self.rule))
        let plan = try Plan(rules, device: testDevice)
        #expect(plan.rules.count == count)
        #expect(plan.tables?.tables.count == 48 * 209)
        var rng = SeededRandom(seed: 65535)
        let frames = (0 ..< 120).map { _ in
            let index = rng.int(0 ... count - 1)
            let dst = MACAddress(rawValue: 0x0200_0000_0000 | UInt64(index))
            let src = MACAddress(rawValue: UInt64(index & 0xff))
            return ether(dst: dst, src: src).ipv4(src: client, dst: server).udp(src: 1, dst: 2).bytes
        }
        #expect(try disagreements(rules, frames) == [])
    }
}

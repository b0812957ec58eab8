import FlowCompiler
import FlowOffload
import FlowRules
import Packets
import Testing

let hostMAC = MACAddress(rawValue: 0x0200_0000_0001)
let routerMAC = MACAddress(rawValue: 0x0200_0000_00fe)
let client = IPv4Address(rawValue: 0xc000_020a)
let server = IPv4Address(rawValue: 0xc633_6401)

func ether(dst: MACAddress = routerMAC, src: MACAddress = hostMAC) -> FrameBuilder {
    FrameBuilder().ethernet(dst: dst, src: src)
}

@Suite(.enabled(if: kernelAvailable, kernelUnavailable), .serialized)
struct CompiledProgramTests {
    @Test func oneDestinationPortRule() throws {
        let rules = try ruleSet(["filter add dev xft0 protocol ip flower ip_proto udp dst_port 53 action drop"])
        let frames = [
            ether().ipv4(src: client, dst: server).udp(src: 1, dst: 53).padded().bytes,
            ether().ipv4(src: client, dst: server).udp(src: 1, dst: 54).padded().bytes,
            ether().ipv4(src: client, dst: server).tcp(src: 1, dst: 53).padded().bytes,
            ether().vlan(id: 5).ipv4(src: client, dst: server).udp(src: 1, dst: 53).padded().bytes,
        ]
        #expect(try disagreements(rules, frames) == [])
    }
}

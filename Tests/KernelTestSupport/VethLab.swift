import BPFKernel
import Foundation

/// A veth pair for one test: `device` in this (root) namespace, where bpffs pins
/// are visible, and `peer` in a fresh namespace of its own. Names are unique per
/// lab (`xft` + random hex), so labs never collide with each other or with the
/// machine's interfaces. Everything is removed when the lab goes away, also when
/// the test fails: deleting the namespace deletes the peer and with it the pair.
public final class VethLab {
    public let namespace: String
    public let deviceName: String
    public let peerName: String
    public let device: NetworkInterface

    /// The prefix of every name a lab creates (`make test` sweeps leftovers of crashed runs).
    public static let prefix = "xft"

    public init() throws {
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        namespace = "\(VethLab.prefix)-\(tag)"
        deviceName = "\(VethLab.prefix)\(tag)a"
        peerName = "\(VethLab.prefix)\(tag)b"
        try run(["ip", "netns", "add", namespace])
        do {
            try run(["ip", "link", "add", deviceName, "type", "veth", "peer", "name", peerName, "netns", namespace])
            // No IPv6 on the pair: no neighbour discovery or MLD frames besides the test's own.
            try run(["sysctl", "-qw", "net.ipv6.conf.\(deviceName).disable_ipv6=1"])
            try VethLab.inNamespace(namespace, ["sysctl", "-qw", "net.ipv6.conf.\(peerName).disable_ipv6=1"])
            try run(["ip", "link", "set", deviceName, "up"])
            try run(["ip", "-n", namespace, "link", "set", peerName, "up"])
            try run(["ip", "-n", namespace, "link", "set", "lo", "up"])
            device = try NetworkInterface(named: deviceName)
        } catch {
            VethLab.remove(device: deviceName, namespace: namespace)
            throw error
        }
    }

    /// Runs a command inside the peer's namespace.
    @discardableResult
    public func inNamespace(_ arguments: [String]) throws -> String {
        try VethLab.inNamespace(namespace, arguments)
    }

    @discardableResult
    private static func inNamespace(_ namespace: String, _ arguments: [String]) throws -> String {
        try run(["ip", "netns", "exec", namespace] + arguments)
    }

    private static func remove(device: String, namespace: String) {
        _ = try? run(["ip", "link", "del", device])
        _ = try? run(["ip", "netns", "del", namespace])
    }

    deinit { VethLab.remove(device: deviceName, namespace: namespace) }
}

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
    /// The pairs `addPair` made, in order.
    public private(set) var extraPairs: [VethPair] = []
    private let tag: String

    /// The prefix of every name a lab creates (`make test` sweeps leftovers of crashed runs).
    public static let prefix = "xft"

    /// `queues`: receive and transmit queues of each end of the first pair (a veth
    /// receives an XDP frame on the queue of the sending CPU).
    public init(queues: Int = 1) throws {
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        self.tag = tag
        namespace = "\(VethLab.prefix)-\(tag)"
        deviceName = "\(VethLab.prefix)\(tag)a"
        peerName = "\(VethLab.prefix)\(tag)b"
        try run(["ip", "netns", "add", namespace])
        do {
            try VethLab.createPair(deviceName, peerName, in: namespace, queues: queues)
            try run(["ip", "-n", namespace, "link", "set", "lo", "up"])
            device = try NetworkInterface(named: deviceName)
        } catch {
            VethLab.remove(device: deviceName, namespace: namespace)
            throw error
        }
    }

    /// Adds another veth pair to the lab, `device` here and `peer` in the lab's namespace,
    /// with GRO on at the peer: frames that XDP redirects into `device` arrive at `peer`
    /// (a veth delivers XDP frames only to a peer with an XDP program or GRO).
    @discardableResult
    public func addPair() throws -> VethPair {
        // The first pair's ends are a and b; then c and d, e and f, ...
        let letters = Array("cdefghijklmnopqrstuvwxyz")
        let first = 2 * extraPairs.count
        let pair = VethPair(device: "\(VethLab.prefix)\(tag)\(letters[first])",
                            peer: "\(VethLab.prefix)\(tag)\(letters[first + 1])")
        extraPairs.append(pair)
        try VethLab.createPair(pair.device, pair.peer, in: namespace)
        try receiveRedirectedFrames(on: pair.peer)
        return pair
    }

    /// Turns GRO on at a device in the lab's namespace, so that it receives the XDP
    /// frames its veth peer transmits (redirects, XDP_TX), without an XDP program of its own.
    public func receiveRedirectedFrames(on peer: String) throws {
        try inNamespace(["ethtool", "-K", peer, "gro", "on"])
    }

    /// Sends `frame` `count` times out of `peer` (by default the first pair's), so that it
    /// arrives at that pair's device here, with the traffic generator run from a thread
    /// in the lab's namespace.
    public func send(_ frame: [UInt8], count: Int, from peer: String? = nil) throws {
        _ = try NetworkNamespace.run(in: namespace) {
            try TrafficGenerator(device: NetworkInterface(named: peer ?? self.peerName)).send(frame, count: count)
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

    /// A veth pair with `device` in this namespace and `peer` in `namespace`, both up.
    private static func createPair(_ device: String, _ peer: String, in namespace: String, queues: Int = 1) throws {
        let sizes = queues == 1 ? [] : ["numrxqueues", "\(queues)", "numtxqueues", "\(queues)"]
        try run(["ip", "link", "add", device] + sizes + ["type", "veth", "peer", "name", peer] + sizes + ["netns", namespace])
        // No IPv6 on the pair: no neighbour discovery or MLD frames besides the test's own.
        try run(["sysctl", "-qw", "net.ipv6.conf.\(device).disable_ipv6=1"])
        try VethLab.inNamespace(namespace, ["sysctl", "-qw", "net.ipv6.conf.\(peer).disable_ipv6=1"])
        try run(["ip", "link", "set", device, "up"])
        try run(["ip", "-n", namespace, "link", "set", peer, "up"])
    }

    private static func remove(device: String, namespace: String) {
        _ = try? run(["ip", "link", "del", device])
        _ = try? run(["ip", "netns", "del", namespace])
    }

    deinit {
        for pair in extraPairs { _ = try? run(["ip", "link", "del", pair.device]) }
        VethLab.remove(device: deviceName, namespace: namespace)
    }
}

/// Two ends of a veth: `device` in the root namespace, `peer` in a lab's namespace.
public struct VethPair: Sendable {
    public let device: String
    public let peer: String
}

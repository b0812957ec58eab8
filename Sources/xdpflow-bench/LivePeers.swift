import BPFAssembly
import BPFKernel
import FlowRules
import Foundation

/// One way of dropping the live rule set's frames on the lab's device. Peers take turns
/// on the same device: each attaches, is measured, and detaches again.
protocol LivePeer: AnyObject {
    var name: String { get }
    /// Whether it runs as an XDP program, whose drops the veth's XDP statistics count.
    var isXDP: Bool { get }
    /// Why it cannot run `ruleSet` (a cell of the table), or nil when it can.
    func cannot(_ ruleSet: LiveWorkload) -> String?
    func attach(_ ruleSet: LiveWorkload) throws
    /// What the peer's own counters say it dropped since `attach`: in all, and by the
    /// rule set's last rule (nil when it counts by rule no more than in all).
    func counted() throws -> (total: Int, lastRule: Int?)?
    func detach() throws
}

/// The floor: a program that drops every frame and does nothing else.
final class FloorPeer: LivePeer {
    let name = "floor"
    let isXDP = true
    private let program: Program
    private let device: NetworkInterface
    private var link: XDPLink?

    init(_ lab: LiveLab) throws {
        program = try Program.loadXDP(name: "xfb_floor", instructions: Instruction.return(XDPAction.drop))
        device = try NetworkInterface(named: lab.device)
    }

    func cannot(_ ruleSet: LiveWorkload) -> String? { nil }

    func attach(_ ruleSet: LiveWorkload) throws {
        link = try XDPLink(attaching: program, to: device, mode: .native)
    }

    func counted() throws -> (total: Int, lastRule: Int?)? { nil }

    func detach() throws {
        try link?.detach()
        link = nil
    }
}

/// XDPFlow as an operator runs it: `xdpflow attach`, then the rules with `xdpflow -batch`,
/// with state and pins of its own (XDPFLOW_STATE_DIR, XDPFLOW_PIN_DIR) so that it never
/// sees an offload already on the machine.
final class XDPFlowPeer: LivePeer {
    let name = "XDPFlow"
    let isXDP = true
    private let xdpflow: String
    private let lab: LiveLab
    /// Its state directory and pin root, for other xdpflow commands on the device.
    let environment: [String: String]
    /// Words after `attach dev DEV` (`metadata rule`), for the next attach.
    var attachWords: [String]
    private let token: Undo.Token

    /// `stateName` tells apart the state and pins of two peers in one lab.
    init(_ lab: LiveLab, xdpflow: String, attachWords: [String] = [], stateName: String = "xdpflow") throws {
        self.xdpflow = xdpflow
        self.lab = lab
        self.attachWords = attachWords
        let state = "\(lab.scratch)/\(stateName)-state", pins = "/sys/fs/bpf/xfb-\(lab.tag)-\(stateName)-pins"
        environment = ["XDPFLOW_STATE_DIR": state, "XDPFLOW_PIN_DIR": pins]
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: false)
        token = Undo.shared.push("XDPFlow on \(lab.device) and \(pins)") { [xdpflow, device = lab.device, environment] in
            if FileManager.default.fileExists(atPath: pins) {
                Shell.attempt([xdpflow, "detach", "dev", device], environment: environment)
                try? FileManager.default.removeItem(atPath: pins)
            }
        }
    }

    deinit { Undo.shared.done(token) }

    func cannot(_ ruleSet: LiveWorkload) -> String? { nil }

    func attach(_ ruleSet: LiveWorkload) throws {
        let attached = try Shell.run([xdpflow, "attach", "dev", lab.device] + attachWords, environment: environment)
        guard attached.contains("native mode") else {
            throw BenchError("xdpflow attach dev \(lab.device): not in native mode: \(attached)")
        }
        let batch = "\(lab.scratch)/rules.batch"
        try ruleSet.batch(for: lab.device).write(toFile: batch, atomically: false, encoding: .utf8)
        try Shell.run([xdpflow, "-batch", batch], environment: environment)
    }

    /// The rules' counters, from `xdpflow -s -j filter show` (in classification order).
    func counted() throws -> (total: Int, lastRule: Int?)? {
        let shown = try Shell.run([xdpflow, "-s", "-j", "filter", "show", "dev", lab.device], environment: environment)
        guard let objects = try JSONSerialization.jsonObject(with: Data(shown.utf8)) as? [[String: Any]] else {
            throw BenchError("xdpflow -s -j filter show: not a JSON array")
        }
        // tc's schema: a rule is an object with "options"; its counters are in each
        // action's "stats" (the objects without options head a prio).
        let packets = objects.compactMap { $0["options"] as? [String: Any] }.map { options in
            (((options["actions"] as? [[String: Any]])?.first?["stats"] as? [String: Any])?["packets"] as? Int) ?? 0
        }
        return (packets.reduce(0, +), packets.last)
    }

    func detach() throws {
        try Shell.run([xdpflow, "detach", "dev", lab.device], environment: environment)
    }
}

/// xdp-filter (Debian's xdp-tools) in native mode with the smallest program variant
/// (`--features`) that holds the rules, default policy allow: listed ports and addresses
/// are dropped. Its maps go to the fixed /sys/fs/bpf/xdp-filter, so it is only measured
/// when no other xdp-filter uses that directory; libxdp's own directory is the lab's.
final class XDPFilterPeer: LivePeer {
    let name = "xdp-filter"
    let isXDP = true
    private let lab: LiveLab
    private let environment: [String: String]
    private let unavailable: String?
    private var token: Undo.Token?
    static let pins = "/sys/fs/bpf/xdp-filter"

    init(_ lab: LiveLab) {
        self.lab = lab
        environment = ["LIBXDP_BPFFS": "/sys/fs/bpf/xfb-\(lab.tag)-libxdp"]
        if !Shell.attempt(["which", "xdp-filter"]) {
            unavailable = "n/a: xdp-filter is not installed (scripts/install-deps)"
        } else if FileManager.default.fileExists(atPath: Self.pins) {
            unavailable = "n/a: \(Self.pins) exists: another xdp-filter is in use"
        } else {
            unavailable = nil
        }
    }

    func cannot(_ ruleSet: LiveWorkload) -> String? {
        if let unavailable { return unavailable }
        do {
            _ = try commands(ruleSet)
            return nil
        } catch let cannot as XDPFilterCannot {
            return cannot.why
        } catch {
            return "n/a: \(error)"
        }
    }

    private func commands(_ ruleSet: LiveWorkload) throws -> (features: String, commands: [[String]]) {
        let translated = try ruleSet.rules.map { try DropRule($0).xdpFilter.get() }
        let features = Set(translated.map(\.feature)).sorted().joined(separator: ",")
        return (features, translated.map(\.arguments))
    }

    func attach(_ ruleSet: LiveWorkload) throws {
        let (features, commands) = try commands(ruleSet)
        let libxdp = environment["LIBXDP_BPFFS"]!
        token = Undo.shared.push("xdp-filter on \(lab.device)") { [device = lab.device, environment] in
            Self.removeStaleLock()
            Shell.attempt(["xdp-filter", "unload", device], environment: environment)
            try? FileManager.default.removeItem(atPath: Self.pins)
            try? FileManager.default.removeItem(atPath: libxdp)
        }
        try FileManager.default.createDirectory(atPath: libxdp, withIntermediateDirectories: true)
        try Shell.run(["xdp-filter", "load", "--mode", "native", "--features", features, lab.device],
                      environment: environment)
        for command in commands { try Shell.run(["xdp-filter"] + command, environment: environment) }
    }

    /// xdp-filter's lock, left behind when a signal ends it mid-command; every later
    /// xdp-filter then fails ("Unable to read PID from lockfile").
    static let lock = "/run/xdp-filter.lck"

    /// Removes the lock when the process it names is gone (an xdp-filter the signal ended).
    static func removeStaleLock() {
        guard let text = try? String(contentsOfFile: lock, encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
              kill(pid, 0) != 0, errno == ESRCH else { return }
        try? FileManager.default.removeItem(atPath: lock)
    }

    /// Its aggregate XDP_DROP counter (`xdp-filter status`, which exits 254 when the maps
    /// of the features not loaded are missing, after printing the rest).
    func counted() throws -> (total: Int, lastRule: Int?)? {
        let status = try Shell.run(["xdp-filter", "status"], environment: environment, accepting: [0, 254])
        guard let line = status.split(separator: "\n").first(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix("XDP_DROP") }),
              let packets = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else {
            throw BenchError("xdp-filter status: no XDP_DROP count in\n\(status)")
        }
        return (packets, nil)
    }

    func detach() throws {
        try Shell.run(["xdp-filter", "unload", lab.device], environment: environment)
        guard !FileManager.default.fileExists(atPath: Self.pins) else {
            throw BenchError("xdp-filter unload \(lab.device) left \(Self.pins) behind")
        }
        try FileManager.default.removeItem(atPath: environment["LIBXDP_BPFFS"]!)
        if let token { Undo.shared.forget(token) }
        token = nil
    }
}

/// nftables in the netdev family's ingress hook of the device: one rule per flower rule,
/// in classification order, each with a counter (as each XDPFlow rule has), loaded with `nft -f`.
final class NFTablesPeer: LivePeer {
    let name = "nftables"
    let isXDP = false
    private let lab: LiveLab
    let table: String
    private var token: Undo.Token?
    /// One flower rule as an nftables rule (the live rule sets' `DropRule` by default).
    private let translate: (FlowRule) throws -> String

    init(_ lab: LiveLab, translate: @escaping (FlowRule) throws -> String = { try DropRule($0).nftables }) {
        self.lab = lab
        table = "xfb-\(lab.tag)"
        self.translate = translate
    }

    func cannot(_ ruleSet: LiveWorkload) -> String? {
        Shell.attempt(["which", "nft"]) ? nil : "n/a: nft is not installed (scripts/install-deps)"
    }

    func attach(_ ruleSet: LiveWorkload) throws {
        let rules = try ruleSet.rules.map { "        " + (try translate($0)) }
        let file = "\(lab.scratch)/rules.nft"
        try """
            table netdev \(table) {
                chain ingress {
                    type filter hook ingress device "\(lab.device)" priority 0; policy accept;
            \(rules.joined(separator: "\n"))
                }
            }

            """.write(toFile: file, atomically: false, encoding: .utf8)
        token = Undo.shared.push("the nftables table \(table)") { [table] in
            Shell.attempt(["nft", "delete", "table", "netdev", table])
        }
        try Shell.run(["nft", "-f", file])
    }

    /// The rules' counters, from `nft -j list table`.
    func counted() throws -> (total: Int, lastRule: Int?)? {
        let listing = try Shell.run(["nft", "-j", "list", "table", "netdev", table])
        guard let objects = (try JSONSerialization.jsonObject(with: Data(listing.utf8)) as? [String: Any])?["nftables"]
            as? [[String: Any]] else {
            throw BenchError("nft -j list table netdev \(table): no nftables array")
        }
        let packets = objects.compactMap { $0["rule"] as? [String: Any] }.map { rule in
            ((rule["expr"] as? [[String: Any]]) ?? []).compactMap { ($0["counter"] as? [String: Any])?["packets"] as? Int }
                .reduce(0, +)
        }
        return (packets.reduce(0, +), packets.last)
    }

    func detach() throws {
        try Shell.run(["nft", "delete", "table", "netdev", table])
        if let token { Undo.shared.forget(token) }
        token = nil
    }
}

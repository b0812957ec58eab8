import BPFKernel
import FlowCompiler
import FlowRules
import Foundation
import SystemPackage

extension Offload {
    /// What `xdpflow show` reports for a device: what runs there, and whether the state
    /// on disk and the pins in bpffs still agree.
    public struct Status: Sendable {
        public var device: String
        /// The mode recorded at attach (native or generic); nil without offload state.
        public var mode: String?
        /// The program running on the device behind xdpflow's pinned link; nil when
        /// there is no usable link.
        public var programID: UInt32?
        public var unparsedDrop: Bool
        public var rules: Int
        public var subtables: Int
        public var entries: Int
        /// Nil when the device's counters cannot be read (no pinned counters map).
        public var misses: RuleStatistics?
        public var unparsed: RuleStatistics?
        /// What disagrees, each with what to do; empty when all is well.
        public var problems: [String]

        public var needsRepair: Bool { !problems.isEmpty }
    }

    /// Nil when xdpflow holds nothing for the device (no offload state, no link pin).
    public func status() throws -> Status? {
        try Privileges.require("show")
        return try state.locked {
            let offload = try state.read(OffloadState.self, from: OffloadState.file(of: device))
            let hasLink = FileManager.default.fileExists(atPath: linkPin.string)
            guard offload != nil || hasLink else { return nil }
            let rules = try store.read(device)
            var status = Status(device: device, mode: offload?.mode, unparsedDrop: offload?.unparsedDrop ?? false,
                                rules: rules.rules.count, subtables: 0, entries: 0, problems: [])
            if let plan = try? compile(rules, memory: offload?.memory,
                                       ruleCapacity: offload?.ruleCapacity ?? Plan.defaultRuleCapacity) {
                status.rules = plan.rules.count
                status.subtables = plan.subtables.count
                status.entries = plan.entryCount
            }
            if hasLink {
                do {
                    let link = try XDPLink(pinnedAt: linkPin)
                    status.programID = XDPLink.attachedProgramID(link.device)
                    if link.device.name != device {
                        status.problems.append("the link pinned at \(linkPin) is on \(link.device), not \(device): "
                            + "was the device renamed? xdpflow detach dev \(device) removes it")
                    }
                } catch BPFError.noSuchDevice {
                    status.problems.append("the device is gone, its link with it: "
                        + "xdpflow detach dev \(device) removes the pins and the state")
                } catch {
                    status.problems.append("the link pinned at \(linkPin) cannot be opened (\(error)): "
                        + "xdpflow detach dev \(device) removes it")
                }
            }
            switch (offload, hasLink) {
            case (let offload?, true):
                let counters = try? statistics(of: offload)
                status.misses = counters?.misses
                status.unparsed = counters?.unparsed
                if offload.pending {
                    status.problems.append("an earlier change did not finish: the next filter change "
                        + "on \(device) rebuilds the program from the \(status.rules) stored rules")
                }
            case (_?, false):
                status.problems.append("state in \(state.path) says attached, but no link is pinned at "
                    + "\(linkPin) (a reboot, or bpffs remounted): xdpflow attach dev \(device) "
                    + "loads its \(status.rules) stored rules again")
            case (nil, _):
                status.problems.append("a link is pinned at \(linkPin) but there is no state in \(state.path) "
                    + "(an attach did not finish): xdpflow detach dev \(device) removes it")
            }
            return status
        }
    }

    /// The devices xdpflow holds something for (offload state or a link pin), by name.
    public static func devices(state: StateDirectory = .default, pinRoot: FilePath = Offload.defaultPinRoot) -> [String] {
        let suffix = OffloadState.file(of: "")
        let stateFiles = (try? FileManager.default.contentsOfDirectory(atPath: state.path.string)) ?? []
        let withState = stateFiles.filter { $0.hasSuffix(suffix) && !$0.hasPrefix(".") }.map { String($0.dropLast(suffix.count)) }
        let pinned = ((try? FileManager.default.contentsOfDirectory(atPath: pinRoot.string)) ?? []).filter {
            FileManager.default.fileExists(atPath: pinRoot.appending($0).appending("link").string)
        }
        return Set(withState + pinned).sorted()
    }
}

extension FileRuleSetStore {
    /// The devices with a rule set on disk (possibly empty), by name.
    public func devices() -> [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.string)) ?? []
        let devices = [Self.file(of: ""), Self.jsonFile(of: "")].flatMap { suffix in
            files.filter { $0.hasSuffix(suffix) && !$0.hasPrefix(".") }.map { String($0.dropLast(suffix.count)) }
        }
        return Set(devices).sorted()
    }
}

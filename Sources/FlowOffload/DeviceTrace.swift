import BPFKernel
import FlowCompiler
import FlowRules
import Foundation

extension Offload {
    /// A datapath that traces frames through the rules attached right now, without
    /// sending any: the device's plan, compiled to record matches, over the device's own
    /// pinned subtable, actions, redirect and broadcast maps, but with counters and
    /// policers of its own, so that tracing never moves the live counters or police buckets.
    public struct Tracer {
        public let datapath: Datapath
        /// The device's stored rules, which the datapath's plan was made from.
        public let rules: RuleSet
        /// Set when an earlier change did not finish: the maps may not match the rules yet.
        public let warning: String?
    }

    public func tracer() throws -> Tracer {
        try Privileges.require("trace")
        return try state.locked {
            guard let offload = try state.read(OffloadState.self, from: OffloadState.file(of: device)),
                  FileManager.default.fileExists(atPath: linkPin.string)
            else {
                throw OffloadFailure("\(device) is not attached (xdpflow show dev \(device)); "
                    + "to trace rules without a device: xdpflow trace -batch RULES --pcap FILE")
            }
            let rules = try store.read(device)
            let plan = try compile(rules, memory: offload.memory, ruleCapacity: offload.ruleCapacity)
            let live = try pinnedMaps(for: plan)
            let running = try Datapath(adopting: plan, options: offload.options, maps: live)
            var options = offload.options
            options.recordMatches = true
            let shared = Set(live.keys).subtracting([FlowMaps.counters, FlowMaps.policers])
            let datapath = try Datapath(plan: plan, options: options, targetIndex: redirectIndex,
                                        replacing: running, sharing: shared)
            let warning = offload.pending
                ? "an earlier change on \(device) did not finish, so its maps may not match its rules yet; "
                    + "the next filter change repairs it"
                : nil
            return Tracer(datapath: datapath, rules: rules, warning: warning)
        }
    }
}

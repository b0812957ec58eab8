import BPFKernel
import FlowCompiler
import FlowRules
import FoundationEssentials
import Glibc

extension Offload {
    /// A datapath that traces frames through the rules attached right now, without
    /// sending any: the device's plan, compiled to record matches, over the device's own
    /// pinned subtable, actions, redirect and broadcast maps, but with counters and
    /// policers of its own, so that tracing never moves the live counters or police buckets.
    public struct Tracer {
        public let datapath: Datapath
        /// The device's stored rules, which the datapath's plan was made from.
        public let rules: RuleSet
        /// What an earlier command left pending and this one rolled back first.
        public let warning: String?
    }

    public func tracer() throws -> Tracer {
        try Privileges.require("trace")
        return try locked { stored, recovery in
            guard let offload = stored.offload,
                  FileManager.default.fileExists(atPath: pins.appending(ProgramSlot.Pin.link).string)
            else {
                throw OffloadError.notAttachedForTrace(device)
            }
            let plan = try plan(stored, offload)
            let live = try pinnedMaps(for: plan)
            let running = try Datapath(adopting: plan, options: offload.options, maps: live)
            var options = offload.options
            options.recordMatches = true
            // Counters and buckets of its own; and no sockets: a traced xsk action takes
            // its unbound path (the frame is not the sockets' to receive).
            let shared = Set(live.keys).subtracting([FlowMaps.counters, FlowMaps.policers, FlowMaps.xsks,
                                                     FlowMaps.xskUnbound])
            let datapath = try Datapath(plan: plan, options: options, targetIndex: redirectIndex,
                                        replacing: running, sharing: shared)
            return Tracer(datapath: datapath, rules: stored.rules, warning: recovery)
        }
    }
}

/// The rule store of the CLI: every change goes through `Offload.update`, the one
/// engine. Lets FlowRules' single commands and batches run unchanged on live devices.
public struct OffloadingStore: RuleSetStore {
    public let state: StateDirectory
    /// Told what an earlier command left pending and this one finished or rolled back,
    /// and warnings (a redirect target that would drop the frames sent to it).
    public let report: @Sendable (String) -> Void

    public init(state: StateDirectory = .default, report: @escaping @Sendable (String) -> Void) {
        self.state = state
        self.report = report
    }

    /// The device's rules as stored, read without changing anything (`Offload.stored()`).
    public func rules(of device: String) throws -> RuleSet {
        try Offload(device: device, state: state).stored().rules
    }

    /// Runs `body`, which records what it changes, as one change of the device.
    public func update<T>(device: String, _ body: (inout RuleSet, inout RuleChange) throws -> T) throws -> T {
        let update = try Offload(device: device, state: state).update(body)
        if let recovery = update.recovery { report(recovery) }
        update.warnings.forEach(report)
        return update.result
    }
}

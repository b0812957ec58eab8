import FlowOffload
import FlowRules
import FoundationEssentials
import Glibc

/// `xdpflow trace dev DEV --pcap CAPTURE` (no -batch): the frames go through the rules
/// attached to DEV right now, over DEV's own maps but with counters and police buckets
/// of the trace's own (`Offload.tracer()`), and are printed as the offline trace prints.
struct DeviceTrace {
    let datapath: Datapath
    /// With --check: the reference classifier over DEV's stored rules.
    let reference: ReferenceClassifier?

    init(device: String, check: Bool) throws {
        let tracer = try Offload(device: device).tracer()
        if let warning = tracer.warning { printError("Warning: \(warning)\n") }
        datapath = tracer.datapath
        reference = check ? try ReferenceClassifier(rules: tracer.rules, device: device) : nil
    }
}

extension Trace {
    static let deviceManual = """
        ON A DEVICE
          Without -batch, "xdpflow trace dev DEV --pcap CAPTURE" runs the frames
          through the rules attached to DEV right now: DEV's plan, compiled to record
          matches, looking rules up in DEV's own pinned maps (the same kernel objects),
          so it sees exactly the rules DEV runs, redirect targets included. Its
          counters and police buckets are its own: tracing never moves DEV's
          counters, and police actions are traced with a full bucket. --check
          compares with the reference classifier over DEV's stored rules. Nothing is
          sent. Needs root; DEV must be attached (exit 1 otherwise).
        """
}

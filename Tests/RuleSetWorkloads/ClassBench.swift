import FlowRules
import Foundation
import Packets

/// The ClassBench filter files shipped with the project (see their README): the field's
/// standard rule sets, converted to flower rules as that README says.
public enum ClassBench {
    /// The shipped files, by name, with the number of rules each holds.
    public static let shippedFiles: KeyValuePairs<String, Int> = [
        "acl1_1000": 902, "acl1_10000": 9738, "fw1_1000": 749, "fw1_10000": 9357,
        "ipc1_1000": 939, "ipc1_10000": 9106,
    ]

    /// `XDPFLOW_CLASSBENCH`, else the sets the repository carries (`workloads/classbench`).
    public static var directory: URL {
        if let path = ProcessInfo.processInfo.environment["XDPFLOW_CLASSBENCH"] {
            return URL(fileURLWithPath: path, isDirectory: true)
        }
        // This file is <root>/Tests/RuleSetWorkloads/ClassBench.swift.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.appendingPathComponent("workloads/classbench", isDirectory: true)
    }

    /// The file `name` of `directory`.
    public static func load(_ name: String, device: String = RuleSetWorkload.defaultDevice) throws(WorkloadError)
        -> RuleSetWorkload {
        try load(contentsOf: directory.appendingPathComponent(name), device: device)
    }

    public static func load(contentsOf file: URL, device: String = RuleSetWorkload.defaultDevice)
        throws(WorkloadError) -> RuleSetWorkload {
        let text: String
        do {
            text = try String(contentsOf: file, encoding: .utf8)
        } catch {
            throw WorkloadError(file: file.path, line: nil,
                                reason: "cannot read it (\(error.localizedDescription)); XDPFLOW_CLASSBENCH names "
                                    + "the directory of the ClassBench files")
        }
        return try workload(text: text, name: file.path, device: device)
    }

    /// The rules of a filter file's `text`, line i + 1 becoming rule i; errors name `name`.
    public static func workload(text: String, name: String, device: String = RuleSetWorkload.defaultDevice)
        throws(WorkloadError) -> RuleSetWorkload {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        var commands: [String] = []
        commands.reserveCapacity(lines.count)
        for (index, line) in lines.enumerated() {
            do {
                commands.append(try ClassBenchRule(line).command(index: index, device: device))
            } catch {
                throw WorkloadError(file: name, line: index + 1, reason: error.reason)
            }
        }
        // One command a line: the batch's line numbers are the file's.
        return try RuleSetWorkload(name: name, lines: commands)
    }
}

/// One line of a ClassBench filter file, tab-separated:
///
///     @SRC/LEN  DST/LEN  SPORT_LO : SPORT_HI  DPORT_LO : DPORT_HI  PROTO/MASK  FLAGS/MASK
public struct ClassBenchRule: Hashable, Sendable {
    public var source: Masked<IPv4Address>
    public var destination: Masked<IPv4Address>
    public var sourcePorts: ClosedRange<UInt16>
    public var destinationPorts: ClosedRange<UInt16>
    /// nil for any protocol (mask 0x00).
    public var ipProto: UInt8?

    public struct FormatError: Error, Hashable, Sendable, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }

    /// Reads a line; the flags column is not one of the five fields and is ignored.
    public init(_ line: Substring) throws(FormatError) {
        let words = line.split { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard (9 ... 10).contains(words.count), words[0].hasPrefix("@"), words[3] == ":", words[6] == ":" else {
            throw FormatError(reason: "expected @SRC/LEN DST/LEN LO : HI LO : HI PROTO/MASK [FLAGS/MASK]")
        }
        source = try Self.prefix(words[0].dropFirst())
        destination = try Self.prefix(words[1])
        sourcePorts = try Self.ports(words[2], words[4])
        destinationPorts = try Self.ports(words[5], words[7])
        ipProto = try Self.ipProto(words[8])
    }

    /// The README's conversion: rule `index` (from 0) at prio index + 1, handle 1; matches
    /// other than "any"; `drop` for even indexes and `pass` for odd ones, so that verdicts
    /// tell which rule won.
    public func command(index: Int, device: String) -> String {
        var words = ["filter add dev \(device) ingress protocol ip prio \(index + 1) handle 1 flower"]
        if source.mask.rawValue != 0 { words += ["src_ip", "\(source.value)/\(source.prefixLength!)"] }
        if destination.mask.rawValue != 0 { words += ["dst_ip", "\(destination.value)/\(destination.prefixLength!)"] }
        if let ipProto { words += ["ip_proto", Self.protocolName(ipProto)] }
        if let text = Self.portText(sourcePorts) { words += ["src_port", text] }
        if let text = Self.portText(destinationPorts) { words += ["dst_port", text] }
        words += ["action", index.isMultiple(of: 2) ? "drop" : "pass"]
        return words.joined(separator: " ")
    }

    private static func prefix(_ text: Substring) throws(FormatError) -> Masked<IPv4Address> {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let address = IPv4Address(String(parts[0])), let length = Int(parts[1]),
              let prefix = Masked(address, prefixLength: length)
        else { throw FormatError(reason: "'\(text)': expected an IPv4 ADDRESS/LEN") }
        return prefix
    }

    private static func ports(_ low: Substring, _ high: Substring) throws(FormatError) -> ClosedRange<UInt16> {
        guard let low = UInt16(low), let high = UInt16(high), low <= high else {
            throw FormatError(reason: "'\(low) : \(high)': expected a port range LO : HI")
        }
        return low ... high
    }

    private static func ipProto(_ text: Substring) throws(FormatError) -> UInt8? {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let value = hexByte(parts[0]), let mask = hexByte(parts[1]), mask == 0 || mask == 0xff
        else { throw FormatError(reason: "'\(text)': expected PROTO/MASK in hex, the mask 0x00 or 0xFF") }
        return mask == 0 ? nil : value
    }

    private static func hexByte(_ text: Substring) -> UInt8? {
        guard text.lowercased().hasPrefix("0x") else { return nil }
        return UInt8(text.dropFirst(2), radix: 16)
    }

    /// tcp and udp by name; other numbers as the file writes them (the grammar reads
    /// `ip_proto` in hex).
    private static func protocolName(_ number: UInt8) -> String {
        switch number {
        case IPProtocolNumber.tcp: "tcp"
        case IPProtocolNumber.udp: "udp"
        default: "0x" + (number < 0x10 ? "0" : "") + String(number, radix: 16)
        }
    }

    /// nil for any port; `N` for one, `LO-HI` otherwise.
    private static func portText(_ ports: ClosedRange<UInt16>) -> String? {
        if ports == 0 ... .max { return nil }
        return ports.lowerBound == ports.upperBound ? "\(ports.lowerBound)" : "\(ports.lowerBound)-\(ports.upperBound)"
    }
}

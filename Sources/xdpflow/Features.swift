import ArgumentParser
import BPFKernel

/// `xdpflow features dev DEV`: what the device's driver can do with XDP.
struct Features: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what a device's driver supports for XDP.",
        discussion: "Reads the netdev netlink family's xdp-features; on kernels without it, probes with a native attach."
    )

    @Argument(help: ArgumentHelp("dev DEV", valueName: "dev DEV"))
    var words: [String]

    @Flag(name: [.customShort("j"), .customLong("json")], help: "Print JSON.")
    var json = false

    func run() throws {
        let device = try NetworkInterface(named: try DeviceWords.device(in: words, command: "features"))
        let (features, source) = try device.xdpFeatures()
        let attached = XDPLink.attachedProgramID(device)
        if json {
            let list = features.names.map { "\"\($0)\"" }.joined(separator: ",")
            print("{\"dev\":\"\(device.name)\",\"ifindex\":\(device.index),\"xdp_features\":[\(list)],"
                + "\"source\":\"\(source.rawValue)\",\"native\":\(features.contains(.basic)),"
                + "\"prog_id\":\(attached.map(String.init) ?? "null")}")
        } else {
            print("\(device.name): xdp-features \(features) (from \(source.rawValue))")
            print("  native XDP: \(features.contains(.basic) ? "yes" : "no (generic mode only)")")
            print("  redirect target: \(features.contains(.redirectTarget) ? "yes" : "no")")
            print("  attached program: \(attached.map { "id \($0)" } ?? "none")")
        }
    }
}

/// The `dev DEV` words of tc-style commands.
enum DeviceWords {
    static func device(in words: [String], command: String) throws -> String {
        guard words.count == 2, words[0] == "dev" || words[0] == "device" else {
            throw ValidationError("\(command): expected 'dev DEV', got '\(words.joined(separator: " "))'")
        }
        return words[1]
    }
}

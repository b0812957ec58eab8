import BPFAssembly
import CLibBPF
import SystemPackage

/// What the kernel runs a program as (enum bpf_prog_type): what its context is and which
/// helpers and return values it has.
public enum ProgramType: Sendable, Hashable {
    case xdp
    /// tc's classifier, `struct __sk_buff` in r1: what tcx and clsact run.
    case schedCLS

    var kernelValue: bpf_prog_type {
        switch self {
        case .xdp: BPF_PROG_TYPE_XDP
        case .schedCLS: BPF_PROG_TYPE_SCHED_CLS
        }
    }

    /// The attach type a program of this type is loaded for unless told otherwise.
    public var attachType: AttachType {
        switch self {
        case .xdp: .xdp
        case .schedCLS: .tcxIngress
        }
    }
}

/// Where a program is attached (enum bpf_attach_type), given at load so the verifier
/// knows, and again at bpf_link_create.
public enum AttachType: UInt32, Sendable, Hashable {
    case xdp = 37
    /// BPF_TCX_INGRESS and BPF_TCX_EGRESS (kernel 6.6): libbpf 1.1's headers predate them,
    /// so the values are spelled here.
    case tcxIngress = 46
    case tcxEgress = 47

    var kernelValue: bpf_attach_type { bpf_attach_type(rawValue) }
}

/// A program loaded into the kernel (it passed the verifier), owned.
public final class Program: Pinnable, Sendable {
    public let descriptor: Descriptor
    public let name: String
    /// Instructions in 8-byte slots, as the kernel counts them.
    public let slotCount: Int

    init(descriptor: Descriptor, name: String, slotCount: Int) {
        self.descriptor = descriptor
        self.name = name
        self.slotCount = slotCount
    }

    /// Loads a program of `type`, for attaching as `attachType` (nil: the type's usual
    /// one). Map references in `instructions` are resolved from `maps` by name; labels must
    /// already be resolved (`Assembler.assemble()`).
    ///
    /// The first attempt asks for no verifier log (fast); when the kernel refuses, the
    /// program is loaded again with the log on, and the error carries it.
    public static func load(_ type: ProgramType, attachType: AttachType? = nil, name: String,
                            instructions: [Instruction], maps: [String: Map] = [:],
                            license: String = "GPL") throws(BPFError) -> Program {
        let image = try Image(type: type, attachType: attachType ?? type.attachType, name: name,
                              instructions: instructions, maps: maps, license: license)
        let fd = image.load(logLevel: 0, log: nil)
        if fd >= 0 { return image.program(fd) }
        let errno = Errno(rawValue: -fd)
        // E2BIG: too large or too complex for the verifier, which says which in its log.
        guard errno == .invalidArgument || errno == .permissionDenied || errno == .noSpace
            || errno == .argListTooLong || errno == .badAddress else {
            throw .call("bpf_prog_load", subject: name, errno: errno)
        }
        // Verifier refusals come as EINVAL or EACCES; load again to get the reason.
        let (retry, text) = image.loadLogging(level: 1)
        if retry >= 0 { return image.program(retry) }
        throw .verifierRejected(program: name, errno: Errno(rawValue: -retry), log: text)
    }

    /// `load(.xdp, ...)`.
    public static func loadXDP(name: String, instructions: [Instruction], maps: [String: Map] = [:],
                               license: String = "GPL") throws(BPFError) -> Program {
        try load(.xdp, name: name, instructions: instructions, maps: maps, license: license)
    }

    /// The verifier's log of the program at level 1 with statistics, what tc's
    /// `verbose` asks for: for an accepted program, its summary (instructions processed,
    /// states, stack depth, time), as level 1 keeps only a failing path. From a load
    /// that is closed again; the summary alone if the log would not fit.
    public static func verifierLog(_ type: ProgramType = .xdp, name: String, instructions: [Instruction],
                                   maps: [String: Map] = [:], license: String = "GPL") throws(BPFError) -> String {
        let image = try Image(type: type, attachType: type.attachType, name: name, instructions: instructions,
                              maps: maps, license: license)
        var (fd, text) = image.loadLogging(level: 1 | 4)
        if fd == -Int32(ENOSPC) { (fd, text) = image.loadLogging(level: 4) }
        guard fd >= 0 else { throw .verifierRejected(program: name, errno: Errno(rawValue: -fd), log: text) }
        _ = Descriptor(fd)  // owned, so closed at once: only the log was wanted
        return text
    }

    /// A program's bytes with its map references resolved, ready for bpf_prog_load.
    private struct Image {
        let type: ProgramType
        let attachType: AttachType
        let name: String
        let bytes: [UInt8]
        let license: String

        init(type: ProgramType, attachType: AttachType, name: String, instructions: [Instruction],
             maps: [String: Map], license: String) throws(BPFError) {
            var resolved = instructions
            for index in resolved.indices {
                guard case .map(let mapName)? = resolved[index].reference else { continue }
                guard let map = maps[mapName] else {
                    throw .missingMap(program: name, map: mapName, instruction: index)
                }
                let high = resolved[index].constant & ~0xffff_ffff
                resolved[index].constant = high | Int64(map.descriptor.rawValue)
            }
            self.type = type
            self.attachType = attachType
            self.name = name
            self.bytes = resolved.encoded()
            self.license = license
        }

        var slots: Int { bytes.count / 8 }

        func program(_ fd: Int32) -> Program { Program(descriptor: Descriptor(fd), name: name, slotCount: slots) }

        /// A file descriptor, or a negative errno.
        func load(logLevel: UInt32, log: UnsafeMutableBufferPointer<CChar>?) -> Int32 {
            var opts = bpf_prog_load_opts()
            opts.sz = MemoryLayout<bpf_prog_load_opts>.size
            opts.expected_attach_type = attachType.kernelValue
            opts.log_level = logLevel
            opts.log_size = UInt32(log?.count ?? 0)
            opts.log_buf = log?.baseAddress
            let kernelName = String(name.prefix(Int(BPF_OBJ_NAME_LEN) - 1))
            return bytes.withUnsafeBytes { raw in
                bpf_prog_load(type.kernelValue, kernelName, license,
                              raw.baseAddress!.assumingMemoryBound(to: bpf_insn.self), slots, &opts)
            }
        }

        /// A load with the log at `level`, and the log's text.
        func loadLogging(level: UInt32) -> (Int32, String) {
            let log = UnsafeMutableBufferPointer<CChar>.allocate(capacity: Program.logCapacity)
            defer { log.deallocate() }
            log.initialize(repeating: 0)
            let fd = load(logLevel: level, log: log)
            return (fd, String(cString: log.baseAddress!))
        }
    }

    /// 16 MiB: room for the log of a program near the verifier's complexity limit.
    static let logCapacity = 16 << 20

    /// Opens the program pinned at `path`.
    public init(pinnedAt path: FilePath) throws(BPFError) {
        descriptor = try openPinned(path)
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        try check("bpf_obj_get_info_by_fd", path.string, bpf_obj_get_info_by_fd(descriptor.rawValue, &info, &length))
        name = withUnsafeBytes(of: info.name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        slotCount = Int(info.xlated_prog_len) / 8
    }

    /// The kernel's id of this program (as `bpftool prog show` lists it).
    public var id: UInt32 {
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        return bpf_obj_get_info_by_fd(descriptor.rawValue, &info, &length) == 0 ? info.id : 0
    }
}

// MARK: - Test runs

/// The input of BPF_PROG_TEST_RUN for an XDP program.
public struct TestRun: Sendable {
    public var packet: [UInt8]
    /// `struct xdp_md` fields to pass in; nil lets the kernel fill a default context.
    public var context: XDPTestContext?
    /// Runs of the program; the duration is the average per run.
    public var repeatCount: Int
    /// BPF_F_TEST_XDP_LIVE_FRAMES: frames the program redirects or transmits really
    /// leave through the device (the packet is not copied back).
    public var liveFrames: Bool
    /// With `liveFrames`, frames handled per batch (0: the kernel's default, 64).
    public var batchSize: Int
    /// Room for the output packet: the program may grow it (VLAN push, adjust_head).
    public var outputCapacity: Int

    public init(packet: [UInt8], context: XDPTestContext? = nil, repeatCount: Int = 1,
                liveFrames: Bool = false, batchSize: Int = 0, outputCapacity: Int? = nil) {
        self.packet = packet
        self.context = context
        self.repeatCount = repeatCount
        self.liveFrames = liveFrames
        self.batchSize = batchSize
        self.outputCapacity = outputCapacity ?? packet.count + 256
    }
}

/// The part of `struct xdp_md` a test run may set.
public struct XDPTestContext: Hashable, Sendable {
    public var ingressIfindex: UInt32
    public var rxQueueIndex: UInt32
    /// Bytes of metadata in front of the packet (data - data_meta).
    public var metadataLength: UInt32

    public init(ingressIfindex: UInt32 = 0, rxQueueIndex: UInt32 = 0, metadataLength: UInt32 = 0) {
        self.ingressIfindex = ingressIfindex
        self.rxQueueIndex = rxQueueIndex
        self.metadataLength = metadataLength
    }

    /// `struct xdp_md` as the test run reads it: data, data_end and data_meta are offsets
    /// into the input, which starts with the metadata (so data_meta is 0).
    func fields(inputLength: Int) -> [UInt32] {
        [metadataLength, UInt32(inputLength), 0, ingressIfindex, rxQueueIndex, 0]
    }
}

public struct TestRunResult: Sendable {
    /// The program's return value; for XDP, an `XDPAction` raw value.
    public var returnValue: UInt32
    /// The packet as the program left it (empty for live frames).
    public var packet: [UInt8]
    /// Average duration of one run, in nanoseconds.
    public var duration: UInt32
    /// With a context: how many bytes of `packet` are metadata in front of the frame
    /// (the kernel reports data - data_meta in the context it writes back).
    public var metadataLength: Int?

    public var action: XDPAction? { XDPAction(rawValue: Int32(bitPattern: returnValue)) }
}

extension Program {
    /// Runs the program on `run.packet` with BPF_PROG_TEST_RUN.
    public func testRun(_ run: TestRun) throws(BPFError) -> TestRunResult {
        var output = [UInt8](repeating: 0, count: run.liveFrames ? 0 : run.outputCapacity)
        var context = run.context?.fields(inputLength: run.packet.count) ?? []
        // Live frames are not copied back, and the kernel refuses an output buffer for them.
        var contextOut = [UInt32](repeating: 0, count: run.liveFrames ? 0 : context.count)
        var opts = bpf_test_run_opts()
        opts.sz = MemoryLayout<bpf_test_run_opts>.size
        opts.data_size_in = UInt32(run.packet.count)
        opts.data_size_out = UInt32(output.count)
        opts.ctx_size_in = UInt32(context.count * 4)
        opts.ctx_size_out = UInt32(contextOut.count * 4)
        opts.repeat = Int32(clamping: run.repeatCount)
        opts.flags = run.liveFrames ? UInt32(BPF_F_TEST_XDP_LIVE_FRAMES) : 0
        opts.batch_size = UInt32(run.batchSize)
        let result = run.packet.withUnsafeBytes { packet in
            output.withUnsafeMutableBytes { out in
                context.withUnsafeMutableBytes { ctx in
                    contextOut.withUnsafeMutableBytes { ctxOut in
                        opts.data_in = packet.baseAddress
                        opts.data_out = out.count > 0 ? out.baseAddress : nil
                        opts.ctx_in = ctx.count > 0 ? UnsafeRawPointer(ctx.baseAddress) : nil
                        opts.ctx_out = ctxOut.count > 0 ? ctxOut.baseAddress : nil
                        return bpf_prog_test_run_opts(descriptor.rawValue, &opts)
                    }
                }
            }
        }
        try check("bpf_prog_test_run_opts", name, result)
        return TestRunResult(returnValue: opts.retval, packet: Array(output.prefix(Int(opts.data_size_out))),
                             duration: opts.duration,
                             metadataLength: contextOut.isEmpty ? nil : Int(contextOut[0]))
    }
}

import BPFAssembly
@testable import FlowCompiler
import PropertyBased
import Testing

/// The map values the generated program reads: the codec must write exactly the bytes
/// the hand-written encoders it replaced wrote (`Legacy` below), put each field at the
/// offset the code generator loads it from, and read back what it wrote.
@Suite struct MapValueTests {
    @Test func subtableValues() async {
        await propertyCheck(count: 300, input: Gen<UInt32>.value(), Gen<UInt32>.value(), Gen<UInt32>.value()) {
            slot, handle, action in
            let value = SubtableValue(slot: slot, handle: handle, action: action)
            #expect(value.encodedBytes == Legacy.subtableValue(value))
            #expect(value.encodedBytes.count == SubtableValue.byteCount)
            #expect(value.word(at: SubtableValue.slotOffset) == slot)
            #expect(value.word(at: SubtableValue.handleOffset) == handle)
            #expect(value.word(at: SubtableValue.actionOffset) == action)
            #expect((try? SubtableValue(decoding: value.encodedBytes)) == value)
        }
    }

    @Test func actionPrograms() async {
        await propertyCheck(count: 500, input: Self.programs) { program in
            let bytes = program.encodedBytes
            #expect(bytes == Legacy.actionProgram(program))
            #expect(bytes.count == ActionProgram.byteCount)
            for (index, step) in program.steps.enumerated() {
                let base = index * ActionStep.byteCount
                #expect(bytes[base + ActionStep.kindOffset] == step.kind.rawValue)
                #expect(bytes[base + ActionStep.controlOffset] == step.control.rawValue)
                #expect(bytes[base + ActionStep.exceedOffset] == step.exceed.rawValue)
                #expect(Array(bytes[base + ActionStep.argumentOffset ..< base + ActionStep.argumentOffset + 4]) == step.argument)
                #expect(Array(bytes[base + ActionStep.wideOffset ..< base + ActionStep.wideOffset + 8]) == step.wide)
            }
            #expect((try? ActionProgram(decoding: bytes)) == program)
        }
    }

    @Test func anUnknownStepKindIsRefused() {
        var bytes = ActionProgram(steps: [ActionStep(kind: .gact, control: .drop)]).encodedBytes
        bytes[ActionStep.kindOffset] = 0xee
        #expect(throws: ByteDecodingError.invalidField(type: "Kind", offset: 0, value: 0xee)) {
            try ActionProgram(decoding: bytes)
        }
    }

    @Test func policerBuckets() async {
        await propertyCheck(count: 300, input: Gen<UInt64>.value(), Gen<UInt64>.value(), Gen<UInt64>.value()) {
            capacity, rate, fillTime in
            let fresh = PolicerBucket(credit: 0, last: 0, capacity: capacity, rate: rate, fillTime: fillTime)
            #expect(fresh.encodedBytes == Legacy.policer(capacity: capacity, rate: rate, fillTime: fillTime))
            let running = PolicerBucket(credit: rate, last: fillTime, capacity: capacity, rate: rate, fillTime: fillTime,
                                        overlimits: capacity, dropped: rate)
            #expect(running.encodedBytes.count == PolicerBucket.byteCount)
            #expect(running.double(at: PolicerBucket.creditOffset) == rate)
            #expect(running.double(at: PolicerBucket.lastOffset) == fillTime)
            #expect(running.double(at: PolicerBucket.capacityOffset) == capacity)
            #expect(running.double(at: PolicerBucket.rateOffset) == rate)
            #expect(running.double(at: PolicerBucket.fillTimeOffset) == fillTime)
            #expect(running.double(at: PolicerBucket.overlimitsOffset) == capacity)
            #expect(running.double(at: PolicerBucket.droppedOffset) == rate)
            #expect((try? PolicerBucket(decoding: running.encodedBytes)) == running)
        }
    }

    @Test func aPlansPolicersStartFull() throws {
        let plan = try Plan(ruleSet(["filter add dev xft0 protocol ip prio 1 handle 1 flower "
                                     + "action police rate 1mbit burst 10k conform-exceed drop/pass"]),
                            device: testDevice)
        let policer = try #require(plan.policers.values.first)
        #expect(policer.bucket.encodedBytes == Legacy.policer(capacity: policer.capacity, rate: policer.rate, fillTime: policer.fillTime))
    }

    @Test func ruleCounters() async {
        await propertyCheck(count: 300, input: Gen<UInt64>.value(), Gen<UInt64>.value(), Gen<UInt64>.value()) {
            packets, bytes, lastHit in
            let counters = RuleCounters(packets: packets, bytes: bytes, lastHit: lastHit, dropped: packets ^ bytes)
            #expect(counters.encodedBytes.count == RuleCounters.byteCount)
            #expect(counters.double(at: Int(RuleCounters.packetsOffset)) == packets)
            #expect(counters.double(at: Int(RuleCounters.bytesOffset)) == bytes)
            #expect(counters.double(at: Int(RuleCounters.lastHitOffset)) == lastHit)
            #expect(counters.double(at: Int(RuleCounters.droppedOffset)) == packets ^ bytes)
            #expect((try? RuleCounters(decoding: counters.encodedBytes)) == counters)
        }
    }

    @Test func traceLogs() async {
        await propertyCheck(count: 300, input: Gen<UInt32>.value().array(of: 0 ... TraceLog.capacity)) { slots in
            let log = TraceLog(slots: slots)
            let bytes = log.encodedBytes
            #expect(bytes.count == TraceLog.byteCount)
            // What the program's log function writes: the count, then the slots.
            #expect(log.word(at: 0) == UInt32(slots.count))
            #expect((0 ..< slots.count).map { log.word(at: 4 + 4 * $0) } == slots)
            #expect((try? TraceLog(decoding: bytes)) == log)
        }
    }

    static let programs = Generator<ActionProgram, Shrink.None<ActionProgram>>(run: { rng in
        ActionProgram(steps: (0 ..< Int.random(in: 0 ... ActionProgram.maxSteps, using: &rng)).map { _ in
            let controls: [ActionStep.Control] = [.pipe, .drop, .pass, .continue]
            return ActionStep(kind: ActionStep.Kind.allCases.randomElement(using: &rng)!,
                              control: controls.randomElement(using: &rng)!,
                              exceed: controls.randomElement(using: &rng)!,
                              argument: (0 ..< 4).map { _ in .random(in: 0 ... 255, using: &rng) },
                              wide: (0 ..< 8).map { _ in .random(in: 0 ... 255, using: &rng) })
        })
    })
}

/// The encoders the codec replaced, as they were.
private enum Legacy {
    static func subtableValue(_ value: SubtableValue) -> [UInt8] {
        var bytes: [UInt8] = []
        for word in [value.slot, value.handle, value.action] {
            for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: word >> shift)) }
        }
        return bytes
    }

    static func actionStep(_ step: ActionStep) -> [UInt8] {
        [step.kind.rawValue, step.control.rawValue, step.exceed.rawValue, 0] + step.argument + step.wide
    }

    static func actionProgram(_ program: ActionProgram) -> [UInt8] {
        program.steps.flatMap(actionStep)
            + [UInt8](repeating: 0, count: (ActionProgram.maxSteps - program.steps.count) * ActionStep.byteCount)
    }

    static func policer(capacity: UInt64, rate: UInt64, fillTime: UInt64) -> [UInt8] {
        ([0, 0, capacity, rate, fillTime, 0, 0] as [UInt64]).flatMap { value in
            (0 ..< 8).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
        }
    }
}

private extension MapCodable {
    func word(at offset: Int) -> UInt32 {
        encodedBytes[offset ..< offset + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    func double(at offset: Int) -> UInt64 {
        encodedBytes[offset ..< offset + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}

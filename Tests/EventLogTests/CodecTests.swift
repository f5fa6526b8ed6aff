import Testing

@testable import EventLog

@Suite struct CodecTests {
    static let sampleEvents: [Event] = {
        let origin = NodeID(name: "bifrost-node-1")
        let id = EventID(hlc: HLCTimestamp(wallMillis: 1_764_000_000_000, logical: 3), origin: origin)
        var summary = UsageSummary()
        summary.record(
            UsageRecorded(
                requestID: "r", keyID: "k", model: "m", limitKeys: [], windowStartMillis: 0, windowMillis: 60_000,
                tokensIn: 3, tokensOut: 4, latencyMicros: 12_000, status: 200, outcome: .success))
        return [
            Event(
                id: id,
                payload: .rateLimitIncrement(
                    RateLimitIncrement(
                        keys: ["vk:team-a", "pk:gpt-4-key-1"], windowStartMillis: 1_764_000_000_000,
                        windowMillis: 60_000, requests: 3))),
            Event(
                id: id,
                payload: .usageRecorded(
                    UsageRecorded(
                        requestID: "req-1", keyID: "gpt-4-key-1", model: "gpt-4o-mini", limitKeys: ["vk:team-a"],
                        windowStartMillis: 1, windowMillis: 60_000, tokensIn: 12, tokensOut: 40, latencyMicros: 812_000,
                        status: 200, outcome: .success))),
            Event(
                id: id,
                payload: .weightChanged(
                    WeightChanged(
                        keyID: "gpt-4-key-2", oldWeight: 0.6, newWeight: 0.005, reason: "error_rate > 0.025",
                        actor: "controller:bifrost-node-2"))),
            Event(
                id: id,
                payload: .configUpdated(
                    ConfigUpdated(
                        document: Array(#"{"a":1}"#.utf8), author: "ops", signerKey: Array(repeating: 7, count: 32),
                        signature: Array(repeating: 9, count: 64)))),
            Event(
                id: id,
                payload: .membershipChanged(
                    MembershipChanged(
                        node: "bifrost-node-3", state: .suspect, incarnation: 12, observer: "bifrost-node-1",
                        address: "127.0.0.1:8082"))),
            Event(
                id: id,
                payload: .alertFired(
                    AlertFired(
                        rule: "Latency Spike - Model Key", scope: "gpt-4-key-1", firing: true, value: 1.7,
                        action: "temporary_circuit_break", detail: "x"))),
            Event(
                id: id,
                payload: .usageAggregated(
                    UsageAggregated(
                        keyID: "k", model: "m", limitKeys: ["vk:a"], windowStartMillis: 5, windowMillis: 60_000,
                        summary: summary))),
            Event(id: id, payload: .unknown(kind: 200, bytes: [1, 2, 3])),
        ]
    }()

    @Test func everyKind_roundTrips() throws {
        for event in Self.sampleEvents {
            let bytes = EventCodec.encode(event)
            #expect(try EventCodec.decode(bytes) == event, "kind \(event.payload.kindName)")
            #expect(bytes[0] == EventCodec.version)
            #expect(Array(bytes[2..<18]) == event.id.bytes, "the header carries the LMDB key")
        }
    }

    @Test func randomEvents_roundTrip() throws {
        let events = randomEvents(count: 5_000, seed: 7, origins: ["a", "b", "c"], startMillis: 1_764_000_000_000)
        for event in events {
            #expect(try EventCodec.decode(EventCodec.encode(event)) == event)
        }
    }

    @Test func everyTruncation_failsWithAnOffsetInsideTheInput() {
        for event in Self.sampleEvents where event.payload.kind != nil {
            let bytes = EventCodec.encode(event)
            var boundaries = 0
            for length in 0..<bytes.count {
                do {
                    let decoded = try EventCodec.decode(Array(bytes[..<length]))
                    // Only a cut exactly where schema 1 ended decodes: a usage event of an older
                    // writer (the samples' schema-2 fields take 5 bytes).
                    if length == bytes.count - 5, [.usageRecorded, .usageAggregated].contains(event.payload.kind),
                        decoded.id == event.id
                    {
                        boundaries += 1
                        continue
                    }
                    Issue.record("prefix of \(length)/\(bytes.count) bytes of \(event.payload.kindName) decoded")
                } catch {
                    #expect(error.offset <= length, "\(error)")
                    #expect(error.description.contains("byte \(error.offset)"))
                }
            }
            #expect(boundaries <= 1, "\(event.payload.kindName)")
        }
    }

    @Test func randomBytes_neverCrash_andErrorsNameAnOffset() {
        var rng = SplitMix64(seed: 99)
        var decoded = 0
        for i in 0..<200_000 {
            let length = Int.random(in: 0..<64, using: &rng)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Half the inputs get a valid header so the payload decoders are exercised too.
            if i % 2 == 0 && bytes.count > 2 {
                bytes[0] = EventCodec.version
                bytes[1] = UInt8.random(in: 1...8, using: &rng)
            }
            do {
                _ = try EventCodec.decode(bytes)
                decoded += 1
            } catch {
                #expect(error.offset >= 0 && error.offset <= bytes.count)
            }
        }
        #expect(decoded < 200_000)
    }

    @Test func mutatedValidEvents_neverCrash() {
        var rng = SplitMix64(seed: 5)
        for event in Self.sampleEvents {
            let bytes = EventCodec.encode(event)
            for _ in 0..<5_000 {
                var mutated = bytes
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    mutated[Int.random(in: 0..<mutated.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
                _ = try? EventCodec.decode(mutated)
            }
        }
    }

    @Test func hostileLengths_areRejectedWithoutAllocating() {
        // version, kind=ratelimit, id, then a key-count varint claiming 2^63 strings.
        var bytes: [UInt8] = [EventCodec.version, EventKind.rateLimitIncrement.rawValue]
        bytes += [UInt8](repeating: 0, count: 16)
        bytes += [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]
        #expect(throws: DecodingError.self) { try EventCodec.decode(bytes) }
        // An over-long varint.
        var long: [UInt8] = [EventCodec.version, EventKind.membershipChanged.rawValue]
        long += [UInt8](repeating: 0, count: 16) + [0] + [0] + [UInt8](repeating: 0xff, count: 11)
        #expect(throws: DecodingError.self) { try EventCodec.decode(long) }
    }

    @Test func unsupportedVersion_isRefusedAtOffsetZero() {
        var bytes = EventCodec.encode(Self.sampleEvents[0])
        bytes[0] = 99
        #expect(throws: DecodingError(offset: 0, reason: "unsupported event format version 99 (this build reads 1)")) {
            try EventCodec.decode(bytes)
        }
    }

    @Test func unknownKind_isKeptVerbatim() throws {
        let event = Self.sampleEvents.last!
        let decoded = try EventCodec.decode(EventCodec.encode(event))
        #expect(decoded.payload == .unknown(kind: 200, bytes: [1, 2, 3]))
        #expect(decoded.payload.kindName == "unknown.200")
    }

    @Test func trailingBytes_fromANewerWriter_areIgnored() throws {
        let event = Self.sampleEvents[2]
        #expect(try EventCodec.decode(EventCodec.encode(event) + [1, 2, 3]) == event)
    }
}

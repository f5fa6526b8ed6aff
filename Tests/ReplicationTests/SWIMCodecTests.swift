import EventLog
import Testing

@testable import Replication

@Suite struct SWIMCodecTests {
    static let updates: [SWIM.Update] = [
        SWIM.Update(
            name: "bifrost-node-1", gossipAddress: "10.0.0.1:7946", apiAddress: "10.0.0.1:8080", status: .alive,
            incarnation: 0, observer: "bifrost-node-1", health: [0x12, 0x34]),
        SWIM.Update(
            name: "bifrost-node-2", gossipAddress: "[fd00::2]:7946", apiAddress: "[fd00::2]:8080", status: .suspect,
            incarnation: 300, observer: "bifrost-node-1"),
        SWIM.Update(
            name: "nœud-3", gossipAddress: "node3.internal:7946", apiAddress: "", status: .dead, incarnation: .max,
            observer: "bifrost-node-2", health: Array(repeating: 0xFF, count: SWIM.maxHealthBytes)),
        SWIM.Update(
            name: "n4", gossipAddress: "", apiAddress: "", status: .left, incarnation: 1 << 40, observer: "n4"),
    ]

    static let messages: [SWIM.Message] = [
        .ping(seq: 0, from: "a", updates: []),
        .ping(seq: 1, from: "bifrost-node-1", updates: updates),
        .ack(seq: .max, from: "bifrost-node-2", updates: Array(updates.prefix(2))),
        .pingRequest(
            seq: 1 << 33, from: "bifrost-node-1", target: "bifrost-node-3", targetAddress: "10.0.0.3:7946",
            updates: updates),
        .nack(seq: 42, from: "bifrost-node-4", updates: [updates[3]]),
    ]

    @Test(arguments: messages)
    func encodeThenDecode_roundTrips(message: SWIM.Message) throws {
        let bytes = SWIMCodec.encode(message)
        #expect(bytes[0] == SWIMCodec.version)
        #expect(try SWIMCodec.decode(bytes) == message)
    }

    @Test func encoding_hasVersionAndTypeBytes_thenVarintSeqAndSender() {
        #expect(SWIMCodec.encode(.ping(seq: 300, from: "ab", updates: [])) == [1, 1, 0xAC, 0x02, 2, 0x61, 0x62, 0])
        #expect(SWIMCodec.encode(.ack(seq: 1, from: "", updates: [])) == [1, 2, 1, 0, 0])
        #expect(
            SWIMCodec.encode(.pingRequest(seq: 1, from: "", target: "t", targetAddress: "", updates: [])) == [
                1, 3, 1, 0, 1, 0x74, 0, 0,
            ])
        #expect(SWIMCodec.encode(.nack(seq: 1, from: "", updates: [])) == [1, 4, 1, 0, 0])
    }

    @Test func status_rawValuesAreStableAndMatchEventLog() {
        #expect(SWIM.Status.allCases.map(\.rawValue) == [0, 1, 2, 3])
        for status in SWIM.Status.allCases {
            #expect(status.memberState.rawValue == status.rawValue)
        }
    }

    @Test func encodedSize_andVarintSize_matchTheEncoder() {
        for update in Self.updates {
            let without = SWIMCodec.encode(.ping(seq: 1, from: "x", updates: []))
            let with = SWIMCodec.encode(.ping(seq: 1, from: "x", updates: [update]))
            #expect(with.count - without.count == SWIMCodec.encodedSize(of: update))
        }
        for value: UInt64 in [0, 1, 127, 128, 16_383, 16_384, 1 << 35, .max] {
            var w = ByteWriter()
            w.write(varint: value)
            #expect(SWIMCodec.varintSize(value) == w.bytes.count)
        }
    }

    @Test func decode_ignoresTrailingBytes() throws {
        let message = Self.messages[1]
        #expect(try SWIMCodec.decode(SWIMCodec.encode(message) + [9, 9, 9]) == message)
    }

    @Test func decode_everyTruncation_throws() {
        for message in Self.messages {
            let bytes = SWIMCodec.encode(message)
            for length in 0..<bytes.count {
                #expect(throws: DecodingError.self) { try SWIMCodec.decode(Array(bytes.prefix(length))) }
            }
        }
    }

    @Test func decode_rejectsUnknownVersionTypeAndStatus() {
        var bytes = SWIMCodec.encode(.ping(seq: 1, from: "a", updates: [Self.updates[0]]))
        var wrongVersion = bytes
        wrongVersion[0] = 2
        #expect(throws: DecodingError.self) { try SWIMCodec.decode(wrongVersion) }
        var wrongType = bytes
        wrongType[1] = 9
        #expect(throws: DecodingError.self) { try SWIMCodec.decode(wrongType) }
        // The status byte follows name, gossip and API address of the first update.
        let statusOffset = bytes.count - SWIMCodec.encodedSize(of: Self.updates[0]) + 15 + 14 + 14
        #expect(bytes[statusOffset] == SWIM.Status.alive.rawValue)
        bytes[statusOffset] = 4
        #expect(throws: DecodingError.self) { try SWIMCodec.decode(bytes) }
    }

    @Test func decode_rejectsHostileCountsAndOversizedHealth() {
        // A count of 2^40 updates in a 12-byte datagram must be refused before allocating.
        var w = ByteWriter()
        w.write(SWIMCodec.version)
        w.write(UInt8(1))
        w.write(varint: 1)
        w.write("a")
        w.write(varint: 1 << 40)
        w.write(bytes: [0, 0, 0])
        #expect(throws: DecodingError.self) { try SWIMCodec.decode(w.bytes) }

        var big = Self.updates[0]
        big.health = Array(repeating: 1, count: SWIM.maxHealthBytes + 1)
        #expect(throws: DecodingError.self) {
            try SWIMCodec.decode(SWIMCodec.encode(.ack(seq: 1, from: "a", updates: [big])))
        }
    }

    @Test func decode_randomBytes_neverTraps() {
        var rng = SplitMix64(seed: 0x5317_0DEC)
        var decoded = 0
        for _ in 0..<20_000 {
            let length = Int.random(in: 0..<160, using: &rng)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // Half the inputs get a valid header so the fuzz reaches the fields.
            if bytes.count >= 2 && Bool.random(using: &rng) {
                bytes[0] = SWIMCodec.version
                bytes[1] = UInt8.random(in: 1...4, using: &rng)
            }
            if (try? SWIMCodec.decode(bytes)) != nil { decoded += 1 }
        }
        #expect(decoded < 20_000)
    }

    @Test func decode_mutatedMessages_neverTrap_andDecodedOnesReencode() throws {
        var rng = SplitMix64(seed: 77)
        for _ in 0..<5_000 {
            var bytes = SWIMCodec.encode(Self.messages.randomElement(using: &rng)!)
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if let message = try? SWIMCodec.decode(bytes) {
                #expect(try SWIMCodec.decode(SWIMCodec.encode(message)) == message)
            }
        }
    }
}

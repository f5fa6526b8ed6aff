import EventLog
import Testing

@testable import Replication

@Suite struct SyncCodecTests {
    static let samples: [SyncMessage] = {
        let id = EventID(hlc: HLCTimestamp(wallMillis: 1_764_000_000_000, logical: 2), origin: NodeID(name: "a"))
        let window = Reconciliation.Window(
            compactedBefore: HLCTimestamp(wallMillis: 5, logical: 0),
            settledBefore: HLCTimestamp(wallMillis: 9, logical: 0))
        return [
            .hello(node: "bifrost-node-1", watermarks: [NodeID(name: "a"): id.hlc, NodeID(name: "b"): .zero]),
            .events([[1, 2, 3], [], Array(repeating: 7, count: 300)]),
            .ack(watermarks: [:]),
            .reconcile(
                session: 42, window: window,
                items: [
                    .fingerprint(
                        DigestKey(level: 5, bucket: 1_643_000), Fingerprint(limbs: (1, 2, 3, .max), count: 12)),
                    .open(DigestKey(level: 3, bucket: 77)), .ids(DigestKey(level: 0, bucket: 9), [id, id]),
                ]),
            .fetch(session: 42, ids: [id]),
        ]
    }()

    @Test func everyMessage_roundTrips() throws {
        for m in Self.samples { #expect(try SyncCodec.decode(SyncCodec.encode(m)) == m) }
    }

    @Test func truncations_andRandomBytes_failCleanly() {
        for m in Self.samples {
            let bytes = SyncCodec.encode(m)
            for n in 0..<bytes.count {
                #expect(throws: DecodingError.self) { try SyncCodec.decode(Array(bytes[..<n])) }
            }
        }
        var rng = SplitMix64(seed: 4)
        for _ in 0..<50_000 {
            var bytes = (0..<Int.random(in: 0..<48, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if bytes.count > 1 { bytes[0] = SyncCodec.version }
            _ = try? SyncCodec.decode(bytes)
        }
    }

    @Test func hostileCounts_areRefusedBeforeAllocating() {
        let bytes: [UInt8] = [SyncCodec.version, 5, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]
        let error = #expect(throws: DecodingError.self) { try SyncCodec.decode(bytes) }
        #expect(error?.reason.contains("claims") == true)
    }
}

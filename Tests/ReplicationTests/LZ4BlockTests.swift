import EventLog
import Testing

@testable import Replication

@Suite struct LZ4BlockTests {
    @Test func roundTrips_repetitiveRandomAndEdgeInputs() throws {
        var rng = SplitMix64(seed: 3)
        var inputs: [[UInt8]] = [[], [1], Array(repeating: 7, count: 5_000), Array("bifrost-node-1:7946".utf8)]
        inputs.append(Array(String(repeating: "bifrost-node-2 127.0.0.1:7947 alive ", count: 40).utf8))
        for _ in 0..<500 {
            let n = Int.random(in: 0..<3_000, using: &rng)
            let alphabet = UInt8.random(in: 1...255, using: &rng)
            inputs.append((0..<n).map { _ in UInt8.random(in: 0...alphabet, using: &rng) })
        }
        for input in inputs {
            let compressed = LZ4Block.compress(input)
            #expect(try LZ4Block.decompress(compressed, maxOutput: 1 << 20) == input)
        }
        let gossip = inputs[4]
        #expect(LZ4Block.compress(gossip).count < gossip.count / 4, "repeated names compress well")
    }

    @Test func hostileBlocks_failCleanly_andRespectTheOutputLimit() {
        var rng = SplitMix64(seed: 9)
        for _ in 0..<50_000 {
            let bytes = (0..<Int.random(in: 0..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if let out = try? LZ4Block.decompress(bytes, maxOutput: 2_000) { #expect(out.count <= 2_000) }
        }
        // A match that would expand far beyond the limit.
        let bomb: [UInt8] = [0x1f, 0x41, 0x01, 0x00] + Array(repeating: 255, count: 100) + [0]
        #expect(throws: LZ4Block.Error.self) { try LZ4Block.decompress(bomb, maxOutput: 1_400) }
        #expect(throws: LZ4Block.Error.self) { try LZ4Block.decompress([0x10], maxOutput: 100) }
        #expect(throws: LZ4Block.Error.self) { try LZ4Block.decompress([0x01, 0x00, 0x00], maxOutput: 100) }
    }
}

@Suite struct GossipFramingTests {
    @Test func framedMessages_roundTrip_withAndWithoutCompression() {
        let message = SWIMCodec.encode(
            .ping(
                seq: 7, from: "bifrost-node-1",
                updates: (1...12).map {
                    SWIM.Update(
                        name: "bifrost-node-\($0)", gossipAddress: "127.0.0.1:79\($0)", apiAddress: "127.0.0.1:80\($0)",
                        status: .alive, incarnation: 1_795_583_917, observer: "bifrost-node-1", health: [])
                }))
        let plain = GossipService.frame(message, compress: false)
        let packed = GossipService.frame(message, compress: true)
        #expect(plain.first == 0 && packed.first == 1)
        #expect(packed.count < plain.count * 2 / 3)
        #expect(GossipService.unframe(plain, maxOutput: 10_000) == message)
        #expect(GossipService.unframe(packed, maxOutput: 10_000) == message)
        #expect(GossipService.unframe([9, 1, 2], maxOutput: 100) == nil)
        #expect(GossipService.unframe(packed, maxOutput: 16) == nil, "decompression is bounded")
    }
}

import Testing
import ToolSupport

@testable import EventLog

@Suite struct DigestTests {
    static let t0: UInt64 = 1_764_000_000_000

    @Test func fingerprint_addThenSubtract_isIdentity_andOrderDoesNotMatter() {
        let fps = (0..<200).map { i in Fingerprint(eventBytes: Array("event-\(i)".utf8)) }
        var a = Fingerprint.zero
        for fp in fps { a.add(fp) }
        var b = Fingerprint.zero
        for fp in fps.reversed() { b.add(fp) }
        #expect(a == b)
        #expect(a.count == 200)
        for fp in fps.shuffled() { a.subtract(fp) }
        #expect(a == .zero)
    }

    @Test func fingerprint_carriesAcrossLimbs() {
        var a = Fingerprint(limbs: (.max, .max, .max, 0), count: 1)
        a.add(Fingerprint(limbs: (1, 0, 0, 0), count: 1))
        #expect(a == Fingerprint(limbs: (0, 0, 0, 1), count: 2))
        a.subtract(Fingerprint(limbs: (1, 0, 0, 0), count: 1))
        #expect(a == Fingerprint(limbs: (.max, .max, .max, 0), count: 1))
        let bytes = a.bytes
        #expect(bytes.withUnsafeBytes { Fingerprint(bytes: $0) } == a)
    }

    @Test func digestKeys_bucketTime_withFanOut16() {
        let hlc = HLCTimestamp(wallMillis: 1_764_000_123_456, logical: 3)
        let path = DigestKey.path(for: hlc)
        #expect(path.count == 7)
        #expect(path[0] == DigestKey(level: 0, bucket: 1_764_000_123_456 >> 10))
        #expect(path[1].bucket == path[0].bucket >> 4)
        #expect(path[5].bucket == 1_764_000_123_456 >> 30)
        #expect(path[6] == .root)
        #expect(DigestKey.spanMillis(level: 0) == 1024)
        #expect(DigestKey.spanMillis(level: 5) == 1 << 30)
        for key in path.dropLast() { #expect(key.hlcRange.contains(hlc)) }
    }

    @Test func storedDigests_equalRecomputed_afterAppendsAndInsertsInAnyOrder() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        let events = randomEvents(
            count: 3_000, seed: 21, origins: ["a", "b", "c"], startMillis: Self.t0, spanMillis: 3_600_000)
        for chunk in stride(from: 0, to: events.count, by: 250) {
            _ = try await store.insert(Array(events[chunk..<min(chunk + 250, events.count)]).shuffled())
        }
        var gen = ToolSupportShim.generator()
        _ = try await store.append(contentsOf: (0..<500).map { _ in gen.payload(nowMillis: Self.t0) })
        #expect(try store.reader.verifyDigests() == [])
        let root = try store.reader.digest(.root)
        #expect(root.count == 3_500)
        try await store.close()
    }

    @Test func twoNodes_withTheSameEvents_haveTheSameDigests_whateverTheDeliveryOrder() async throws {
        let dir = TempDir()
        let a = try EventStore.open(directory: dir.sub("a"), nodeName: "a", settings: testSettings())
        let b = try EventStore.open(directory: dir.sub("b"), nodeName: "b", settings: testSettings())
        let events = randomEvents(
            count: 2_000, seed: 8, origins: ["x", "y"], startMillis: Self.t0, spanMillis: 600_000)
        _ = try await a.insert(events)
        var rng = SplitMix64(seed: 1)
        let shuffled = events.shuffled(using: &rng)
        for chunk in stride(from: 0, to: shuffled.count, by: 97) {
            _ = try await b.insert(Array(shuffled[chunk..<min(chunk + 97, shuffled.count)]))
        }
        _ = try await b.insert(Array(shuffled.prefix(300)))
        #expect(try a.reader.storedDigests() == b.reader.storedDigests())
        #expect(try a.reader.digest(.root) == b.reader.digest(.root))
        try await a.close()
        try await b.close()
    }

    @Test func oneMissingEvent_showsOnlyInItsOwnBranch() async throws {
        let dir = TempDir()
        let a = try EventStore.open(directory: dir.sub("a"), nodeName: "a", settings: testSettings())
        let b = try EventStore.open(directory: dir.sub("b"), nodeName: "b", settings: testSettings())
        let events = randomEvents(count: 1_000, seed: 9, origins: ["x"], startMillis: Self.t0, spanMillis: 3_600_000)
        _ = try await a.insert(events)
        let missing = events[417]
        _ = try await b.insert(events.filter { $0.id != missing.id })
        let da = try a.reader.storedDigests()
        let db = try b.reader.storedDigests()
        let differing = Set(da.keys).union(db.keys).filter { da[$0] != db[$0] }
        #expect(differing == Set(DigestKey.path(for: missing.id.hlc)))
        try await a.close()
        try await b.close()
    }
}

enum ToolSupportShim {
    static func generator() -> SyntheticEvents { SyntheticEvents(seed: 77) }
}

import EventLog
import Foundation
import Testing

@testable import Replication

@Suite struct ReconciliationTests {
    static let t0: UInt64 = 1_764_000_000_000

    /// Plays the protocol between two sources until neither has anything to say.
    struct Exchange {
        var missingAtA: Set<EventID> = []
        var missingAtB: Set<EventID> = []
        var messages = 0
        var items = 0
    }

    static func exchange(
        _ a: some DigestSource, _ b: some DigestSource, window: Reconciliation.Window
    ) throws -> Exchange {
        var result = Exchange()
        var message = try Reconciliation.start(a, window: window)
        var atB = true
        while !message.isEmpty {
            result.messages += 1
            result.items += message.count
            let step =
                atB
                ? try Reconciliation.respond(to: message, b, window: window)
                : try Reconciliation.respond(to: message, a, window: window)
            if atB {
                result.missingAtB.formUnion(step.missingHere)
                result.missingAtA.formUnion(step.missingThere)
            } else {
                result.missingAtA.formUnion(step.missingHere)
                result.missingAtB.formUnion(step.missingThere)
            }
            message = step.reply
            atB.toggle()
            #expect(result.messages < 40, "reconciliation must terminate")
            if result.messages >= 40 { break }
        }
        return result
    }

    static func event(_ wall: UInt64, _ logical: UInt16, _ origin: String) -> [UInt8] {
        EventCodec.encode(
            Event(
                id: EventID(hlc: HLCTimestamp(wallMillis: wall, logical: logical), origin: NodeID(name: origin)),
                payload: .rateLimitIncrement(
                    RateLimitIncrement(keys: ["vk:a"], windowStartMillis: wall / 60_000 * 60_000, windowMillis: 60_000))
            ))
    }

    /// A shared base of `count` events over the last `spanMillis` before `end`.
    static func base(count: Int, end: UInt64, spanMillis: UInt64, seed: UInt64) -> [[UInt8]] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { i in
            event(end - UInt64.random(in: 1...spanMillis, using: &rng), UInt16(i % 1000), ["a", "b", "c"][i % 3])
        }
    }

    let now = t0 + 7 * 24 * 3_600_000
    var window: Reconciliation.Window { .at(nowMillis: now) }

    @Test func identicalLogs_agreeInOneMessage() throws {
        var a = InMemoryEventSet()
        for e in Self.base(count: 5_000, end: now, spanMillis: 3 * 24 * 3_600_000, seed: 1) { try a.insert(e) }
        let x = try Self.exchange(a, a, window: window)
        #expect(x.messages == 1)
        #expect(x.missingAtA.isEmpty && x.missingAtB.isEmpty)
    }

    @Test(arguments: [(0, 0), (1, 0), (0, 1), (1_000, 0), (500, 500)])
    func recentDifferences_areFoundExactly(onlyA: Int, onlyB: Int) throws {
        try check(onlyA: onlyA, onlyB: onlyB, spread: 600_000, seed: UInt64(onlyA * 7 + onlyB))
    }

    @Test(arguments: [(1_000, 0), (300, 700)])
    func scatteredDifferences_areFoundExactly(onlyA: Int, onlyB: Int) throws {
        try check(onlyA: onlyA, onlyB: onlyB, spread: 6 * 24 * 3_600_000, seed: 99)
    }

    func check(onlyA: Int, onlyB: Int, spread: UInt64, seed: UInt64) throws {
        var a = InMemoryEventSet()
        var b = InMemoryEventSet()
        for e in Self.base(count: 4_000, end: now, spanMillis: 6 * 24 * 3_600_000, seed: seed) {
            try a.insert(e)
            try b.insert(e)
        }
        var rng = SplitMix64(seed: seed ^ 0x55)
        for i in 0..<onlyA {
            try a.insert(Self.event(now - 2_000 - UInt64.random(in: 0..<spread, using: &rng), UInt16(i % 5000), "x"))
        }
        for i in 0..<onlyB {
            try b.insert(Self.event(now - 2_000 - UInt64.random(in: 0..<spread, using: &rng), UInt16(i % 5000), "y"))
        }
        let x = try Self.exchange(a, b, window: window)
        let expectedAtB = a.ids.subtracting(b.ids).filter { window.covers($0.hlc) }
        let expectedAtA = b.ids.subtracting(a.ids).filter { window.covers($0.hlc) }
        #expect(x.missingAtB == expectedAtB)
        #expect(x.missingAtA == expectedAtA)
        #expect(x.messages <= 2 * Int(DigestKey.topLevel) + 3)
    }

    @Test func unsettledHeadAndCompactedTail_areNotCompared() throws {
        var a = InMemoryEventSet()
        let b = InMemoryEventSet()
        try a.insert(Self.event(now - 100, 0, "x"))  // in flight
        try a.insert(Self.event(Self.t0 + 10, 0, "x"))  // compacted range
        let w = Reconciliation.Window.at(
            nowMillis: now, compactedBefore: HLCTimestamp(wallMillis: Self.t0 + 3_600_000, logical: 0))
        let x = try Self.exchange(a, b, window: w)
        #expect(x.missingAtB.isEmpty && x.missingAtA.isEmpty)
    }

    @Test func theLMDBStore_andTheInMemoryTwin_describeTheSameTree() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bifrost-recon-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try EventStore.open(directory: dir, nodeName: "n")
        var twin = InMemoryEventSet()
        let events = Self.base(count: 3_000, end: now, spanMillis: 2 * 24 * 3_600_000, seed: 5)
        for e in events { try twin.insert(e) }
        var clock = SplitMix64(seed: 3)
        _ = try await store.insert(encoded: events.shuffled(using: &clock))
        #expect(try Reconciliation.start(store.reader, window: window) == Reconciliation.start(twin, window: window))
        // One event short on the twin: the exchange against the real store finds exactly it.
        var short = InMemoryEventSet()
        for e in events.dropFirst() { try short.insert(e) }
        let x = try Self.exchange(store.reader, short, window: window)
        let firstID = try events[0].withUnsafeBytes { try EventCodec.peekHeader($0).0 }
        #expect(x.missingAtB == (window.covers(firstID.hlc) ? [firstID] : []))
        #expect(x.missingAtA.isEmpty)
        try await store.close()
    }
}

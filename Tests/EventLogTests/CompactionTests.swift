import Testing

@testable import EventLog

@Suite struct CompactionTests {
    static let t0: UInt64 = 1_764_000_000_000

    @Test func compaction_shrinksOldCounters_keepsViewsAndDigestsConsistent() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        let events = randomEvents(
            count: 6_000, seed: 31, origins: ["a", "b", "c"], startMillis: Self.t0, spanMillis: 1_800_000)
        _ = try await store.insert(events)
        let before = store.viewSnapshot
        let horizon = HLCTimestamp(wallMillis: Self.t0 + 1_200_000, logical: 0)
        let report = try await store.compact(before: horizon)
        #expect(report.eventsRemoved > 0 && report.aggregatesWritten > 0)
        #expect(report.aggregatesWritten < report.eventsRemoved)
        let stats = try store.reader.stats()
        #expect(stats.events == 6_000 - report.eventsRemoved + report.aggregatesWritten)
        // Digest index still equals a recomputation from the (compacted) events.
        #expect(try store.reader.verifyDigests() == [])
        // The sums every view reads are unchanged …
        let after = store.viewSnapshot
        #expect(after.limitCounters == before.limitCounters)
        #expect(after.tokenCounters == before.tokenCounters)
        #expect(after.keyPerformance == before.keyPerformance)
        #expect(after.weights == before.weights && after.config == before.config && after.alerts == before.alerts)
        // … and a replay of the compacted log gives the live views exactly.
        #expect(ViewCodec.encode(try store.reader.replay()) == ViewCodec.encode(after))
        // Control-plane events are never compacted.
        let controlBefore = events.filter { $0.payload.kind?.isCompactable == false }.count
        let controlAfter = try store.reader.events().filter { $0.payload.kind?.isCompactable == false }.count
        #expect(controlBefore == controlAfter)
        // Nothing at or after the horizon changed.
        let recent = try store.reader.events(EventFilter(since: horizon))
        #expect(recent == events.filter { $0.id.hlc >= horizon }.sorted { $0.id < $1.id })
        #expect(try store.reader.compactedBefore() == horizon)
        try await store.close()
        // The restart path (checkpoint + tail) agrees too.
        let reopened = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        #expect(ViewCodec.encode(reopened.viewSnapshot) == ViewCodec.encode(after))
        try await reopened.close()
    }

    @Test func twoNodes_compactingTheSameEvents_endWithTheSameDigests() async throws {
        let dir = TempDir()
        let events = randomEvents(
            count: 3_000, seed: 2, origins: ["a", "b"], startMillis: Self.t0, spanMillis: 900_000)
        let a = try EventStore.open(directory: dir.sub("a"), nodeName: "a", settings: testSettings())
        let b = try EventStore.open(directory: dir.sub("b"), nodeName: "b", settings: testSettings())
        _ = try await a.insert(events)
        _ = try await b.insert(events.reversed())
        let horizon = HLCTimestamp(wallMillis: Self.t0 + 600_000, logical: 0)
        _ = try await a.compact(before: horizon)
        _ = try await b.compact(before: horizon)
        #expect(try a.reader.digest(.root) == b.reader.digest(.root))
        #expect(try a.reader.events() == b.reader.events())
        // Compacting again is a no-op.
        let again = try await a.compact(before: horizon)
        #expect(again.eventsRemoved == 0)
        try await a.close()
        try await b.close()
    }

    @Test func threeNodes_steppingDifferently_endWithTheSameLogAndDigests() async throws {
        let dir = TempDir()
        // Dense enough that groups span many one-second chunks and every step size splits them.
        let events = randomEvents(
            count: 4_000, seed: 9, origins: ["a", "b", "c"], startMillis: Self.t0, spanMillis: 240_000)
        let horizon = HLCTimestamp(wallMillis: Self.t0 + 180_000, logical: 0)
        var stores: [EventStore] = []
        for (i, steps) in [25, 400, 100_000].enumerated() {
            let store = try EventStore.open(directory: dir.sub("n\(i)"), nodeName: "n\(i)", settings: testSettings())
            _ = try await store.insert(i == 1 ? events.reversed() : events)
            var ends: [HLCTimestamp] = []
            while let step = try await store.compactStep(before: horizon, maxEvents: steps) {
                ends.append(step.horizon)
            }
            // Each step ends on a chunk boundary, moving forward, and the last at the horizon.
            #expect(ends == ends.sorted() && Set(ends).count == ends.count)
            #expect(ends.allSatisfy { $0.logical == 0 && $0.wallMillis % 1_000 == 0 })
            #expect(ends.last == horizon)
            if steps == 25 { #expect(ends.count > 20) }
            #expect(try store.reader.verifyDigests() == [])
            stores.append(store)
        }
        let root = try stores[0].reader.digest(.root)
        for store in stores.dropFirst() {
            #expect(try store.reader.digest(.root) == root)
            #expect(try store.reader.events() == stores[0].reader.events())
            #expect(ViewCodec.encode(store.viewSnapshot) == ViewCodec.encode(stores[0].viewSnapshot))
        }
        for store in stores { try await store.close() }
    }

    @Test func eventsBelowTheCompactedRange_areNotCountedAgain() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        let events = randomEvents(
            count: 2_000, seed: 5, origins: ["a", "b"], startMillis: Self.t0, spanMillis: 600_000)
        _ = try await store.insert(events)
        let horizon = HLCTimestamp(wallMillis: Self.t0 + 300_000, logical: 0)
        let report = try await store.compact(before: horizon)
        #expect(report.eventsRemoved > 0)
        let views = ViewCodec.encode(store.viewSnapshot)
        let root = try store.reader.digest(.root)
        // A peer that has not compacted yet offers the originals again.
        let outcomes = try await store.insert(events.filter { $0.id.hlc < horizon })
        #expect(!outcomes.contains(.inserted))
        #expect(ViewCodec.encode(store.viewSnapshot) == views)
        #expect(try store.reader.digest(.root) == root)
        // A restart keeps refusing them.
        try await store.close()
        let reopened = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        let again = try await reopened.insert(
            events.filter { $0.id.hlc < horizon && $0.payload.kind?.isCompactable == true })
        #expect(!again.contains(.inserted))
        try await reopened.close()
    }

    @Test func compactExpired_foldsWhatPassedTheHorizon_andLeavesTheRest() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        // Ten minutes of events, the clock read two days and five minutes after they started.
        let events = randomEvents(count: 3_000, seed: 11, origins: ["a"], startMillis: Self.t0, spanMillis: 600_000)
        _ = try await store.insert(events)
        let now = Self.t0 + 2 * 86_400_000 + 300_000
        let report = try await store.compactExpired(age: .seconds(2 * 86_400), nowMillis: now, eventsPerStep: 200)
        let horizon = HLCTimestamp(wallMillis: Self.t0 + 300_000, logical: 0)
        #expect(report.horizon == horizon)
        #expect(report.eventsRemoved > 0)
        #expect(try store.reader.compactedBefore() == horizon)
        #expect(
            try store.reader.events(EventFilter(since: horizon))
                == events.filter { $0.id.hlc >= horizon }.sorted { $0.id < $1.id })
        // Nothing new passed the horizon: the next interval does nothing.
        let again = try await store.compactExpired(age: .seconds(2 * 86_400), nowMillis: now)
        #expect(again.eventsRemoved == 0 && again.aggregatesWritten == 0)
        // Told to stop, it stops before the first step.
        let stopped = try await store.compactExpired(age: .seconds(60), nowMillis: now, shouldStop: { true })
        #expect(stopped.eventsRemoved == 0)
        #expect(try store.reader.compactedBefore() == horizon)
        try await store.close()
    }
}

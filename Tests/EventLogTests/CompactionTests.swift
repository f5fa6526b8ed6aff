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
}

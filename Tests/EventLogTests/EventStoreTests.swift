import Foundation
import Testing

@testable import EventLog

@Suite struct EventStoreTests {
    static let t0: UInt64 = 1_764_000_000_000

    func payload(_ i: Int) -> Event.Payload {
        .rateLimitIncrement(
            RateLimitIncrement(keys: ["vk:k\(i % 3)"], windowStartMillis: Self.t0, windowMillis: 60_000))
    }

    @Test func append_assignsIncreasingIdsOfThisNode_andScansReturnThemInOrder() async throws {
        let dir = TempDir()
        let clock = ManualWallClock(Self.t0)
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings(), clock: clock)
        let ids = try await store.append(contentsOf: (0..<100).map(payload))
        #expect(ids == ids.sorted())
        #expect(Set(ids.map(\.origin)) == [NodeID(name: "n1")])
        #expect(ids[0].hlc == HLCTimestamp(wallMillis: Self.t0, logical: 0))
        #expect(ids[99].hlc == HLCTimestamp(wallMillis: Self.t0, logical: 99))
        let stored = try store.reader.events()
        #expect(stored.map(\.id) == ids)
        #expect(stored[5].payload == payload(5))
        try await store.close()
    }

    @Test func concurrentAppends_areAllCommitted_inGroupCommits() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        try await withThrowingTaskGroup(of: [EventID].self) { group in
            for t in 0..<8 {
                group.addTask { try await store.append(contentsOf: (0..<250).map { payload(t * 250 + $0) }) }
            }
            var all: [EventID] = []
            for try await ids in group { all += ids }
            #expect(Set(all).count == 2000)
        }
        #expect(try store.reader.stats().events == 2000)
        #expect(store.statistics.commits < 2000, "appends share commits")
        #expect(store.viewSnapshot.eventCount == 2000)
        try await store.close()
    }

    @Test func scans_filterByInterval_kind_origin_andLimit() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        let events = randomEvents(count: 2_000, seed: 3, origins: ["a", "b", "c"], startMillis: Self.t0)
        _ = try await store.insert(events)
        let sorted = events.sorted { $0.id < $1.id }
        let lo = sorted[500].id.hlc
        let hi = sorted[1500].id.hlc
        let ranged = try store.reader.events(EventFilter(since: lo, until: hi))
        #expect(ranged == sorted.filter { $0.id.hlc >= lo && $0.id.hlc <= hi })
        let weights = try store.reader.events(EventFilter(kinds: [EventKind.weightChanged.rawValue]))
        #expect(weights == sorted.filter { $0.payload.kind == .weightChanged })
        let fromB = try store.reader.events(EventFilter(origins: [NodeID(name: "b")]))
        #expect(fromB == sorted.filter { $0.id.origin == NodeID(name: "b") })
        #expect(try store.reader.events(EventFilter(limit: 7)) == Array(sorted.prefix(7)))
        try await store.close()
    }

    @Test func insert_isIdempotent_andReportsDuplicates() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        let events = randomEvents(count: 300, seed: 11, origins: ["peer"], startMillis: Self.t0)
        let first = try await store.insert(events)
        #expect(first.allSatisfy { $0 == .inserted })
        let again = try await store.insert(events.shuffled())
        #expect(again.allSatisfy { $0 == .duplicate })
        #expect(try store.reader.stats().events == 300)
        #expect(store.viewSnapshot.eventCount == 300, "duplicates are not folded twice")
        #expect(store.statistics.duplicates == 300)
        try await store.close()
    }

    @Test func insert_ofGarbageOrFutureEvents_rejectsOrQuarantines_withoutMovingTheClock() async throws {
        let dir = TempDir()
        let clock = ManualWallClock(Self.t0)
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings(), clock: clock)
        let before = store.clockNow
        let future = Event(
            id: EventID(hlc: HLCTimestamp(wallMillis: Self.t0 + 10_000, logical: 0), origin: NodeID(name: "fast")),
            payload: payload(1))
        let fine = Event(
            id: EventID(hlc: HLCTimestamp(wallMillis: Self.t0 + 400, logical: 0), origin: NodeID(name: "ok")),
            payload: payload(2))
        let outcomes = try await store.insert(encoded: [EventCodec.encode(future), [1, 2, 3], EventCodec.encode(fine)])
        #expect(outcomes[0] == .quarantined)
        guard case .rejected = outcomes[1] else { Issue.record("garbage not rejected: \(outcomes[1])"); return }
        #expect(outcomes[2] == .inserted)
        #expect(store.clockNow >= fine.id.hlc && store.clockNow.wallMillis < Self.t0 + 10_000)
        #expect(before < store.clockNow)
        #expect(store.statistics.quarantined == 1 && store.statistics.rejected == 1)
        // Once local time catches up, the same event is accepted.
        clock.advance(by: 10_000)
        #expect(try await store.insert([future]) == [.inserted])
        try await store.close()
    }

    @Test func localAppend_afterRemoteEventsFromTheFuture_stillOrdersAfterThem() async throws {
        let dir = TempDir()
        let clock = ManualWallClock(Self.t0)
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings(), clock: clock)
        let remote = Event(
            id: EventID(hlc: HLCTimestamp(wallMillis: Self.t0 + 300, logical: 5), origin: NodeID(name: "peer")),
            payload: payload(0))
        _ = try await store.insert([remote])
        let local = try await store.append(payload(1))
        #expect(local.hlc > remote.id.hlc, "receive rule moved the clock past the remote event")
        try await store.close()
    }

    @Test func watermarks_trackMaxHLCAndCountPerOrigin() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        let events = randomEvents(count: 500, seed: 5, origins: ["a", "b"], startMillis: Self.t0)
        _ = try await store.insert(events)
        let marks = try store.reader.watermarks()
        for name in ["a", "b"] {
            let mine = events.filter { $0.id.origin == NodeID(name: name) }
            #expect(
                marks[NodeID(name: name)]
                    == OriginWatermark(maxHLC: mine.map(\.id.hlc).max()!, count: UInt64(mine.count)))
        }
        try await store.close()
    }

    @Test func mapFull_growsTheMap_andKeepsEveryEvent() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings(mapSize: 256 << 10))
        for chunk in 0..<20 {
            _ = try await store.append(contentsOf: (0..<1000).map { payload(chunk * 1000 + $0) })
        }
        #expect(try store.reader.stats().events == 20_000)
        #expect(store.statistics.mapGrowths > 0)
        #expect(try store.reader.verifyDigests().isEmpty)
        try await store.close()
    }

    @Test func reopen_neverGoesBackInTime_evenWhenTheWallClockDid() async throws {
        let dir = TempDir()
        let clock = ManualWallClock(Self.t0)
        let first = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings(), clock: clock)
        let last = try await first.append(payload(0))
        try await first.close()
        clock.set(Self.t0 - 60_000)
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings(), clock: clock)
        let next = try await store.append(payload(1))
        #expect(next.hlc > last.hlc)
        try await store.close()
    }

    @Test func open_refusesADirectoryOfAnotherNode() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        try await store.close()
        let error = #expect(throws: EventLogError.self) {
            try EventStore.open(directory: dir.path, nodeName: "n2", settings: testSettings())
        }
        #expect(error?.code == .wrongNode)
        #expect(error?.description.contains("belongs to node 'n1'") == true)
    }

    @Test func reader_refusesMissingAndForeignDirectories() throws {
        let dir = TempDir()
        let missing = #expect(throws: EventLogError.self) { try EventLogReader.open(directory: dir.sub("nope")) }
        #expect(missing?.code == .notFound)
        try Data("hello".utf8).write(to: URL(fileURLWithPath: dir.sub("data.mdb")))
        let foreign = #expect(throws: EventLogError.self) { try EventLogReader.open(directory: dir.path) }
        #expect(foreign?.code == .notOurs)
    }

    @Test func closedStore_refusesWrites_withAClearError() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        try await store.close()
        let error = await #expect(throws: EventLogError.self) { try await store.append(payload(0)) }
        #expect(error?.code == .closed)
    }

    @Test func syncedAppends_areCommittedWithASync() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        _ = try await store.append(
            .weightChanged(
                WeightChanged(keyID: "k", oldWeight: 1, newWeight: 0.5, reason: "ops", actor: "operator:test")))
        #expect(store.statistics.syncedCommits == 1)
        _ = try await store.append(payload(0))
        #expect(store.statistics.syncedCommits == 1, "counter events use the batched class")
        try await store.close()
    }
}

@Suite struct CommitFeedTests {
    @Test func subscribers_seeEveryNewEventOnce_andTheStreamEndsOnClose() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        let feed = store.committedEvents()
        let remote = randomEvents(count: 50, seed: 1, origins: ["p"], startMillis: 1_764_000_000_000)
        _ = try await store.insert(remote)
        _ = try await store.insert(remote)  // duplicates are not published
        let local = try await store.append(
            contentsOf: (0..<20).map { _ in
                .rateLimitIncrement(RateLimitIncrement(keys: ["vk:a"], windowStartMillis: 0, windowMillis: 60_000))
            })
        try await store.close()
        var seen: [EventID] = []
        for await batch in feed {
            #expect(batch.map(\.event.id) == batch.map(\.event.id).sorted())
            for c in batch { #expect(try EventCodec.decode(c.bytes) == c.event) }
            seen += batch.map(\.event.id)
        }
        #expect(Set(seen) == Set(remote.map(\.id) + local))
        #expect(seen.count == 70)
    }

    @Test func open_onAFile_orUnderOne_failsNamingThePath() throws {
        let dir = TempDir()
        let file = dir.sub("plain-file")
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        for (path, mentions) in [(file, "is a file"), (file + "/node", "\(file) is a file")] {
            do {
                _ = try EventStore.open(directory: path, nodeName: "n1", settings: testSettings())
                Issue.record("opened \(path)")
            } catch let error as EventLogError {
                #expect(error.code == .unusablePath)
                #expect(error.path == path)
                #expect(error.message.contains(mentions), "\(error)")
            }
        }
    }

    @Test func open_createsAnOwnerOnlyDirectory_andOwnerOnlyFiles() async throws {
        let dir = TempDir()
        let path = dir.sub("fresh/node")
        let store = try EventStore.open(directory: path, nodeName: "n1", settings: testSettings())
        try await store.close()
        let mode = { (p: String) in
            ((try? FileManager.default.attributesOfItem(atPath: p)[.posixPermissions]) as? NSNumber)?.intValue ?? -1
        }
        #expect(mode(path) == 0o700)
        #expect(mode(path + "/data.mdb") == 0o600)
    }
}

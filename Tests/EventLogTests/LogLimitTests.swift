import Foundation
import Testing

@testable import EventLog

/// `maxLogBytes`: a full log refuses writes with `.logFull`, keeps every committed event
/// readable and intact, and takes writes again once compaction frees room.
@Suite struct LogLimitTests {
    static func usage(_ i: Int) -> Event.Payload {
        .usageRecorded(
            UsageRecorded(
                requestID: "req-\(i)", keyID: "k1", model: "gpt-4o-mini", limitKeys: ["vk:team"],
                windowStartMillis: 0, windowMillis: 60_000, tokensIn: 12, tokensOut: 34, latencyMicros: 900,
                status: 200, outcome: .success))
    }

    /// Appends batches of 200 until the log is full; returns how many were committed.
    static func fill(_ store: EventStore) async throws -> Int {
        var committed = 0
        while !store.isFull {
            try #require(committed < 200_000, "the log never reached its limit")
            _ = try await store.append(contentsOf: (0..<200).map { usage(committed + $0) })
            committed += 200
        }
        return committed
    }

    @Test func fullLog_refusesPeersEvents_keepsWritingItsOwn_andHasRoomAfterCompaction() async throws {
        let dir = TempDir()
        var settings = testSettings()
        settings.maxLogBytes = 1 << 20
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: settings)
        let committed = try await Self.fill(store)
        #expect(committed > 1_000)
        // A peer's events are refused, naming the limit …
        let peer = Event(
            id: EventID(
                hlc: HLCTimestamp(wallMillis: SystemWallClock().nowMillis(), logical: 0), origin: NodeID(name: "n2")),
            payload: Self.usage(-1))
        do {
            _ = try await store.insert([peer])
            Issue.record("a full log took a peer's event")
        } catch let error as EventLogError {
            #expect(error.code == .logFull)
            #expect(error.message.contains("max_log_bytes"))
        }
        #expect(store.statistics.refusedFull == 1)
        // … while this node's own events (of requests admitted before it filled) are written.
        _ = try await store.append(contentsOf: (0..<10).map { Self.usage(committed + $0) })
        #expect(try store.reader.stats().events == UInt64(committed + 10))
        #expect(try store.reader.verifyDigests() == [])
        // The live data stays near the limit.
        let live = try store.reader.liveBytes()
        #expect(live < (1 << 20) + (256 << 10), "live bytes \(live)")

        // Compaction runs on a full log and frees room.
        try await Task.sleep(for: .milliseconds(1_100))
        let report = try await store.compactExpired(age: .zero, nowMillis: SystemWallClock().nowMillis())
        #expect(report.eventsRemoved > 0)
        #expect(!store.isFull)
        let later = Event(
            id: EventID(
                hlc: HLCTimestamp(wallMillis: SystemWallClock().nowMillis() + 10, logical: 0),
                origin: NodeID(name: "n2")),
            payload: Self.usage(-2))
        #expect(try await store.insert([later]) == [.inserted])
        #expect(try store.reader.verifyDigests() == [])
        #expect(ViewCodec.encode(try store.reader.replay()) == ViewCodec.encode(store.viewSnapshot))
        try await store.close()

        // Reopened, the log is intact and agrees with its checkpointed views.
        let reopened = try EventStore.open(directory: dir.path, nodeName: "n1", settings: settings)
        #expect(!reopened.isFull)
        #expect(try reopened.reader.verifyDigests() == [])
        #expect(ViewCodec.encode(try reopened.reader.replay()) == ViewCodec.encode(reopened.viewSnapshot))
        try await reopened.close()
    }

    @Test func liveBytes_countsFreedPagesAsRoom() async throws {
        let dir = TempDir()
        let store = try EventStore.open(directory: dir.path, nodeName: "n1", settings: testSettings())
        _ = try await store.append(contentsOf: (0..<5_000).map { Self.usage($0) })
        let used = store.reader.usedBytes()
        #expect(try store.reader.liveBytes() <= used)
        try await Task.sleep(for: .milliseconds(1_100))
        _ = try await store.compactExpired(age: .zero, nowMillis: SystemWallClock().nowMillis())
        // The file does not shrink, but the pages compaction freed are no longer live.
        #expect(store.reader.usedBytes() >= used)
        #expect(try store.reader.liveBytes() < used / 2)
        try await store.close()
    }
}

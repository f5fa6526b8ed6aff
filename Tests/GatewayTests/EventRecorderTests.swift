import EventLog
import Foundation
import Logging
import Synchronization
import Testing

@testable import Gateway

/// The recorder's queue is bounded: a writer that falls behind makes the node refuse new work
/// instead of growing memory, and nothing already handed over is lost.
@Suite struct EventRecorderTests {
    static func store() throws -> (EventStore, String) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("recorder-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        var settings = EventStore.Settings()
        settings.mapSizeBytes = 64 << 20
        return (try EventStore.open(directory: path, nodeName: "n1", settings: settings), path)
    }

    static func usage(_ i: Int) -> Event.Payload {
        .usageRecorded(
            UsageRecorded(
                requestID: "r\(i)", keyID: "k1", model: "gpt-4o-mini", limitKeys: [], windowStartMillis: 0,
                windowMillis: 60_000, tokensIn: 1, tokensOut: 1, latencyMicros: 1, status: 200, outcome: .success))
    }

    @Test func fullQueue_hasNoRoom_untilTheWriterDrainsIt_andKeepsEveryEvent() async throws {
        let (store, path) = try Self.store()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let recorder = EventRecorder(store: store, logger: Logger(label: "test"), capacity: 3) { _, _ in }
        #expect(recorder.hasRoom)
        recorder.recordAdmission(keys: ["vk:a"], windowStartMillis: 0, windowMillis: 60_000, seq: 1)
        // Admissions with the same keys and window coalesce into one event.
        recorder.recordAdmission(keys: ["vk:a"], windowStartMillis: 0, windowMillis: 60_000, seq: 2)
        recorder.record(Self.usage(0))
        #expect(recorder.pendingEvents == 2)
        #expect(recorder.hasRoom)
        recorder.record(Self.usage(1))
        #expect(!recorder.hasRoom)
        // Requests already admitted still record what they did, past the capacity.
        recorder.record(Self.usage(2))
        #expect(recorder.pendingEvents == 4)

        await recorder.flush(retryingWhenFull: false)
        #expect(recorder.pendingEvents == 0)
        #expect(recorder.hasRoom)
        let events = try store.reader.events()
        #expect(events.count == 4)
        let admitted = events.compactMap { e -> UInt32? in
            if case .rateLimitIncrement(let i) = e.payload { i.requests } else { nil }
        }
        #expect(admitted == [2])
        try await store.close()
    }

    @Test func fullLog_isNotWritable_stillWritesWhatWasAdmitted_andReportsWhenRoomReturns() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("recorder-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        var settings = EventStore.Settings()
        settings.mapSizeBytes = 64 << 20
        settings.maxLogBytes = 1 << 20
        let store = try EventStore.open(directory: path, nodeName: "n1", settings: settings)
        let changes = Mutex<[Bool]>([])
        let recorder = EventRecorder(
            store: store, logger: Logger(label: "test"), capacity: 100_000, retryInterval: .milliseconds(50)
        ) { _, _ in }
        recorder.onWritability { writable, _ in changes.withLock { $0.append(writable) } }
        let running = Task { try await recorder.run() }
        var n = 0
        while recorder.isWritable {
            try #require(n < 200_000, "the log never filled")
            for i in 0..<200 { recorder.record(Self.usage(n + i)) }
            n += 200
            while recorder.pendingEvents > 0 { try await Task.sleep(for: .milliseconds(1)) }
        }
        #expect(changes.withLock { $0 } == [false])
        // Requests admitted before the log filled still record what they did.
        recorder.record(Self.usage(-1))
        while recorder.pendingEvents > 0 { try await Task.sleep(for: .milliseconds(1)) }
        #expect(
            try store.reader.events().contains { e in
                if case .usageRecorded(let u) = e.payload { u.requestID == "r-1" } else { false }
            })
        #expect(!recorder.isWritable)

        try await Task.sleep(for: .milliseconds(1_100))
        _ = try await store.compactExpired(age: .zero, nowMillis: SystemWallClock().nowMillis())
        let deadline = ContinuousClock.now + .seconds(5)
        while !recorder.isWritable || changes.withLock({ $0 }).count < 2 {
            try #require(ContinuousClock.now < deadline, "the recorder never saw the room compaction made")
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(changes.withLock { $0 } == [false, true])
        running.cancel()
        _ = try? await running.value
        try await store.close()
    }

    @Test func overloaded_isA503WithRetryAfter_inTheOpenAIShape() throws {
        let error = GatewayError.overloaded()
        #expect(error.status == 503)
        #expect(error.code == "overloaded")
        #expect(error.headers.contains { $0.name == "retry-after" && $0.value == "1" })
    }
}

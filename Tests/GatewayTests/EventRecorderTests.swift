import EventLog
import Foundation
import Logging
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

        await recorder.flush()
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

    @Test func overloaded_isA503WithRetryAfter_inTheOpenAIShape() throws {
        let error = GatewayError.overloaded()
        #expect(error.status == 503)
        #expect(error.code == "overloaded")
        #expect(error.headers.contains { $0.name == "retry-after" && $0.value == "1" })
    }
}

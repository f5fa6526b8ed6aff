import ArgumentParser
import EventLog
import Foundation
import ToolSupport

struct CompactionBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compaction",
        abstract: "How long one bounded compaction step holds the log's writer, and whether freed pages are reused.",
        discussion: """
            Inserts N synthetic counter and usage events (from 3 origins, over --span-seconds),
            compacts them step by step as retention does, and prints the time per step (one write \
            transaction of --events-per-step events) and the data file's size before, after, and \
            after inserting as many new events again.
            """)

    @Option(help: "Directory for the benchmark's scratch data.")
    var data: String

    @Option(help: "Number of events to compact.")
    var events: Int = 200_000

    @Option(help: "Seconds of traffic the events cover.")
    var spanSeconds: UInt64 = 200

    @Option(help: "Events read per compaction step.")
    var eventsPerStep: Int = EventStore.compactionEventsPerStep

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() async throws {
        let dir = data + "/compaction-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try EventStore.open(directory: dir, nodeName: "bench")
        let t0: UInt64 = 1_764_000_000_000
        var gen = SyntheticEvents(seed: 5)
        func batch(_ count: Int, from start: UInt64) -> [Event] {
            (0..<count).map { i in
                let wall = start + UInt64(i) * spanSeconds * 1_000 / UInt64(count)
                return Event(
                    id: EventID(hlc: HLCTimestamp(wallMillis: wall, logical: 0), origin: NodeID(name: "n\(i % 3)")),
                    payload: i % 2 == 0 ? gen.counterPayload(nowMillis: wall) : gen.payload(nowMillis: wall))
            }
        }
        let first = batch(events, from: t0)
        for part in stride(from: 0, to: first.count, by: 10_000) {
            _ = try await store.insert(Array(first[part..<min(part + 10_000, first.count)]))
        }
        let before = store.reader.usedBytes()
        let horizon = HLCTimestamp(wallMillis: t0 + spanSeconds * 1_000, logical: 0)
        var millis: [Double] = []
        var removed: UInt64 = 0
        while true {
            let start = ContinuousClock.now
            guard let step = try await store.compactStep(before: horizon, maxEvents: eventsPerStep) else { break }
            let d = ContinuousClock.now - start
            millis.append(Double(d.components.seconds) * 1_000 + Double(d.components.attoseconds) / 1e15)
            removed += step.eventsRemoved
        }
        let after = store.reader.usedBytes()
        let left = try store.reader.eventCount()
        let second = batch(events, from: t0 + 2 * spanSeconds * 1_000)
        for part in stride(from: 0, to: second.count, by: 10_000) {
            _ = try await store.insert(Array(second[part..<min(part + 10_000, second.count)]))
        }
        let refilled = store.reader.usedBytes()
        try await store.close()
        millis.sort()
        func q(_ p: Double) -> Double { millis[min(millis.count - 1, Int(Double(millis.count) * p))] }
        if json {
            let fields: [String: JSONValue] = [
                "events": .uint(UInt64(events)), "events_left": .uint(left), "steps": .uint(UInt64(millis.count)),
                "events_per_step": .uint(UInt64(eventsPerStep)), "events_removed": .uint(removed),
                "step_p50_ms": .double(q(0.5)), "step_p99_ms": .double(q(0.99)), "step_max_ms": .double(q(1)),
                "bytes_before": .uint(UInt64(before)), "bytes_after": .uint(UInt64(after)),
                "bytes_after_refill": .uint(UInt64(refilled)),
            ]
            print(JSONValue.object(fields).rendered())
        } else {
            print(
                "compaction: \(events) events → \(left) in \(millis.count) steps of \(eventsPerStep): step p50 \(String(format: "%.2f", q(0.5))) ms, p99 \(String(format: "%.2f", q(0.99))) ms, max \(String(format: "%.2f", q(1))) ms; data.mdb \(before >> 20) MiB → \(after >> 20) MiB after compaction → \(refilled >> 20) MiB after \(events) new events"
            )
        }
    }
}

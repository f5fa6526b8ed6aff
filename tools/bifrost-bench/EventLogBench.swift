import ArgumentParser
import EventLog
import Foundation
import Replication
import Synchronization
import ToolSupport

struct EventLogBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eventlog",
        abstract: "Append, sync, replay and digest costs of the event log, next to raw LMDB.",
        discussion: """
            Writes N synthetic events of every kind (a third from other origins, inserted as a peer's
            events would be) with group commit, then times single synced commits, a replay of the
            whole log into views, and the same append loop written directly against LMDB, all in
            one run. Uses a fresh directory under --data and removes it afterwards unless --keep.
            """)

    @Option(help: "Directory for the benchmark's scratch data.")
    var data: String

    @Option(help: "Number of events to write.")
    var events: Int = 1_000_000

    @Option(help: "Events per append call.")
    var batch: Int = 1000

    @Option(help: "Concurrent appending tasks.")
    var writers: Int = 4

    @Option(help: "Distinct origins (1 local + N-1 remote).")
    var origins: Int = 3

    @Option(help: "Sequential single-event synced commits to time.")
    var syncedSamples: Int = 500

    @Flag(help: "Print one JSON object.")
    var json = false

    @Flag(help: "Keep the scratch data.")
    var keep = false

    func validate() throws {
        guard events > 0 else { throw ValidationError("--events must be positive") }
        guard batch > 0 else { throw ValidationError("--batch must be positive") }
        guard writers > 0 else { throw ValidationError("--writers must be positive") }
        guard origins >= 1 else { throw ValidationError("--origins must be at least 1") }
    }

    func run() async throws {
        let root = "\(data)/eventlog-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { if !keep { try? FileManager.default.removeItem(atPath: root) } }

        // Workload, generated before the clock starts.
        var gen = SyntheticEvents(seed: 42)
        let now = SystemWallClock().nowMillis()
        let remoteShare = origins > 1 ? events / 3 : 0
        let localCount = events - remoteShare
        var localBatches: [[Event.Payload]] = []
        var produced = 0
        while produced < localCount {
            let n = min(batch, localCount - produced)
            localBatches.append((0..<n).map { _ in gen.payload(nowMillis: now) })
            produced += n
        }
        var remoteBatches: [[[UInt8]]] = []
        if remoteShare > 0 {
            let peers = (2...origins).map { NodeID(name: "bench-node-\($0)") }
            var current: [[UInt8]] = []
            for i in 0..<remoteShare {
                let origin = peers[i % peers.count]
                let seqInOrigin = UInt64(i / peers.count)
                let hlc = HLCTimestamp(wallMillis: now - 20_000 + seqInOrigin / 64, logical: UInt16(seqInOrigin % 64))
                current.append(
                    EventCodec.encode(
                        Event(id: EventID(hlc: hlc, origin: origin), payload: gen.payload(nowMillis: now))))
                if current.count == batch {
                    remoteBatches.append(current)
                    current = []
                }
            }
            if !current.isEmpty { remoteBatches.append(current) }
        }
        var work: [Work] = []
        var li = 0
        var ri = 0
        // Interleave so remote inserts arrive while local appends run, as on a live node.
        while li < localBatches.count || ri < remoteBatches.count {
            if li < localBatches.count {
                work.append(.local(localBatches[li]))
                li += 1
            }
            if ri < remoteBatches.count && (li % 2 == 0 || li == localBatches.count) {
                work.append(.remote(remoteBatches[ri]))
                ri += 1
            }
        }
        let workItems = work

        // 1. Batched appends and inserts through the store.
        let store = try EventStore.open(directory: "\(root)/node", nodeName: "bench-node-1")
        let next = SharedCounter()
        let cpuStart = NodeHealth.Sampler.processCPUSeconds()
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<writers {
                group.addTask {
                    while true {
                        let i = next.next()
                        guard i < workItems.count else { return }
                        switch workItems[i] {
                        case .local(let payloads):
                            _ = try await store.append(contentsOf: payloads, durability: .batched)
                        case .remote(let encoded): _ = try await store.insert(encoded: encoded)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let appendTime = (ContinuousClock.now - start).seconds
        let appendCPU = NodeHealth.Sampler.processCPUSeconds() - cpuStart
        let stats = store.statistics

        // 2. Synced single-event commits, one at a time.
        var syncedLatencies: [Double] = []
        for i in 0..<syncedSamples {
            let t = ContinuousClock.now
            _ = try await store.append(
                .weightChanged(
                    WeightChanged(
                        keyID: "gpt-4-key-1", oldWeight: 1, newWeight: Double(i % 100) / 100, reason: "bench",
                        actor: "operator:bench")),
                durability: .synced)
            syncedLatencies.append((ContinuousClock.now - t).seconds * 1000)
        }
        try await store.close()
        syncedLatencies.sort()

        // 3. Replay of the whole log into fresh views.
        let reader = try EventLogReader.open(directory: "\(root)/node")
        let replayStart = ContinuousClock.now
        let view = try reader.replay()
        let replayTime = (ContinuousClock.now - replayStart).seconds
        let storedEvents = try reader.stats().events

        // 4. The same append loop straight against LMDB: same flags, keys, values and batches.
        let sizes = workItems.map { item -> Int in
            switch item {
            case .local(let payloads): payloads.count
            case .remote(let encoded): encoded.count
            }
        }
        // The same sizes and key order as the store's events, encoded beforehand like the store's
        // callers encode before the writer runs.
        var hlc = HybridLogicalClock()
        let rawOrigin = NodeID(name: "bench-raw")
        var rawGen = SyntheticEvents(seed: 42)
        let rawBatches = sizes.map { count in
            (0..<count).map { _ in
                EventCodec.encode(
                    Event(
                        id: EventID(hlc: hlc.now(physicalMillis: now), origin: rawOrigin),
                        payload: rawGen.payload(nowMillis: now)))
            }
        }
        let rawTime = try LMDBBaseline.appendLoop(directory: "\(root)/raw", batches: rawBatches).seconds

        let result = JSONValue.object([
            "events": .uint(UInt64(events)),
            "stored_events": .uint(storedEvents),
            "batch": .uint(UInt64(batch)),
            "writers": .uint(UInt64(writers)),
            "origins": .uint(UInt64(origins)),
            "events_per_s": .double((Double(events) / appendTime).rounded()),
            "raw_lmdb_events_per_s": .double((Double(events) / rawTime).rounded()),
            "ratio_to_raw_lmdb": .double(((rawTime / appendTime) * 1000).rounded() / 1000),
            "commits": .uint(stats.commits),
            "append_cpu_us_per_event": .double((appendCPU / Double(events) * 1e6 * 1000).rounded() / 1000),
            "digest_cpu_us_per_event": .double(
                (stats.digestTime.seconds / Double(events) * 1e6 * 1000).rounded() / 1000),
            "digest_overhead_pct": .double((stats.digestTime.seconds / appendCPU * 1000).rounded() / 10),
            "synced_commit_p50_ms": .double(Self.quantile(syncedLatencies, 0.5)),
            "synced_commit_p99_ms": .double(Self.quantile(syncedLatencies, 0.99)),
            "replay_events": .uint(view.eventCount),
            "replay_seconds": .double((replayTime * 1000).rounded() / 1000),
            "replay_events_per_s": .double((Double(view.eventCount) / replayTime).rounded()),
        ])
        if json {
            ToolSupport.printLine(result.rendered())
        } else {
            ToolSupport.printLine(result.rendered(pretty: true))
        }
    }

    static func quantile(_ sorted: [Double], _ q: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let i = min(sorted.count - 1, Int((Double(sorted.count) * q).rounded(.up)) - 1)
        return (sorted[max(0, i)] * 1000).rounded() / 1000
    }

}

enum Work: Sendable {
    case local([Event.Payload])
    case remote([[UInt8]])
}

final class SharedCounter: Sendable {
    private let value = Atomic<Int>(0)
    func next() -> Int { value.add(1, ordering: .relaxed).oldValue }
}

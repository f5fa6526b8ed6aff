import ArgumentParser
import EventLog
import Foundation
import ToolSupport

/// Fills a node's data directory with realistic traffic: the demo's and the operators' way to
/// get a log to inspect without running a cluster.
struct Populate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "populate",
        abstract: "Append synthetic gateway traffic to a node's data directory (kept; appends on every run).",
        discussion: """
            Two thirds of the events are appended as this node's own, one third arrive as two peers'
            events (bifrost-node-2 and -3) through the idempotent insert path, as replication would
            deliver them. Then the store is closed cleanly, with a view checkpoint.
            """)

    @Option(help: "Data directory of the node.")
    var data: String

    @Option(help: "Name of the node owning the directory.")
    var node: String = "bifrost-node-1"

    @Option(help: "Number of events to write.")
    var events: Int = 100_000

    func validate() throws {
        guard events > 0 else { throw ValidationError("--events must be positive") }
    }

    func run() async throws {
        let store: EventStore
        do {
            store = try EventStore.open(directory: data, nodeName: node)
        } catch let error as EventLogError {
            ToolSupport.fail("bifrost-bench populate", error.description)
        }
        var gen = SyntheticEvents(seed: UInt64(SystemWallClock().nowMillis()))
        let peers = ["bifrost-node-2", "bifrost-node-3"]
        // Peers' names enter the log the way they do in a cluster: through membership events.
        _ = try await store.append(
            contentsOf: peers.map {
                .membershipChanged(MembershipChanged(node: $0, state: .alive, incarnation: 1, observer: node))
            })
        let progress = ProgressLine("written")
        let start = ContinuousClock.now
        var written = 0
        var peerSeq: [UInt64] = [0, 0]
        while written < events {
            let now = SystemWallClock().nowMillis()
            let n = min(1000, events - written)
            let local = n * 2 / 3
            _ = try await store.append(contentsOf: (0..<local).map { _ in gen.payload(nowMillis: now) })
            var remote: [[UInt8]] = []
            for i in 0..<(n - local) {
                let p = i % peers.count
                peerSeq[p] += 1
                let hlc = HLCTimestamp(wallMillis: now - 50, logical: UInt16(truncatingIfNeeded: peerSeq[p]))
                remote.append(
                    EventCodec.encode(
                        Event(
                            id: EventID(hlc: hlc, origin: NodeID(name: peers[p])), payload: gen.payload(nowMillis: now))
                    ))
            }
            _ = try await store.insert(encoded: remote)
            written += n
            progress.update(UInt64(written), total: UInt64(events))
        }
        progress.finish()
        try await store.close()
        let seconds = (ContinuousClock.now - start).seconds
        ToolSupport.printLine(
            String(
                format: "wrote %d events in %.2f s (%.0f events/s) to %@", written, seconds, Double(written) / seconds,
                data))
    }
}

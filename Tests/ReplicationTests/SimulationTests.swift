import EventLog
import Testing

@testable import ClusterSimulation
@testable import Replication

/// The seeded cluster simulator (`ClusterSimulator`): a bounded set of seeds with short phases,
/// determinism, and runs with a repair mechanism switched off, which must fail, so that the
/// checks are known to bite. `bifrost-sim --seeds N` runs the long version.
@Suite struct SimulationTests {
    /// Short phases keep a seed under a second in debug builds; 3–5 nodes.
    static func options(seed: UInt64) -> ClusterSimulator.Options {
        ClusterSimulator.Options(seed: seed, nodes: 3 + Int(seed % 3), safetyDuration: .seconds(20))
    }

    static func explain(_ report: ClusterSimulator.Report) -> Comment {
        Comment(rawValue: ([report.summary] + report.failures).joined(separator: "\n"))
    }

    @Test(arguments: UInt64(1)...24)
    func seededRun_holdsEveryInvariant(seed: UInt64) {
        let report = ClusterSimulator.run(Self.options(seed: seed))
        #expect(report.passed, Self.explain(report))
        #expect(report.eventsAppended > 300)
        #expect(report.eventsDelivered >= report.eventsAppended * (report.nodes - 1))
        #expect(report.reconcilerChecks >= 20 + report.nodes * (report.nodes - 1) / 2)
        #expect(report.convergenceMillis != nil)
        #expect(report.datagramsSent > 0 && report.syncMessages > 0)
    }

    @Test func sameSeed_replaysTheSameRun_otherSeedsDoNot() {
        var options = Self.options(seed: 4)
        options.traceLines = 20
        let first = ClusterSimulator.run(options)
        let second = ClusterSimulator.run(options)
        #expect(first == second)
        #expect(first.trace.count == 20)
        let other = ClusterSimulator.run(Self.options(seed: 5))
        #expect(other.traceHash != first.traceHash)
    }

    /// A node whose clock jumped ahead has its events quarantined by the others; once the
    /// receivers have later events of that origin, watermark catch-up never offers them again,
    /// and only reconciliation repairs the gap.
    @Test func withoutReconciliation_quarantinedEventsStayMissing_andTheFailureNamesItsReplay() {
        var options = Self.options(seed: 1)
        let healthy = ClusterSimulator.run(options)
        #expect(healthy.passed, Self.explain(healthy))
        #expect(healthy.eventsQuarantined > 0)

        options.reconciliation = false
        let report = ClusterSimulator.run(options)
        #expect(!report.passed)
        #expect(report.convergenceMillis == nil)
        #expect(report.failures.contains { $0.contains("convergence invariant") && $0.contains("quarantined there") })
        #expect(report.failures.contains { $0.contains("final reconciliation") })
        let replay = "swift run bifrost-sim --seed 1 --nodes 4 --safety-seconds 20 --no-reconciliation"
        #expect(report.replayCommand == replay)
        #expect(report.failures.allSatisfy { $0.hasPrefix("seed 1: ") && $0.hasSuffix("Replay: \(replay)") })
    }

    @Test func withoutReconnecting_partitionedNodesNeverCatchUp() {
        var options = Self.options(seed: 2)
        let healthy = ClusterSimulator.run(options)
        #expect(healthy.passed, Self.explain(healthy))
        #expect(healthy.partitions + healthy.crashes > 0)

        options.reconnect = false
        let report = ClusterSimulator.run(options)
        #expect(!report.passed)
        #expect(report.failures.contains { $0.contains("convergence invariant") })
        #expect(report.failures.contains { $0.contains("--no-reconnect") })
    }

    @Test func withoutFaults_nothingIsLostQuarantinedOrRepaired() {
        let report = ClusterSimulator.run(
            ClusterSimulator.Options(seed: 9, nodes: 4, safetyDuration: .seconds(10), faults: false))
        #expect(report.passed, Self.explain(report))
        #expect(report.partitions == 0 && report.crashes == 0 && report.clockJumps == 0)
        #expect(report.datagramsDropped == 0 && report.datagramsDuplicated == 0)
        #expect(report.eventsQuarantined == 0 && report.eventsRepaired == 0)
        #expect(report.connectionsDropped == 0)
        #expect((report.convergenceMillis ?? .max) <= 1_000)
    }

    @Test func replayCommand_namesEveryOptionThatDiffersFromTheDefaults() {
        #expect(
            ClusterSimulator.Options(seed: 1234).replayCommand
                == "swift run bifrost-sim --seed 1234  (or: make sim SEED=1234 SEEDS=1)")
        var options = ClusterSimulator.Options(
            seed: 7, nodes: 5, safetyDuration: .milliseconds(2_500), livenessBound: .seconds(30), faults: false)
        options.reconnect = false
        options.eventsPerSecond = 5
        options.traceLines = 10
        #expect(
            options.replayArguments == [
                "--seed", "7", "--nodes", "5", "--safety-seconds", "2.5", "--liveness-seconds", "30", "--no-faults",
                "--no-reconnect", "--events-per-second", "5.0",
            ])
    }

    @Test func connection_deliversEachDirectionInOrder_whateverTheDelays() {
        var rng = SplitMix64(seed: 3)
        var connection = SimulatedConnection(
            id: 1, ends: [0, 1], syncs: [PeerSync(localNode: "node-1"), PeerSync(localNode: "node-2")])
        var delivered: [[UInt8]] = [[], []]
        var now: Duration = .zero
        for i in 0..<200 {
            let side = Int.random(in: 0...1, using: &rng)
            connection.send(
                [UInt8(i)], toward: side, now: now, delay: .milliseconds(Int64.random(in: 1...50, using: &rng)),
                path: .control)
            now += .milliseconds(Int64.random(in: 0...10, using: &rng))
            for message in connection.takeDue(now: now) { delivered[message.toward] += message.bytes }
        }
        for message in connection.takeDue(now: now + .seconds(1)) { delivered[message.toward] += message.bytes }
        #expect(delivered[0] == delivered[0].sorted() && delivered[1] == delivered[1].sorted())
        #expect(delivered[0].count + delivered[1].count == 200)
        #expect(connection.messagesInFlight == 0)
    }

    @Test func network_splitsAndCutsBlockExactlyTheirLinks() {
        var network = SimulatedNetwork(nodeCount: 4, conditions: .calm)
        network.partition(into: [0, 0, 1, 1])
        #expect(network.connects(0, 1) && network.connects(2, 3))
        #expect(!network.connects(0, 2) && !network.connects(3, 1))
        network.heal()
        network.cut([(0, 3)])
        #expect(!network.connects(0, 3) && !network.connects(3, 0))
        #expect(network.connects(0, 1) && network.connects(1, 3))
        network.heal()
        #expect(!network.isPartitioned)
    }

    @Test func simulatedStore_answersLikeItsInMemoryEventSet() throws {
        var store = SimulatedStore()
        var rng = SplitMix64(seed: 11)
        let origins = ["a", "b", "c"].map { NodeID(name: $0) }
        let base = ClusterSimulator.epochMillis
        for _ in 0..<500 {
            let id = EventID(
                hlc: HLCTimestamp(wallMillis: base + UInt64.random(in: 0..<20_000, using: &rng), logical: 0),
                origin: origins[Int.random(in: 0..<3, using: &rng)])
            let event = Event(
                id: id,
                payload: .rateLimitIncrement(RateLimitIncrement(keys: ["vk:a"], windowStartMillis: 0, windowMillis: 1)))
            try store.insert(EventCodec.encode(event))
        }
        for limit in [1, 7, 1_000] {
            let floors = [origins[0]: HLCTimestamp(wallMillis: base + 5_000, logical: 0), origins[2]: .zero]
            let range =
                HLCTimestamp(wallMillis: base + 3_000, logical: 0)..<HLCTimestamp(wallMillis: base + 9_000, logical: 0)
            #expect(store.audit(floors: floors, limit: limit, range: range) == nil)
        }
        #expect(store.count == store.set.events.count)
    }
}

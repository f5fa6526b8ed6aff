import Foundation
import Testing

extension MultiProcess {
    /// Multi-process tests: real `bifrost serve` processes on loopback.
    @Suite(.serialized, .timeLimit(.minutes(3))) struct ClusterTests {
        /// Fast gossip so failure detection fits a test: 200 ms probes, 2 failed rounds to suspect.
        static let config =
            #"{"cluster": {"gossip": {"interval": "200ms", "timeout": "1s", "compression": true}, "failover": {"detection_threshold": 2}}}"#
        static let interval: Duration = .milliseconds(200)
        static let detectionThreshold = 2
        /// Lifeguard's maximum suspicion timeout for 3 members: 6 × (4 × max(1, log10 3) × interval).
        static let maxSuspicion: Duration = interval * 24

        static func key() -> String {
            Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        }

        func startCluster(_ harness: ClusterHarness, key: String) throws {
            try harness.startAll(config: Self.config, key: key)
        }

        func digestsConverge(_ harness: ClusterHarness, _ names: [String], within timeout: Duration) async -> Bool {
            await harness.eventually(timeout) {
                let stats = try names.map { try harness.dumpStats($0) }
                let roots = Set(stats.compactMap { $0["root_digest"] as? String })
                let counts = Set(stats.compactMap { ($0["events"] as? NSNumber)?.intValue })
                return roots.count == 1 && counts.count == 1 && stats.count == names.count
            }
        }

        @Test func threeNodes_formACluster_andReplicateEvents() async throws {
            let harness = try ClusterHarness(nodes: 3, label: "form")
            try startCluster(harness, key: Self.key())
            let names = harness.nodes.map(\.name)
            #expect(await harness.allAlive(names), "\(harness.log("node-1"))")
            for (i, name) in names.enumerated() {
                let (status, _) = try await harness.request(name, "POST", "/debug/events?count=\(500 * (i + 1))")
                #expect(status == 200)
            }
            #expect(await digestsConverge(harness, names, within: .seconds(15)))
            let stats = try harness.dumpStats("node-1")
            #expect(((stats["by_kind"] as? [String: Any])?["ratelimit.increment"] as? NSNumber)?.intValue == 3_000)
            let health = try await harness.json("node-2", "/health")
            #expect(health["status"] as? String == "serving")
            let metrics = try await harness.json("node-3", "/cluster/metrics")
            let cluster = metrics["cluster_metrics"] as? [String: Any]
            #expect((cluster?["nodes_total"] as? NSNumber)?.intValue == 3)
            #expect((cluster?["nodes_healthy"] as? NSNumber)?.intValue == 3)
            await harness.stopAll()
        }

        @Test func killedNode_isDeclaredDead_withinTheBound_thenRejoinsAndCatchesUp() async throws {
            let harness = try ClusterHarness(nodes: 3, label: "kill")
            let key = Self.key()
            try startCluster(harness, key: key)
            let names = harness.nodes.map(\.name)
            #expect(await harness.allAlive(names))
            harness.kill9("node-3")
            let killed = ContinuousClock.now
            let bound = Self.interval * Self.detectionThreshold + Self.maxSuspicion + .seconds(2)
            let dead = await harness.eventually(bound) {
                let a = await harness.members(seenBy: "node-1")["node-3"]
                let b = await harness.members(seenBy: "node-2")["node-3"]
                return a == "dead" && b == "dead"
            }
            #expect(dead, "node-3 not declared dead within \(bound)")
            let detection = ContinuousClock.now - killed
            // While node-3 is down, the others keep writing.
            _ = try await harness.request("node-1", "POST", "/debug/events?count=5000")
            try harness.startConfigured("node-3", key: key)
            #expect(await harness.allAlive(names), "node-3 did not rejoin (detection took \(detection))")
            #expect(await digestsConverge(harness, names, within: .seconds(20)))
            await harness.stopAll()
        }

        @Test func partitionedNode_convergesAfterHeal() async throws {
            let harness = try ClusterHarness(nodes: 3, label: "partition")
            try startCluster(harness, key: Self.key())
            let names = harness.nodes.map(\.name)
            #expect(await harness.allAlive(names))
            _ = try await harness.request("node-3", "POST", "/debug/partition", body: "node-1,node-2")
            _ = try await harness.request("node-1", "POST", "/debug/partition", body: "node-3")
            _ = try await harness.request("node-2", "POST", "/debug/partition", body: "node-3")
            for name in names { _ = try await harness.request(name, "POST", "/debug/events?count=2000") }
            try await Task.sleep(for: .seconds(2))
            let during = try names.map { try harness.dumpStats($0)["root_digest"] as? String }
            #expect(Set(during).count > 1, "the partition must hold")
            for name in names { _ = try await harness.request(name, "DELETE", "/debug/partition") }
            #expect(await digestsConverge(harness, names, within: .seconds(20)))
            #expect(await harness.allAlive(names))
            await harness.stopAll()
        }

        @Test func nodeWithAWrongClusterKey_neverAppearsInTheCluster() async throws {
            let harness = try ClusterHarness(nodes: 3, label: "wrongkey")
            let key = Self.key()
            try harness.writeConfig(Self.config)
            try harness.startConfigured("node-1", key: key)
            try harness.startConfigured("node-2", key: key)
            try harness.startConfigured("node-3", key: Self.key())
            #expect(await harness.allAlive(["node-1", "node-2"]))
            try await Task.sleep(for: .seconds(3))
            for name in ["node-1", "node-2"] {
                #expect(await harness.members(seenBy: name)["node-3"] == nil)
            }
            let metrics = String(decoding: try await harness.request("node-1", "GET", "/metrics").1, as: UTF8.self)
            #expect(metrics.contains("bifrost_transport_rejected_total") || metrics.contains("bifrost_gossip"))
            await harness.stopAll()
        }
    }
}

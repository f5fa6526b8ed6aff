import Foundation
import Testing

extension MultiProcess {
    /// Request migration, fail-fast and drain on a real 3-node cluster with the real mock provider.
    @Suite(.serialized, .timeLimit(.minutes(3))) struct FailoverTests {
        static let token = "sk-failover-test"

        static func config(mock: String, extra: String = "") -> String {
            """
            {"providers": {"openai": {"type": "openai", "base_url": "\(mock)/v1", "network": {"timeout": "5s"},
               "keys": [{"name": "gpt-key-1", "value": "sk-upstream-1", "models": ["gpt-4o-mini", "text-embedding-3-small"]}]}},
             "virtual_keys": [{"name": "team-a", "value": "\(token)", "models": ["*"], "limits": {"rpm": 100000}}],
             "cluster": {"gossip": {"interval": "200ms", "timeout": "1s"},
                         "failover": {"detection_threshold": 2, "drain_delay": "500ms", "recovery_timeout": "1s", "request_migration": "migrate_to_healthy",
                                      "migration_strategies": {"chat_completions": "migrate_to_healthy", "embeddings": "circuit_breaker"}\(extra)}}}
            """
        }

        func startCluster(_ harness: ClusterHarness) async throws {
            let mock = try await harness.startMock()
            try harness.startAll(config: Self.config(mock: mock), key: ClusterTests.key())
            let formed = await harness.allAlive()
            #expect(formed, "\(harness.log("node-1"))")
        }

        static let chat = #"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "migrate me"}]}"#
        static let embeddings = #"{"model": "text-embedding-3-small", "input": "fail fast"}"#

        @Test func brokenUpstream_migratesToHealthyPeers_orFailsFastWithTheBreakerStrategy() async throws {
            let harness = try ClusterHarness(nodes: 3, label: "failover")
            defer { Task { await harness.stopAll() } }
            try await startCluster(harness)
            let (broke, _) = try await harness.request("node-1", "POST", "/debug/upstream")
            #expect(broke == 200)

            // migrate_to_healthy: every request sent to node-1 is served by a peer.
            var servedBy: [String: Int] = [:]
            for _ in 0..<30 {
                let (status, node) = try await harness.post(
                    "node-1", "/v1/chat/completions", token: Self.token, body: Self.chat)
                #expect(status == 200)
                servedBy[node ?? "?", default: 0] += 1
            }
            #expect(servedBy["node-1"] == nil, "\(servedBy)")
            #expect(servedBy.values.reduce(0, +) == 30)
            let metrics = String(decoding: try await harness.request("node-1", "GET", "/metrics").1, as: UTF8.self)
            let migrated = metrics.split(separator: "\n").first {
                $0.hasPrefix("bifrost_request_migrations_total") && $0.contains("outcome=\"migrated\"")
            }
            #expect(migrated.map { $0.hasSuffix(" 30") } == true, "\(migrated ?? "no migration counter")")
            let cluster = try await harness.json("node-1", "/cluster/metrics")["cluster_metrics"] as? [String: Any]
            #expect(((cluster?["request_migration_rate"] as? NSNumber)?.doubleValue ?? 0) > 0)

            // circuit_breaker (embeddings): fast failures, never a hang, never migrated.
            var slowest: Duration = .zero
            for _ in 0..<8 {
                let start = ContinuousClock.now
                let (status, node) = try await harness.post(
                    "node-1", "/v1/embeddings", token: Self.token, body: Self.embeddings)
                slowest = max(slowest, ContinuousClock.now - start)
                #expect((500...599).contains(status))
                #expect(node == nil)
            }
            #expect(slowest < .seconds(1), "slowest failure took \(slowest)")

            // Restored: once the breaker's recovery_timeout passed, its probe succeeds and node-1
            // serves its own requests again.
            _ = try await harness.request("node-1", "DELETE", "/debug/upstream")
            let servesAgain = await harness.eventually(.seconds(10)) {
                let (status, node) = try await harness.post(
                    "node-1", "/v1/chat/completions", token: Self.token, body: Self.chat)
                return status == 200 && node == "node-1"
            }
            #expect(servesAgain)
            await harness.stopAll()
        }

        @Test func sigterm_drains_healthTurns503_inFlightFinish_andPeersSeeLeft() async throws {
            let harness = try ClusterHarness(nodes: 3, label: "drain")
            defer { Task { await harness.stopAll() } }
            try await startCluster(harness)
            // A slow request in flight when the drain starts (the mock waits 1.5 s before answering).
            let inFlight = Task {
                try await harness.post(
                    "node-2", "/v1/chat/completions", token: Self.token, body: Self.chat,
                    headers: ["x-mock-latency-ms": "1500"])
            }
            try await Task.sleep(for: .milliseconds(300))
            harness.signal("node-2", SIGTERM)
            let unhealthy = await harness.eventually(.seconds(2)) {
                (try? await harness.request("node-2", "GET", "/health"))?.0 == 503
            }
            #expect(unhealthy, "/health did not turn 503 during the drain")
            let (status, servedBy) = try await inFlight.value
            #expect(status == 200)
            #expect(servedBy == "node-2")
            let left = await harness.eventually(.seconds(10)) {
                await harness.members(seenBy: "node-1")["node-2"] == "left"
            }
            #expect(left, "peers should see a drained node as left, not dead")
            await harness.stopAll()
        }
    }
}

import Foundation
import Testing

extension MultiProcess {
    /// Breakers judge a key against its peers (issue G, point 4), on real nodes in front of the
    /// mock provider's per-key faults.
    @Suite(.serialized, .timeLimit(.minutes(3))) struct BreakerTests {
        static let token = "sk-breaker-test"
        static let body = #"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "judge me"}]}"#

        /// Three keys of one model; 1 s performance windows so a baseline forms in seconds.
        static func config(mock: String) -> String {
            """
            {"providers": {"openai": {"type": "openai", "base_url": "\(mock)/v1", "network": {"timeout": "5s"},
               "keys": [{"name": "gpt-key-1", "value": "sk-upstream-1", "models": ["gpt-4o-mini"]},
                        {"name": "gpt-key-2", "value": "sk-upstream-2", "models": ["gpt-4o-mini"]},
                        {"name": "gpt-key-3", "value": "sk-upstream-3", "models": ["gpt-4o-mini"]}]}},
             "virtual_keys": [{"name": "team-a", "value": "\(token)", "models": ["*"], "limits": {"rpm": 1000000}}],
             "cluster": {"gossip": {"interval": "200ms", "timeout": "1s"},
                         "failover": {"detection_threshold": 2, "recovery_timeout": "2s"},
                         "load_balancing": {"health_check_interval": "300ms", "adjustment_interval": "1s",
                                            "performance_window": "1s", "min_samples": 10}}}
            """
        }

        /// Keys named by the `temporary_circuit_break` events in `node`'s log written after `since`
        /// (Unix ms), firing ones only.
        static func breaks(_ harness: ClusterHarness, _ node: String, since: UInt64) throws -> [String] {
            try breakEvents(harness, node, since: since).map(\.key)
        }

        /// The same, with each break's reason (the latencies it was judged on).
        static func breakEvents(
            _ harness: ClusterHarness, _ node: String, since: UInt64
        ) throws -> [(key: String, detail: String)] {
            try harness.dumpEvents(node, kind: "alert.fired").compactMap { event in
                guard let data = event["data"] as? [String: Any], data["rule"] as? String == "temporary_circuit_break",
                    data["state"] as? String == "fired",
                    ((event["hlc"] as? NSNumber)?.uint64Value ?? 0) >> 16 >= since,
                    let key = data["scope"] as? String
                else { return nil }
                return (key, data["detail"] as? String ?? "")
            }
        }

        static var nowMillis: UInt64 { UInt64(Date().timeIntervalSince1970 * 1_000) }

        @Test func oneSlowKey_onlyItIsBroken_allSlowTogether_noneIs() async throws {
            let harness = try ClusterHarness(nodes: 3, label: "breakers")
            defer { Task { await harness.stopAll() } }
            let mock = try await harness.startMock()
            try harness.startAll(config: Self.config(mock: mock), key: ClusterTests.key())
            #expect(await harness.allAlive(), "\(harness.log("node-1"))")
            let loads = harness.nodes.map { _ in LoadDriver() }
            for (load, node) in zip(loads, harness.nodes) {
                load.start(
                    url: harness.url(node.name, "/v1/chat/completions"), token: Self.token, body: Self.body, rate: 60,
                    workers: 4)
            }
            // Baseline: earlier windows with enough samples for every key.
            try await Task.sleep(for: .seconds(7))

            // One key slows down at the provider: it alone is broken, cluster-wide.
            let slowSince = Self.nowMillis
            #expect(try await harness.send("PUT", mock + "/mock/keys/am-2", body: #"{"latency_ms": 80}"#).0 == 200)
            let broken = await harness.eventually(.seconds(15)) {
                try Self.breaks(harness, "node-3", since: slowSince).contains("gpt-key-2")
            }
            #expect(
                broken,
                """
                gpt-key-2 was not broken on node-3: its breaks \(Result { try Self.breakEvents(harness, "node-3", since: slowSince) }), \
                node-1's \(Result { try Self.breakEvents(harness, "node-1", since: slowSince) }), \
                node-3's log: \(harness.log("node-3").suffix(2_000))
                """)
            #expect(try Set(Self.breaks(harness, "node-3", since: slowSince)) == ["gpt-key-2"])
            _ = try await harness.send("DELETE", mock + "/mock/keys/am-2")
            try await Task.sleep(for: .seconds(3))

            // Every key slows down together (the provider's slow hour): none is broken.
            let sharedSince = Self.nowMillis
            for suffix in ["am-1", "am-2", "am-3"] {
                #expect(
                    try await harness.send("PUT", mock + "/mock/keys/\(suffix)", body: #"{"latency_ms": 80}"#).0 == 200)
            }
            try await Task.sleep(for: .seconds(8))
            let sharedBreaks = try Self.breakEvents(harness, "node-1", since: sharedSince).map {
                "\($0.key): \($0.detail)"
            }
            var outcomes: [LoadDriver.Outcome] = []
            for load in loads { outcomes.append(await load.stop()) }
            #expect(sharedBreaks.isEmpty, "a shared slowdown broke \(sharedBreaks)")
            let failures = outcomes.map(\.failures).reduce(0, +)
            #expect(failures == 0, "clients saw errors: \(outcomes.map(\.statuses))")
            await harness.stopAll()
        }

        /// The measured outage: a default node (no alerts configured, two keys, an upstream far
        /// faster than the node) under 64 concurrent clients, with windows short enough that the
        /// latency rule judges many times over.
        @Test func defaultNodeUnderLoad_breaksNoKey_andAnswersNo503() async throws {
            let harness = try ClusterHarness(nodes: 1, label: "breaker-load")
            defer { Task { await harness.stopAll() } }
            let mock = try await harness.startMock()
            let config = """
                {"providers": {"openai": {"type": "openai", "base_url": "\(mock)/v1",
                   "keys": [{"name": "gpt-key-1", "value": "sk-upstream-1", "models": ["gpt-4o-mini"]},
                            {"name": "gpt-key-2", "value": "sk-upstream-2", "models": ["gpt-4o-mini"]}]}},
                 "virtual_keys": [{"name": "team-a", "value": "\(Self.token)", "models": ["*"]}],
                 "cluster": {"load_balancing": {"health_check_interval": "200ms", "performance_window": "500ms",
                                                "min_samples": 10}}}
                """
            try harness.startAll(config: config, key: ClusterTests.key())
            #expect(await harness.allAlive(), "\(harness.log("node-1"))")
            let since = Self.nowMillis
            let load = LoadDriver()
            load.start(
                url: harness.url("node-1", "/v1/chat/completions"), token: Self.token, body: Self.body, rate: 100_000,
                workers: 64)
            try await Task.sleep(for: .seconds(15))
            let outcome = await load.stop()
            #expect(outcome.ok > 500, "\(outcome.statuses)")
            #expect(outcome.statuses[503] == nil, "\(outcome.statuses)")
            #expect(outcome.failures == 0, "\(outcome.statuses), transport \(outcome.transportErrors)")
            #expect(try Self.breaks(harness, "node-1", since: since).isEmpty)
            await harness.stopAll()
        }
    }
}

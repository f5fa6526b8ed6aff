import Foundation
import Testing

extension MultiProcess {
    /// The gateway on a real 3-node cluster with the real mock provider.
    @Suite(.serialized, .timeLimit(.minutes(3))) struct GatewayClusterTests {
        static let token = "sk-team-a-cluster-test"
        static let adminToken = "admin-cluster-test"

        static func config(mock: String) -> String {
            """
            {"providers": {"openai": {"type": "openai", "base_url": "\(mock)/v1",
               "keys": [{"name": "gpt-key-1", "value": "sk-upstream-1", "models": ["gpt-4o-mini"], "weight": 0.7},
                        {"name": "gpt-key-2", "value": "sk-upstream-2", "models": ["gpt-4o-mini"], "weight": 0.3}]}},
             "virtual_keys": [{"name": "team-a", "value": "\(token)", "models": ["*"], "limits": {"rpm": 300}}],
             "admin": {"token": "\(adminToken)"},
             "cluster": {"gossip": {"interval": "200ms", "timeout": "1s"}, "failover": {"detection_threshold": 2}}}
            """
        }

        @Test func aClusterWideLimit_holdsAcrossNodes_andReplayReproducesIt() async throws {
            let harness = try ClusterHarness(nodes: 3, label: "gateway-limit")
            defer { Task { await harness.stopAll() } }
            let mock = try await harness.startMock()
            try harness.startAll(config: Self.config(mock: mock), key: ClusterTests.key())
            let names = harness.nodes.map(\.name)
            let formed = await harness.allAlive()
            #expect(formed, "\(harness.log("node-1"))")
            // Stay inside one minute window: the limit is per minute.
            let intoMinute = Date().timeIntervalSince1970.truncatingRemainder(dividingBy: 60)
            if intoMinute > 35 { try await Task.sleep(for: .seconds(61 - intoMinute)) }

            let body = #"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}]}"#
            let statuses = try await withThrowingTaskGroup(of: [Int].self) { group in
                // 12 clients, each sending 50 requests round robin over the three nodes.
                for client in 0..<12 {
                    group.addTask {
                        var out: [Int] = []
                        for i in 0..<50 {
                            let node = names[(client + i) % names.count]
                            out.append(
                                try await harness.post(node, "/v1/chat/completions", token: Self.token, body: body).0)
                        }
                        return out
                    }
                }
                var all: [Int] = []
                for try await s in group { all += s }
                return all
            }
            let admitted = statuses.filter { $0 == 200 }.count
            let limited = statuses.filter { $0 == 429 }.count
            #expect(statuses.count == 600)
            #expect(admitted + limited == 600, "unexpected statuses: \(Set(statuses))")
            #expect((300...303).contains(admitted), "admitted \(admitted) of 600 with a 300 RPM limit on 3 nodes")

            // Every node's counters converge; replaying any node's log gives the same numbers.
            let converged = await harness.eventually(.seconds(15)) {
                var seen: Set<Int> = []
                for n in names {
                    let metrics = try await harness.json(n, "/cluster/metrics")
                    let limits = metrics["limits"] as? [String: Any]
                    seen.insert(((limits?["vk:team-a"] as? [String: Any])?["requests"] as? NSNumber)?.intValue ?? -1)
                }
                return seen == [admitted]
            }
            #expect(converged)
            // An operator weight change on one node: every node routes by it, and every node's
            // replay of its own log gives the weight /cluster/metrics shows.
            let (changed, _) = try await harness.send(
                "PUT", harness.url("node-2", "/admin/keys/gpt-key-2/weight?wait=replicated"), token: Self.adminToken,
                body: #"{"weight": 0.45, "reason": "replay check"}"#)
            #expect(changed == 200)
            for n in names {
                let shown = await harness.eventually(.seconds(10)) {
                    let weights = try await harness.json(n, "/cluster/metrics")["weights"] as? [String: Any]
                    return (weights?["gpt-key-2"] as? NSNumber)?.doubleValue == 0.45
                        && (weights?["gpt-key-1"] as? NSNumber)?.doubleValue == 0.7
                }
                #expect(shown, "\(n) does not show the new weight")
                let replayed = try harness.replay(n, view: "weights")
                let weights = (replayed["views"] as? [String: Any])?["weights"] as? [String: Any]
                let key2 = weights?["gpt-key-2"] as? [String: Any]
                #expect((key2?["weight"] as? NSNumber)?.doubleValue == 0.45, "replay of \(n): \(weights ?? [:])")
                #expect(key2?["reason"] as? String == "replay check")
            }
            for n in names {
                let replayed = try harness.replay(n, view: "limits")
                let text = String(describing: replayed)
                #expect(text.contains("vk:team-a"), "\(text.prefix(500))")
                let total = Self.requests(in: replayed, key: "vk:team-a")
                #expect(total == admitted, "replay of \(n) counted \(total)")
            }
            await harness.stopAll()
        }

        /// Sums the `vk:team-a` request counts of the newest window in `bifrost-replay --view limits`.
        static func requests(in replay: [String: Any], key: String) -> Int {
            guard let limits = (replay["views"] as? [String: Any])?["limits"] as? [[String: Any]] else { return -1 }
            let rows = limits.filter { $0["key"] as? String == key }
            guard
                let newest = rows.max(by: {
                    (($0["window_start"] as? String) ?? "") < (($1["window_start"] as? String) ?? "")
                })
            else { return -1 }
            return (newest["total"] as? NSNumber)?.intValue ?? -1
        }
    }
}

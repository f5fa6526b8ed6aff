import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

extension MultiProcess {
    /// A node whose event writer falls behind refuses new requests with 503 and `Retry-After`
    /// instead of queueing their events without bound (issue F, point 5).
    @Suite(.serialized, .timeLimit(.minutes(2))) struct OverloadTests {
        static let token = "sk-overload-test"

        @Test func fullEventQueue_answers503WithRetryAfter_countsIt_andServesTheRest() async throws {
            let harness = try ClusterHarness(nodes: 1, label: "overload")
            defer { Task { await harness.stopAll() } }
            let mock = try await harness.startMock()
            let config = """
                {"providers": {"openai": {"type": "openai", "base_url": "\(mock)/v1",
                   "keys": [{"name": "gpt-key-1", "value": "sk-upstream-1", "models": ["gpt-4o-mini"]}]}},
                 "virtual_keys": [{"name": "team-a", "value": "\(Self.token)", "models": ["*"], "limits": {"rpm": 1000000}}],
                 "gateway": {"max_pending_events": 1}}
                """
            try harness.startAll(config: config, key: ClusterTests.key())
            #expect(await harness.allAlive(), "\(harness.log("node-1"))")
            let body = #"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "queue"}]}"#
            let load = LoadDriver()
            load.start(
                url: harness.url("node-1", "/v1/chat/completions"), token: Self.token, body: body, rate: 100_000,
                workers: 32)
            try await Task.sleep(for: .seconds(4))
            let outcome = await load.stop()
            let refused = outcome.statuses[503] ?? 0
            #expect(refused > 0, "\(outcome.statuses)")
            #expect(outcome.ok > 0, "\(outcome.statuses)")
            #expect(outcome.ok + refused == outcome.statuses.values.reduce(0, +), "\(outcome.statuses)")
            #expect(outcome.transportErrors == 0)

            // One refusal as a client sees it.
            var shape: (Int, String?, [String: Any]?) = (0, nil, nil)
            let flood = LoadDriver()
            flood.start(
                url: harness.url("node-1", "/v1/chat/completions"), token: Self.token, body: body, rate: 100_000,
                workers: 32)
            for _ in 0..<200 where shape.0 != 503 {
                var request = URLRequest(url: URL(string: harness.url("node-1", "/v1/chat/completions"))!)
                request.httpMethod = "POST"
                request.setValue("Bearer \(Self.token)", forHTTPHeaderField: "Authorization")
                request.httpBody = Data(body.utf8)
                let (data, response) = try await URLSession.shared.data(for: request)
                let http = response as! HTTPURLResponse
                shape = (
                    http.statusCode, http.value(forHTTPHeaderField: "retry-after"),
                    (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["error"] as? [String: Any]
                )
            }
            _ = await flood.stop()
            #expect(shape.0 == 503)
            #expect(shape.1 == "1")
            #expect(shape.2?["code"] as? String == "overloaded")

            let metrics = String(decoding: try await harness.request("node-1", "GET", "/metrics").1, as: UTF8.self)
            let counted = metrics.split(separator: "\n").first {
                $0.hasPrefix("bifrost_overload_rejections_total{reason=\"event_queue\"}")
            }
            let value = counted.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
            #expect(value >= refused + 1, "\(counted ?? "no overload counter")")
            // Every request served left its usage in the log: nothing accepted was dropped.
            let usage = try harness.dumpEvents("node-1", kind: "usage.recorded")
            #expect(usage.count >= outcome.ok, "\(usage.count) usage events for \(outcome.ok) served")
            await harness.stopAll()
        }
    }
}

import Prometheus
import Testing

@testable import Gateway

/// The per-request series are made once and reused: what Prometheus exposes is the sum of every
/// call, per label set, whether a series was cached or just made.
@Suite struct GatewayMetricsTests {
    static func exposition(_ registry: PrometheusCollectorRegistry) -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    static func value(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    @Test func requestCounters_accumulatePerLabelSet() {
        let registry = PrometheusCollectorRegistry()
        let metrics = GatewayMetrics(registry: registry)
        for _ in 0..<3 { metrics.requestFinished(provider: "openai", model: "gpt-4o-mini", key: "k1", status: 200) }
        metrics.requestFinished(provider: "openai", model: "gpt-4o-mini", key: "k1", status: 429)
        metrics.requestFinished(provider: "openai", model: "gpt-4o-mini", key: "k2", status: 200)
        let text = Self.exposition(registry)
        let series = #"bifrost_requests_total{provider="openai",model="gpt-4o-mini",key=""#
        #expect(Self.value(text, series + #"k1",status="200"}"#) == 3)
        #expect(Self.value(text, series + #"k1",status="429"}"#) == 1)
        #expect(Self.value(text, series + #"k2",status="200"}"#) == 1)
    }

    @Test func tokens_countEachDirection_skipZero() {
        let registry = PrometheusCollectorRegistry()
        let metrics = GatewayMetrics(registry: registry)
        metrics.tokens(input: 10, output: 4, provider: "openai", model: "m")
        metrics.tokens(input: 5, output: 0, provider: "openai", model: "m")
        let text = Self.exposition(registry)
        #expect(Self.value(text, #"bifrost_tokens_total{provider="openai",model="m",direction="input"}"#) == 15)
        #expect(Self.value(text, #"bifrost_tokens_total{provider="openai",model="m",direction="output"}"#) == 4)
    }

    @Test func activeRequests_andOverhead_areLiveFromTheStart() {
        let registry = PrometheusCollectorRegistry()
        let metrics = GatewayMetrics(registry: registry)
        metrics.requestStarted()
        metrics.requestStarted()
        metrics.requestEnded()
        metrics.overhead(.microseconds(30))
        let text = Self.exposition(registry)
        #expect(Self.value(text, "bifrost_active_requests") == 1)
        #expect(Self.value(text, "bifrost_gateway_overhead_seconds_count") == 1)
    }

    @Test func breakerState_publishesOnlyTheCurrentState() {
        let registry = PrometheusCollectorRegistry()
        let metrics = GatewayMetrics(registry: registry)
        metrics.breakerState(key: "k1", state: "closed")
        metrics.breakerState(key: "k1", state: "open")
        metrics.breakerState(key: "k1", state: "open")
        var text = Self.exposition(registry)
        #expect(Self.value(text, #"bifrost_breaker_state{key="k1",state="open"}"#) == 1)
        #expect(Self.value(text, #"bifrost_breaker_state{key="k1",state="closed"}"#) == 0)
        metrics.breakerState(key: "k1", state: "closed")
        text = Self.exposition(registry)
        #expect(Self.value(text, #"bifrost_breaker_state{key="k1",state="open"}"#) == 0)
        #expect(Self.value(text, #"bifrost_breaker_state{key="k1",state="closed"}"#) == 1)
    }

    @Test func labelValues_loseControlCharacters_andAreCapped() {
        #expect(GatewayMetrics.label("gpt-4o-mini") == "gpt-4o-mini")
        #expect(GatewayMetrics.label("gpt\u{0}x\ny\u{7F}") == "gptxy")
        #expect(GatewayMetrics.label(String(repeating: "m", count: 500)).count == 128)
    }
}

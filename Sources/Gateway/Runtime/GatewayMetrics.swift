import Prometheus
import Synchronization

/// The gateway's Prometheus series (DESIGN §4, issue C "Metrics"). Secrets never appear in
/// labels: keys are named by their model-key id, virtual keys by name.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let active = Atomic<Int>(0)

    static let latencyBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5),
        .seconds(5), .seconds(10), .seconds(30), .seconds(60),
    ]
    static let overheadBuckets: [Duration] = [
        .microseconds(5), .microseconds(10), .microseconds(15), .microseconds(20), .microseconds(25),
        .microseconds(30), .microseconds(40), .microseconds(50), .microseconds(65), .microseconds(80),
        .microseconds(100), .microseconds(150), .microseconds(200), .microseconds(300), .microseconds(500),
        .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10),
    ]

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    public func requestFinished(provider: String, model: String, key: String, status: Int) {
        registry.makeCounter(
            name: "bifrost_requests_total",
            labels: [("provider", provider), ("model", model), ("key", key), ("status", String(status))],
            help: "Client requests by provider, model, model-key id and HTTP status returned"
        ).increment()
    }

    public func upstreamLatency(_ d: Duration, provider: String) {
        registry.makeDurationHistogram(
            name: "bifrost_upstream_latency_seconds", labels: [("provider", provider)],
            buckets: Self.latencyBuckets, help: "Upstream call duration (to the end of the response)"
        ).record(d)
    }

    public func overhead(_ d: Duration) {
        registry.makeDurationHistogram(
            name: "bifrost_gateway_overhead_seconds", labels: [], buckets: Self.overheadBuckets,
            help: "Time spent in the gateway per request, excluding upstream calls and backoff"
        ).record(d)
    }

    public func timeToFirstToken(_ d: Duration, provider: String) {
        registry.makeDurationHistogram(
            name: "bifrost_stream_time_to_first_token_seconds", labels: [("provider", provider)],
            buckets: Self.latencyBuckets, help: "Stream start to the first content chunk"
        ).record(d)
    }

    public func tokens(input: Int, output: Int, provider: String, model: String) {
        if input > 0 {
            registry.makeCounter(
                name: "bifrost_tokens_total",
                labels: [("provider", provider), ("model", model), ("direction", "input")],
                help: "Tokens used, by direction"
            ).increment(by: Int64(input))
        }
        if output > 0 {
            registry.makeCounter(
                name: "bifrost_tokens_total",
                labels: [("provider", provider), ("model", model), ("direction", "output")],
                help: "Tokens used, by direction"
            ).increment(by: Int64(output))
        }
    }

    public func retry(reason: String) {
        registry.makeCounter(
            name: "bifrost_retries_total", labels: [("reason", reason)], help: "Upstream attempts retried, by reason"
        ).increment()
    }

    public func fallback(from: String, to: String) {
        registry.makeCounter(
            name: "bifrost_fallbacks_total", labels: [("from", from), ("to", to)],
            help: "Requests that fell back to another model"
        ).increment()
    }

    public func limitRejected(scope: String, unit: String) {
        registry.makeCounter(
            name: "bifrost_limit_rejections_total", labels: [("scope", scope), ("unit", unit)],
            help: "Requests refused by a rate limit (scope vk/pk/pm, unit requests/tokens)"
        ).increment()
    }

    public func breakerState(key: String, state: String) {
        for s in ["closed", "open", "half_open"] {
            registry.makeGauge(
                name: "bifrost_breaker_state", labels: [("key", key), ("state", s)],
                help: "Circuit breaker state per provider key (1 for the current state)"
            ).set(Double(s == state ? 1 : 0))
        }
    }

    public func migration(strategy: String, outcome: String) {
        registry.makeCounter(
            name: "bifrost_request_migrations_total", labels: [("strategy", strategy), ("outcome", outcome)],
            help: "Requests this node tried to migrate to a peer, by strategy and outcome"
        ).increment()
    }

    public func configRejected() {
        registry.makeCounter(
            name: "bifrost_config_updates_rejected_total",
            help: "Configuration updates refused (signature or validation)"
        ).increment()
    }

    /// Requests in progress; the returned value is the new count.
    @discardableResult
    public func requestStarted() -> Int {
        let n = active.add(1, ordering: .relaxed).newValue
        registry.makeGauge(name: "bifrost_active_requests", help: "Requests in progress").set(Double(n))
        return n
    }

    public func requestEnded() {
        let n = active.subtract(1, ordering: .relaxed).newValue
        registry.makeGauge(name: "bifrost_active_requests", help: "Requests in progress").set(Double(n))
    }

    public var activeRequests: Int { active.load(ordering: .relaxed) }
}

import Prometheus
import Synchronization

/// Series of one metric already made in the registry, by their label values: the per-request
/// series are looked up here instead of being validated and made again on every request.
final class SeriesCache<Series: AnyObject & Sendable>: Sendable {
    private let series = Mutex<[[String]: Series]>([:])

    func callAsFunction(_ labelValues: [String], make: () -> Series) -> Series {
        series.withLock { cache in
            if let existing = cache[labelValues] { return existing }
            let made = make()
            cache[labelValues] = made
            return made
        }
    }
}

/// The gateway's Prometheus series (DESIGN §4, issue C "Metrics"). Secrets never appear in
/// labels: keys are named by their model-key id, virtual keys by name.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let active = Atomic<Int>(0)
    private let activeGauge: Gauge
    private let overheadHistogram: DurationHistogram
    private let requests = SeriesCache<Counter>()
    private let upstreamLatencies = SeriesCache<DurationHistogram>()
    private let firstTokens = SeriesCache<DurationHistogram>()
    private let tokenCounters = SeriesCache<Counter>()
    private let costCounters = SeriesCache<Counter>()
    private let unpricedCounters = SeriesCache<Counter>()
    private let budgetGauges = SeriesCache<Gauge>()
    /// The breaker state last published per key: the gauges change only when it does.
    private let breakerStates = Mutex<[String: String]>([:])

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

    static func name(_ metricName: String, help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: metricName, unitName: "", helpText: help)
    }

    public init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        activeGauge = registry.makeGauge(
            descriptor: Self.name("bifrost_active_requests", help: "Requests in progress"))
        overheadHistogram = registry.makeDurationHistogram(
            descriptor: Self.name(
                "bifrost_gateway_overhead_seconds",
                help: "Time spent in the gateway per request, excluding upstream calls and backoff"), labels: [],
            buckets: Self.overheadBuckets)
    }

    public func requestFinished(provider: String, model: String, key: String, status: Int) {
        let statusText = String(status)
        requests([provider, model, key, statusText]) {
            registry.makeCounter(
                descriptor: Self.name(
                    "bifrost_requests_total",
                    help: "Client requests by provider, model, model-key id and HTTP status returned"),
                labels: [
                    ("provider", Self.label(provider)), ("model", Self.label(model)), ("key", Self.label(key)),
                    ("status", statusText),
                ])
        }.increment()
    }

    /// A label value as the exposition format carries it well: no control characters (a NUL or
    /// a newline in a configured name), at most 128 characters.
    static func label(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) || value.utf8.count > 128 else { return value }
        return String(
            String.UnicodeScalarView(value.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }).prefix(128))
    }

    public func upstreamLatency(_ d: Duration, provider: String) {
        upstreamLatencies([provider]) {
            registry.makeDurationHistogram(
                descriptor: Self.name(
                    "bifrost_upstream_latency_seconds", help: "Upstream call duration (to the end of the response)"),
                labels: [("provider", Self.label(provider))],
                buckets: Self.latencyBuckets)
        }.record(d)
    }

    public func overhead(_ d: Duration) {
        overheadHistogram.record(d)
    }

    public func timeToFirstToken(_ d: Duration, provider: String) {
        firstTokens([provider]) {
            registry.makeDurationHistogram(
                descriptor: Self.name(
                    "bifrost_stream_time_to_first_token_seconds", help: "Stream start to the first content chunk"),
                labels: [("provider", Self.label(provider))],
                buckets: Self.latencyBuckets)
        }.record(d)
    }

    public func tokens(input: Int, output: Int, provider: String, model: String) {
        for (direction, count) in [("input", input), ("output", output)] where count > 0 {
            tokenCounters([provider, model, direction]) {
                registry.makeCounter(
                    descriptor: Self.name("bifrost_tokens_total", help: "Tokens used, by direction"),
                    labels: [
                        ("provider", Self.label(provider)), ("model", Self.label(model)), ("direction", direction),
                    ])
            }.increment(by: Int64(count))
        }
    }

    /// What a priced request cost; virtual keys are named by their configured name.
    public func cost(microUSD: UInt64, provider: String, model: String, virtualKey: String) {
        costCounters([provider, model, virtualKey]) {
            registry.makeCounter(
                descriptor: Self.name(
                    "bifrost_cost_usd_total",
                    help: "What priced requests cost in USD, by provider, model and virtual key"),
                labels: [
                    ("provider", Self.label(provider)), ("model", Self.label(model)),
                    ("virtual_key", Self.label(virtualKey)),
                ])
        }.increment(by: Double(microUSD) / 1_000_000)
    }

    /// A request served by a target with no price: its cost is unknown.
    public func unpriced(provider: String, model: String) {
        unpricedCounters([provider, model]) {
            registry.makeCounter(
                descriptor: Self.name(
                    "bifrost_unpriced_requests_total",
                    help: "Requests served by a model with no price (cost unknown, not counted as $0)"),
                labels: [("provider", Self.label(provider)), ("model", Self.label(model))])
        }.increment()
    }

    /// What is left of a virtual key's budget in its current period.
    public func budgetRemaining(virtualKey: String, _ status: LimitStatus) {
        budgetGauges([virtualKey]) {
            registry.makeGauge(
                descriptor: Self.name(
                    "bifrost_budget_remaining_usd",
                    help: "What is left of a virtual key's budget in its current period, cluster-wide, in USD"),
                labels: [("virtual_key", Self.label(virtualKey))])
        }.set(Double(status.remaining) / 1_000_000)
    }

    /// Configured targets with no price.
    public func unpricedTargets(_ count: Int) {
        registry.makeGauge(
            descriptor: Self.name(
                "bifrost_unpriced_targets", help: "Configured (provider key, model) pairs with no price"), labels: []
        ).set(Int64(count))
    }

    public func retry(reason: String) {
        registry.makeCounter(
            descriptor: Self.name("bifrost_retries_total", help: "Upstream attempts retried, by reason"),
            labels: [("reason", reason)]
        ).increment()
    }

    public func fallback(from: String, to: String) {
        registry.makeCounter(
            descriptor: Self.name("bifrost_fallbacks_total", help: "Requests that fell back to another model"),
            labels: [("from", from), ("to", to)]
        ).increment()
    }

    public func limitRejected(scope: String, unit: String) {
        registry.makeCounter(
            descriptor: Self.name(
                "bifrost_limit_rejections_total",
                help: "Requests refused by a rate limit (scope vk/pk/pm, unit requests/tokens)"),
            labels: [("scope", scope), ("unit", unit)]
        ).increment()
    }

    /// A connection or request the HTTP front refused or closed (`reason`: `header_timeout`,
    /// `body_timeout`, `idle_timeout`, `body_too_large`, `headers_too_large`, `malformed`,
    /// `max_connections`).
    public func httpRejected(reason: String) {
        registry.makeCounter(
            descriptor: Self.name(
                "bifrost_http_rejections_total",
                help: "Client connections and requests the HTTP front refused or closed, by reason"),
            labels: [("reason", reason)]
        ).increment()
    }

    /// A request refused before it started because the node could not take more (`reason`:
    /// `event_queue`).
    public func overloadRejected(reason: String) {
        registry.makeCounter(
            descriptor: Self.name(
                "bifrost_overload_rejections_total", help: "Requests refused with 503 because the node was overloaded"),
            labels: [("reason", reason)]
        ).increment()
    }

    /// An attempt sent to a key whose breaker is open because every key the request could use was.
    public func breakerPanic() {
        registry.makeCounter(
            descriptor: Self.name(
                "bifrost_breaker_panic_total",
                help: "Attempts routed past open breakers because every usable key of the model was open")
        ).increment()
    }

    public func breakerState(key: String, state: String) {
        breakerStates.withLock { states in
            guard states[key] != state else { return }
            states[key] = state
            for s in ["closed", "open", "half_open"] {
                registry.makeGauge(
                    descriptor: Self.name(
                        "bifrost_breaker_state",
                        help: "Circuit breaker state per provider key (1 for the current state)"
                    ),
                    labels: [("key", Self.label(key)), ("state", s)]
                ).set(Double(s == state ? 1 : 0))
            }
        }
    }

    public func migration(strategy: String, outcome: String) {
        registry.makeCounter(
            descriptor: Self.name(
                "bifrost_request_migrations_total",
                help: "Requests this node tried to migrate to a peer, by strategy and outcome"),
            labels: [("strategy", strategy), ("outcome", outcome)]
        ).increment()
    }

    public func weightChanged(actor: String) {
        registry.makeCounter(
            descriptor: Self.name(
                "bifrost_weight_changes_total",
                help: "weight.changed events this node recorded, by actor (controller or operator)"),
            labels: [("actor", actor)]
        ).increment()
    }

    public func alertTransition(rule: String, firing: Bool) {
        registry.makeCounter(
            descriptor: Self.name(
                "bifrost_alert_transitions_total", help: "alert.fired events this node recorded, by rule and transition"
            ), labels: [("rule", rule), ("state", firing ? "fired" : "cleared")]
        ).increment()
    }

    /// Alerts firing per rule, from the alerts view (every node's transitions).
    public func alertsFiring(_ byRule: [String: Int], rules: Set<String>) {
        for rule in rules.union(byRule.keys) {
            registry.makeGauge(
                descriptor: Self.name("bifrost_alerts_firing", help: "Alerts firing now, by rule"),
                labels: [("rule", rule)]
            ).set(Double(byRule[rule] ?? 0))
        }
    }

    /// 1 while this node's event log refuses writes for lack of room.
    public func logFull(_ full: Bool) {
        registry.makeGauge(
            descriptor: Self.name(
                "bifrost_log_full",
                help: "1 while this node's event log refuses writes (retention.max_log_bytes reached or the disk full)")
        ).set(full ? 1.0 : 0.0)
    }

    public func webhookFailed() {
        registry.makeCounter(
            descriptor: Self.name("bifrost_alert_webhook_failures_total", help: "Alert webhook deliveries that failed")
        ).increment()
    }

    public func configRejected() {
        registry.makeCounter(
            descriptor: Self.name(
                "bifrost_config_updates_rejected_total", help: "Configuration updates refused (signature or validation)"
            )
        ).increment()
    }

    /// Requests in progress; the returned value is the new count.
    @discardableResult
    public func requestStarted() -> Int {
        let n = active.add(1, ordering: .relaxed).newValue
        activeGauge.set(Double(n))
        return n
    }

    public func requestEnded() {
        activeGauge.set(Double(active.subtract(1, ordering: .relaxed).newValue))
    }

    public var activeRequests: Int { active.load(ordering: .relaxed) }
}

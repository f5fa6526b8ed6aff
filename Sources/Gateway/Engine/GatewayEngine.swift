import EventLog
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The request path of a node: authentication, cluster-wide admission, weighted routing over
/// healthy keys with retries and fallbacks, and the events every request leaves in the log.
///
/// Protocol logic lives in pure types (`ClusterLimiter`, `SmoothWeightedRoundRobin`,
/// `CircuitBreaker`, `RetryPolicy`); this class holds them behind locks and performs their
/// decisions. It is also a `Service`: it follows the log for configuration and weight changes
/// and confirms admissions to the limiter as peers' acknowledgements arrive (nothing polls).
public final class GatewayEngine: Service, Sendable {
    public let nodeName: String
    public let baseConfig: BifrostConfig
    /// The node's configuration file as read, for `GET /admin/config` (redacted there).
    public let fileDocument: [UInt8]?
    let store: EventStore
    let cluster: any GatewayCluster
    let upstream: UpstreamClient
    public let recorder: EventRecorder
    public let metrics: GatewayMetrics
    let logger: Logger
    let runtimeState: Mutex<RuntimeConfig>
    let routing: Mutex<RoutingState>
    let admissions = Admissions()
    let rng: Mutex<SplitMix64>
    let wallClock: any WallClock
    public let hop: HopAuthenticator
    /// Seals the secrets of configuration updates and opens them when applying one; nil
    /// without a cluster key.
    let sealer: SecretSealer?
    let draining = Atomic<Bool>(false)
    let migrationWindow = Mutex(MigrationWindow())
    /// Signalled on every change of what peers acknowledged (`?wait=replicated` sleeps on it).
    let acknowledgements = ChangeSignal()

    public init(
        config: BifrostConfig, fileDocument: [UInt8]?, store: EventStore, cluster: any GatewayCluster,
        upstream: UpstreamClient,
        metrics: GatewayMetrics, logger: Logger, hop: HopAuthenticator = HopAuthenticator(base64ClusterKeys: []),
        sealer: SecretSealer? = nil, wallClock: any WallClock = SystemWallClock()
    ) throws(ConfigError) {
        self.hop = hop
        self.sealer = sealer
        nodeName = config.cluster.nodeID
        baseConfig = config
        self.fileDocument = fileDocument
        self.store = store
        self.cluster = cluster
        self.upstream = upstream
        self.metrics = metrics
        self.logger = logger
        self.wallClock = wallClock
        let runtime = try Self.initialRuntime(config: config, store: store, sealer: sealer, logger: logger)
        runtimeState = Mutex(runtime)
        routing = Mutex(
            RoutingState(
                runtime: runtime, views: store.viewSnapshot, settings: Self.breakerSettings(config),
                maxEjectionFraction: Double(config.cluster.loadBalancing.maxEjectionPercent) / 100,
                nowMillis: wallClock.nowMillis()))
        rng = Mutex(SplitMix64(seed: UInt64.random(in: 1...UInt64.max)))
        recorder = EventRecorder(store: store, logger: logger, capacity: config.gateway.maxPendingEvents) {
            [admissions, cluster] maxSeq, last in
            guard maxSeq > 0 else { return }
            // Alone, the admissions are visible cluster-wide once committed; otherwise once every
            // live peer acknowledged the batch (acknowledgements may have arrived already).
            if cluster.liveNodeCount <= 1 {
                admissions.confirm(seq: maxSeq)
            } else {
                admissions.awaitConfirmation(event: last.hlc, seq: maxSeq)
                admissions.confirmAcknowledged(by: cluster)
            }
        }
        metrics.logFull(false)
        recorder.onWritability { [weak self] writable, reason in self?.logWritabilityChanged(writable, reason: reason) }
        for (key, reason) in runtime.unusableKeys.sorted(by: { $0.key < $1.key }) {
            logger.warning("provider key unusable", metadata: ["key.id": .string(key), "reason": .string(reason)])
        }
        if !runtime.virtualKeys.isEnabled {
            logger.warning("no virtual_keys configured: the API is open to any client that reaches this node")
        }
        reportPrices(runtime)
    }

    /// Flags every configured target without a price: its requests are served and counted as
    /// unpriced, never as $0.
    func reportPrices(_ runtime: RuntimeConfig) {
        metrics.unpricedTargets(runtime.prices.unpriced.count)
        for (keyID, model) in runtime.prices.unpriced {
            logger.warning(
                "model has no price: its requests are recorded as unpriced; add it under pricing.models",
                metadata: ["key.id": .string(keyID), "model": .string(model)])
        }
        for key in runtime.config.virtualKeys where key.budget != nil {
            let patterns = key.models.map(ModelPattern.init)
            for (keyID, model) in runtime.prices.unpriced {
                guard let entry = runtime.catalog.keys[keyID],
                    let target = runtime.catalog.byModel[model]?.first(where: { $0.keyID == entry.key.id }),
                    patterns.contains(where: { $0.allows(requested: model, target: target) })
                else { continue }
                logger.warning(
                    "a budgeted virtual key can reach a model with no price: those requests are not bounded by its budget",
                    metadata: [
                        "virtual_key": .string(key.name), "key.id": .string(keyID), "model": .string(model),
                    ])
            }
        }
    }

    /// The file config, or the newest trusted `config.updated` already in the log.
    static func initialRuntime(
        config: BifrostConfig, store: EventStore, sealer: SecretSealer?, logger: Logger
    ) throws(ConfigError)
        -> RuntimeConfig
    {
        let base = try RuntimeConfig(config, sealer: sealer)
        guard let update = store.viewSnapshot.config else { return base }
        do {
            return try RuntimeConfig.merging(
                document: update.value.document, into: config, sourceEvent: update.event, sealer: sealer)
        } catch {
            logger.error(
                "the configuration in the log does not apply on this node; using the file config",
                metadata: ["event.id": .string("\(update.event)"), "error": .string(error.description)])
            return base
        }
    }

    static func breakerSettings(_ config: BifrostConfig) -> CircuitBreaker.Settings {
        var s = CircuitBreaker.Settings()
        s.openDuration = config.cluster.failover.recoveryTimeout
        return s
    }

    public var runtime: RuntimeConfig { runtimeState.withLock { $0 } }

    /// The node is draining: requests whose strategy allows it move to a peer.
    public func setDraining() { draining.store(true, ordering: .relaxed) }

    public var isDraining: Bool { draining.load(ordering: .relaxed) }

    /// Share of requests migrated to a peer over the last minute.
    public var migrationRate: Double { migrationWindow.withLock { $0.rate(nowMillis: wallClock.nowMillis()) } }

    public func run() async throws {
        let feed = store.committedEvents()
        await withDiscardingTaskGroup { group in
            group.addTask {
                for await batch in feed.cancelOnGracefulShutdown() {
                    let relevant = batch.contains {
                        switch $0.event.payload {
                        case .configUpdated, .weightChanged, .alertFired: true
                        default: false
                        }
                    }
                    if relevant { self.refreshFromViews() }
                }
            }
            group.addTask {
                // Each change of the peers' acknowledgements confirms the admissions they cover
                // and wakes whoever waits for replication.
                for await _ in self.cluster.acknowledgementChanges().cancelOnGracefulShutdown() {
                    self.confirmAcknowledged()
                    self.acknowledgements.signal()
                }
            }
            group.addTask { try? await self.recorder.run() }
            group.addTask { await self.runControlLoop() }
        }
    }

    /// Applies the newest configuration and weights from the views.
    func refreshFromViews() {
        let view = store.viewSnapshot
        var runtime = self.runtime
        if let update = view.config, update.event != runtime.sourceEvent {
            do {
                runtime = try RuntimeConfig.merging(
                    document: update.value.document, into: baseConfig, sourceEvent: update.event, sealer: sealer)
                runtimeState.withLock { $0 = runtime }
                logger.info("configuration applied", metadata: ["event.id": .string("\(update.event)")])
                reportPrices(runtime)
            } catch {
                metrics.configRejected()
                logger.error(
                    "a configuration update from the log does not apply on this node; keeping the previous one",
                    metadata: ["event.id": .string("\(update.event)"), "error": .string(error.description)])
            }
        }
        let now = wallClock.nowMillis()
        routing.withLock { $0.refresh(runtime: runtime, views: view, nowMillis: now) }
    }

    /// The node-local `log_full` alert: the log cannot record it, so it goes to the metrics,
    /// the node's log output and the alert webhook.
    func logWritabilityChanged(_ writable: Bool, reason: String) {
        metrics.logFull(!writable)
        metrics.alertTransition(rule: Self.logFullRule, firing: !writable)
        guard let webhook = runtime.config.alertWebhook else { return }
        let alert = AlertFired(
            rule: Self.logFullRule, scope: nodeName, firing: !writable, value: writable ? 0 : 1, action: "notify",
            detail: writable ? "the event log has room again" : reason)
        Task {
            if !(await upstream.postAlerts([alert], node: nodeName, to: webhook, logger: logger)) {
                metrics.webhookFailed()
            }
        }
    }

    static let logFullRule = "log_full"

    /// Confirms the admissions every live peer acknowledged.
    func confirmAcknowledged() { admissions.confirmAcknowledged(by: cluster) }

    // MARK: Limits

    /// The limit rules of a virtual key.
    static func rules(for key: VirtualKeyTable.Entry) -> [LimitRule] {
        rules(prefix: "vk:\(key.name)", key.limits, budget: key.budget)
    }

    static func rules(prefix: String, _ limits: BifrostConfig.Limits, budget: BudgetLimit? = nil) -> [LimitRule] {
        guard !limits.isEmpty || budget != nil else { return [] }
        return [
            LimitRule(
                key: prefix, requestsPerWindow: limits.rpm.map(UInt64.init),
                tokensPerWindow: limits.tpm.map(UInt64.init), windowMillis: 60_000,
                mode: limits.window == .sliding ? .sliding : .fixed, budget: budget)
        ]
    }

    /// Rules charged when `target` serves a request: its key's limits and its provider/model's.
    static func rules(for target: ModelTarget, runtime: RuntimeConfig) -> [LimitRule] {
        var rules: [LimitRule] = []
        if let key = runtime.catalog.keys[target.keyID]?.key {
            rules += Self.rules(prefix: "pk:\(key.id)", key.limits, budget: key.budget)
        }
        if let limits = runtime.catalog.providers[target.provider]?.modelLimits[target.model] {
            rules += Self.rules(prefix: "pm:\(target.provider)/\(target.model)", limits)
        }
        return rules
    }

    /// Admits one request against `rules` cluster-wide, recording the admission.
    func admit(_ rules: [LimitRule], estimateMicros: UInt64 = 0) -> AdmissionDecision {
        let now = wallClock.nowMillis()
        let live = max(1, cluster.liveNodeCount)
        let known = max(live, cluster.knownNodeCount)
        var rules = rules
        if live < known {
            switch baseConfig.cluster.failover.partitionPolicy {
            case .full:
                break
            case .scale:
                rules = rules.map { Self.scaled($0, live: live, known: known) }
            case .deny:
                let rule = rules[0]
                return .rejected(
                    RateLimitRejection(
                        rule: rule, unit: .requests,
                        status: LimitStatus(limit: rule.requestsPerWindow ?? 0, remaining: 0, resetMillis: 5_000)))
            }
        }
        // Budgets keep to this side's share of the headroom during a partition, except under `full`.
        let budgetKnown = baseConfig.cluster.failover.partitionPolicy == .full ? live : known
        let localID = store.nodeID
        let decision = store.withViews { view in
            admissions.limiter.withLock {
                $0.admit(
                    rules: rules, nowMillis: now, liveNodes: live, knownNodes: budgetKnown,
                    estimateMicros: estimateMicros,
                    counts: ViewCounts(view: view, local: localID))
            }
        }
        if case .admitted(let seq, let windows) = decision {
            var byWindow: [UInt64: [String]] = [:]
            for w in windows { byWindow[w.windowStart, default: []].append(w.key) }
            for (start, keys) in byWindow {
                recorder.recordAdmission(keys: keys, windowStartMillis: start, windowMillis: 60_000, seq: seq)
            }
        }
        return decision
    }

    /// A limit shrunk to this side's share of the cluster while members are unreachable.
    static func scaled(_ rule: LimitRule, live: Int, known: Int) -> LimitRule {
        var rule = rule
        func share(_ n: UInt64?) -> UInt64? {
            n.map { max(1, ($0 * UInt64(live) + UInt64(known) - 1) / UInt64(known)) }
        }
        rule.requestsPerWindow = share(rule.requestsPerWindow)
        rule.tokensPerWindow = share(rule.tokensPerWindow)
        return rule
    }

    /// The `x-ratelimit-*` figures of a rule right now.
    func limitStatus(_ rule: LimitRule) -> LimitStatus? {
        let now = wallClock.nowMillis()
        let live = max(1, cluster.liveNodeCount)
        let localID = store.nodeID
        return store.withViews { view in
            admissions.limiter.withLock {
                $0.status(rule: rule, nowMillis: now, liveNodes: live, counts: ViewCounts(view: view, local: localID))
            }
        }
    }
}

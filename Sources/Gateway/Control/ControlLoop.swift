import EventLog
import Logging
import ServiceLifecycle

/// The shell around `WeightController` and `AlertEvaluator` (DESIGN §4 "Weight controller",
/// the seed's "Alerting Rules"): every `load_balancing.health_check_interval` it reads the views
/// and the membership, lets the pure machines decide, and records their decisions as events.
///
/// Ownership is by rendezvous hash over the live members, so exactly one node decides for a
/// provider's keys (`provider/<name>`) and one evaluates the monitoring rules (`alerts`) while
/// the members agree on who is live. Every node routes by the resulting views: a
/// `weight.changed` moves the weights everywhere, and a `temporary_circuit_break` alert opens
/// the key's breaker everywhere until the time it carries.
struct ControlLoop {
    var controller: WeightController
    var evaluator: AlertEvaluator
    /// The configured alert rules the evaluator was built from (rebuilt when they change).
    var configuredRules: [BifrostConfig.AlertRule]
    let adjustsWeights: Bool

    init(config: BifrostConfig) {
        let configured = config.alerts.compactMap { try? $0.compiled() }
        adjustsWeights = config.cluster.loadBalancing.weightAdjustment == .auto
        controller = WeightController(settings: Self.controllerSettings(config, rules: configured))
        evaluator = AlertEvaluator(rules: Self.evaluatedRules(configured, adjustsWeights: adjustsWeights))
        configuredRules = config.alerts
    }

    /// The controller's thresholds from the seed, replaced by configured rules that carry its
    /// actions; its timings from `load_balancing` and `failover.recovery_timeout`.
    static func controllerSettings(
        _ config: BifrostConfig, rules: [AlertEvaluator.Rule]
    ) -> WeightController.Settings {
        var s = WeightController.Settings()
        s.adopt(rules)
        let lb = config.cluster.loadBalancing
        s.adjustmentInterval = lb.adjustmentInterval
        s.windowMillis = max(1, lb.performanceWindow.wholeMilliseconds)
        s.minimumSamples = UInt64(lb.minSamples)
        s.recoveryMinimumSamples = max(1, UInt64(lb.minSamples) / 4)
        s.temporaryBreakDuration = config.cluster.failover.recoveryTimeout
        s.maxEjectionFraction = Double(lb.maxEjectionPercent) / 100
        s.latencyFloorMillis = Double(lb.latencyFloor.wholeMicroseconds) / 1_000
        return s
    }

    /// The rules `AlertEvaluator` evaluates: the built-in monitoring rules (a configured rule of
    /// the same name replaces one), the configured notify rules, and — when the controller does
    /// not run — the rules whose actions it would take, reported only.
    static func evaluatedRules(_ configured: [AlertEvaluator.Rule], adjustsWeights: Bool) -> [AlertEvaluator.Rule] {
        let names = Set(configured.map(\.name))
        var rules = AlertEvaluator.monitoringRules.filter { !names.contains($0.name) }
        if adjustsWeights {
            rules += configured.filter { $0.action == .notify }
        } else {
            rules += AlertEvaluator.weightControllerRules.filter { !names.contains($0.name) }
            rules += configured.map { rule in
                var rule = rule
                rule.action = .notify
                return rule
            }
        }
        return rules
    }
}

/// What a control step knows about the members.
public struct ClusterMembership: Sendable, Equatable {
    /// Live members, this node included, sorted by name.
    public var live: [String]
    /// Members known and not `left`.
    public var known: Int
    /// Members suspect or dead.
    public var failed: Int
    /// Event propagation p99 between nodes, when measured.
    public var convergenceMillis: Double?
    /// Names of the members suspect or dead.
    public var failedNames: [String]

    public init(live: [String], known: Int, failed: Int, convergenceMillis: Double?, failedNames: [String] = []) {
        self.live = live
        self.known = known
        self.failed = failed
        self.convergenceMillis = convergenceMillis
        self.failedNames = failedNames
    }
}

extension GatewayEngine {
    /// Runs control steps until shutdown.
    func runControlLoop() async {
        var loop = ControlLoop(config: runtime.config)
        let interval = baseConfig.cluster.loadBalancing.healthCheckInterval
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            guard !Task.isCancelled && !isDraining else { continue }
            let config = runtime.config
            if config.alerts != loop.configuredRules { loop = ControlLoop(config: config) }
            await controlStep(&loop, config: config)
        }
    }

    /// One evaluation: decisions of the keys and rules this node owns, recorded as events.
    func controlStep(_ loop: inout ControlLoop, config: BifrostConfig) async {
        let now = wallClock.nowMillis()
        let membership = cluster.membership(localName: nodeName)
        let view = store.viewSnapshot
        let firing = Set(view.alerts.compactMap { $0.value.value.firing ? $0.key : nil })
        var records: [Event.Payload] = []
        var notices: [AlertFired] = []

        if loop.adjustsWeights {
            let owned = config.providers.filter {
                WeightController.owner(of: "provider/" + $0.name, among: membership.live) == nodeName
            }
            // Owned keys are judged against every key serving their models, whoever owns those.
            let peers = loop.controller.inputs(
                view: view, providers: config.providers, currentWeights: currentWeights, nowMillis: now)
            let ownedNames = Set(owned.map(\.name))
            let inputs = peers.filter { ownedNames.contains($0.provider) }
            let broken = Set(
                view.alerts.compactMap { key, entry in
                    key.rule == AlertEvaluator.temporaryBreakRule
                        && AlertEvaluator.isActive(key, entry.value, nowMillis: now) ? key.scope : nil
                })
            for decision in loop.controller.evaluate(
                nowMillis: now, keys: inputs, peers: peers, brokenKeys: broken, firingAlerts: firing)
            {
                switch decision {
                case .setWeight:
                    records.append(.weightChanged(decision.weightChanged(node: nodeName)!))
                case .temporaryBreak(let keyID, let until, let reason):
                    notices.append(
                        AlertFired(
                            rule: AlertEvaluator.temporaryBreakRule, scope: keyID, firing: true, value: Double(until),
                            action: AlertEvaluator.Action.temporaryCircuitBreak.rawValue, detail: reason))
                case .alert:
                    notices.append(decision.alertFired!)
                }
            }
            let ownedKeys = Set(owned.flatMap { $0.keys.map(\.id) })
            // A key broken again in this step keeps its new break: a clear written after it would
            // win (last writer by event id) and the new break would never apply.
            let brokenNow = Set(notices.filter { $0.rule == AlertEvaluator.temporaryBreakRule }.map(\.scope))
            for (key, entry) in view.alerts.sorted(by: { $0.key < $1.key })
            where key.rule == AlertEvaluator.temporaryBreakRule && entry.value.firing
                && !AlertEvaluator.isActive(key, entry.value, nowMillis: now) && ownedKeys.contains(key.scope)
                && !brokenNow.contains(key.scope)
            {
                notices.append(
                    AlertFired(
                        rule: key.rule, scope: key.scope, firing: false, value: entry.value.value,
                        action: entry.value.action, detail: "break over; the key takes traffic again"))
            }
        }
        if WeightController.owner(of: "alerts", among: membership.live) == nodeName {
            let snapshot = alertSnapshot(
                view: view, membership: membership, config: config, controller: loop.controller, nowMillis: now)
            notices += loop.evaluator.evaluate(snapshot, nowMillis: now, firingAlerts: firing)
        } else {
            // Another node evaluates; when this one owns the rules again it starts from the view.
            loop.evaluator.forget()
        }
        records += notices.map { .alertFired($0) }
        guard !records.isEmpty else { return }
        do {
            _ = try await store.append(contentsOf: records, durability: .synced)
        } catch {
            logger.error(
                "could not record the weight controller's decisions", metadata: ["error": .string("\(error)")])
            return
        }
        for record in records {
            switch record {
            case .weightChanged(let change):
                metrics.weightChanged(actor: "controller")
                logger.info(
                    "weight changed by the controller",
                    metadata: [
                        "key.id": .string(change.keyID), "weight.old": .stringConvertible(change.oldWeight),
                        "weight.new": .stringConvertible(change.newWeight), "reason": .string(change.reason),
                    ])
            case .alertFired(let alert):
                metrics.alertTransition(rule: alert.rule, firing: alert.firing)
                logger.notice(
                    alert.firing ? "alert fired" : "alert cleared",
                    metadata: [
                        "alert.rule": .string(alert.rule), "alert.scope": .string(alert.scope),
                        "alert.detail": .string(alert.detail),
                    ])
            default:
                break
            }
        }
        if let webhook = config.alertWebhook, !notices.isEmpty {
            if !(await upstream.postAlerts(notices, node: nodeName, to: webhook, logger: logger)) {
                metrics.webhookFailed()
            }
        }
    }

    /// The values the alert rules test, from the views (every node's requests) and membership.
    func alertSnapshot(
        view: ViewState, membership: ClusterMembership, config: BifrostConfig, controller: WeightController,
        nowMillis: UInt64
    ) -> AlertEvaluator.Snapshot {
        var snapshot = AlertEvaluator.Snapshot()
        let cluster = "cluster"
        snapshot.set(.nodesTotal, Double(membership.known), .cluster, cluster)
        snapshot.set(.nodesHealthy, Double(membership.known - membership.failed), .cluster, cluster)
        snapshot.set(.nodesFailed, Double(membership.failed), .cluster, cluster)
        snapshot.set(.migrationRate, migrationRate, .cluster, cluster)
        snapshot.set(.convergenceMillis, membership.convergenceMillis, .cluster, cluster)
        snapshot.set(.partitioned, membership.live.count * 2 <= membership.known ? 1 : 0, .cluster, cluster)

        let shares = loadShares(view: view, nowMillis: nowMillis)
        let liveShares = membership.live.map { shares[$0] ?? 0 }
        if membership.live.count > 1, shares.values.reduce(0, +) > 0 {
            snapshot.set(.loadImbalance, liveShares.max()! - liveShares.min()!, .cluster, cluster)
        } else {
            snapshot.set(.loadImbalance, nil, .cluster, cluster)
        }
        let failedNames = Set(membership.failedNames)
        for node in Set(membership.live).union(failedNames) {
            snapshot.set(.loadShare, shares[node] ?? 0, .node, node)
            snapshot.set(.failed, failedNames.contains(node) ? 1 : 0, .node, node)
        }

        let settings = controller.settings
        let inputs = controller.inputs(
            view: view, providers: config.providers, currentWeights: currentWeights, nowMillis: nowMillis)
        var total: UInt64 = 0
        var byProvider: [String: [(key: String, windows: PerformanceWindows)]] = [:]
        for input in inputs {
            let windows = PerformanceWindows(input.windows, nowMillis: nowMillis, settings: settings)
            byProvider[input.provider, default: []].append((input.keyID, windows))
            total += windows.recent.requests
        }
        let changes = recentWeightChanges(view: view, nowMillis: nowMillis)
        for (provider, keys) in byProvider {
            var merged = UsageSummary()
            for k in keys { merged.merge(k.windows.recent) }
            for k in keys {
                let recent = k.windows.recent
                let judged = recent.requests >= settings.minimumSamples
                snapshot.set(.requests, Double(recent.requests), .modelKey, k.key)
                snapshot.set(.errorRate, judged ? recent.errorRate : nil, .modelKey, k.key)
                snapshot.set(.latencyAvgMillis, judged ? recent.averageLatencyMillis : nil, .modelKey, k.key)
                snapshot.set(.latencyP99Millis, judged ? recent.latencyQuantileMillis(0.99) : nil, .modelKey, k.key)
                snapshot.set(
                    .trafficShare, merged.requests > 0 ? Double(recent.requests) / Double(merged.requests) : nil,
                    .modelKey, k.key)
                snapshot.set(.weightAdjustmentsPerMinute, Double(changes[k.key] ?? 0), .modelKey, k.key)
                for metric in [AlertEvaluator.Metric.errorRate, .latencyAvgMillis, .latencyP99Millis] {
                    let value: (UsageSummary) -> Double =
                        switch metric {
                        case .errorRate: { $0.errorRate }
                        case .latencyAvgMillis: { $0.averageLatencyMillis }
                        default: { $0.latencyQuantileMillis(0.99) }
                        }
                    snapshot.setBaseline(metric, k.windows.baseline(value, settings: settings), .modelKey, k.key)
                }
            }
            let judged = merged.requests >= settings.minimumSamples
            snapshot.set(.requests, Double(merged.requests), .provider, provider)
            snapshot.set(.errorRate, judged ? merged.errorRate : nil, .provider, provider)
            snapshot.set(.latencyAvgMillis, judged ? merged.averageLatencyMillis : nil, .provider, provider)
            snapshot.set(.latencyP99Millis, judged ? merged.latencyQuantileMillis(0.99) : nil, .provider, provider)
            snapshot.set(
                .trafficShare, total > 0 ? Double(merged.requests) / Double(total) : nil, .provider, provider)
            let busiest = keys.map(\.windows.recent.requests).max() ?? 0
            snapshot.set(
                .singleKeyTrafficShare,
                judged && keys.count > 1 ? Double(busiest) / Double(merged.requests) : nil, .provider, provider)
        }
        return snapshot
    }

    /// Each node's share of the requests admitted in the last five minutes (the seed's
    /// `load_distribution`), by node name.
    public func loadShares(view: ViewState, nowMillis: UInt64) -> [String: Double] {
        let names = (try? store.reader.nodeNames()) ?? [:]
        var perOrigin: [NodeID: UInt64] = [:]
        for (key, counts) in view.limitCounters
        where key.limitKey.hasPrefix("vk:") && key.windowStartMillis + Self.performanceHorizonMillis >= nowMillis {
            for e in counts.entries { perOrigin[e.origin, default: 0] += e.count }
        }
        let sum = perOrigin.values.reduce(0, +)
        guard sum > 0 else { return [:] }
        var shares: [String: Double] = [:]
        for (origin, n) in perOrigin { shares[names[origin] ?? origin.hex] = Double(n) / Double(sum) }
        return shares
    }

    /// `weight.changed` events per key in the minute before `nowMillis`. The weights view keeps
    /// only the newest change per key, so this reads the log's last minute.
    func recentWeightChanges(view: ViewState, nowMillis: UInt64) -> [String: Int] {
        var counts: [String: Int] = [:]
        let since = HLCTimestamp(wallMillis: nowMillis > 60_000 ? nowMillis - 60_000 : 0, logical: 0)
        _ = try? store.reader.scan(EventFilter(since: since, kinds: [EventKind.weightChanged.rawValue])) { event in
            if case .weightChanged(let change) = event.payload { counts[change.keyID, default: 0] += 1 }
            return true
        }
        return counts
    }
}

import Crypto
import EventLog

/// Adapts provider-key weights to how the keys perform (DESIGN §4 "Weight controller", the
/// seed's model-key alert rules). A pure state machine: `evaluate` takes the time and the
/// key-performance view and returns decisions, which the shell records as `weight.changed` and
/// `alert.fired` events and applies with `CircuitBreaker.forceOpen(untilMillis:)`. The same
/// inputs in the same order give the same decisions.
///
/// - An error rate above `errorRateThreshold`, and above its peers' median error rate by as much,
///   multiplies the weight by `reduceFactor`, at most once per `adjustmentInterval` and never
///   below `minWeightFraction` of the configured weight (the key keeps some traffic, so its
///   recovery can be seen). Errors every key shares move no weight.
/// - An average latency above `latencyFactor` × the key's baseline (the median of its earlier
///   windows' average latency) *and* above `latencyFactor` × its peers' (the median average
///   latency of the other keys serving one of its models) opens its circuit for
///   `temporaryBreakDuration`, once that held `latencyBreakEvaluations` evaluations in a row. Both
///   references are raised to `latencyFloorMillis` first: under a few milliseconds a difference
///   is noise. Windows that began before a break ended are not
///   judged again. This is outlier detection (Envoy's `outlier_detection`): a slowdown every key
///   shares — the node's own load, a provider's slow hour — moves the peers too and breaks none,
///   and a key without a judged peer is never broken.
/// - At most `maxEjectionFraction` of the keys serving a model are broken at once, counting the
///   breaks in force (`brokenKeys`), and never the last one that is not (Envoy's
///   `max_ejection_percent`); a break over the cap is held back and the latency alert says so.
/// - A key carrying more than `trafficShareThreshold` of its provider's requests, while other
///   healthy keys of that provider have weight, is lowered to `rebalanceTargetShare` of the
///   provider's weight and not raised above that again.
/// - A key the controller reduced recovers by `recoverStepFraction` of its configured weight per
///   interval, after `recoveryEvaluations` clean evaluations in a row (error rate under
///   `recoveryErrorFraction` × threshold, latency under `recoveryLatencyFactor` × baseline).
///   Weights set by an operator are never raised.
/// - No key changes more than `maxAdjustmentsPerMinute` times in any 60 s.
///
/// One node decides for a provider's keys at a time: the shell passes the keys of the
/// providers with `owner(of: provider, among: liveNodes) == self` (rebalancing needs all keys of
/// a provider in one place).
public struct WeightController: Sendable {
    public struct Settings: Sendable, Equatable {
        /// Reduce a key whose error rate exceeds this (seed: 2.5 %).
        public var errorRateThreshold = 0.025
        /// Break a key's circuit when its average latency exceeds this × its baseline (seed: 150 %)
        /// and this × its peers' latency.
        public var latencyFactor = 1.5
        /// Baselines and peer latencies below this count as this (`load_balancing.latency_floor`).
        public var latencyFloorMillis = 10.0
        /// Most of a model's keys broken at once (`load_balancing.max_ejection_percent` / 100).
        public var maxEjectionFraction = 0.5
        /// Evaluations in a row a key must be a latency outlier before it is broken: one window
        /// that caught a change every key shares half-way is not enough.
        public var latencyBreakEvaluations = 2
        /// Rebalance when one key carries more than this share of its provider's requests (seed: 80 %).
        public var trafficShareThreshold = 0.8
        /// A rebalanced key's share of its provider's total weight.
        public var rebalanceTargetShare = 0.7
        /// Each reduction multiplies the weight by this.
        public var reduceFactor = 0.5
        /// Lowest weight, as a fraction of the configured weight.
        public var minWeightFraction = 0.01
        /// Each recovery step adds this fraction of the configured weight.
        public var recoverStepFraction = 0.25
        /// A clean evaluation has an error rate under this × `errorRateThreshold`.
        public var recoveryErrorFraction = 0.5
        /// A clean evaluation has an average latency under this × baseline.
        public var recoveryLatencyFactor = 1.2
        /// Clean evaluations in a row before a recovery step.
        public var recoveryEvaluations = 3
        /// Least time between two weight changes of one key.
        public var adjustmentInterval: Duration = .seconds(60)
        /// Most weight changes of one key in any 60 s (the seed alerts above 10 per minute).
        public var maxAdjustmentsPerMinute = 10
        /// Requests in the recent windows before an error rate or a latency is judged.
        public var minimumSamples: UInt64 = 20
        /// Requests in the recent windows before an evaluation can count as clean.
        public var recoveryMinimumSamples: UInt64 = 5
        /// Width of a key-performance window (`ViewSettings.performanceWindowMillis`).
        public var windowMillis: UInt64 = 60_000
        /// Windows judged: the current one and the ones just before it.
        public var recentWindows = 2
        /// Earlier windows (with `minimumSamples` each) whose median is the baseline.
        public var baselineWindows = 10
        /// Fewer such windows than this: no baseline, so no latency decisions.
        public var baselineMinimumWindows = 3
        /// How long a temporary circuit break lasts (like `failover.recovery_timeout`).
        public var temporaryBreakDuration: Duration = .seconds(30)
        /// Evaluations in a row under a threshold before its alert clears.
        public var alertClearEvaluations = 2

        public init() {}

        /// Takes the thresholds of config rules whose actions the controller performs: the
        /// error rate of a `reduce_weight` rule, the baseline factor of a
        /// `temporary_circuit_break` rule and the share of a `rebalance_weights` rule.
        public mutating func adopt(_ rules: [AlertEvaluator.Rule]) {
            for rule in rules {
                let c = rule.condition
                guard c.comparison == .greater || c.comparison == .greaterOrEqual else { continue }
                switch (rule.action, c.metric, c.relativeToBaseline) {
                case (.reduceWeight, .errorRate, false): errorRateThreshold = c.threshold
                case (.temporaryCircuitBreak, .latencyAvgMillis, true): latencyFactor = c.threshold
                case (.rebalanceWeights, .singleKeyTrafficShare, false): trafficShareThreshold = c.threshold
                default: break
                }
            }
        }
    }

    /// What the controller knows of one key at an evaluation.
    public struct KeyInput: Sendable, Equatable {
        public var keyID: String
        public var provider: String
        public var configuredWeight: Double
        /// The weight in force.
        public var currentWeight: Double
        /// The newest `weight.changed` of the key (`ViewState.weights`): tells whether the
        /// controller or an operator set the weight, so a node taking over a key carries on.
        public var lastChange: WeightChanged?
        /// Window start (Unix ms) → usage, as in `ViewState.keyPerformance`.
        public var windows: [UInt64: UsageSummary]
        /// The models the key serves: its peers are the other keys serving one of them.
        public var models: [String]

        public init(
            keyID: String, provider: String, configuredWeight: Double, currentWeight: Double,
            lastChange: WeightChanged? = nil, windows: [UInt64: UsageSummary], models: [String] = []
        ) {
            self.keyID = keyID
            self.provider = provider
            self.configuredWeight = configuredWeight
            self.currentWeight = currentWeight
            self.lastChange = lastChange
            self.windows = windows
            self.models = models
        }
    }

    public enum Decision: Sendable, Hashable {
        /// Record `weight.changed` (old → new, reason).
        case setWeight(keyID: String, old: Double, new: Double, reason: String)
        /// Open the key's circuit until then.
        case temporaryBreak(keyID: String, untilMillis: UInt64, reason: String)
        /// Record `alert.fired` for a rule the controller acts on.
        case alert(rule: String, scope: String, firing: Bool, value: Double, action: String, detail: String)

        /// The `weight.changed` payload of a `.setWeight`, with `actor` = `controller:<node>`.
        public func weightChanged(node: String) -> WeightChanged? {
            guard case .setWeight(let keyID, let old, let new, let reason) = self else { return nil }
            return WeightChanged(
                keyID: keyID, oldWeight: old, newWeight: new, reason: reason, actor: WeightController.actorPrefix + node
            )
        }

        /// The `alert.fired` payload of an `.alert`.
        public var alertFired: AlertFired? {
            guard case .alert(let rule, let scope, let firing, let value, let action, let detail) = self else {
                return nil
            }
            return AlertFired(rule: rule, scope: scope, firing: firing, value: value, action: action, detail: detail)
        }
    }

    /// `WeightChanged.actor` of the controller's changes: `controller:<node>`.
    public static let actorPrefix = "controller:"
    /// Reasons of rebalancing changes start with this.
    static let rebalancePrefix = "rebalance:"

    public let settings: Settings
    private var keyStates: [String: KeyState] = [:]
    private var latches: [AlertKey: AlertLatch] = [:]

    public init(settings: Settings = Settings()) {
        self.settings = settings
    }

    /// Per key memory: what was decided and when.
    struct KeyState: Sendable {
        var lastChangeMillis: UInt64?
        /// Times of the changes in the last 60 s.
        var recentChanges: [UInt64] = []
        var suppressed = false
        var cleanStreak = 0
        /// Lowered for errors and not yet back at its ceiling.
        var reducedForHealth = false
        /// Ceiling set by rebalancing.
        var rebalanceCap: Double?
        var breakUntilMillis: UInt64?
        /// Evaluations in a row the key's latency was judged an outlier.
        var slowStreak = 0
        /// The last operator change seen; a new one resets the controller's memory of the key.
        var operatorChange: WeightChanged?
        /// The weight of this controller's last change of the key (or of the controller change it
        /// adopted). A controller change in the view with another weight came from another node.
        var lastDecided: Double?

        init(adopting key: KeyInput) {
            guard let change = key.lastChange else { return }
            if change.actor.hasPrefix(WeightController.actorPrefix) { lastDecided = change.newWeight }
            if !change.actor.hasPrefix(WeightController.actorPrefix) {
                operatorChange = change
            } else if change.reason.hasPrefix(WeightController.rebalancePrefix) {
                rebalanceCap = change.newWeight
            } else if change.newWeight < key.configuredWeight {
                reducedForHealth = true
            }
        }
    }

    /// How one key looked at this evaluation.
    private struct Verdict {
        var requests: UInt64
        var weight: Double
        /// Healthy enough to take traffic from a dominant key.
        var canTakeTraffic: Bool
    }

    /// Evaluates the keys at `nowMillis` and returns the decisions, grouped by provider and key
    /// in id order.
    ///
    /// Pass every key of the providers this node owns, each time: memory of keys not passed is
    /// dropped. `peers` are the keys of every provider (owned or not), which the owned keys are
    /// compared with; `keys` stand for themselves when it is empty. `brokenKeys` are the keys
    /// under a temporary break in force (from the alerts view), for the ejection cap.
    /// `firingAlerts` are the alerts the alerts view shows as firing; for a rule and subject the
    /// controller has not seen, it starts from them, so it clears what a previous owner fired.
    public mutating func evaluate(
        nowMillis: UInt64, keys: [KeyInput], peers: [KeyInput] = [], brokenKeys: Set<String> = [],
        firingAlerts: Set<AlertKey>? = nil
    ) -> [Decision] {
        var out: [Decision] = []
        var seenKeys: Set<String> = []
        var seenAlerts: Set<AlertKey> = []
        var models = ModelGroups(peers.isEmpty ? keys : peers + keys, settings: settings, nowMillis: nowMillis)
        for (id, state) in keyStates where nowMillis < state.breakUntilMillis ?? 0 { models.broken.insert(id) }
        models.broken.formUnion(brokenKeys)
        let byProvider = Dictionary(grouping: keys, by: \.provider)
        for provider in byProvider.keys.sorted() {
            let members = byProvider[provider]!.sorted { $0.keyID < $1.keyID }
            var verdicts: [String: Verdict] = [:]
            for key in members where seenKeys.insert(key.keyID).inserted {
                verdicts[key.keyID] = evaluateKey(
                    key, models: &models, nowMillis: nowMillis, firingAlerts: firingAlerts,
                    seenAlerts: &seenAlerts, out: &out)
            }
            rebalance(
                provider: provider, members: members, verdicts: verdicts, nowMillis: nowMillis,
                firingAlerts: firingAlerts, seenAlerts: &seenAlerts, out: &out)
            for key in members where verdicts[key.keyID] != nil {
                var state = keyStates[key.keyID]!
                state.recentChanges.removeAll { $0 + 60_000 <= nowMillis }
                let count = state.recentChanges.count
                let holds: Bool? =
                    state.suppressed ? true : (count < settings.maxAdjustmentsPerMinute ? false : nil)
                state.suppressed = false
                keyStates[key.keyID] = state
                let rule = AlertEvaluator.Rule.weightAdjustmentFrequency
                latch(
                    rule, subject: key.keyID, holds: holds, value: Double(count),
                    detail: holds == true
                        ? "\(count) weight changes in the last minute; further changes held back"
                        : "\(count) weight changes in the last minute",
                    nowMillis: nowMillis, firingAlerts: firingAlerts, seenAlerts: &seenAlerts, out: &out)
            }
        }
        keyStates = keyStates.filter { seenKeys.contains($0.key) }
        latches = latches.filter { seenAlerts.contains($0.key) }
        return out
    }

    private mutating func evaluateKey(
        _ key: KeyInput, models: inout ModelGroups, nowMillis: UInt64, firingAlerts: Set<AlertKey>?,
        seenAlerts: inout Set<AlertKey>, out: inout [Decision]
    ) -> Verdict {
        let s = settings
        var state = keyStates[key.keyID] ?? KeyState(adopting: key)
        if let change = key.lastChange, !change.actor.hasPrefix(Self.actorPrefix), change != state.operatorChange {
            state = KeyState(adopting: key)
        } else if let change = key.lastChange, change.actor.hasPrefix(Self.actorPrefix),
            state.lastDecided != change.newWeight
        {
            // Another node's controller changed the key since (an earlier owner, or the other side
            // of a partition): carry on from its decision, keeping the change-rate memory.
            let recent = state.recentChanges
            state = KeyState(adopting: key)
            state.recentChanges = recent
        }
        let windows = PerformanceWindows(key.windows, nowMillis: nowMillis, settings: s)
        let afterBreak = PerformanceWindows(
            key.windows, nowMillis: nowMillis, settings: s, since: state.breakUntilMillis ?? 0)
        let recent = windows.recent
        let baseline = windows.baseline(\.averageLatencyMillis, settings: s)

        let peers = models.peers(of: key)
        // Judged over the same windows as the key's own latency (those after its last break).
        let latencyPeers = state.breakUntilMillis.map { models.peers(of: key, since: $0) } ?? peers
        let judged = recent.requests >= s.minimumSamples
        let errorAbovePeers = peers.errorRate.map { recent.errorRate - $0 > s.errorRateThreshold } ?? true
        let errorHigh = judged && recent.errorRate > s.errorRateThreshold && errorAbovePeers
        let errorLow =
            recent.requests >= s.recoveryMinimumSamples
            && (recent.errorRate <= s.errorRateThreshold || !errorAbovePeers)
        let latency = afterBreak.recent.averageLatencyMillis
        let latencyJudged =
            baseline != nil && latencyPeers.latency != nil && afterBreak.recent.requests >= s.minimumSamples
        let ownReference = max(baseline ?? 0, s.latencyFloorMillis)
        let peerReference = max(latencyPeers.latency ?? 0, s.latencyFloorMillis)
        let latencyHigh =
            latencyJudged && latency > s.latencyFactor * ownReference && latency > s.latencyFactor * peerReference
        let clean =
            recent.requests >= s.recoveryMinimumSamples
            && (recent.errorRate < s.errorRateThreshold * s.recoveryErrorFraction || !errorAbovePeers)
            && baseline.map { recent.averageLatencyMillis < s.recoveryLatencyFactor * max($0, s.latencyFloorMillis) }
                ?? true

        let errorText =
            "error rate \(Self.percent(recent.errorRate)) > \(Self.percent(s.errorRateThreshold))"
            + (peers.errorRate.map { ", peers \(Self.percent($0))" } ?? "")
        latch(
            .highErrorRate, subject: key.keyID, holds: errorHigh ? true : (errorLow ? false : nil),
            value: recent.errorRate,
            detail: errorHigh
                ? errorText : "error rate \(Self.percent(recent.errorRate)) ≤ \(Self.percent(s.errorRateThreshold))",
            nowMillis: nowMillis, firingAlerts: firingAlerts, seenAlerts: &seenAlerts, out: &out)
        if latencyHigh {
            state.slowStreak += 1
        } else if latencyJudged {
            state.slowStreak = 0
        }
        let breaks =
            latencyHigh && state.slowStreak >= s.latencyBreakEvaluations && nowMillis >= state.breakUntilMillis ?? 0
        // Said from the first evaluation that judges the key an outlier, so the alert's detail
        // tells why it stays unbroken.
        let ejectable = !latencyHigh || models.mayBreak(key)
        var latencyText =
            "avg latency \(Self.millis(latency)) "
            + (latencyHigh ? ">" : "≤") + " \(AlertEvaluator.format(s.latencyFactor)) × baseline "
            + (baseline.map(Self.millis) ?? "unknown") + ", peers "
            + (latencyPeers.latency.map(Self.millis) ?? "unknown")
        if !ejectable {
            latencyText +=
                "; not broken: \(Self.percent(s.maxEjectionFraction, places: 0)) of its model's keys are broken"
        }
        latch(
            .highLatency, subject: key.keyID, holds: latencyJudged ? latencyHigh : nil, value: latency,
            detail: latencyText, nowMillis: nowMillis, firingAlerts: firingAlerts, seenAlerts: &seenAlerts, out: &out)

        if breaks && ejectable {
            let until = nowMillis + s.temporaryBreakDuration.wholeMilliseconds
            state.breakUntilMillis = until
            state.slowStreak = 0
            models.broken.insert(key.keyID)
            out.append(.temporaryBreak(keyID: key.keyID, untilMillis: until, reason: latencyText))
        }

        var weight = key.currentWeight
        let floor = key.configuredWeight * s.minWeightFraction
        if errorHigh {
            state.cleanStreak = 0
            let target = max(floor, weight * s.reduceFactor)
            if target < weight,
                adjust(&state, keyID: key.keyID, old: weight, new: target, reason: errorText, nowMillis, &out)
            {
                weight = target
                state.reducedForHealth = true
            }
        } else if clean {
            state.cleanStreak += 1
            let ceiling = min(key.configuredWeight, state.rebalanceCap ?? .infinity)
            if state.reducedForHealth && state.cleanStreak >= s.recoveryEvaluations {
                if weight < ceiling {
                    let target = min(ceiling, weight + s.recoverStepFraction * key.configuredWeight)
                    let reason = "recovered: error rate \(Self.percent(recent.errorRate))"
                    if adjust(&state, keyID: key.keyID, old: weight, new: target, reason: reason, nowMillis, &out) {
                        weight = target
                        state.reducedForHealth = target < ceiling
                    }
                } else {
                    state.reducedForHealth = false
                }
            }
        } else if recent.requests >= s.recoveryMinimumSamples {
            state.cleanStreak = 0
        }
        let inBreak = nowMillis < state.breakUntilMillis ?? 0
        keyStates[key.keyID] = state
        return Verdict(
            requests: recent.requests, weight: weight,
            canTakeTraffic: weight > 0 && !errorHigh && !inBreak && !state.reducedForHealth)
    }

    private mutating func rebalance(
        provider: String, members: [KeyInput], verdicts: [String: Verdict], nowMillis: UInt64,
        firingAlerts: Set<AlertKey>?, seenAlerts: inout Set<AlertKey>, out: inout [Decision]
    ) {
        let total = verdicts.values.reduce(0) { $0 + $1.requests }
        let candidates = members.filter { verdicts[$0.keyID] != nil }
        // The busiest key; ties go to the smaller id.
        guard let dominant = candidates.max(by: { verdicts[$0.keyID]!.requests < verdicts[$1.keyID]!.requests }),
            total >= settings.minimumSamples,
            candidates.contains(where: { $0.keyID != dominant.keyID && $0.configuredWeight > 0 })
        else {
            latch(
                .trafficImbalance, subject: provider, holds: nil, value: 0, detail: "", nowMillis: nowMillis,
                firingAlerts: firingAlerts, seenAlerts: &seenAlerts, out: &out)
            return
        }
        let share = Double(verdicts[dominant.keyID]!.requests) / Double(total)
        let imbalanced = share > settings.trafficShareThreshold
        let reason = "\(Self.rebalancePrefix) \(Self.percent(share, places: 0)) of \(provider) traffic"
        latch(
            .trafficImbalance, subject: provider, holds: imbalanced, value: share,
            detail: "\(dominant.keyID) carries \(Self.percent(share, places: 0)) of \(provider) traffic",
            nowMillis: nowMillis, firingAlerts: firingAlerts, seenAlerts: &seenAlerts, out: &out)
        guard imbalanced else { return }
        let others = candidates.filter { $0.keyID != dominant.keyID && verdicts[$0.keyID]!.canTakeTraffic }
        guard !others.isEmpty else { return }
        let othersWeight = others.reduce(0) { $0 + verdicts[$1.keyID]!.weight }
        let target = max(
            dominant.configuredWeight * settings.minWeightFraction,
            settings.rebalanceTargetShare / (1 - settings.rebalanceTargetShare) * othersWeight)
        let current = verdicts[dominant.keyID]!.weight
        guard target < current * (1 - 1e-9) else { return }
        var state = keyStates[dominant.keyID]!
        if adjust(&state, keyID: dominant.keyID, old: current, new: target, reason: reason, nowMillis, &out) {
            state.rebalanceCap = target
        }
        keyStates[dominant.keyID] = state
    }

    /// Emits a weight change unless the key changed less than an interval ago (skipped) or
    /// already `maxAdjustmentsPerMinute` times in the last 60 s (held back, alerted).
    private func adjust(
        _ state: inout KeyState, keyID: String, old: Double, new: Double, reason: String, _ nowMillis: UInt64,
        _ out: inout [Decision]
    ) -> Bool {
        if let last = state.lastChangeMillis, nowMillis < last + settings.adjustmentInterval.wholeMilliseconds {
            return false
        }
        state.recentChanges.removeAll { $0 + 60_000 <= nowMillis }
        guard state.recentChanges.count < settings.maxAdjustmentsPerMinute else {
            state.suppressed = true
            return false
        }
        state.recentChanges.append(nowMillis)
        state.lastChangeMillis = nowMillis
        state.lastDecided = new
        out.append(.setWeight(keyID: keyID, old: old, new: new, reason: reason))
        return true
    }

    private mutating func latch(
        _ rule: AlertEvaluator.Rule, subject: String, holds: Bool?, value: Double, detail: String,
        nowMillis: UInt64, firingAlerts: Set<AlertKey>?, seenAlerts: inout Set<AlertKey>, out: inout [Decision]
    ) {
        let key = AlertKey(rule: rule.name, scope: subject)
        seenAlerts.insert(key)
        var latch = latches[key] ?? AlertLatch(firing: firingAlerts?.contains(key) ?? false)
        if let firingAlerts { latch.follow(view: firingAlerts.contains(key)) }
        if let firing = latch.update(
            holds: holds, value: value, clearAfter: settings.alertClearEvaluations, nowMillis: nowMillis)
        {
            out.append(
                .alert(
                    rule: rule.name, scope: subject, firing: firing, value: latch.lastValue,
                    action: rule.action.rawValue, detail: detail))
        }
        latches[key] = latch
    }

    /// The live node that decides for `id` (a provider or key): rendezvous hashing (Thaler &
    /// Ravishankar, "Using name-based mappings to increase hit rates", 1998) — the node with the
    /// highest SHA-256 score of node and id. Every node computes the same owner from the same
    /// member list, and removing a node moves only the ids it owned. Nil without live nodes.
    public static func owner(of id: String, among liveNodes: [String]) -> String? {
        var best: (score: UInt64, node: String)?
        for node in liveNodes {
            let score = rendezvousScore(node: node, id: id)
            if let b = best, score < b.score || (score == b.score && node <= b.node) { continue }
            best = (score, node)
        }
        return best?.node
    }

    /// The first 8 bytes of SHA-256(node ‖ 0 ‖ id), big-endian: stable across processes and
    /// platforms, unlike `Hasher`.
    static func rendezvousScore(node: String, id: String) -> UInt64 {
        var hash = SHA256()
        hash.update(data: Array(node.utf8))
        hash.update(data: [0])
        hash.update(data: Array(id.utf8))
        return hash.finalize().prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The inputs for `providers`' keys from the views: performance windows of the last
    /// `recentWindows + 2 × baselineWindows` minutes, the weights in force (`currentWeights`,
    /// configured weights where absent) and each key's last `weight.changed`.
    public func inputs(
        view: ViewState, providers: [BifrostConfig.Provider], currentWeights: [String: Double], nowMillis: UInt64
    ) -> [KeyInput] {
        let horizon = UInt64(settings.recentWindows + 2 * settings.baselineWindows) * settings.windowMillis
        let oldest = nowMillis / settings.windowMillis * settings.windowMillis
        let since = oldest > horizon ? oldest - horizon : 0
        var windows: [String: [UInt64: UsageSummary]] = [:]
        for (key, summary) in view.keyPerformance where key.windowStartMillis >= since {
            windows[key.keyID, default: [:]][key.windowStartMillis] = summary
        }
        return providers.flatMap { provider in
            provider.keys.map { key in
                KeyInput(
                    keyID: key.id, provider: provider.name, configuredWeight: key.weight,
                    currentWeight: currentWeights[key.id] ?? key.weight, lastChange: view.weights[key.id]?.value,
                    windows: windows[key.id] ?? [:], models: key.models)
            }
        }
    }

    static func millis(_ latency: Double) -> String { "\(Int64(latency.rounded())) ms" }

    /// `0.041` → `4.1%`; whole numbers without a fraction.
    static func percent(_ fraction: Double, places: Int = 1) -> String {
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        let value = (fraction * 100 * scale).rounded() / scale
        return (value == value.rounded() ? String(Int64(value)) : String(value)) + "%"
    }
}

/// A key's (or provider's) performance windows split into the recent ones, judged now, and the
/// earlier ones that make its baseline.
struct PerformanceWindows {
    /// The recent windows merged.
    var recent = UsageSummary()
    /// Earlier windows with `minimumSamples` each, newest first, at most `baselineWindows`.
    var earlier: [UsageSummary] = []

    /// Splits `windows` (start → usage); windows that began before `since` are left out of
    /// `recent`.
    init(
        _ windows: [UInt64: UsageSummary], nowMillis: UInt64, settings: WeightController.Settings, since: UInt64 = 0
    ) {
        let width = settings.windowMillis
        let current = nowMillis / width * width
        let back = UInt64(max(0, settings.recentWindows - 1)) * width
        let recentStart = current > back ? current - back : 0
        var older: [(start: UInt64, summary: UsageSummary)] = []
        for (start, summary) in windows {
            if start >= recentStart {
                if start >= since { recent.merge(summary) }
            } else if summary.requests >= settings.minimumSamples {
                older.append((start, summary))
            }
        }
        older.sort { $0.start > $1.start }
        earlier = older.prefix(settings.baselineWindows).map(\.summary)
    }

    /// The median of `metric` over the earlier windows; nil with fewer than
    /// `baselineMinimumWindows` of them.
    func baseline(_ metric: (UsageSummary) -> Double, settings: WeightController.Settings) -> Double? {
        guard earlier.count >= max(1, settings.baselineMinimumWindows) else { return nil }
        let values = earlier.map(metric).sorted()
        let mid = values.count / 2
        return values.count % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2
    }
}

/// The keys serving each model, for judging a key against its peers and capping how many of a
/// model's keys are broken at once.
struct ModelGroups {
    /// Model → ids of the keys serving it.
    private var members: [String: Set<String>] = [:]
    /// Key id → its performance windows.
    private var windows: [String: [UInt64: UsageSummary]] = [:]
    let settings: WeightController.Settings
    let nowMillis: UInt64
    /// Keys under a break in force, this evaluation's included.
    var broken: Set<String> = []

    typealias KeyInput = WeightController.KeyInput

    init(_ keys: [KeyInput], settings: WeightController.Settings, nowMillis: UInt64) {
        self.settings = settings
        self.nowMillis = nowMillis
        for key in keys {
            for model in key.models { members[model, default: []].insert(key.keyID) }
            windows[key.keyID] = key.windows
        }
    }

    /// The median error rate and average latency of the keys sharing a model with `key` that
    /// have `minimumSamples` in the recent windows that began at or after `since` — the same
    /// windows `key` is judged over, so a change every key shares moves both sides alike.
    /// Broken keys are left out (their last windows are why they were broken); nil where no
    /// peer is left.
    func peers(of key: KeyInput, since: UInt64 = 0) -> (errorRate: Double?, latency: Double?) {
        var ids: Set<String> = []
        for model in key.models { ids.formUnion(members[model] ?? []) }
        ids.remove(key.keyID)
        ids.subtract(broken)
        let summaries = ids.sorted().compactMap { id -> UsageSummary? in
            let recent = PerformanceWindows(windows[id] ?? [:], nowMillis: nowMillis, settings: settings, since: since)
                .recent
            return recent.requests >= settings.minimumSamples ? recent : nil
        }
        guard !summaries.isEmpty else { return (nil, nil) }
        return (Self.median(summaries.map(\.errorRate)), Self.median(summaries.map(\.averageLatencyMillis)))
    }

    /// Whether breaking `key` keeps every model it serves within the ejection cap, with at least
    /// one key of each not broken.
    func mayBreak(_ key: KeyInput) -> Bool {
        guard !key.models.isEmpty else { return false }
        for model in key.models {
            let group = members[model] ?? [key.keyID]
            let brokenAfter = group.subtracting([key.keyID]).intersection(broken).count + 1
            guard
                EjectionCap.allows(
                    brokenAfter: brokenAfter, groupSize: group.count, maxFraction: settings.maxEjectionFraction)
            else { return false }
        }
        return true
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }
}

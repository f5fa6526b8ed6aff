import EventLog

/// Routing state of a node: effective key weights, one smooth weighted rotation per model
/// route, and one circuit breaker per provider key.
///
/// Breakers cannot take a model down (Envoy's outlier detection): a key's own breaker opens only
/// while at most `maxEjectionFraction` of the keys of each model it serves are open, never the
/// last closed one; and when every key a request may still use is held open anyway (the weight
/// controller's breaks and this node's together), the pick ignores the breakers — panic
/// routing — rather than refuse a model that may be up.
struct RoutingState {
    /// A key chosen for an attempt.
    struct Pick: Equatable {
        var target: ModelTarget
        /// Every usable key was held open by its breaker: this one is tried regardless.
        var panic: Bool
    }

    /// Key id → weight in force: a `weight.changed` newer than the configuration, or the
    /// configured weight.
    private(set) var weights: [String: Double] = [:]
    private var rotations: [String: SmoothWeightedRoundRobin] = [:]
    private(set) var breakers: [String: CircuitBreaker] = [:]
    /// The end of the last temporary break applied per key, so a refresh applies each once.
    private var breakersForcedUntil: [String: UInt64] = [:]
    /// Key id → the key ids of each model it serves (its own included), for the ejection cap.
    private var modelGroups: [String: [Set<String>]] = [:]
    let settings: CircuitBreaker.Settings
    /// Most of a model's keys whose breakers may be open at once (`max_ejection_percent` / 100).
    let maxEjectionFraction: Double

    init(
        runtime: RuntimeConfig, views: ViewState, settings: CircuitBreaker.Settings, maxEjectionFraction: Double = 0.5,
        nowMillis: UInt64
    ) {
        self.settings = settings
        self.maxEjectionFraction = maxEjectionFraction
        refresh(runtime: runtime, views: views, nowMillis: nowMillis)
    }

    mutating func refresh(runtime: RuntimeConfig, views: ViewState, nowMillis: UInt64) {
        var weights: [String: Double] = [:]
        for (id, entry) in runtime.catalog.keys {
            weights[id] = entry.key.weight
            if let changed = views.weights[id], runtime.sourceEvent.map({ changed.event > $0 }) ?? true {
                weights[id] = changed.value.newWeight
            }
        }
        self.weights = weights
        var groups: [String: [Set<String>]] = [:]
        for targets in runtime.catalog.byModel.values {
            let ids = Set(targets.map(\.keyID))
            for id in ids { groups[id, default: []].append(ids) }
        }
        modelGroups = groups
        for name in rotations.keys {
            rotations[name]!.setWeights(weights)
        }
        // The weight controller's temporary breaks hold on every node: each is an alert whose
        // value is the end of the break (Unix ms).
        for (key, alert) in views.alerts
        where key.rule == AlertEvaluator.temporaryBreakRule && weights[key.scope] != nil
            && AlertEvaluator.isActive(key, alert.value, nowMillis: nowMillis)
        {
            let until = UInt64(max(0, alert.value.value))
            guard breakersForcedUntil[key.scope] != until else { continue }
            breakersForcedUntil[key.scope] = until
            if case .open(let current) = breakers[key.scope]?.state, current >= until { continue }
            breakers[key.scope, default: CircuitBreaker(settings: settings)].forceOpen(untilMillis: until)
        }
    }

    /// The next key for a route among `targets`, skipping `excluded` keys and keys whose breaker
    /// refuses — unless every key left refuses (panic); nil when no key is left.
    mutating func pick(route: String, targets: [ModelTarget], excluded: Set<String>, nowMillis: UInt64) -> Pick? {
        if rotations[route] == nil {
            var rotation = SmoothWeightedRoundRobin()
            rotation.setWeights(weights)
            rotations[route] = rotation
        }
        let candidates = targets.map(\.keyID).filter { !excluded.contains($0) }
        var refused: Set<String> = []
        while true {
            let eligible = candidates.filter {
                !refused.contains($0) && (breakers[$0]?.canAttempt(nowMillis: nowMillis) ?? true)
            }
            guard let id = rotations[route]!.next(among: eligible) else { break }
            if breakers[id, default: CircuitBreaker(settings: settings)].allowRequest(nowMillis: nowMillis) {
                return targets.first { $0.keyID == id }.map { Pick(target: $0, panic: false) }
            }
            refused.insert(id)
        }
        guard let id = rotations[route]!.next(among: candidates) else { return nil }
        return targets.first { $0.keyID == id }.map { Pick(target: $0, panic: true) }
    }

    /// Records an attempt's outcome; returns the breaker's state name after it.
    mutating func record(key: String, success: Bool, nowMillis: UInt64) -> String {
        let mayOpen = success || mayEject(key)
        breakers[key, default: CircuitBreaker(settings: settings)].record(
            success: success, nowMillis: nowMillis, mayOpen: mayOpen)
        return breakers[key]!.state.name
    }

    /// Whether `key`'s breaker may open: for every model it serves, the open breakers with it
    /// stay within the cap and leave one key closed.
    func mayEject(_ key: String) -> Bool {
        for group in modelGroups[key] ?? [] {
            let openAfter =
                group.lazy.filter { $0 != key && self.breakers[$0].map { $0.state != .closed } ?? false }
                .count + 1
            guard EjectionCap.allows(brokenAfter: openAfter, groupSize: group.count, maxFraction: maxEjectionFraction)
            else { return false }
        }
        return true
    }

    func breakerState(_ key: String) -> String { breakers[key]?.state.name ?? "closed" }
}

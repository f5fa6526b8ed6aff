import EventLog

/// Routing state of a node: effective key weights, one smooth weighted rotation per model
/// route, and one circuit breaker per provider key.
struct RoutingState {
    /// Key id → weight in force: a `weight.changed` newer than the configuration, or the
    /// configured weight.
    private(set) var weights: [String: Double] = [:]
    private var rotations: [String: SmoothWeightedRoundRobin] = [:]
    private(set) var breakers: [String: CircuitBreaker] = [:]
    /// The end of the last temporary break applied per key, so a refresh applies each once.
    private var breakersForcedUntil: [String: UInt64] = [:]
    let settings: CircuitBreaker.Settings

    init(runtime: RuntimeConfig, views: ViewState, settings: CircuitBreaker.Settings, nowMillis: UInt64) {
        self.settings = settings
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
    /// refuses; nil when none is left.
    mutating func pick(
        route: String, targets: [ModelTarget], excluded: Set<String>, nowMillis: UInt64
    )
        -> ModelTarget?
    {
        if rotations[route] == nil {
            var rotation = SmoothWeightedRoundRobin()
            rotation.setWeights(weights)
            rotations[route] = rotation
        }
        var excluded = excluded
        while true {
            var eligible: [String] = []
            for target in targets where !excluded.contains(target.keyID) {
                if breakers[target.keyID]?.canAttempt(nowMillis: nowMillis) ?? true { eligible.append(target.keyID) }
            }
            guard let id = rotations[route]!.next(among: eligible) else { return nil }
            if breakers[id, default: CircuitBreaker(settings: settings)].allowRequest(nowMillis: nowMillis) {
                return targets.first { $0.keyID == id }
            }
            excluded.insert(id)
        }
    }

    /// Records an attempt's outcome; returns the breaker's state name after it.
    mutating func record(key: String, success: Bool, nowMillis: UInt64) -> String {
        breakers[key, default: CircuitBreaker(settings: settings)].record(success: success, nowMillis: nowMillis)
        return breakers[key]!.state.name
    }

    func breakerState(_ key: String) -> String { breakers[key]?.state.name ?? "closed" }
}

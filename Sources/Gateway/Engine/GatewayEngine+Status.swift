import EventLog

extension GatewayEngine {
    /// How far back `provider_performance` looks.
    static let performanceHorizonMillis: UInt64 = 5 * 60_000

    /// The seed's `provider_performance`: per provider its share of traffic, per model-key id
    /// latency, weight in force, error rate, share and health, over the last five minutes of the
    /// key-performance view (every node's requests).
    public func providerPerformance(view: ViewState, nowMillis: UInt64) -> JSONValue {
        let runtime = self.runtime
        var summaries: [String: UsageSummary] = [:]
        for (key, summary) in view.keyPerformance
        where key.windowStartMillis + Self.performanceHorizonMillis >= nowMillis {
            summaries[key.keyID, default: UsageSummary()].merge(summary)
        }
        let total = summaries.values.reduce(0) { $0 + $1.requests }
        let (weights, breakers) = routing.withLock { ($0.weights, $0.breakers) }
        var providers: [String: JSONValue] = [:]
        for provider in runtime.config.providers {
            var keys: [String: JSONValue] = [:]
            var providerRequests: UInt64 = 0
            for key in provider.keys {
                let s = summaries[key.id] ?? UsageSummary()
                providerRequests += s.requests
                let breaker = breakers[key.id]?.state.name ?? "closed"
                let health =
                    runtime.unusableKeys[key.id] != nil || breaker == "open"
                    ? "unhealthy" : (breaker == "half_open" || s.errorRate > 0.025 ? "degraded" : "healthy")
                keys[key.id] = .object([
                    "avg_latency_ms": .double(Self.round(s.averageLatencyMillis, 1)),
                    "current_weight": .double(weights[key.id] ?? key.weight),
                    "error_rate": .double(Self.round(s.errorRate, 4)),
                    "traffic_percentage": .double(Self.percent(s.requests, of: total)),
                    "health_status": .string(health),
                    "requests": .uint(s.requests),
                    "breaker_state": .string(breaker),
                ])
            }
            providers[provider.name] = .object([
                "total_traffic_percentage": .double(Self.percent(providerRequests, of: total)),
                "model_keys": .object(keys),
            ])
        }
        return .object(providers)
    }

    /// Limit counters of the current windows (every origin, as replicated), keyed by limit key:
    /// what `bifrost-replay` reproduces from the log.
    public func limitCounters(view: ViewState, nowMillis: UInt64) -> JSONValue {
        var out: [String: JSONValue] = [:]
        for (key, counts) in view.limitCounters where key.windowStartMillis + UInt64(key.windowMillis) > nowMillis {
            let tokens = view.tokenCounters[key]?.total ?? 0
            out[key.limitKey] = .object([
                "window_start_ms": .uint(key.windowStartMillis), "requests": .uint(counts.total),
                "tokens": .uint(tokens),
            ])
        }
        return .object(out)
    }

    /// Weights in force per model-key id.
    public var currentWeights: [String: Double] { routing.withLock { $0.weights } }

    static func round(_ value: Double, _ places: Int) -> Double {
        var scale = 1.0
        for _ in 0..<places { scale *= 10 }
        return (value * scale).rounded() / scale
    }

    static func percent(_ part: UInt64, of total: UInt64) -> Double {
        total == 0 ? 0 : round(Double(part) / Double(total) * 100, 1)
    }

    /// `/cluster/metrics` `spend`: what each virtual key and provider key spent, all time and, for
    /// those with a budget, in the budget's current period, from the spend view (the same on
    /// every node once converged).
    public func spendMetrics(view: ViewState, nowMillis: UInt64) -> JSONValue {
        let runtime = self.runtime
        var budgets: [String: BudgetLimit] = [:]
        for key in runtime.config.virtualKeys { if let b = key.budget { budgets["vk:\(key.name)"] = b } }
        for provider in runtime.config.providers {
            for key in provider.keys { if let b = key.budget { budgets["pk:\(key.id)"] = b } }
        }
        var accounts = Set(budgets.keys)
        for key in view.spend.keys where key.windowMillis == 0 { accounts.insert(key.limitKey) }
        let counts = ViewCounts(view: view, local: store.nodeID)
        func usd(_ micros: UInt64) -> JSONValue { .double(Double(micros) / 1_000_000) }
        var virtualKeys: [String: JSONValue] = [:]
        var providerKeys: [String: JSONValue] = [:]
        for account in accounts {
            let total =
                counts.ownSpend(account: account, start: 0, end: .max)
                + counts.peerSpend(account: account, start: 0, end: .max)
            var fields: [String: JSONValue] = ["total_usd": usd(total), "total_micro_usd": .uint(total)]
            if let budget = budgets[account] {
                let window = budget.period.window(containing: nowMillis)
                let spent =
                    counts.ownSpend(account: account, start: window.start, end: window.end)
                    + counts.peerSpend(account: account, start: window.start, end: window.end)
                fields["budget"] = .object([
                    "max_usd": usd(budget.maxMicros), "period": .string(budget.period.rawValue),
                    "period_start": .string(EventJSON.rfc3339(millis: window.start)),
                    "resets_at": window.end == .max ? .null : .string(EventJSON.rfc3339(millis: window.end)),
                    "spent_usd": usd(spent), "spent_micro_usd": .uint(spent),
                    "remaining_usd": usd(budget.maxMicros > spent ? budget.maxMicros - spent : 0),
                ])
            }
            let name = String(account.dropFirst(3))
            if account.hasPrefix("vk:") { virtualKeys[name] = .object(fields) }
            if account.hasPrefix("pk:") { providerKeys[name] = .object(fields) }
        }
        return .object(["virtual_keys": .object(virtualKeys), "provider_keys": .object(providerKeys)])
    }
}

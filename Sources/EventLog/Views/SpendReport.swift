/// What each virtual key and each provider key spent, by model, over a time range: folded from
/// `usage.recorded` and `usage.aggregated` events alone, so every node with the same events
/// answers the same (`bifrost-replay --view spend`).
///
/// A usage event belongs to the range when its one-minute window starts in `[since, until)`;
/// compaction keeps those windows, so a range answers the same before and after it.
public struct SpendReport: Sendable, Equatable {
    public var sinceMillis: UInt64
    public var untilMillis: UInt64
    /// Virtual key name (`none` for requests without one) → model → totals.
    public private(set) var virtualKeys: [String: [String: UsageSummary]] = [:]
    /// Provider key id → model → totals.
    public private(set) var providerKeys: [String: [String: UsageSummary]] = [:]
    public private(set) var total = UsageSummary()

    /// Requests recorded without a virtual key: the API was open, or the event is a failed
    /// attempt (charged to its provider key only).
    public static let noVirtualKey = "none"

    public init(sinceMillis: UInt64 = 0, untilMillis: UInt64 = .max) {
        self.sinceMillis = sinceMillis
        self.untilMillis = untilMillis
    }

    /// The virtual key of a usage event's limit keys (`vk:team-a` → `team-a`).
    public static func virtualKey(_ limitKeys: [String]) -> String {
        for key in limitKeys where key.hasPrefix("vk:") { return String(key.dropFirst(3)) }
        return noVirtualKey
    }

    public mutating func add(_ event: Event) {
        switch event.payload {
        case .usageRecorded(let p):
            guard contains(p.windowStartMillis) else { return }
            var s = UsageSummary()
            s.record(p)
            add(s, keyID: p.keyID, model: p.model, limitKeys: p.limitKeys)
        case .usageAggregated(let p):
            guard contains(p.windowStartMillis) else { return }
            add(p.summary, keyID: p.keyID, model: p.model, limitKeys: p.limitKeys)
        default:
            return
        }
    }

    private func contains(_ windowStart: UInt64) -> Bool {
        windowStart >= sinceMillis && windowStart < untilMillis
    }

    private mutating func add(_ s: UsageSummary, keyID: String, model: String, limitKeys: [String]) {
        virtualKeys[Self.virtualKey(limitKeys), default: [:]][model, default: UsageSummary()].merge(s)
        providerKeys[keyID, default: [:]][model, default: UsageSummary()].merge(s)
        total.merge(s)
    }

    /// Cost of everything a virtual key spent in the range, in micro-USD.
    public func costMicros(virtualKey: String) -> UInt64 {
        virtualKeys[virtualKey]?.values.reduce(0) { $0 + $1.costMicros } ?? 0
    }
}

extension EventJSON {
    /// A spend report as JSON: per virtual key and per provider key, their totals and their
    /// models' totals.
    public static func spend(_ report: SpendReport) -> JSONValue {
        func totals(_ s: UsageSummary) -> JSONValue {
            .object([
                "requests": .uint(s.requests), "errors": .uint(s.errors), "tokens_in": .uint(s.tokensIn),
                "tokens_out": .uint(s.tokensOut), "cache_read_tokens": .uint(s.cacheReadTokens),
                "cache_write_tokens": .uint(s.cacheWriteTokens), "reasoning_tokens": .uint(s.reasoningTokens),
                "cost_micro_usd": .uint(s.costMicros), "cost_usd": .double(Double(s.costMicros) / 1e6),
                "unpriced_requests": .uint(s.unpricedRequests),
            ])
        }
        func group(_ byName: [String: [String: UsageSummary]]) -> JSONValue {
            .object(
                byName.mapValues { models in
                    var sum = UsageSummary()
                    for s in models.values { sum.merge(s) }
                    guard case .object(var fields) = totals(sum) else { return .null }
                    fields["models"] = .object(models.mapValues(totals))
                    return .object(fields)
                })
        }
        return .object([
            "since": report.sinceMillis == 0 ? .null : .string(rfc3339(millis: report.sinceMillis)),
            "until": report.untilMillis == .max ? .null : .string(rfc3339(millis: report.untilMillis)),
            "virtual_keys": group(report.virtualKeys), "provider_keys": group(report.providerKeys),
            "total": totals(report.total),
        ])
    }
}

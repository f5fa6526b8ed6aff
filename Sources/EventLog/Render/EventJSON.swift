import Foundation

/// JSON renderings of events and views for the tools. Secrets are redacted here, once, so no
/// tool can print them by accident.
public enum EventJSON {
    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-25T03:52:49.123Z`.
    public static func rfc3339(millis: UInt64) -> String {
        let seconds = time_t(millis / 1000)
        var t = tm()
        var s = seconds
        gmtime_r(&s, &t)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(t.tm_year) + 1900, Int(t.tm_mon) + 1, Int(t.tm_mday),
            Int(t.tm_hour), Int(t.tm_min), Int(t.tm_sec), Int(millis % 1000))
    }

    /// Parses RFC 3339 (`2026-11-25T03:52:49Z`, fractional seconds and offsets allowed) into Unix ms.
    public static func parseRFC3339(_ text: String) -> UInt64? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) {
            return UInt64(max(0, (date.timeIntervalSince1970 * 1000).rounded()))
        }
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) {
            return UInt64(max(0, (date.timeIntervalSince1970 * 1000).rounded()))
        }
        return nil
    }

    /// Parses a time argument: a raw HLC (decimal `UInt64`) or an RFC 3339 time (as the first HLC
    /// of that millisecond).
    public static func parseTime(_ text: String) -> HLCTimestamp? {
        if let raw = UInt64(text) { return HLCTimestamp(rawValue: raw) }
        guard let millis = parseRFC3339(text), millis <= HLCTimestamp.wallMax else { return nil }
        return HLCTimestamp(wallMillis: millis, logical: 0)
    }

    public static func id(_ id: EventID, names: [NodeID: String] = [:]) -> JSONValue {
        .object([
            "hlc": .uint(id.hlc.rawValue), "time": .string(rfc3339(millis: id.hlc.wallMillis)),
            "logical": .uint(UInt64(id.hlc.logical)), "origin": .string(names[id.origin] ?? id.origin.hex),
        ])
    }

    /// One event as a JSON object: `hlc`, `time`, `logical`, `origin`, `origin_id`, `kind`, `data`.
    public static func event(_ event: Event, names: [NodeID: String] = [:]) -> JSONValue {
        .object([
            "hlc": .uint(event.id.hlc.rawValue),
            "time": .string(rfc3339(millis: event.id.hlc.wallMillis)),
            "logical": .uint(UInt64(event.id.hlc.logical)),
            "origin": .string(names[event.id.origin] ?? event.id.origin.hex),
            "origin_id": .string(event.id.origin.hex),
            "kind": .string(event.payload.kindName),
            "data": payload(event.payload),
        ])
    }

    public static func payload(_ payload: Event.Payload) -> JSONValue {
        switch payload {
        case .rateLimitIncrement(let p):
            return .object([
                "keys": .array(p.keys.map(JSONValue.string)),
                "window_start": .string(rfc3339(millis: p.windowStartMillis)),
                "window_start_ms": .uint(p.windowStartMillis), "window_ms": .uint(UInt64(p.windowMillis)),
                "requests": .uint(UInt64(p.requests)),
            ])
        case .usageRecorded(let p):
            return .object([
                "request_id": .string(p.requestID), "key_id": .string(p.keyID), "model": .string(p.model),
                "limit_keys": .array(p.limitKeys.map(JSONValue.string)),
                "window_start_ms": .uint(p.windowStartMillis), "window_ms": .uint(UInt64(p.windowMillis)),
                "tokens_in": .uint(UInt64(p.tokensIn)), "tokens_out": .uint(UInt64(p.tokensOut)),
                "latency_ms": .double(Double(p.latencyMicros) / 1000), "status": .uint(UInt64(p.status)),
                "outcome": .string(p.outcome.name), "cache_read_tokens": .uint(UInt64(p.cacheReadTokens)),
                "cache_write_tokens": .uint(UInt64(p.cacheWriteTokens)),
                "reasoning_tokens": .uint(UInt64(p.reasoningTokens)),
                "cost_micro_usd": p.costMicros.map(JSONValue.uint) ?? .null,
                "cost_usd": p.costMicros.map { .double(Double($0) / 1e6) } ?? .null,
                "priced": .bool(p.costMicros != nil),
                "price_version": .string(p.priceVersion),
            ])
        case .weightChanged(let p):
            return .object([
                "key_id": .string(p.keyID), "old_weight": .double(p.oldWeight), "new_weight": .double(p.newWeight),
                "reason": .string(p.reason), "actor": .string(p.actor),
            ])
        case .configUpdated(let p):
            return .object([
                "document": Redaction.redactDocument(p.document), "author": .string(p.author),
                "signer_key": .string(Data(p.signerKey).base64EncodedString()), "signed": .bool(!p.signature.isEmpty),
                "signature_valid": .bool(!p.signature.isEmpty && ConfigSignature.verify(p)),
            ])
        case .membershipChanged(let p):
            return .object([
                "node": .string(p.node), "state": .string(p.state.name), "incarnation": .uint(p.incarnation),
                "observer": .string(p.observer), "address": .string(p.address),
            ])
        case .alertFired(let p):
            return .object([
                "rule": .string(p.rule), "scope": .string(p.scope), "state": .string(p.firing ? "fired" : "cleared"),
                "value": .double(p.value), "action": .string(p.action), "detail": .string(p.detail),
            ])
        case .usageAggregated(let p):
            return .object([
                "key_id": .string(p.keyID), "model": .string(p.model),
                "limit_keys": .array(p.limitKeys.map(JSONValue.string)),
                "window_start_ms": .uint(p.windowStartMillis), "window_ms": .uint(UInt64(p.windowMillis)),
                "summary": summary(p.summary),
            ])
        case .unknown(let kind, let bytes):
            return .object(["kind_byte": .uint(UInt64(kind)), "payload_bytes": .uint(UInt64(bytes.count))])
        }
    }

    public static func summary(_ s: UsageSummary) -> JSONValue {
        .object([
            "requests": .uint(s.requests), "errors": .uint(s.errors), "error_rate": .double(s.errorRate),
            "tokens_in": .uint(s.tokensIn), "tokens_out": .uint(s.tokensOut),
            "avg_latency_ms": .double(s.averageLatencyMillis),
            "max_latency_ms": .double(Double(s.latencyMaxMicros) / 1000),
            "p50_latency_ms_le": .double(s.latencyQuantileMillis(0.5)),
            "p99_latency_ms_le": .double(s.latencyQuantileMillis(0.99)),
            "cache_read_tokens": .uint(s.cacheReadTokens), "cache_write_tokens": .uint(s.cacheWriteTokens),
            "reasoning_tokens": .uint(s.reasoningTokens), "cost_micro_usd": .uint(s.costMicros),
            "cost_usd": .double(Double(s.costMicros) / 1e6), "unpriced_requests": .uint(s.unpricedRequests),
        ])
    }

    /// View names accepted by `bifrost-replay --view`.
    public static let viewNames = [
        "limits", "tokens", "weights", "config", "performance", "alerts", "members", "summary",
    ]

    /// The views as one JSON object, keyed by view name; `only` selects a subset.
    public static func views(_ v: ViewState, only: Set<String>? = nil, names: [NodeID: String] = [:]) -> JSONValue {
        func counters(_ map: [CounterKey: OriginCounts]) -> JSONValue {
            .array(
                map.keys.sorted().map { key in
                    let counts = map[key]!
                    var byOrigin: [String: JSONValue] = [:]
                    for e in counts.entries { byOrigin[names[e.origin] ?? e.origin.hex] = .uint(e.count) }
                    return .object([
                        "key": .string(key.limitKey), "window_ms": .uint(UInt64(key.windowMillis)),
                        "window_start_ms": .uint(key.windowStartMillis),
                        "window_start": .string(rfc3339(millis: key.windowStartMillis)),
                        "total": .uint(counts.total), "by_origin": .object(byOrigin),
                    ])
                })
        }
        var out: [String: JSONValue] = [:]
        func want(_ name: String) -> Bool { only?.contains(name) ?? true }
        if want("limits") { out["limits"] = counters(v.limitCounters) }
        if want("tokens") { out["tokens"] = counters(v.tokenCounters) }
        if want("weights") {
            out["weights"] = .object(
                v.weights.mapValues { w in
                    .object([
                        "weight": .double(w.value.newWeight), "reason": .string(w.value.reason),
                        "actor": .string(w.value.actor), "event": id(w.event, names: names),
                    ])
                })
        }
        if want("config") {
            out["config"] =
                v.config.map { c in
                    .object([
                        "document": Redaction.redactDocument(c.value.document), "author": .string(c.value.author),
                        "signer_key": .string(Data(c.value.signerKey).base64EncodedString()),
                        "event": id(c.event, names: names),
                    ])
                } ?? .null
            out["config_rejected"] = .uint(v.rejectedConfigs)
        }
        if want("performance") {
            out["performance"] = .array(
                v.keyPerformance.keys.sorted().map { key in
                    var fields: [String: JSONValue] = [
                        "key_id": .string(key.keyID), "window_start_ms": .uint(key.windowStartMillis),
                        "window_start": .string(rfc3339(millis: key.windowStartMillis)),
                    ]
                    if case .object(let s) = summary(v.keyPerformance[key]!) { fields.merge(s) { a, _ in a } }
                    return .object(fields)
                })
        }
        if want("alerts") {
            out["alerts"] = .array(
                v.alerts.keys.sorted().map { key in
                    let a = v.alerts[key]!
                    return .object([
                        "rule": .string(key.rule), "scope": .string(key.scope),
                        "state": .string(a.value.firing ? "fired" : "cleared"), "value": .double(a.value.value),
                        "action": .string(a.value.action), "event": id(a.event, names: names),
                    ])
                })
        }
        if want("members") {
            out["members"] = .object(
                v.members.mapValues { m in
                    .object([
                        "state": .string(m.value.state.name), "incarnation": .uint(m.value.incarnation),
                        "observer": .string(m.value.observer), "address": .string(m.value.address),
                        "event": id(m.event, names: names),
                    ])
                })
        }
        if want("summary") {
            out["summary"] = .object([
                "events": .uint(v.eventCount), "by_kind": .object(v.eventsByKind.mapValues(JSONValue.uint)),
                "last_event": v.lastEvent.map { id($0, names: names) } ?? .null,
            ])
        }
        return .object(out)
    }
}

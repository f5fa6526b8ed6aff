import Crypto
import EventLog
import Foundation
import Gateway
import Prometheus
import Replication
import Synchronization

/// Metrics state kept by the node between scrapes.
final class NodeMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let health = Mutex(NodeHealth())
    /// Last value exported per counter, so monotonic snapshots become counter increments.
    private let exported = Mutex([String: Int64]())

    func counter(_ name: String, _ labels: [(String, String)] = [], total: UInt64, help: String) {
        let key = name + labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
        let value = Int64(clamping: total)
        let delta = exported.withLock { last -> Int64 in
            defer { last[key] = value }
            return max(0, value - (last[key] ?? 0))
        }
        let counter = registry.makeCounter(
            descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
        if delta > 0 { counter.increment(by: delta) }
    }

    func gauge(_ name: String, _ value: Double, labels: [(String, String)] = [], help: String) {
        let gauge = registry.makeGauge(
            descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
        gauge.set(value)
    }
}

extension Node: ClusterStatusSource {
    var nodeName: String { config.cluster.nodeID }

    func servingState() -> ServingState { state.withLock { $0 } }

    func logIsWritable() -> Bool { engine.recorder.isWritable }

    func nodes() async -> JSONValue {
        guard let gossip else {
            let bind = config.cluster.bindAddress
            return .object([
                "nodes": .array([
                    .object([
                        "node_id": .string(nodeName), "api_address": .string(bind.description), "gossip_address": .null,
                        "status": .string(servingState() == .draining ? "left" : "alive"), "incarnation": .uint(0),
                        "last_seen_ms_ago": .uint(0), "self": .bool(true),
                        "health": metrics.health.withLock { $0 }.json,
                    ])
                ])
            ])
        }
        return .object([
            "nodes": .array(
                gossip.members().sorted { $0.member.name < $1.member.name }.map { m in
                    let isSelf = m.member.name == nodeName
                    let health = isSelf ? metrics.health.withLock { $0 } : NodeHealth(bytes: m.member.health)
                    return .object([
                        "node_id": .string(m.member.name), "api_address": .string(m.member.apiAddress),
                        "gossip_address": .string(m.member.gossipAddress),
                        "status": .string(m.member.status.description),
                        "incarnation": .uint(m.member.incarnation),
                        "last_seen_ms_ago": .uint(isSelf ? 0 : m.lastSeenMillisAgo), "self": .bool(isSelf),
                        "health": health?.json ?? .null,
                    ])
                })
        ])
    }

    func clusterMetrics() async -> JSONValue {
        let members = gossip?.members().map(\.member) ?? []
        let total = max(1, members.count)
        let healthy = gossip == nil ? 1 : members.filter { $0.status == .alive }.count
        let failed = members.filter { $0.status == .dead || $0.status == .suspect }.count
        let syncMetrics = sync?.metrics()
        let gossipMetrics = gossip?.metrics()
        let view = store.viewSnapshot
        let now = SystemWallClock().nowMillis()
        // Share of requests admitted per node over the last five minutes of limit windows.
        let distribution = engine.loadShares(view: view, nowMillis: now).mapValues {
            JSONValue.double(($0 * 1000).rounded() / 1000)
        }
        return .object([
            "cluster_metrics": .object([
                "nodes_total": .uint(UInt64(total)),
                "nodes_healthy": .uint(UInt64(healthy)),
                "nodes_failed": .uint(UInt64(failed)),
                "gossip_messages_per_second": .double(((gossipMetrics?.messagesPerSecond ?? 0) * 10).rounded() / 10),
                "state_convergence_time_ms": .double(syncMetrics?.propagationP99Millis ?? 0),
                "event_propagation_p50_ms": .double(syncMetrics?.propagationP50Millis ?? 0),
                "event_propagation_p99_ms": .double(syncMetrics?.propagationP99Millis ?? 0),
                "request_migration_rate": .double((engine.migrationRate * 10_000).rounded() / 10_000),
                "load_distribution": .object(distribution),
                "provider_performance": engine.providerPerformance(view: view, nowMillis: now),
            ]),
            "limits": engine.limitCounters(view: view, nowMillis: now),
            "spend": engine.spendMetrics(view: view, nowMillis: now),
            "weights": .object(engine.currentWeights.mapValues { .double($0) }),
            "alerts": Self.activeAlerts(view),
        ])
    }

    /// Alerts whose latest `alert.fired` event says firing, from the alerts view (every node's).
    /// A temporary circuit break is active until the time it carries.
    static func activeAlerts(_ view: ViewState, nowMillis: UInt64 = SystemWallClock().nowMillis()) -> JSONValue {
        .array(
            view.alerts.keys.sorted().compactMap { key in
                guard let alert = view.alerts[key], AlertEvaluator.isActive(key, alert.value, nowMillis: nowMillis)
                else {
                    return nil
                }
                return alertJSON(key, alert)
            })
    }

    static func alertJSON(_ key: AlertKey, _ alert: LWW<AlertFired>) -> JSONValue {
        .object([
            "rule": .string(key.rule), "scope": .string(key.scope), "firing": .bool(alert.value.firing),
            "value": .double(alert.value.value), "action": .string(alert.value.action),
            "detail": .string(alert.value.detail),
            "since": .string(EventJSON.rfc3339(millis: alert.event.hlc.wallMillis)),
            "event_id": .string("\(alert.event)"),
        ])
    }

    /// `GET /cluster/alerts`: the alerts firing now and the latest transition of every rule and
    /// subject ever seen, from the alerts view (so the same on every node once converged).
    func alerts() async -> JSONValue {
        let view = store.viewSnapshot
        let now = SystemWallClock().nowMillis()
        let keys = view.alerts.keys.sorted()
        return .object([
            "node_id": .string(nodeName),
            "active": Self.activeAlerts(view, nowMillis: now),
            "latest": .array(keys.map { Self.alertJSON($0, view.alerts[$0]!) }),
        ])
    }

    func recentEvents(limit: Int) async -> JSONValue {
        let reader = store.reader
        let names = (try? reader.nodeNames()) ?? [:]
        let events = (try? Self.newestEvents(reader, limit: limit)) ?? []
        return .object([
            "events": .array(
                events.map { event in
                    guard case .object(var fields) = EventJSON.event(event, names: names) else { return .null }
                    fields["summary"] = .string(Self.summary(event.payload))
                    if case .configUpdated(let update) = event.payload, case .object(var data)? = fields["data"] {
                        data["document"] = Self.withheld(update.document)
                        fields["data"] = .object(data)
                    }
                    return .object(fields)
                })
        ])
    }

    /// What the open endpoint shows of a configuration document: its size, digest and sections.
    /// The document itself (providers, keys, virtual keys, limits) is for `GET /admin/config`,
    /// behind the admin token, and for `bifrost-dump` on the node's own disk.
    static func withheld(_ document: [UInt8]) -> JSONValue {
        let sections: [JSONValue] =
            if case .object(let fields)? = try? JSONValue.parse(document) {
                fields.keys.sorted().map(JSONValue.string)
            } else {
                []
            }
        return .object([
            "withheld": .string("the document is shown by GET /admin/config (admin token)"),
            "bytes": .uint(UInt64(document.count)),
            "sha256": .string(SHA256.hash(data: document).map { String(format: "%02x", $0) }.joined()),
            "sections": .array(sections),
        ])
    }

    /// The newest `limit` events, newest first. The log is keyed by HLC and scanned forwards, so
    /// this scans a window back from the newest HLC, widening it ×4 until it holds `limit` events
    /// (or reaches the start): a busy log is read for its last seconds only, a quiet one in a few
    /// cheap steps. Only the ids are kept while scanning; just the survivors are decoded.
    static func newestEvents(_ reader: EventLogReader, limit: Int) throws -> [Event] {
        guard limit > 0, let newest = try reader.watermarks().values.map(\.maxHLC).max() else { return [] }
        var spanMillis: UInt64 = 2_000
        var ids: [EventID] = []
        while true {
            let since =
                newest.wallMillis > spanMillis
                ? HLCTimestamp(wallMillis: newest.wallMillis - spanMillis, logical: 0) : .zero
            ids.removeAll(keepingCapacity: true)
            try reader.scanRaw(EventFilter(since: since)) { id, _, _ in
                ids.append(id)
                if ids.count >= 2 * limit { ids.removeFirst(ids.count - limit) }
                return true
            }
            if ids.count >= limit || since == .zero { break }
            spanMillis *= 4
        }
        return try ids.suffix(limit).reversed().compactMap { try reader.event($0) }
    }

    /// One line about an event for people (the dashboard); only fields `EventJSON` prints
    /// unredacted, so no secret can appear here either.
    static func summary(_ payload: Event.Payload) -> String {
        func number(_ d: Double) -> String {
            let rounded = (d * 1000).rounded() / 1000
            return rounded == rounded.rounded() ? String(Int64(rounded)) : String(rounded)
        }
        switch payload {
        case .rateLimitIncrement(let p):
            return "+\(p.requests) on \(p.keys.joined(separator: ", ")) (\(p.windowMillis / 1000) s window)"
        case .usageRecorded(let p):
            let cost = p.costMicros.map { String(format: ", $%.6f", Double($0) / 1_000_000) } ?? ", unpriced"
            return "\(p.model) via \(p.keyID): \(p.status) \(p.outcome.name), \(p.tokensIn)+\(p.tokensOut) tokens, "
                + "\(number(Double(p.latencyMicros) / 1000)) ms\(cost)"
        case .weightChanged(let p):
            let reason = p.reason.isEmpty ? "" : " (\(p.reason))"
            return "\(p.keyID) weight \(number(p.oldWeight)) → \(number(p.newWeight))\(reason) by \(p.actor)"
        case .configUpdated(let p):
            let signed = p.signature.isEmpty ? "unsigned" : "signed"
            return "configuration by \(p.author.isEmpty ? "unknown" : p.author), \(signed), \(p.document.count) bytes"
        case .membershipChanged(let p):
            return "\(p.node) \(p.state.name) (incarnation \(p.incarnation)), seen by \(p.observer)"
        case .alertFired(let p):
            let detail = p.detail.isEmpty ? "" : ": \(p.detail)"
            return "\(p.rule) on \(p.scope) \(p.firing ? "fired" : "cleared") at \(number(p.value)), "
                + "\(p.action)\(detail)"
        case .usageAggregated(let p):
            return "\(p.model) via \(p.keyID): \(p.summary.requests) requests, \(p.summary.errors) errors "
                + "(aggregate of \(p.windowMillis / 1000) s)"
        case .unknown(let kind, let bytes):
            return "kind \(kind) from a newer build, \(bytes.count) bytes"
        }
    }

    func logSummary() async -> JSONValue {
        let reader = store.reader
        let names = (try? reader.nodeNames()) ?? [:]
        var marks: [String: JSONValue] = [:]
        for (origin, w) in (try? reader.watermarks()) ?? [:] {
            marks[names[origin] ?? origin.hex] = .object([
                "max_hlc": .uint(w.maxHLC.rawValue), "events": .uint(w.count),
            ])
        }
        let root = (try? reader.digest(.root)) ?? .zero
        return .object([
            "node_id": .string(nodeName), "events": .uint((try? reader.eventCount()) ?? 0),
            "root_digest": .string(root.sumHex), "origins": .object(marks),
            "bytes": .uint(UInt64(reader.usedBytes())),
        ])
    }

    func prometheusText() async -> [UInt8] {
        let stats = store.statistics
        metrics.counter("bifrost_eventlog_appended_total", total: stats.appended, help: "Events appended by this node")
        metrics.counter("bifrost_eventlog_inserted_total", total: stats.inserted, help: "Peers' events inserted")
        metrics.counter(
            "bifrost_eventlog_duplicates_total", total: stats.duplicates, help: "Deliveries of events already stored")
        metrics.counter(
            "bifrost_eventlog_quarantined_total", total: stats.quarantined,
            help: "Events refused for a clock beyond max offset")
        metrics.counter("bifrost_eventlog_commits_total", total: stats.commits, help: "Group commits")
        metrics.gauge("bifrost_eventlog_events", Double((try? store.reader.eventCount()) ?? 0), help: "Events stored")
        metrics.gauge("bifrost_eventlog_bytes", Double(store.reader.usedBytes()), help: "Bytes used by the log")
        metrics.gauge("bifrost_up", servingState() == .serving ? 1 : 0, help: "1 while the node serves traffic")
        if let gossip {
            let members = gossip.members()
            for status in ["alive", "suspect", "dead", "left"] {
                metrics.gauge(
                    "bifrost_cluster_members", Double(members.filter { $0.member.status.description == status }.count),
                    labels: [("status", status)], help: "Members by status")
            }
            let g = gossip.metrics()
            metrics.counter("bifrost_gossip_messages_sent_total", total: g.messagesSent, help: "Gossip datagrams sent")
            metrics.counter(
                "bifrost_gossip_messages_received_total", total: g.messagesReceived, help: "Gossip datagrams received")
        }
        if let sync {
            let s = sync.metrics()
            metrics.counter(
                "bifrost_sync_events_sent_total", total: UInt64(s.eventsSent), help: "Events streamed to peers")
            metrics.counter(
                "bifrost_sync_events_received_total", total: UInt64(s.eventsReceived),
                help: "Events received from peers")
            metrics.counter(
                "bifrost_sync_events_repaired_total", total: UInt64(s.eventsRepaired), help: "Events moved by repair")
            metrics.counter(
                "bifrost_sync_reconciliations_total", total: UInt64(s.reconciliations),
                help: "Reconciliation sessions started")
            metrics.counter(
                "bifrost_sync_reconcile_messages_total", total: UInt64(s.reconcileMessages),
                help: "Reconciliation messages")
            metrics.counter(
                "bifrost_sync_reconcile_bytes_total", total: UInt64(s.reconcileBytes), help: "Reconciliation bytes")
            metrics.counter(
                "bifrost_sync_tls_handshake_failures_total", total: UInt64(s.tlsHandshakeFailures),
                help: "Sync connections refused by mutual TLS (cluster.tls)")
            var rejected = s.rejectedFrames
            if let g = gossip?.metrics() { rejected.merge(g.transport.rejected, uniquingKeysWith: +) }
            for (reason, n) in rejected {
                metrics.counter(
                    "bifrost_transport_rejected_total", [("reason", reason.rawValue)], total: n,
                    help: "Cluster datagrams and frames dropped, by reason")
            }
            metrics.gauge(
                "bifrost_sync_propagation_p99_ms", s.propagationP99Millis ?? 0, help: "Event propagation latency p99")
        }
        var firing: [String: Int] = [:]
        let view = store.viewSnapshot
        let now = SystemWallClock().nowMillis()
        for (key, alert) in view.alerts where AlertEvaluator.isActive(key, alert.value, nowMillis: now) {
            firing[key.rule, default: 0] += 1
        }
        engine.metrics.alertsFiring(firing, rules: Set(view.alerts.keys.map(\.rule)))
        var out: [UInt8] = []
        metrics.registry.emit(into: &out)
        return out
    }
}

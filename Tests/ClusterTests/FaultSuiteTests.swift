import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

extension MultiProcess {
    /// The fault suite (issue D): real nodes behind haproxy under steady load. `make faults` runs
    /// it with longer phases (`BIFROST_FAULTS_FULL=1`); `make test` runs the bounded version.
    @Suite(.serialized, .timeLimit(.minutes(5))) struct FaultSuiteTests {
        static let token = "sk-fault-suite"
        static let full = ProcessInfo.processInfo.environment["BIFROST_FAULTS_FULL"] == "1"
        /// Seconds of load around each fault.
        static let phase: Duration = full ? .seconds(10) : .seconds(3)
        static let rate = 500
        static let body = #"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "under load"}]}"#

        static func config(mock: String) -> String {
            """
            {"providers": {"openai": {"type": "openai", "base_url": "\(mock)/v1", "network": {"timeout": "5s"},
               "keys": [{"name": "gpt-key-1", "value": "sk-upstream-1", "models": ["gpt-4o-mini"], "weight": 0.6},
                        {"name": "gpt-key-2", "value": "sk-upstream-2", "models": ["gpt-4o-mini"], "weight": 0.4}]}},
             "virtual_keys": [{"name": "team-a", "value": "\(token)", "models": ["*"], "limits": {"rpm": 1000000}}],
             "cluster": {"gossip": {"interval": "200ms", "timeout": "1s"},
                         "failover": {"detection_threshold": 2, "drain_delay": "700ms", "drain_timeout": "10s"}}}
            """
        }

        static let adminToken = "admin-fault-suite"

        /// Writes a test's figures to `$BIFROST_FAULTS_OUT/faults-<name>.json` for the bench report
        /// (`make faults`); does nothing otherwise.
        static func report(_ name: String, _ figures: [String: Any]) {
            guard let dir = ProcessInfo.processInfo.environment["BIFROST_FAULTS_OUT"] else { return }
            var figures = figures
            figures["phase_seconds"] = phase.components.seconds
            figures["full"] = full
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            if let data = try? JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys]) {
                try? data.write(to: URL(fileURLWithPath: "\(dir)/faults-\(name).json"))
            }
        }

        static func seconds(_ d: Duration) -> Double {
            Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }

        /// Fast controller timings so a decision, its replication and the recovery fit a test.
        static func adaptiveConfig(mock: String) -> String {
            """
            {"providers": {"openai": {"type": "openai", "base_url": "\(mock)/v1", "network": {"timeout": "5s"},
               "keys": [{"name": "gpt-key-1", "value": "sk-upstream-1", "models": ["gpt-4o-mini"], "weight": 0.6},
                        {"name": "gpt-key-2", "value": "sk-upstream-2", "models": ["gpt-4o-mini"], "weight": 0.4}]}},
             "virtual_keys": [{"name": "team-a", "value": "\(token)", "models": ["*"], "limits": {"rpm": 1000000}}],
             "admin": {"token": "\(adminToken)"},
             "cluster": {"gossip": {"interval": "200ms", "timeout": "1s"},
                         "failover": {"detection_threshold": 2, "recovery_timeout": "2s"},
                         "load_balancing": {"health_check_interval": "500ms", "adjustment_interval": "1s",
                                            "performance_window": "2s", "min_samples": 10}}}
            """
        }

        /// A 240 RPM key under the `scale` partition policy.
        static let partitionLimit = 240

        static func partitionConfig(mock: String) -> String {
            """
            {"providers": {"openai": {"type": "openai", "base_url": "\(mock)/v1", "network": {"timeout": "5s"},
               "keys": [{"name": "gpt-key-1", "value": "sk-upstream-1", "models": ["gpt-4o-mini"], "weight": 0.6},
                        {"name": "gpt-key-2", "value": "sk-upstream-2", "models": ["gpt-4o-mini"], "weight": 0.4}]}},
             "virtual_keys": [{"name": "team-a", "value": "\(token)", "models": ["*"], "limits": {"rpm": \(partitionLimit)}}],
             "admin": {"token": "\(adminToken)"},
             "cluster": {"gossip": {"interval": "200ms", "timeout": "1s"},
                         "failover": {"detection_threshold": 2, "partition_policy": "scale"}}}
            """
        }

        func startCluster(
            _ harness: ClusterHarness, config: (String) -> String = Self.config
        ) async throws -> (balancer: String, key: String, mock: String) {
            let mock = try await harness.startMock()
            let key = ClusterTests.key()
            try harness.startAll(config: config(mock), key: key)
            #expect(await harness.allAlive(), "\(harness.log("node-1"))")
            let balancer = try harness.startBalancer()
            let ready = await harness.eventually(.seconds(10)) {
                try await harness.send("GET", balancer + "/health").0 == 200
            }
            #expect(ready, "haproxy did not come up")
            return (balancer, key, mock)
        }

        @Test func killNineUnderLoad_noClientErrors_deadWithinTheBound_trafficRedistributed() async throws {
            let harness = try ClusterHarness(nodes: 3, label: "fault-kill")
            defer { Task { await harness.stopAll() } }
            let (balancer, _, _) = try await startCluster(harness)
            let load = LoadDriver()
            load.start(url: balancer + "/v1/chat/completions", token: Self.token, body: Self.body, rate: Self.rate)
            try await Task.sleep(for: Self.phase)
            let killedAt = ContinuousClock.now
            harness.kill9("node-2")
            // Responses node-2 sent before it died may still be on their way to the client.
            try await Task.sleep(for: .milliseconds(200))
            let before = load.snapshot
            let dead = await harness.eventually(.seconds(15)) {
                await harness.members(seenBy: "node-1")["node-2"] == "dead"
            }
            let detection = ContinuousClock.now - killedAt
            try await Task.sleep(for: Self.phase)
            let outcome = await load.stop()
            let afterKill = (outcome.byNode["node-2"] ?? 0) - (before.byNode["node-2"] ?? 0)
            print(
                "fault kill -9: \(outcome.ok) ok, \(outcome.failures) client errors, detection \(detection), served by \(outcome.byNode)"
            )
            Self.report(
                "kill",
                [
                    "ok": outcome.ok, "client_errors": outcome.failures, "detection_seconds": Self.seconds(detection),
                    "served_by": outcome.byNode, "served_by_killed_after_kill": afterKill,
                ])
            #expect(
                outcome.failures == 0, "clients saw errors: \(outcome.statuses), transport \(outcome.transportErrors)")
            #expect(outcome.ok > Self.rate, "too little load went through: \(outcome.ok)")
            #expect(dead, "node-2 was not declared dead")
            // detection_threshold × interval + Lifeguard's suspicion bound for 3 members.
            #expect(detection < ClusterTests.interval * 2 + ClusterTests.maxSuspicion + .seconds(2))
            #expect(afterKill == 0, "node-2 served \(afterKill) requests after it was killed")
            let metrics = try await harness.json("node-1", "/cluster/metrics")["cluster_metrics"] as? [String: Any]
            let distribution = metrics?["load_distribution"] as? [String: Any] ?? [:]
            #expect(distribution["node-1"] != nil && distribution["node-3"] != nil, "\(distribution)")
            await harness.stopAll()
        }

        @Test func rollingRestartUnderLoad_noClientErrors() async throws {
            let harness = try ClusterHarness(nodes: 3, label: "fault-rolling")
            defer { Task { await harness.stopAll() } }
            let (balancer, key, _) = try await startCluster(harness)
            let load = LoadDriver()
            load.start(url: balancer + "/v1/chat/completions", token: Self.token, body: Self.body, rate: Self.rate)
            try await Task.sleep(for: .seconds(1))
            for node in harness.nodes {
                await harness.terminate(node.name)
                try harness.startConfigured(node.name, key: key)
                #expect(await harness.allAlive(), "\(node.name) did not rejoin")
                // haproxy marks it up after two passing checks.
                try await Task.sleep(for: .seconds(1))
            }
            let outcome = await load.stop()
            print(
                "fault rolling restart: \(outcome.ok) ok, \(outcome.failures) client errors, served by \(outcome.byNode)"
            )
            Self.report("rolling", ["ok": outcome.ok, "client_errors": outcome.failures, "served_by": outcome.byNode])
            #expect(
                outcome.failures == 0, "clients saw errors: \(outcome.statuses), transport \(outcome.transportErrors)")
            #expect(outcome.ok > Self.rate)
            await harness.stopAll()
        }

        /// Weight of `key` in force on `node` (`/cluster/metrics` → `weights`).
        func weight(_ harness: ClusterHarness, _ node: String, _ key: String) async -> Double? {
            let metrics = try? await harness.json(node, "/cluster/metrics")
            return ((metrics?["weights"] as? [String: Any])?[key] as? NSNumber)?.doubleValue
        }

        @Test func failingKey_weightReducedByOneNodesDecision_visibleOnAllNodes_restoredAfterRecovery() async throws {
            let harness = try ClusterHarness(nodes: 3, label: "fault-weights")
            defer { Task { await harness.stopAll() } }
            let (balancer, _, mock) = try await startCluster(harness, config: Self.adaptiveConfig)
            let names = harness.nodes.map(\.name)
            let load = LoadDriver()
            load.start(
                url: balancer + "/v1/chat/completions", token: Self.token, body: Self.body, rate: 100, workers: 8)
            try await Task.sleep(for: .seconds(2))

            // gpt-key-2 ("sk-upstream-2") starts failing at the provider.
            let (faulted, _) = try await harness.send("PUT", mock + "/mock/keys/am-2", body: #"{"status": 503}"#)
            #expect(faulted == 200)
            let reduced = await harness.eventually(.seconds(20)) {
                for n in names where (await weight(harness, n, "gpt-key-2") ?? 1) >= 0.4 { return false }
                return true
            }
            #expect(reduced, "gpt-key-2's weight was not reduced on every node")
            let alerted = await harness.eventually(.seconds(10)) {
                for n in names {
                    let active = try await harness.json(n, "/cluster/alerts")["active"] as? [[String: Any]] ?? []
                    if !active.contains(where: {
                        $0["rule"] as? String == "high_error_rate" && $0["scope"] as? String == "gpt-key-2"
                    }) {
                        return false
                    }
                }
                return true
            }
            #expect(alerted, "high_error_rate for gpt-key-2 is not active on every node")

            // The provider recovers: the controller restores the configured weight step by step.
            _ = try await harness.send("DELETE", mock + "/mock/keys/am-2")
            let restored = await harness.eventually(.seconds(40)) {
                for n in names where abs((await weight(harness, n, "gpt-key-2") ?? 0) - 0.4) > 1e-9 { return false }
                return true
            }
            let outcome = await load.stop()
            let finalWeight = await weight(harness, "node-1", "gpt-key-2") ?? -1
            #expect(restored, "gpt-key-2 was not restored to 0.4: \(finalWeight)")
            #expect(
                outcome.failures == 0, "clients saw errors: \(outcome.statuses), transport \(outcome.transportErrors)")

            // Exactly one node decided: every controller change of the provider's keys has one actor,
            // and every node holds the same changes.
            let changes = try harness.dumpEvents("node-1", kind: "weight.changed")
            let actors = Set(changes.compactMap { ($0["data"] as? [String: Any])?["actor"] as? String })
            #expect(actors.count == 1 && actors.first?.hasPrefix("controller:node-") == true, "actors: \(actors)")
            let reductions = changes.filter {
                let d = $0["data"] as? [String: Any]
                return d?["key_id"] as? String == "gpt-key-2"
                    && ((d?["new_weight"] as? NSNumber)?.doubleValue ?? 1)
                        < ((d?["old_weight"] as? NSNumber)?.doubleValue ?? 0)
            }
            #expect(!reductions.isEmpty)
            for n in names.dropFirst() {
                let theirs = try harness.dumpEvents(n, kind: "weight.changed").compactMap { $0["hlc"] as? NSNumber }
                #expect(
                    Set(theirs) == Set(changes.compactMap { $0["hlc"] as? NSNumber }), "\(n) holds other weight changes"
                )
            }
            Self.report(
                "weights",
                [
                    "ok": outcome.ok, "client_errors": outcome.failures, "controller_changes": changes.count,
                    "deciders": actors.sorted(), "reduced_within_bound": reduced, "restored": restored,
                ])
            print(
                "fault weights: \(changes.count) controller changes by \(actors.first ?? "?"), \(outcome.ok) ok, \(outcome.failures) errors"
            )
            await harness.stopAll()
        }

        @Test func partitionUnderLoad_healsToIdenticalDigests_keepsAcknowledgedWrites_boundsOvershoot() async throws {
            let harness = try ClusterHarness(nodes: 3, label: "fault-partition")
            defer { Task { await harness.stopAll() } }
            _ = try await startCluster(harness, config: Self.partitionConfig)
            let names = harness.nodes.map(\.name)
            let partition: Duration = Self.full ? .seconds(30) : .seconds(8)
            // One fixed-minute window holds the whole run, so the limit is counted once.
            let intoMinute = Date().timeIntervalSince1970.truncatingRemainder(dividingBy: 60)
            let needed = Double(partition.components.seconds) + 14
            if intoMinute > 58 - needed { try await Task.sleep(for: .seconds(61 - intoMinute)) }

            var loads: [LoadDriver] = []
            for n in names {
                let load = LoadDriver()
                load.start(
                    url: harness.url(n, "/v1/chat/completions"), token: Self.token, body: Self.body, rate: 20,
                    workers: 2)
                loads.append(load)
            }
            try await Task.sleep(for: .seconds(1))
            _ = try await harness.request("node-3", "POST", "/debug/partition", body: "node-1,node-2")
            _ = try await harness.request("node-1", "POST", "/debug/partition", body: "node-3")
            _ = try await harness.request("node-2", "POST", "/debug/partition", body: "node-3")
            try await Task.sleep(for: .seconds(1))
            // Acknowledged writes on both sides of the split.
            var written: [String] = []
            for (n, w) in [("node-3", 0.25), ("node-1", 0.35)] {
                let (status, data) = try await harness.send(
                    "PUT", harness.url(n, "/admin/keys/gpt-key-2/weight"), token: Self.adminToken,
                    body: #"{"weight": \#(w), "reason": "during the partition"}"#)
                #expect(status == 200)
                let id = (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["event_id"] as? String
                written.append(id ?? "?")
            }
            try await Task.sleep(for: partition - .seconds(1))
            let during = try names.map { try harness.dumpStats($0)["root_digest"] as? String }
            #expect(Set(during).count > 1, "the partition must hold")
            let healedAt = ContinuousClock.now
            for n in names { _ = try await harness.request(n, "DELETE", "/debug/partition") }
            let converged = await harness.eventually(.seconds(20)) {
                let stats = try names.map { try harness.dumpStats($0) }
                return Set(stats.compactMap { $0["root_digest"] as? String }).count == 1
            }
            let convergence = ContinuousClock.now - healedAt
            var outcome = LoadDriver.Outcome()
            for load in loads {
                let o = await load.stop()
                outcome.ok += o.ok
                outcome.statuses.merge(o.statuses, uniquingKeysWith: +)
                outcome.transportErrors += o.transportErrors
            }
            #expect(converged, "digests did not converge within 20 s of the heal")
            for n in names {
                let ids = Set(
                    try harness.dumpEvents(n, kind: "weight.changed").compactMap { e -> String? in
                        guard let hlc = e["hlc"] as? NSNumber, let origin = e["origin_id"] as? String else {
                            return nil
                        }
                        return "\(hlc)@\(origin)"
                    })
                #expect(ids.count >= 2, "\(n) lost an acknowledged weight change: \(ids) vs \(written)")
            }
            let weights = await names.asyncMap { await weight(harness, $0, "gpt-key-2") }
            #expect(Set(weights.map { $0 ?? -1 }).count == 1, "weights differ after the heal: \(weights)")
            // `scale`: each side admits at most its share; the bound is limit + one per side + (N − 1).
            let admitted = outcome.ok
            let bound = Self.partitionLimit + 2 + (names.count - 1)
            let overshoot = max(0, admitted - Self.partitionLimit)
            print(
                "fault partition: \(admitted) admitted of limit \(Self.partitionLimit) (overshoot \(overshoot), \(String(format: "%.1f", Double(overshoot) * 100 / Double(Self.partitionLimit))) %), convergence \(convergence), statuses \(outcome.statuses)"
            )
            Self.report(
                "partition",
                [
                    "partition_seconds": Self.seconds(partition), "limit": Self.partitionLimit, "admitted": admitted,
                    "bound": bound, "overshoot": overshoot,
                    "overshoot_pct": Double(overshoot) * 100 / Double(Self.partitionLimit),
                    "convergence_seconds_after_heal": Self.seconds(convergence), "converged": converged,
                    "statuses": Dictionary(uniqueKeysWithValues: outcome.statuses.map { ("\($0.key)", $0.value) }),
                ])
            #expect(admitted <= bound, "admitted \(admitted) > bound \(bound)")
            #expect(admitted >= Self.partitionLimit / 2, "the limit starved the cluster: \(admitted)")
            #expect(outcome.statuses.keys.allSatisfy { $0 == 200 || $0 == 429 }, "\(outcome.statuses)")
            await harness.stopAll()
        }
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async -> T) async -> [T] {
        var out: [T] = []
        for e in self { out.append(await transform(e)) }
        return out
    }
}

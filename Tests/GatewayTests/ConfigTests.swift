import Testing

@testable import Gateway

@Suite struct ConfigTests {
    func parse(_ text: String) throws(ConfigError) -> BifrostConfig { try BifrostConfig.parse(Array(text.utf8)) }

    func error(_ text: String) -> ConfigError? {
        do {
            _ = try parse(text)
            return nil
        } catch {
            return error
        }
    }

    static let seedAdvanced = """
        {
          "cluster": {
            "enabled": true,
            "node_id": "bifrost-node-1",
            "bind_address": "0.0.0.0:8080",
            "peers": [
              "bifrost-node-2:8080",
              "bifrost-node-3:8080"
            ],
            "gossip": {
              "port": 7946,
              "interval": "1s",
              "timeout": "5s",
              "max_packet_size": 1400,
              "compression": true
            },
            "failover": {
              "detection_threshold": 3,
              "recovery_timeout": "30s",
              "request_migration": "migrate_to_healthy"
            },
            "load_balancing": {
              "algorithm": "weighted_round_robin",
              "health_check_interval": "10s",
              "weight_adjustment": "auto"
            }
          }
        }
        """

    @Test func seedAdvancedBlock_isAcceptedAsWritten() throws {
        let c = try parse(Self.seedAdvanced).cluster
        #expect(c.enabled && c.nodeID == "bifrost-node-1")
        #expect(c.bindAddress == HostPort(host: "0.0.0.0", port: 8080))
        #expect(
            c.peers == [HostPort(host: "bifrost-node-2", port: 8080), HostPort(host: "bifrost-node-3", port: 8080)])
        #expect(c.gossip.port == 7946 && c.gossip.interval == .seconds(1) && c.gossip.timeout == .seconds(5))
        #expect(c.gossip.maxPacketSize == 1400 && c.gossip.compression)
        #expect(c.failover.detectionThreshold == 3 && c.failover.recoveryTimeout == .seconds(30))
        #expect(c.failover.requestMigration == .migrateToHealthy)
        #expect(c.loadBalancing.algorithm == .weightedRoundRobin && c.loadBalancing.healthCheckInterval == .seconds(10))
        #expect(c.loadBalancing.weightAdjustment == .auto)
    }

    @Test func seedMigrationBlock_isAcceptedAsWritten() throws {
        let c = try parse(
            """
            {"cluster": {"failover": {"request_migration": "migrate_to_healthy",
              "migration_strategies": {"chat_completions": "migrate_to_healthy", "embeddings": "complete_on_origin",
                                       "streaming": "circuit_breaker"},
              "timeout_behavior": {"short_timeout": "retry_with_backoff", "long_timeout": "migrate_to_healthy"}}}}
            """
        ).cluster.failover
        #expect(c.migrationStrategies["embeddings"] == .completeOnOrigin)
        #expect(c.migrationStrategies["streaming"] == .circuitBreaker)
        #expect(
            c.timeoutBehavior.shortTimeout == .retryWithBackoff && c.timeoutBehavior.longTimeout == .migrateToHealthy)
    }

    @Test func gatewayContract_isAccepted() throws {
        let config = try parse(
            """
            {"providers": {"openai": {"type": "openai", "base_url": "http://127.0.0.1:18080/v1",
               "keys": [{"name": "gpt-4-key-1", "value": "env.OPENAI_API_KEY", "models": ["gpt-4o-mini"], "weight": 0.8,
                         "limits": {"rpm": 1000, "tpm": 100000}}]},
               "anthropic": {"base_url": "https://api.anthropic.com",
                 "keys": [{"id": "claude-3-key-1", "value": "sk-ant-literal", "models": ["claude-3-5-sonnet"], "weight": 0.005}]}},
             "virtual_keys": [{"name": "team-a", "value": "sk-team-a-123", "models": ["*"], "limits": {"rpm": 300, "tpm": 100000}}],
             "admin": {"token": "env.BIFROST_ADMIN_TOKEN", "signing_key": "env.BIFROST_OPERATOR_KEY",
                       "trusted_keys": ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]},
             "alerts": [{"name": "High Error Rate - Model Key", "condition": "error_rate > 0.025", "scope": "model_key_id",
                         "action": "reduce_weight"}]}
            """)
        #expect(config.providers.map(\.name) == ["anthropic", "openai"])
        let openai = config.providers[1]
        #expect(openai.type == .openai && openai.keys[0].id == "gpt-4-key-1" && openai.keys[0].weight == 0.8)
        #expect(openai.keys[0].value == .environment("OPENAI_API_KEY"))
        #expect(openai.keys[0].limits == BifrostConfig.Limits(rpm: 1000, tpm: 100_000))
        #expect(config.providers[0].type == .anthropic, "type defaults to the entry's name")
        #expect(config.providers[0].keys[0].weight == 0.005)
        #expect(config.virtualKeys[0].limits.rpm == 300)
        #expect(config.alerts[0].action == "reduce_weight")
        #expect("\(config.providers[0].keys[0].value)" == "[redacted]", "literal secrets never print")
    }

    @Test(arguments: [
        (#"{"cluster": {"gossip": {"interval": "fast"}}}"#, "cluster.gossip.interval"),
        (#"{"cluster": {"gossip": {"port": 70000}}}"#, "cluster.gossip.port"),
        (#"{"cluster": {"peers": ["nohost"]}}"#, "cluster.peers[0]"),
        (#"{"cluster": {"failover": {"request_migration": "teleport"}}}"#, "cluster.failover.request_migration"),
        (#"{"cluster": {"gossip": {"intervall": "1s"}}}"#, "cluster.gossip.intervall"),
        (#"{"clusterr": {}}"#, "clusterr"),
        (#"{"cluster": {"enabled": "yes"}}"#, "cluster.enabled"),
        (#"{"providers": {"openai": {"keys": []}}}"#, "providers.openai.keys"),
        (#"{"providers": {"x": {"keys": [{"name": "k", "value": "v", "models": ["m"]}]}}}"#, "providers.x.type"),
        (
            #"{"providers": {"openai": {"keys": [{"name": "k", "value": "v", "models": ["m"], "weight": -1}]}}}"#,
            "providers.openai.keys[0].weight"
        ),
        (
            #"{"providers": {"openai": {"keys": [{"name": "k", "value": "v", "models": ["m"]}, {"name": "k", "value": "w", "models": ["m"]}]}}}"#,
            "providers.openai.keys[1].name"
        ),
        (#"{"virtual_keys": [{"name": "a"}]}"#, "virtual_keys[0].value"),
        (#"{"admin": {"trusted_keys": ["short"]}}"#, "admin.trusted_keys[0]"),
        (#"{"cluster": {"bind_address": "0.0.0.0:7946"}}"#, "cluster.gossip.port"),
        (#"{"cluster": "#, "$"),
        (
            #"{"cluster": {"load_balancing": {"max_ejection_percent": 101}}}"#,
            "cluster.load_balancing.max_ejection_percent"
        ),
        (#"{"cluster": {"load_balancing": {"latency_floor": "soon"}}}"#, "cluster.load_balancing.latency_floor"),
    ])
    func badConfig_isRefused_withThePathOfTheField(text: String, path: String) {
        let e = error(text)
        #expect(e?.path == path, "\(String(describing: e))")
        #expect(e?.message.isEmpty == false)
    }

    @Test func environment_overridesTheFile_andErrorsNameTheVariable() throws {
        var config = try parse(Self.seedAdvanced)
        try config.apply(environment: [
            "CLUSTER_ENABLED": "false", "NODE_ID": "bifrost-node-9", "PEERS": "a:8081, b:8082",
            "BIND_ADDRESS": "127.0.0.1:9000",
            "GOSSIP_PORT": "9001", "DATA_DIR": "/tmp/x", "BIFROST_CLUSTER_KEY": "k",
        ])
        #expect(!config.cluster.enabled && config.cluster.nodeID == "bifrost-node-9")
        #expect(config.cluster.peers == [HostPort(host: "a", port: 8081), HostPort(host: "b", port: 8082)])
        #expect(
            config.cluster.bindAddress.port == 9000 && config.cluster.gossip.port == 9001 && config.dataDir == "/tmp/x")
        #expect(config.cluster.encryption.keys == [.literal("k")])
        #expect(throws: ConfigError(path: "GOSSIP_PORT", "expected a port number, got \"x\"")) {
            try config.apply(environment: ["GOSSIP_PORT": "x"])
        }
        #expect(throws: ConfigError.self) { try config.apply(environment: ["CLUSTER_ENABLED": "maybe"]) }
    }

    @Test(arguments: [
        ("1s", Duration.seconds(1)), ("500ms", .milliseconds(500)), ("1m30s", .seconds(90)), ("2h", .seconds(7200)),
        ("1.5s", .milliseconds(1500)),
    ])
    func durations_parseLikeTheSeedWritesThem(text: String, expected: Duration) {
        #expect(ConfigDuration.parse(text) == expected)
    }

    @Test func badDurations_areRefused() {
        for text in ["", "1", "s", "1x", "-1s", "1s2"] { #expect(ConfigDuration.parse(text) == nil, "\(text)") }
    }

    @Test func emptyDocument_givesWorkingDefaults() throws {
        let c = try parse("{}")
        #expect(!c.cluster.enabled && c.cluster.bindAddress.port == 8080 && c.cluster.gossip.port == 7946)
        #expect(c.cluster.encryption.enabled)
        #expect(c.cluster.loadBalancing.maxEjectionPercent == 50)
        #expect(c.cluster.loadBalancing.latencyFloor == .milliseconds(10))
    }

    @Test func retention_defaultsToSevenDays_andRefusesAHorizonShorterThanTheWindowsItKeeps() throws {
        let defaults = try parse("{}")
        #expect(defaults.retention.horizon == .seconds(7 * 86_400) && defaults.retention.interval == .seconds(60))
        let set = try parse(#"{"retention": {"horizon": "30d", "interval": "5m"}}"#)
        #expect(set.retention.horizon == .seconds(30 * 86_400) && set.retention.interval == .seconds(300))
        for (text, path) in [
            (#"{"retention": {"horizon": "30s"}}"#, "retention.horizon"),
            (
                #"{"cluster": {"load_balancing": {"performance_window": "10m"}}, "retention": {"horizon": "5m"}}"#,
                "retention.horizon"
            ),
            (#"{"retention": {"interval": "10ms"}}"#, "retention.interval"),
            (#"{"retention": {"horizon": "7d", "keep": true}}"#, "retention.keep"),
            (#"{"retention": {"max_log_bytes": "10KiB"}}"#, "retention.max_log_bytes"),
            (#"{"retention": {"max_log_bytes": "lots"}}"#, "retention.max_log_bytes"),
            (#"{"retention": {"max_log_bytes": -5}}"#, "retention.max_log_bytes"),
        ] {
            #expect(throws: ConfigError.self, "\(text)") { try parse(text) }
            do {
                _ = try parse(text)
            } catch {
                #expect(error.path == path, "\(text): \(error)")
            }
        }
        #expect(try parse(#"{"retention": {"horizon": "1m"}}"#).retention.horizon == .seconds(60))
        #expect(defaults.retention.maxLogBytes == nil)
        #expect(try parse(#"{"retention": {"max_log_bytes": "512MiB"}}"#).retention.maxLogBytes == 512 << 20)
        #expect(try parse(#"{"retention": {"max_log_bytes": "2GB"}}"#).retention.maxLogBytes == 2_000_000_000)
        #expect(try parse(#"{"retention": {"max_log_bytes": 8388608}}"#).retention.maxLogBytes == 8 << 20)
        #expect(ConfigDuration.parse("7d") == .seconds(7 * 86_400))
        #expect(ConfigDuration.parse("1d12h") == .seconds(36 * 3_600))
    }

    @Test func breakerBounds_areRead() throws {
        let c = try parse(#"{"cluster": {"load_balancing": {"max_ejection_percent": 25, "latency_floor": "3ms"}}}"#)
        #expect(c.cluster.loadBalancing.maxEjectionPercent == 25)
        #expect(c.cluster.loadBalancing.latencyFloor == .milliseconds(3))
        let settings = ControlLoop.controllerSettings(c, rules: [])
        #expect(settings.maxEjectionFraction == 0.25 && settings.latencyFloorMillis == 3)
    }
}

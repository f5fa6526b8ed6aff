import EventLog
import Foundation
import NIOSSL

extension BifrostConfig {
    /// Parses a configuration document. Every field is checked; the first problem is thrown
    /// with its JSON path, and nothing is half-applied.
    public static func parse(_ bytes: [UInt8]) throws(ConfigError) -> BifrostConfig {
        let root: JSONValue
        do {
            root = try JSONValue.parse(bytes)
        } catch {
            throw ConfigError(path: "$", "not valid JSON (\(Self.jsonProblem(error)))")
        }
        var r = try ConfigReader(root, path: "")
        var config = BifrostConfig()
        if var c = try r.object("cluster") { config.cluster = try parseCluster(&c) }
        config.dataDir = try r.string("data_dir")
        if var p = try r.object("providers") { config.providers = try parseProviders(&p) }
        if let items = try r.array("virtual_keys") {
            config.virtualKeys = try items.map { (path, value) throws(ConfigError) in try parseVirtualKey(value, path) }
        }
        if var g = try r.object("gateway") { config.gateway = try parseGateway(&g) }
        if var a = try r.object("admin") {
            config.admin.token = try a.string("token").map(SecretValue.init)
            config.admin.signingKey = try a.string("signing_key").map(SecretValue.init)
            config.admin.trustedKeys = try a.strings("trusted_keys") ?? []
            for (i, key) in config.admin.trustedKeys.enumerated() where Data(base64Encoded: key)?.count != 32 {
                throw ConfigError(
                    path: "admin.trusted_keys[\(i)]",
                    "expected base64 of a 32-byte Ed25519 public key (`bifrost-config keygen`)")
            }
            try a.finish()
        }
        if let items = try r.array("alerts") {
            config.alerts = try items.map { (path, value) throws(ConfigError) in
                var a = try ConfigReader(value, path: path)
                let rule = AlertRule(
                    name: try a.string("name") ?? "", condition: try a.string("condition") ?? "",
                    scope: try a.string("scope") ?? "", action: try a.string("action") ?? "")
                for (field, text) in [("name", rule.name), ("condition", rule.condition), ("scope", rule.scope)]
                where text.isEmpty {
                    throw ConfigError(path: "\(path).\(field)", "required")
                }
                try a.finish()
                return rule
            }
        }
        if let url = try r.string("alert_webhook") {
            guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil
            else {
                throw ConfigError(path: "alert_webhook", "expected an http(s) URL with a host")
            }
            config.alertWebhook = url
        }
        if var t = try r.object("retention") {
            config.retention.horizon = try t.duration("horizon") ?? config.retention.horizon
            config.retention.interval = try t.duration("interval") ?? config.retention.interval
            config.retention.maxLogBytes = try t.byteSize("max_log_bytes", in: (1 << 20)...(1 << 50))
            // Compaction keeps every window's sums, so views and limits read the same before and
            // after; the current limit window and performance window stay event by event.
            let floor = max(.seconds(60), config.cluster.loadBalancing.performanceWindow)
            if config.retention.horizon < floor {
                throw ConfigError(
                    path: t.child("horizon"),
                    "must be at least \(ConfigDuration.format(floor)) (the limit window and cluster.load_balancing.performance_window)"
                )
            }
            if config.retention.interval < .seconds(1) {
                throw ConfigError(path: t.child("interval"), "must be at least 1s")
            }
            try t.finish()
        }
        if var p = try r.object("pricing") { config.pricing = try parsePricing(&p) }
        try r.finish()
        try config.validate()
        return config
    }

    static func parsePricing(_ p: inout ConfigReader) throws(ConfigError) -> Pricing {
        var pricing = Pricing()
        if let file = try p.string("file") {
            let bytes: [UInt8]
            do {
                bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
            } catch {
                throw ConfigError(
                    path: p.child("file"), "cannot read \"\(file)\" (\((error as NSError).localizedDescription))")
            }
            pricing.file = file
            pricing.fileSheet = try PriceSheet(json: bytes, strict: false, path: "\(p.child("file")) (\(file))")
        }
        pricing.models = try parsePriceModels(&p)
        try p.finish()
        return pricing
    }

    static func parsePriceModels(_ p: inout ConfigReader) throws(ConfigError) -> PriceSheet {
        guard let models = p.raw("models") else { return PriceSheet() }
        return try PriceSheet(models, strict: true, path: p.child("models"))
    }

    static func jsonProblem(_ error: any Error) -> String {
        if case .dataCorrupted(let context) = error as? Swift.DecodingError {
            return (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
                ?? context.debugDescription
        }
        return "\(error)"
    }

    static func parseCluster(_ c: inout ConfigReader) throws(ConfigError) -> Cluster {
        var cluster = Cluster()
        cluster.enabled = try c.bool("enabled") ?? cluster.enabled
        if let id = try c.string("node_id") { cluster.nodeID = id }
        if let bind = try c.string("bind_address") {
            guard let hp = HostPort(bind) else {
                throw ConfigError(
                    path: c.child("bind_address"), "expected host:port like \"0.0.0.0:8080\", got \"\(bind)\"")
            }
            cluster.bindAddress = hp
        }
        if let peers = try c.strings("peers") {
            cluster.peers = try peers.enumerated().map { (i, text) throws(ConfigError) in
                guard let hp = HostPort(text) else {
                    throw ConfigError(
                        path: "\(c.child("peers"))[\(i)]",
                        "expected host:port like \"bifrost-node-2:8080\", got \"\(text)\"")
                }
                return hp
            }
        }
        if var g = try c.object("gossip") {
            cluster.gossip.port = try g.int("port", in: 1...65535) ?? cluster.gossip.port
            cluster.gossip.interval = try g.duration("interval") ?? cluster.gossip.interval
            cluster.gossip.timeout = try g.duration("timeout") ?? cluster.gossip.timeout
            cluster.gossip.maxPacketSize =
                try g.int("max_packet_size", in: 512...65_000) ?? cluster.gossip.maxPacketSize
            cluster.gossip.compression = try g.bool("compression") ?? cluster.gossip.compression
            try g.finish()
        }
        if var f = try c.object("failover") {
            cluster.failover.detectionThreshold =
                try f.int("detection_threshold", in: 1...100) ?? cluster.failover.detectionThreshold
            cluster.failover.recoveryTimeout = try f.duration("recovery_timeout") ?? cluster.failover.recoveryTimeout
            cluster.failover.drainDelay = try f.duration("drain_delay") ?? cluster.failover.drainDelay
            cluster.failover.partitionPolicy =
                try f.enumValue("partition_policy", PartitionPolicy.self) ?? cluster.failover.partitionPolicy
            cluster.failover.drainTimeout = try f.duration("drain_timeout") ?? cluster.failover.drainTimeout
            cluster.failover.requestMigration =
                try f.enumValue("request_migration", MigrationStrategy.self) ?? cluster.failover.requestMigration
            if var m = try f.object("migration_strategies") {
                for key in m.fields.keys.sorted() {
                    cluster.failover.migrationStrategies[key] = try m.enumValue(key, MigrationStrategy.self)
                }
                try m.finish()
            }
            if var t = try f.object("timeout_behavior") {
                cluster.failover.timeoutBehavior.shortTimeout =
                    try t.enumValue("short_timeout", MigrationStrategy.self)
                    ?? cluster.failover.timeoutBehavior.shortTimeout
                cluster.failover.timeoutBehavior.longTimeout =
                    try t.enumValue("long_timeout", MigrationStrategy.self)
                    ?? cluster.failover.timeoutBehavior.longTimeout
                try t.finish()
            }
            try f.finish()
        }
        if var l = try c.object("load_balancing") {
            cluster.loadBalancing.algorithm =
                try l.enumValue("algorithm", Algorithm.self) ?? cluster.loadBalancing.algorithm
            cluster.loadBalancing.healthCheckInterval =
                try l.duration("health_check_interval") ?? cluster.loadBalancing.healthCheckInterval
            cluster.loadBalancing.weightAdjustment =
                try l.enumValue("weight_adjustment", WeightAdjustment.self) ?? cluster.loadBalancing.weightAdjustment
            cluster.loadBalancing.adjustmentInterval =
                try l.duration("adjustment_interval") ?? cluster.loadBalancing.adjustmentInterval
            cluster.loadBalancing.performanceWindow =
                try l.duration("performance_window") ?? cluster.loadBalancing.performanceWindow
            cluster.loadBalancing.minSamples =
                try l.int("min_samples", in: 1...1_000_000) ?? cluster.loadBalancing.minSamples
            cluster.loadBalancing.maxEjectionPercent =
                try l.int("max_ejection_percent", in: 0...100) ?? cluster.loadBalancing.maxEjectionPercent
            cluster.loadBalancing.latencyFloor = try l.duration("latency_floor") ?? cluster.loadBalancing.latencyFloor
            for (field, d) in [
                ("health_check_interval", cluster.loadBalancing.healthCheckInterval),
                ("performance_window", cluster.loadBalancing.performanceWindow),
            ] where d < .milliseconds(100) {
                throw ConfigError(path: l.child(field), "must be at least 100ms")
            }
            try l.finish()
        }
        if var e = try c.object("encryption") {
            cluster.encryption.enabled = try e.bool("enabled") ?? true
            cluster.encryption.keys = (try e.strings("keys") ?? []).map(SecretValue.init)
            try e.finish()
        }
        if var t = try c.object("tls") {
            let certificate = try t.string("certificate")
            let cert2 = try t.string("cert")
            guard let cert = certificate ?? cert2, let key = try t.string("key"),
                let ca = try t.string("ca")
            else {
                throw ConfigError(path: c.child("tls"), "needs \"cert\", \"key\" and \"ca\" (PEM file paths)")
            }
            cluster.tls = TLS(certificate: cert, key: key, ca: ca)
            try t.finish()
        }
        try c.finish()
        return cluster
    }

    static func parseLimits(_ r: inout ConfigReader) throws(ConfigError) -> Limits {
        guard var l = try r.object("limits") else { return Limits() }
        var limits = Limits(rpm: try l.int("rpm", in: 1...100_000_000), tpm: try l.int("tpm", in: 1...10_000_000_000))
        limits.window = try l.enumValue("window", LimitWindow.self) ?? .fixed
        try l.finish()
        return limits
    }

    static func parseProviders(_ p: inout ConfigReader) throws(ConfigError) -> [Provider] {
        var providers: [Provider] = []
        for name in p.fields.keys.sorted() {
            guard var r = try p.object(name) else { continue }
            let typeName = try r.string("type") ?? name
            guard let type = ProviderType(rawValue: typeName) else {
                throw ConfigError(
                    path: r.child("type"),
                    "\"\(typeName)\" is not a provider type; use one of \(ProviderType.allCases.map(\.rawValue).joined(separator: ", ")) (type defaults to the entry's name)"
                )
            }
            let baseURL = try r.string("base_url")
            if let baseURL, URL(string: baseURL)?.scheme == nil {
                throw ConfigError(path: r.child("base_url"), "expected an http(s) URL, got \"\(baseURL)\"")
            }
            var timeout: Duration = .seconds(60)
            var connectTimeout: Duration = .seconds(5)
            var caFile: String?
            if var n = try r.object("network") {
                timeout = try n.duration("timeout") ?? timeout
                connectTimeout = try n.duration("connect_timeout") ?? connectTimeout
                caFile = try n.string("ca_file")
                if let caFile {
                    do {
                        _ = try NIOSSLCertificate.fromPEMFile(caFile)
                    } catch {
                        throw ConfigError(
                            path: n.child("ca_file"), "cannot read PEM certificates from \"\(caFile)\" (\(error))")
                    }
                }
                try n.finish()
            }
            var modelLimits: [String: Limits] = [:]
            if var m = try r.object("model_limits") {
                for model in m.fields.keys.sorted() {
                    guard var entry = try m.object(model) else { continue }
                    let limits = try Limits(
                        rpm: entry.int("rpm", in: 1...100_000_000), tpm: entry.int("tpm", in: 1...10_000_000_000),
                        window: entry.enumValue("window", LimitWindow.self) ?? .fixed)
                    try entry.finish()
                    modelLimits[model] = limits
                }
                try m.finish()
            }
            guard let keyItems = try r.array("keys"), !keyItems.isEmpty else {
                throw ConfigError(path: r.child("keys"), "a provider needs at least one key")
            }
            var keys: [ProviderKey] = []
            for (path, value) in keyItems {
                var k = try ConfigReader(value, path: path)
                let name = try k.string("name")
                let idField = try k.string("id")
                guard let id = name ?? idField, !id.isEmpty else {
                    throw ConfigError(path: "\(path).name", "required: the model-key id, e.g. \"gpt-4-key-1\"")
                }
                guard let secret = try k.string("value") else {
                    throw ConfigError(path: "\(path).value", "required: the API key or \"env.NAME\"")
                }
                let models = try k.strings("models") ?? []
                if models.isEmpty { throw ConfigError(path: "\(path).models", "list the models this key serves") }
                let weight = try k.double("weight", in: 0...1_000_000) ?? 1
                let limits = try parseLimits(&k)
                let budget = try parseBudget(&k)
                var pricing = PriceSheet()
                if var kp = try k.object("pricing") {
                    pricing = try parsePriceModels(&kp)
                    try kp.finish()
                }
                try k.finish()
                keys.append(
                    ProviderKey(
                        id: id, value: SecretValue(secret), models: models, weight: weight, limits: limits,
                        pricing: pricing, budget: budget))
            }
            try r.finish()
            providers.append(
                Provider(
                    name: name, type: type, baseURL: baseURL, keys: keys, timeout: timeout,
                    connectTimeout: connectTimeout, caFile: caFile, modelLimits: modelLimits))
        }
        try p.finish()
        return providers
    }

    static func parseGateway(_ g: inout ConfigReader) throws(ConfigError) -> GatewaySettings {
        var s = GatewaySettings()
        s.maxRequestBytes = try g.int("max_request_bytes", in: 1024...(1 << 30)) ?? s.maxRequestBytes
        s.maxPendingEvents = try g.int("max_pending_events", in: 1...100_000_000) ?? s.maxPendingEvents
        if var r = try g.object("retry") {
            s.maxAttempts = try r.int("max_attempts", in: 1...10) ?? s.maxAttempts
            s.backoffBase = try r.duration("backoff_base") ?? s.backoffBase
            s.backoffMax = try r.duration("backoff_max") ?? s.backoffMax
            try r.finish()
        }
        if var h = try g.object("http") {
            s.http.headerTimeout = try h.duration("header_timeout") ?? s.http.headerTimeout
            s.http.bodyTimeout = try h.duration("body_timeout") ?? s.http.bodyTimeout
            s.http.idleTimeout = try h.duration("idle_timeout") ?? s.http.idleTimeout
            s.http.maxConnections = try h.int("max_connections", in: 1...1_000_000) ?? s.http.maxConnections
            s.http.maxHeaderBytes = try h.int("max_header_bytes", in: 1024...(1 << 20)) ?? s.http.maxHeaderBytes
            for (field, d) in [
                ("header_timeout", s.http.headerTimeout), ("body_timeout", s.http.bodyTimeout),
                ("idle_timeout", s.http.idleTimeout),
            ] where d < .milliseconds(100) {
                throw ConfigError(path: h.child(field), "must be at least 100ms")
            }
            try h.finish()
        }
        if var f = try g.object("fallbacks") {
            for model in f.fields.keys.sorted() { s.fallbacks[model] = try f.strings(model) ?? [] }
            try f.finish()
        }
        try g.finish()
        return s
    }

    static func parseVirtualKey(_ value: JSONValue, _ path: String) throws(ConfigError) -> VirtualKey {
        var v = try ConfigReader(value, path: path)
        guard let name = try v.string("name"), !name.isEmpty else {
            throw ConfigError(path: "\(path).name", "required")
        }
        guard let secret = try v.string("value"), !secret.isEmpty else {
            throw ConfigError(path: "\(path).value", "required: the client token or \"env.NAME\"")
        }
        let models = try v.strings("models") ?? ["*"]
        let limits = try parseLimits(&v)
        let budget = try parseBudget(&v)
        try v.finish()
        return VirtualKey(name: name, value: SecretValue(secret), models: models, limits: limits, budget: budget)
    }

    /// `budget: {"max_usd": 25.0, "period": "1mo"}`.
    static func parseBudget(_ r: inout ConfigReader) throws(ConfigError) -> BudgetLimit? {
        guard var b = try r.object("budget") else { return nil }
        guard let usd = try b.double("max_usd", in: 0.000001...1_000_000_000) else {
            throw ConfigError(path: b.child("max_usd"), "required: the most the key may spend per period, in USD")
        }
        guard let period = try b.enumValue("period", BudgetPeriod.self) else {
            throw ConfigError(
                path: b.child("period"),
                "required: one of \(BudgetPeriod.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))")
        }
        try b.finish()
        return BudgetLimit(maxMicros: UInt64((usd * 1_000_000).rounded()), period: period)
    }

    /// Cross-field rules.
    func validate() throws(ConfigError) {
        var seen: [String: String] = [:]
        for (p, provider) in providers.enumerated() {
            for (k, key) in provider.keys.enumerated() {
                let path = "providers.\(provider.name).keys[\(k)].name"
                if let other = seen[key.id] {
                    throw ConfigError(path: path, "key id \"\(key.id)\" is also used at \(other); ids must be unique")
                }
                seen[key.id] = path
                _ = p
            }
        }
        var names = Set<String>()
        for (i, vk) in virtualKeys.enumerated() where !names.insert(vk.name).inserted {
            throw ConfigError(path: "virtual_keys[\(i)].name", "virtual key \"\(vk.name)\" is defined twice")
        }
        var ruleNames = Set<String>()
        for (i, rule) in alerts.enumerated() {
            guard ruleNames.insert(rule.name).inserted else {
                throw ConfigError(path: "alerts[\(i)].name", "alert rule \"\(rule.name)\" is defined twice")
            }
            let reserved = [AlertEvaluator.temporaryBreakRule] + AlertEvaluator.weightControllerRules.map(\.name)
            if reserved.contains(rule.name) {
                throw ConfigError(
                    path: "alerts[\(i)].name",
                    "\"\(rule.name)\" is the name of a built-in rule the weight controller reports; choose another name (a rule with its action sets the controller's threshold)"
                )
            }
            do {
                try rule.validate()
            } catch {
                throw ConfigError(path: "alerts[\(i)].\(error.field)", error.description)
            }
        }
        if cluster.nodeID.isEmpty { throw ConfigError(path: "cluster.node_id", "must not be empty") }
        if cluster.gossip.port == cluster.bindAddress.port {
            throw ConfigError(
                path: "cluster.gossip.port",
                "must differ from the API port of bind_address (\(cluster.bindAddress.port))")
        }
    }

    /// Applies the environment overrides of DESIGN §5; errors name the variable.
    public mutating func apply(environment env: [String: String]) throws(ConfigError) {
        if let v = env["CLUSTER_ENABLED"] {
            switch v.lowercased() {
            case "true", "1", "yes": cluster.enabled = true
            case "false", "0", "no": cluster.enabled = false
            default: throw ConfigError(path: "CLUSTER_ENABLED", "expected true or false, got \"\(v)\"")
            }
        }
        if let v = env["NODE_ID"] {
            guard !v.isEmpty else { throw ConfigError(path: "NODE_ID", "must not be empty") }
            cluster.nodeID = v
        }
        if let v = env["PEERS"] {
            cluster.peers = try v.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
                !$0.isEmpty
            }
            .map { (text: String) throws(ConfigError) -> HostPort in
                guard let hp = HostPort(text) else {
                    throw ConfigError(path: "PEERS", "expected a comma list of host:port, got \"\(text)\"")
                }
                return hp
            }
        }
        if let v = env["BIND_ADDRESS"] {
            guard let hp = HostPort(v) else {
                throw ConfigError(path: "BIND_ADDRESS", "expected host:port, got \"\(v)\"")
            }
            cluster.bindAddress = hp
        }
        if let v = env["GOSSIP_PORT"] {
            guard let port = Int(v), (1...65535).contains(port) else {
                throw ConfigError(path: "GOSSIP_PORT", "expected a port number, got \"\(v)\"")
            }
            cluster.gossip.port = port
        }
        if let v = env["DATA_DIR"], !v.isEmpty { dataDir = v }
        if let v = env["BIFROST_CLUSTER_KEY"], !v.isEmpty { cluster.encryption.keys = [.literal(v)] }
        try validate()
    }
}

import EventLog
import Foundation

/// `host:port`, as the seed writes addresses (`bifrost-node-2:8080`, `0.0.0.0:8080`).
public struct HostPort: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A secret given literally or as `env.NAME` (read from the environment when used). Its
/// description never shows a literal.
public enum SecretValue: Hashable, Sendable, CustomStringConvertible {
    case literal(String)
    case environment(String)
    /// Sealed with the cluster keyring (`SecretSealer`): how a configuration update carries a
    /// secret given literally.
    case sealed(String)

    public init(_ text: String) {
        if text.hasPrefix("env.") {
            self = .environment(String(text.dropFirst(4)))
        } else if SecretSealer.isSealed(text) {
            self = .sealed(text)
        } else {
            self = .literal(text)
        }
    }

    /// The secret's value, or nil when the environment variable is not set or no key of
    /// `sealer` opens it.
    public func resolve(
        _ environment: [String: String] = ProcessInfo.processInfo.environment, sealer: SecretSealer? = nil
    ) -> String? {
        switch self {
        case .literal(let s): s
        case .environment(let name): environment[name]
        case .sealed(let s): sealer?.open(s)
        }
    }

    /// Why `resolve` found nothing, for logs and errors.
    public var unresolvedReason: String {
        switch self {
        case .literal: "the value is empty"
        case .environment(let name): "env.\(name) is not set in the environment"
        case .sealed: "the value is sealed with a cluster key this node does not have"
        }
    }

    public var description: String {
        switch self {
        case .literal, .sealed: Redaction.placeholder
        case .environment(let name): "env.\(name)"
        }
    }
}

/// The four request-migration strategies of the seed.
public enum MigrationStrategy: String, CaseIterable, Sendable {
    case completeOnOrigin = "complete_on_origin"
    case migrateToHealthy = "migrate_to_healthy"
    case retryWithBackoff = "retry_with_backoff"
    case circuitBreaker = "circuit_breaker"
}

/// The whole configuration document (DESIGN §5). Field names are the JSON names in snake_case.
public struct BifrostConfig: Sendable, Equatable {
    public struct Gossip: Sendable, Equatable {
        /// UDP port for SWIM (`gossip.port`).
        public var port: Int = 7946
        /// Probe interval (`gossip.interval`).
        public var interval: Duration = .seconds(1)
        /// A member silent for this long is probed first; also the bound on how long a probe
        /// round may wait before the member counts as failed for that round (`gossip.timeout`).
        public var timeout: Duration = .seconds(5)
        /// Largest UDP datagram sent (`gossip.max_packet_size`).
        public var maxPacketSize: Int = 1400
        /// Compress gossip payloads (`gossip.compression`).
        public var compression: Bool = false
    }

    public struct TimeoutBehavior: Sendable, Equatable {
        public var shortTimeout: MigrationStrategy = .retryWithBackoff
        public var longTimeout: MigrationStrategy = .migrateToHealthy
    }

    /// How cluster limits behave while this node reaches only some members (`partition_policy`).
    public enum PartitionPolicy: String, CaseIterable, Sendable {
        /// Each limit shrinks to reachable / known members of it: the sides of a partition
        /// together stay within the limit.
        case scale
        /// Each side keeps the whole limit: availability first, overshoot up to (sides − 1) × limit.
        case full
        /// Limited requests are refused until the partition heals.
        case deny
    }

    public struct Failover: Sendable, Equatable {
        public var partitionPolicy: PartitionPolicy = .scale
        /// Consecutive failed probe rounds before a member is suspected (`failover.detection_threshold`).
        public var detectionThreshold: Int = 3
        /// How long a failed node or key stays out before it is tried again (`failover.recovery_timeout`).
        public var recoveryTimeout: Duration = .seconds(30)
        /// After SIGTERM, how long `/health` reports 503 while the node still serves, so
        /// balancers stop sending before it stops accepting (`drain_delay`).
        public var drainDelay: Duration = .seconds(2)
        /// The whole drain's bound: requests still running after it are cancelled (`drain_timeout`).
        public var drainTimeout: Duration = .seconds(30)
        public var requestMigration: MigrationStrategy = .migrateToHealthy
        /// Per request type: `chat_completions`, `embeddings`, `streaming`, `messages`.
        public var migrationStrategies: [String: MigrationStrategy] = [:]
        public var timeoutBehavior = TimeoutBehavior()
    }

    public enum Algorithm: String, CaseIterable, Sendable {
        case weightedRoundRobin = "weighted_round_robin"
        case roundRobin = "round_robin"
    }

    public enum WeightAdjustment: String, CaseIterable, Sendable {
        case auto, manual
    }

    public struct LoadBalancing: Sendable, Equatable {
        public var algorithm: Algorithm = .weightedRoundRobin
        /// How often the weight controller and the alert rules evaluate (`health_check_interval`).
        public var healthCheckInterval: Duration = .seconds(10)
        public var weightAdjustment: WeightAdjustment = .auto
        /// Least time between two controller changes of one key's weight (`adjustment_interval`).
        public var adjustmentInterval: Duration = .seconds(60)
        /// Width of the key-performance windows the controller and alerts judge
        /// (`performance_window`). Folded into the views, so it must be the same on every node.
        public var performanceWindow: Duration = .seconds(60)
        /// Requests in the recent windows before a key's error rate or latency is judged
        /// (`min_samples`).
        public var minSamples: Int = 20
        /// Most of a model's keys that breakers may hold open at once, in percent; never the
        /// last one that is not (`max_ejection_percent`).
        public var maxEjectionPercent: Int = 50
        /// Latencies under this are noise: a key's baseline and its peers' latency count as at
        /// least this when its latency is judged (`latency_floor`).
        public var latencyFloor: Duration = .milliseconds(10)
    }

    public struct Encryption: Sendable, Equatable {
        /// Cluster traffic without a key is allowed only when this is explicitly false.
        public var enabled: Bool = true
        /// Base64 32-byte keys; the first encrypts, all decrypt.
        public var keys: [SecretValue] = []
    }

    public struct TLS: Sendable, Equatable {
        public var certificate: String
        public var key: String
        public var ca: String
    }

    public struct Cluster: Sendable, Equatable {
        public var enabled: Bool = false
        public var nodeID: String =
            ProcessInfo.processInfo.hostName.isEmpty ? "bifrost-node" : ProcessInfo.processInfo.hostName
        /// The HTTP API address (`bind_address`).
        public var bindAddress = HostPort(host: "0.0.0.0", port: 8080)
        /// Peers' API addresses, as in the seed.
        public var peers: [HostPort] = []
        public var gossip = Gossip()
        public var failover = Failover()
        public var loadBalancing = LoadBalancing()
        public var encryption = Encryption()
        public var tls: TLS?
    }

    /// How a limit's window is counted.
    public enum LimitWindow: String, CaseIterable, Sendable {
        /// Counts reset at each minute boundary.
        case fixed
        /// The current minute plus the previous one weighted by how much of it still overlaps
        /// the last 60 seconds.
        case sliding
    }

    public struct Limits: Sendable, Equatable {
        public var rpm: Int?
        public var tpm: Int?
        public var window: LimitWindow = .fixed

        public var isEmpty: Bool { rpm == nil && tpm == nil }
    }

    public struct ProviderKey: Sendable, Equatable {
        /// The model-key id (`name` or `id`).
        public var id: String
        public var value: SecretValue
        public var models: [String]
        public var weight: Double
        public var limits: Limits
        /// Prices this key charges, over the configuration's (`keys[].pricing.models`).
        public var pricing = PriceSheet()
        /// What this key may spend per period, across the cluster (`keys[].budget`).
        public var budget: BudgetLimit?
    }

    public enum ProviderType: String, CaseIterable, Sendable {
        case openai, anthropic, mock
    }

    public struct Provider: Sendable, Equatable {
        public var name: String
        public var type: ProviderType
        public var baseURL: String?
        public var keys: [ProviderKey]
        /// Whole-request timeout for an upstream call (`network.timeout`).
        public var timeout: Duration = .seconds(60)
        /// Connection establishment timeout (`network.connect_timeout`).
        public var connectTimeout: Duration = .seconds(5)
        /// PEM file of the certificate authorities an `https` base URL is verified against,
        /// instead of the system's (`network.ca_file`).
        public var caFile: String?
        /// Limits per model served by this provider, over all its keys (`model_limits`).
        public var modelLimits: [String: Limits] = [:]
    }

    /// Request handling (`gateway`).
    public struct GatewaySettings: Sendable, Equatable {
        /// Largest request body accepted (`max_request_bytes`); larger ones get 413.
        public var maxRequestBytes: Int = 4 << 20
        /// Upstream attempts per model before falling back (`retry.max_attempts`).
        public var maxAttempts: Int = 3
        /// Exponential backoff between attempts (`retry.backoff_base`, `retry.backoff_max`).
        public var backoffBase: Duration = .milliseconds(50)
        public var backoffMax: Duration = .seconds(2)
        /// Models tried in order when a model's keys all fail (`fallbacks`).
        public var fallbacks: [String: [String]] = [:]
        /// Events waiting for the writer beyond which new requests get 503 (`max_pending_events`);
        /// read at start.
        public var maxPendingEvents: Int = 100_000
        /// The HTTP port's protections against slow, idle and oversized clients (`http`); read at
        /// start.
        public var http = HTTPFrontSettings()
    }

    public struct VirtualKey: Sendable, Equatable {
        public var name: String
        public var value: SecretValue
        public var models: [String]
        public var limits: Limits
        /// What this key may spend per period, across the cluster (`budget`).
        public var budget: BudgetLimit?
    }

    public struct Admin: Sendable, Equatable {
        public var token: SecretValue?
        public var signingKey: SecretValue?
        /// Base64 Ed25519 public keys whose signed config updates are applied.
        public var trustedKeys: [String] = []
    }

    public struct AlertRule: Sendable, Equatable {
        public var name: String
        public var condition: String
        public var scope: String
        public var action: String
    }

    public var cluster = Cluster()
    public var dataDir: String?
    public var providers: [Provider] = []
    public var virtualKeys: [VirtualKey] = []
    public var gateway = GatewaySettings()
    public var admin = Admin()
    public var alerts: [AlertRule] = []
    /// Receives every fired and cleared alert as a JSON POST (`alert_webhook`), from the node
    /// that recorded it.
    public var alertWebhook: String?
    public var retention = Retention()
    /// What requests cost (`pricing`): over the shipped table, an operator's file and per-model
    /// entries.
    public var pricing = Pricing()

    public struct Pricing: Sendable, Equatable {
        /// A price table in LiteLLM's `model_prices_and_context_window.json` shape
        /// (`pricing.file`), read when the configuration is loaded.
        public var file: String?
        /// What `file` holds.
        public var fileSheet = PriceSheet()
        /// Per-model prices over the file and the shipped table, field by field (`pricing.models`).
        public var models = PriceSheet()

        public init() {}
    }

    /// How long the log keeps counter and usage events one by one (`retention`); older ones
    /// are folded into per-window aggregates that every view sums the same way.
    public struct Retention: Sendable, Equatable {
        /// Events older than this are compacted (`horizon`, default 7 days).
        public var horizon: Duration = .seconds(7 * 86_400)
        /// How often the node compacts what passed the horizon (`interval`).
        public var interval: Duration = .seconds(60)
        /// Once the log's live data reaches this size (`max_log_bytes`), the node refuses new
        /// requests with 503 until compaction frees room; nil for no limit but the disk's.
        public var maxLogBytes: Int?
    }

    public init() {}
}

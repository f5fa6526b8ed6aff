/// Payload types of the event kinds (DESIGN §2). All are plain values; the binary layout is in
/// `EventCodec`.

/// A request was admitted: one count per limit key it hit. Several admissions with the same keys
/// and window may be coalesced into one event (`requests` > 1) without losing exactness.
public struct RateLimitIncrement: Hashable, Sendable {
    /// Limit keys hit, e.g. `vk:team-a`, `pk:gpt-4-key-1`, `pm:openai/gpt-4o-mini`.
    public var keys: [String]
    /// Start of the fixed window this admission counts toward (Unix ms).
    public var windowStartMillis: UInt64
    /// Length of that window.
    public var windowMillis: UInt32
    public var requests: UInt32

    public init(keys: [String], windowStartMillis: UInt64, windowMillis: UInt32, requests: UInt32 = 1) {
        self.keys = keys
        self.windowStartMillis = windowStartMillis
        self.windowMillis = windowMillis
        self.requests = requests
    }
}

/// How a proxied request ended.
public enum UsageOutcome: UInt8, CaseIterable, Sendable, Codable {
    case success = 0
    case upstreamError = 1
    case timeout = 2
    case rateLimited = 3
    case clientError = 4
    case cancelled = 5

    /// Outcomes that count against a provider key's error rate.
    public var countsAsKeyError: Bool {
        switch self {
        case .upstreamError, .timeout, .rateLimited: true
        case .success, .clientError, .cancelled: false
        }
    }

    public var name: String {
        switch self {
        case .success: "success"
        case .upstreamError: "upstream_error"
        case .timeout: "timeout"
        case .rateLimited: "rate_limited"
        case .clientError: "client_error"
        case .cancelled: "cancelled"
        }
    }
}

/// A request finished.
public struct UsageRecorded: Hashable, Sendable {
    public var requestID: String
    /// The provider key (`model-key-id`) that served it.
    public var keyID: String
    public var model: String
    /// The limit keys whose token counters the usage is charged to.
    public var limitKeys: [String]
    public var windowStartMillis: UInt64
    public var windowMillis: UInt32
    public var tokensIn: UInt32
    public var tokensOut: UInt32
    public var latencyMicros: UInt32
    /// HTTP status returned to the client.
    public var status: UInt16
    public var outcome: UsageOutcome
    /// The part of `tokensIn` read from the provider's prompt cache.
    public var cacheReadTokens: UInt32
    /// The part of `tokensIn` written to the provider's prompt cache.
    public var cacheWriteTokens: UInt32
    /// The part of `tokensOut` spent on reasoning.
    public var reasoningTokens: UInt32
    /// What the request cost in micro-USD; nil when its model has no price (unpriced, which is
    /// not $0) and for events written before requests were priced.
    public var costMicros: UInt64?
    /// The version of the price table `costMicros` was computed with (`PriceBook.version`).
    public var priceVersion: String

    public init(
        requestID: String, keyID: String, model: String, limitKeys: [String], windowStartMillis: UInt64,
        windowMillis: UInt32, tokensIn: UInt32, tokensOut: UInt32, latencyMicros: UInt32, status: UInt16,
        outcome: UsageOutcome, cacheReadTokens: UInt32 = 0, cacheWriteTokens: UInt32 = 0, reasoningTokens: UInt32 = 0,
        costMicros: UInt64? = nil, priceVersion: String = ""
    ) {
        self.cacheReadTokens = cacheReadTokens
        self.cacheWriteTokens = cacheWriteTokens
        self.reasoningTokens = reasoningTokens
        self.costMicros = costMicros
        self.priceVersion = priceVersion
        self.requestID = requestID
        self.keyID = keyID
        self.model = model
        self.limitKeys = limitKeys
        self.windowStartMillis = windowStartMillis
        self.windowMillis = windowMillis
        self.tokensIn = tokensIn
        self.tokensOut = tokensOut
        self.latencyMicros = latencyMicros
        self.status = status
        self.outcome = outcome
    }
}

/// An operator or the weight controller changed a provider key's routing weight.
public struct WeightChanged: Hashable, Sendable {
    public var keyID: String
    public var oldWeight: Double
    public var newWeight: Double
    public var reason: String
    /// Who decided: `operator:<name>` or `controller:<node>`.
    public var actor: String

    public init(keyID: String, oldWeight: Double, newWeight: Double, reason: String, actor: String) {
        self.keyID = keyID
        self.oldWeight = oldWeight
        self.newWeight = newWeight
        self.reason = reason
        self.actor = actor
    }
}

/// An operator applied a new configuration document (JSON text; secrets as `env.NAME` references).
public struct ConfigUpdated: Hashable, Sendable {
    public var document: [UInt8]
    public var author: String
    /// Ed25519 public key of the signer (32 bytes), empty when unsigned.
    public var signerKey: [UInt8]
    /// Ed25519 signature over `document` (64 bytes), empty when unsigned.
    public var signature: [UInt8]

    public init(document: [UInt8], author: String, signerKey: [UInt8] = [], signature: [UInt8] = []) {
        self.document = document
        self.author = author
        self.signerKey = signerKey
        self.signature = signature
    }
}

/// SWIM member states as they appear in the audit trail and `/cluster/nodes`.
public enum MemberState: UInt8, CaseIterable, Sendable, Codable {
    case alive = 0
    case suspect = 1
    case dead = 2
    case left = 3

    public var name: String {
        switch self {
        case .alive: "alive"
        case .suspect: "suspect"
        case .dead: "dead"
        case .left: "left"
        }
    }
}

/// A node observed a membership transition.
public struct MembershipChanged: Hashable, Sendable {
    public var node: String
    public var state: MemberState
    public var incarnation: UInt64
    public var observer: String
    /// The member's API address as gossiped (`host:port`), empty when unknown.
    public var address: String

    public init(node: String, state: MemberState, incarnation: UInt64, observer: String, address: String = "") {
        self.node = node
        self.state = state
        self.incarnation = incarnation
        self.observer = observer
        self.address = address
    }
}

/// An alert rule fired or cleared.
public struct AlertFired: Hashable, Sendable {
    public var rule: String
    /// What the rule is about: a model-key id, a provider, a node, or `cluster`.
    public var scope: String
    public var firing: Bool
    public var value: Double
    /// The action taken (`reduce_weight`, `temporary_circuit_break`, `rebalance_weights`, `notify`).
    public var action: String
    public var detail: String

    public init(rule: String, scope: String, firing: Bool, value: Double, action: String, detail: String = "") {
        self.rule = rule
        self.scope = scope
        self.firing = firing
        self.value = value
        self.action = action
        self.detail = detail
    }
}

/// Exact, mergeable summary of a set of finished requests. Merging is associative and
/// commutative, which is what lets compaction replace events by aggregates without changing
/// any view.
public struct UsageSummary: Hashable, Sendable, Codable {
    /// Latency histogram bucket `i` counts latencies in `[2^(i-1), 2^i)` ms; bucket 0 is `< 1 ms`,
    /// the last bucket is open-ended.
    public static let bucketCount = 20

    public var requests: UInt64 = 0
    public var errors: UInt64 = 0
    public var tokensIn: UInt64 = 0
    public var tokensOut: UInt64 = 0
    public var latencySumMicros: UInt64 = 0
    public var latencyMaxMicros: UInt64 = 0
    public var latencyBuckets: [UInt64] = Array(repeating: 0, count: UsageSummary.bucketCount)
    /// The token classes within `tokensIn` and `tokensOut`.
    public var cacheReadTokens: UInt64 = 0
    public var cacheWriteTokens: UInt64 = 0
    public var reasoningTokens: UInt64 = 0
    /// The cost of the priced requests, in micro-USD.
    public var costMicros: UInt64 = 0
    /// Requests whose model had no price: their cost is unknown, not in `costMicros`.
    public var unpricedRequests: UInt64 = 0

    public init() {}

    public static func bucket(forLatencyMicros micros: UInt64) -> Int {
        let millis = micros / 1000
        if millis == 0 { return 0 }
        return Swift.min(UInt64.bitWidth - millis.leadingZeroBitCount, bucketCount - 1)
    }

    public mutating func record(_ usage: UsageRecorded) {
        requests += 1
        if usage.outcome.countsAsKeyError { errors += 1 }
        tokensIn += UInt64(usage.tokensIn)
        tokensOut += UInt64(usage.tokensOut)
        latencySumMicros += UInt64(usage.latencyMicros)
        latencyMaxMicros = Swift.max(latencyMaxMicros, UInt64(usage.latencyMicros))
        latencyBuckets[Self.bucket(forLatencyMicros: UInt64(usage.latencyMicros))] += 1
        cacheReadTokens += UInt64(usage.cacheReadTokens)
        cacheWriteTokens += UInt64(usage.cacheWriteTokens)
        reasoningTokens += UInt64(usage.reasoningTokens)
        if let cost = usage.costMicros {
            costMicros += cost
        } else if usage.outcome == .success {
            unpricedRequests += 1
        }
    }

    public mutating func merge(_ other: UsageSummary) {
        requests += other.requests
        errors += other.errors
        tokensIn += other.tokensIn
        tokensOut += other.tokensOut
        latencySumMicros += other.latencySumMicros
        latencyMaxMicros = Swift.max(latencyMaxMicros, other.latencyMaxMicros)
        for i in 0..<Swift.min(latencyBuckets.count, other.latencyBuckets.count) {
            latencyBuckets[i] += other.latencyBuckets[i]
        }
        cacheReadTokens += other.cacheReadTokens
        cacheWriteTokens += other.cacheWriteTokens
        reasoningTokens += other.reasoningTokens
        costMicros += other.costMicros
        unpricedRequests += other.unpricedRequests
    }

    public var averageLatencyMillis: Double {
        requests == 0 ? 0 : Double(latencySumMicros) / Double(requests) / 1000
    }

    public var errorRate: Double { requests == 0 ? 0 : Double(errors) / Double(requests) }

    /// Upper bound (ms) of the histogram bucket holding quantile `q`.
    public func latencyQuantileMillis(_ q: Double) -> Double {
        guard requests > 0 else { return 0 }
        let target = UInt64((Double(requests) * q).rounded(.up))
        var seen: UInt64 = 0
        for (i, count) in latencyBuckets.enumerated() {
            seen += count
            if seen >= target { return i == 0 ? 1 : Double(UInt64(1) << i) }
        }
        return Double(latencyMaxMicros) / 1000
    }
}

/// `usage.recorded` events of one origin, key, model, limit window and minute, folded into one
/// event by retention compaction.
public struct UsageAggregated: Hashable, Sendable {
    public var keyID: String
    public var model: String
    public var limitKeys: [String]
    public var windowStartMillis: UInt64
    public var windowMillis: UInt32
    public var summary: UsageSummary

    public init(
        keyID: String, model: String, limitKeys: [String], windowStartMillis: UInt64, windowMillis: UInt32,
        summary: UsageSummary
    ) {
        self.keyID = keyID
        self.model = model
        self.limitKeys = limitKeys
        self.windowStartMillis = windowStartMillis
        self.windowMillis = windowMillis
        self.summary = summary
    }
}

import EventLog

/// The seed's alert rules, evaluated cluster-wide as a pure function of a snapshot (DESIGN §4
/// "Observability", the seed's "Alerting Rules").
///
/// A rule is `<metric> <op> <number>` or `<metric> <op> <number> * baseline` over one scope
/// (model key, provider, cluster, node). `evaluate` returns only transitions: a rule fires for a
/// subject as soon as its condition holds, and clears only after the condition has failed
/// `clearAfterEvaluations` times in a row, so a value oscillating around the threshold fires
/// once and stays firing. The shell writes each transition as an `alert.fired` event.
///
/// The rules whose action changes routing (`weightControllerRules`) are reported by
/// `WeightController`, which takes those actions; a node with `weight_adjustment: manual`
/// evaluates them here instead.
public struct AlertEvaluator: Sendable {
    /// What a rule is about; the subject of a transition is a key id, a provider, a node or
    /// `cluster`.
    public enum Scope: String, CaseIterable, Sendable, Comparable {
        case modelKey = "model_key"
        case provider
        case cluster
        case node

        /// Accepts the seed's `model_key_id` too.
        public init?(name: String) {
            switch name.lowercased() {
            case "model_key", "model_key_id": self = .modelKey
            default:
                guard let scope = Scope(rawValue: name.lowercased()) else { return nil }
                self = scope
            }
        }

        public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    }

    /// Values a condition can test. Shares and rates are fractions from 0 to 1, as in the seed's
    /// `single_key_traffic_percentage > 0.8`.
    public enum Metric: String, CaseIterable, Sendable {
        /// Failed requests (upstream errors, timeouts, 429s) / requests.
        case errorRate = "error_rate"
        case latencyAvgMillis = "latency_avg_ms"
        case latencyP99Millis = "latency_p99_ms"
        /// A key's share of its provider's requests; a provider's share of all requests.
        case trafficShare = "traffic_share"
        case requests
        /// `weight.changed` events for a key in the last minute (the seed alerts above 10).
        case weightAdjustmentsPerMinute = "weight_adjustments_per_minute"
        /// The largest share of a provider's requests carried by one of its keys.
        case singleKeyTrafficShare = "single_key_traffic_share"
        case nodesFailed = "nodes_failed"
        case nodesHealthy = "nodes_healthy"
        case nodesTotal = "nodes_total"
        /// Requests migrated to another node / requests.
        case migrationRate = "migration_rate"
        case convergenceMillis = "convergence_ms"
        /// Greatest minus smallest load share among live nodes.
        case loadImbalance = "load_imbalance"
        /// 1 while this node cannot reach a majority of the cluster, else 0.
        case partitioned
        /// 1 while the node is failed, else 0.
        case failed
        case loadShare = "load_share"

        /// Other names accepted in conditions: the seed's JSON field names.
        static let aliases: [String: Metric] = [
            "avg_latency_ms": .latencyAvgMillis, "latency_p99": .latencyP99Millis, "p99_latency_ms": .latencyP99Millis,
            "single_key_traffic_percentage": .singleKeyTrafficShare, "request_migration_rate": .migrationRate,
            "state_convergence_time_ms": .convergenceMillis, "weight_adjustments": .weightAdjustmentsPerMinute,
        ]

        /// Looks a metric up by its name or an alias.
        public init?(name: String) {
            let name = name.lowercased()
            guard let metric = Metric(rawValue: name) ?? Self.aliases[name] else { return nil }
            self = metric
        }

        /// The scopes that have this metric.
        public var scopes: Set<Scope> {
            switch self {
            case .errorRate, .latencyAvgMillis, .latencyP99Millis, .trafficShare, .requests: [.modelKey, .provider]
            case .weightAdjustmentsPerMinute: [.modelKey]
            case .singleKeyTrafficShare: [.provider]
            case .nodesFailed, .nodesHealthy, .nodesTotal, .migrationRate, .convergenceMillis, .loadImbalance,
                .partitioned:
                [.cluster]
            case .failed, .loadShare: [.node]
            }
        }

        /// Fractions and flags: thresholds outside 0...1 are refused.
        var isFraction: Bool {
            switch self {
            case .errorRate, .trafficShare, .singleKeyTrafficShare, .migrationRate, .loadImbalance, .partitioned,
                .failed, .loadShare:
                true
            default: false
            }
        }

        /// Metrics whose snapshots carry a baseline (median of earlier windows).
        var hasBaseline: Bool { self == .errorRate || self == .latencyAvgMillis || self == .latencyP99Millis }
    }

    public enum Comparison: String, CaseIterable, Sendable {
        case greater = ">"
        case greaterOrEqual = ">="
        case less = "<"
        case lessOrEqual = "<="
        case equal = "=="

        func holds(_ value: Double, _ threshold: Double) -> Bool {
            switch self {
            case .greater: value > threshold
            case .greaterOrEqual: value >= threshold
            case .less: value < threshold
            case .lessOrEqual: value <= threshold
            case .equal: value == threshold
            }
        }
    }

    /// A parsed condition: `metric comparison threshold`, where the threshold multiplies the
    /// subject's baseline of the metric when `relativeToBaseline`.
    public struct Condition: Sendable, Hashable, CustomStringConvertible {
        public var metric: Metric
        public var comparison: Comparison
        public var threshold: Double
        public var relativeToBaseline: Bool

        public init(metric: Metric, comparison: Comparison, threshold: Double, relativeToBaseline: Bool = false) {
            self.metric = metric
            self.comparison = comparison
            self.threshold = threshold
            self.relativeToBaseline = relativeToBaseline
        }

        /// The value compared against, or nil when it needs a baseline that is unknown.
        public func limit(baseline: Double?) -> Double? {
            guard relativeToBaseline else { return threshold }
            return baseline.map { threshold * $0 }
        }

        /// Whether the condition holds; nil without the value (or the baseline it needs).
        public func holds(value: Double?, baseline: Double?) -> Bool? {
            guard let value, let limit = limit(baseline: baseline) else { return nil }
            return comparison.holds(value, limit)
        }

        public var description: String {
            "\(metric.rawValue) \(comparison.rawValue) \(AlertEvaluator.format(threshold))"
                + (relativeToBaseline ? " * baseline" : "")
        }
    }

    /// What a rule asks for when it fires. Only the weight controller acts on the first three.
    public enum Action: String, CaseIterable, Sendable {
        case reduceWeight = "reduce_weight"
        case temporaryCircuitBreak = "temporary_circuit_break"
        case rebalanceWeights = "rebalance_weights"
        case notify

        /// The scopes an action applies to.
        public var scopes: Set<Scope> {
            switch self {
            case .reduceWeight, .temporaryCircuitBreak: [.modelKey]
            case .rebalanceWeights: [.provider]
            case .notify: Set(Scope.allCases)
            }
        }
    }

    /// A checked rule.
    public struct Rule: Sendable, Hashable {
        public var name: String
        public var condition: Condition
        public var scope: Scope
        public var action: Action

        public init(name: String, condition: Condition, scope: Scope, action: Action = .notify) {
            self.name = name
            self.condition = condition
            self.scope = scope
            self.action = action
        }

        /// Parses and checks a rule as written in the config (`action` empty means `notify`);
        /// errors name the rule and the field.
        public init(name: String, condition: String, scope: String, action: String) throws(AlertRuleError) {
            let parsedCondition: Condition
            do {
                parsedCondition = try AlertEvaluator.parseCondition(condition)
            } catch {
                var error = error
                error.rule = name
                throw error
            }
            guard let parsedScope = Scope(name: scope) else {
                throw AlertRuleError(
                    .unknownScope, rule: name, field: "scope", text: scope,
                    "unknown scope; expected one of model_key (or model_key_id), provider, cluster, node")
            }
            guard parsedCondition.metric.scopes.contains(parsedScope) else {
                throw AlertRuleError(
                    .metricNotInScope, rule: name, field: "condition", text: parsedCondition.description,
                    "\(parsedCondition.metric.rawValue) is not measured for scope \(parsedScope.rawValue); it is for "
                        + parsedCondition.metric.scopes.sorted().map(\.rawValue).joined(separator: ", "))
            }
            let parsedAction: Action
            if action.isEmpty {
                parsedAction = .notify
            } else {
                guard let a = Action(rawValue: action.lowercased()) else {
                    throw AlertRuleError(
                        .unknownAction, rule: name, field: "action", text: action,
                        "unknown action; expected one of "
                            + Action.allCases.map(\.rawValue).joined(separator: ", "))
                }
                parsedAction = a
            }
            guard parsedAction.scopes.contains(parsedScope) else {
                throw AlertRuleError(
                    .actionNotInScope, rule: name, field: "action", text: action,
                    "\(parsedAction.rawValue) applies to scope "
                        + parsedAction.scopes.sorted().map(\.rawValue).joined(separator: ", ")
                        + ", not \(parsedScope.rawValue)")
            }
            self.init(name: name, condition: parsedCondition, scope: parsedScope, action: parsedAction)
        }
    }

    public struct Settings: Sendable, Equatable {
        /// Evaluations in a row without the condition before a firing alert clears.
        public var clearAfterEvaluations = 2

        public init() {}
    }

    public let rules: [Rule]
    public let settings: Settings
    private var latches: [AlertKey: AlertLatch] = [:]

    /// An evaluator of `rules`, e.g. `AlertEvaluator.monitoringRules + config.alerts.map { try $0.compiled() }`.
    public init(rules: [Rule], settings: Settings = Settings()) {
        self.rules = rules
        self.settings = settings
    }

    /// The alerts firing now, by rule and subject.
    public var firing: Set<AlertKey> { Set(latches.filter { $0.value.firing }.keys) }

    /// Drops what this evaluator remembers; the next evaluation starts from the alerts view.
    public mutating func forget() { latches.removeAll() }

    /// The transitions since the last evaluation.
    ///
    /// A subject missing from `snapshot` counts as "condition not holding"; a subject present
    /// without the metric (too few samples, no baseline yet) leaves its alert as it is.
    /// `firingAlerts` are the alerts the alerts view shows as firing. When given, every latch
    /// follows them, so a node taking over evaluation (or healing from a partition) clears what
    /// another evaluator fired and fires what another cleared; without them (nil) the evaluator
    /// goes by its own memory.
    public mutating func evaluate(
        _ snapshot: Snapshot, nowMillis: UInt64, firingAlerts view: Set<AlertKey>? = nil
    ) -> [AlertFired] {
        let firingAlerts = view ?? []
        var out: [AlertFired] = []
        var seen: Set<AlertKey> = []
        for rule in rules {
            let subjects = snapshot.values[rule.scope] ?? [:]
            // Subjects this evaluator or another node fired and that are gone from the snapshot
            // (a removed key, a node that left) are evaluated too, so their alerts clear.
            let remembered = Set(latches.keys).union(firingAlerts)
                .filter { $0.rule == rule.name && subjects[$0.scope] == nil }.map(\.scope)
            for subject in (Array(subjects.keys) + remembered).sorted() {
                let key = AlertKey(rule: rule.name, scope: subject)
                guard seen.insert(key).inserted else { continue }
                let metrics = subjects[subject]
                let value = metrics?[rule.condition.metric]
                let baseline = snapshot.baselines[rule.scope]?[subject]?[rule.condition.metric]
                let holds = metrics == nil ? false : rule.condition.holds(value: value, baseline: baseline)
                var latch = latches[key] ?? AlertLatch(firing: firingAlerts.contains(key))
                if view != nil { latch.follow(view: firingAlerts.contains(key)) }
                if let firing = latch.update(
                    holds: holds, value: value, clearAfter: settings.clearAfterEvaluations, nowMillis: nowMillis)
                {
                    let note = snapshot.notes[rule.scope]?[subject].map { "; \($0)" } ?? ""
                    out.append(
                        AlertFired(
                            rule: rule.name, scope: subject, firing: firing, value: latch.lastValue,
                            action: rule.action.rawValue,
                            detail: Self.detail(
                                rule.condition, firing: firing, latch: latch, baseline: baseline,
                                nowMillis: nowMillis)
                                + note))
                }
                if metrics == nil && !latch.firing {
                    latches[key] = nil
                } else {
                    latches[key] = latch
                }
            }
        }
        return out
    }

    static func detail(
        _ condition: Condition, firing: Bool, latch: AlertLatch, baseline: Double?, nowMillis: UInt64
    ) -> String {
        var limit = format(condition.threshold)
        if condition.relativeToBaseline {
            limit += " × baseline " + (baseline.map { format($0) } ?? "unknown")
        }
        let head = "\(condition.metric.rawValue) \(format(latch.lastValue))"
        if firing { return "\(head) \(condition.comparison.rawValue) \(limit)" }
        let duration = latch.sinceMillis == 0 ? "" : " after \((nowMillis &- latch.sinceMillis) / 1000) s"
        return "\(head) no longer \(condition.comparison.rawValue) \(limit); cleared\(duration)"
    }

    /// Parses `<metric> <op> <number>` or `<metric> <op> <number> * baseline` (also
    /// `baseline * <number>`), with `op` one of `>`, `>=`, `<`, `<=`, `==`.
    public static func parseCondition(_ text: String) throws(AlertRuleError) -> Condition {
        var parser = ConditionParser(text: text)
        return try parser.parse()
    }
}

extension AlertEvaluator.Rule {
    /// Error rate per model key above the seed's 2.5 %.
    public static let highErrorRate = Self(
        name: "high_error_rate", condition: .init(metric: .errorRate, comparison: .greater, threshold: 0.025),
        scope: .modelKey, action: .reduceWeight)
    /// Average latency per model key above the seed's 150 % of its baseline.
    public static let highLatency = Self(
        name: "high_latency",
        condition: .init(metric: .latencyAvgMillis, comparison: .greater, threshold: 1.5, relativeToBaseline: true),
        scope: .modelKey, action: .temporaryCircuitBreak)
    /// More than the seed's 80 % of a provider's traffic on a single key.
    public static let trafficImbalance = Self(
        name: "traffic_imbalance",
        condition: .init(metric: .singleKeyTrafficShare, comparison: .greater, threshold: 0.8), scope: .provider,
        action: .rebalanceWeights)
    /// More than the seed's 10 weight adjustments per minute on a key.
    public static let weightAdjustmentFrequency = Self(
        name: "weight_adjustment_frequency",
        condition: .init(metric: .weightAdjustmentsPerMinute, comparison: .greater, threshold: 10), scope: .modelKey)
    /// Provider-level performance degradation.
    public static let providerDegradation = Self(
        name: "provider_degradation", condition: .init(metric: .errorRate, comparison: .greater, threshold: 0.025),
        scope: .provider)
    public static let nodeFailure = Self(
        name: "node_failure", condition: .init(metric: .nodesFailed, comparison: .greater, threshold: 0),
        scope: .cluster)
    /// More than 5 % of requests migrated (the seed's healthy cluster shows 0.1 %).
    public static let highMigrationRate = Self(
        name: "high_migration_rate", condition: .init(metric: .migrationRate, comparison: .greater, threshold: 0.05),
        scope: .cluster)
    /// Convergence slower than 5 s (the seed's healthy cluster shows 250 ms).
    public static let slowConvergence = Self(
        name: "slow_convergence",
        condition: .init(metric: .convergenceMillis, comparison: .greater, threshold: 5000), scope: .cluster)
    /// Live nodes' load shares more than 25 points apart.
    public static let unevenLoad = Self(
        name: "uneven_load", condition: .init(metric: .loadImbalance, comparison: .greater, threshold: 0.25),
        scope: .cluster)
    public static let partitionDetected = Self(
        name: "partition_detected", condition: .init(metric: .partitioned, comparison: .equal, threshold: 1),
        scope: .cluster)
}

extension AlertEvaluator {
    /// The model-key and provider rules whose actions the weight controller takes (and reports).
    public static let weightControllerRules: [Rule] = [
        .highErrorRate, .highLatency, .trafficImbalance, .weightAdjustmentFrequency,
    ]
    /// The notify-only rules: cluster health and provider degradation.
    public static let monitoringRules: [Rule] = [
        .providerDegradation, .nodeFailure, .highMigrationRate, .slowConvergence, .unevenLoad, .partitionDetected,
    ]
}

/// An alert rule that cannot be used, with the rule, the field and the text at fault.
public struct AlertRuleError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case invalidCondition = "invalid_condition"
        case unknownMetric = "unknown_metric"
        case unknownScope = "unknown_scope"
        case metricNotInScope = "metric_not_in_scope"
        case unknownAction = "unknown_action"
        case actionNotInScope = "action_not_in_scope"
    }

    public var code: Code
    /// The rule's name, when known.
    public var rule: String?
    /// `condition`, `scope` or `action`.
    public var field: String
    /// The offending text as written.
    public var text: String
    public var message: String

    public init(_ code: Code, rule: String? = nil, field: String, text: String, _ message: String) {
        self.code = code
        self.rule = rule
        self.field = field
        self.text = text
        self.message = message
    }

    public var description: String {
        (rule.map { "alert rule \"\($0)\": " } ?? "") + "\(field) \"\(text)\": \(message)"
    }
}

extension BifrostConfig.AlertRule {
    /// The checked rule; throws naming the rule and the field when the condition does not parse
    /// or the scope, metric and action do not fit together.
    public func compiled() throws(AlertRuleError) -> AlertEvaluator.Rule {
        try AlertEvaluator.Rule(name: name, condition: condition, scope: scope, action: action)
    }

    /// Checks the rule (see `compiled()`).
    public func validate() throws(AlertRuleError) {
        _ = try compiled()
    }
}

/// Fire-at-once, clear-after-N hysteresis for one rule and subject.
struct AlertLatch: Sendable, Equatable {
    var firing: Bool
    var belowStreak = 0
    var lastValue = 0.0
    /// When the alert last fired (Unix ms), 0 when adopted.
    var sinceMillis: UInt64 = 0

    init(firing: Bool = false) { self.firing = firing }

    /// Takes the firing state the alerts view shows when it differs from what this latch
    /// remembers: another node (an earlier owner, the other side of a partition) wrote a
    /// transition since, and the view is what every node agrees on.
    mutating func follow(view firing: Bool) {
        guard firing != self.firing else { return }
        self.firing = firing
        belowStreak = 0
    }

    /// Feeds one evaluation (`holds` nil: no evidence either way); returns the new firing state
    /// when it changes.
    mutating func update(holds: Bool?, value: Double?, clearAfter: Int, nowMillis: UInt64) -> Bool? {
        if let value { lastValue = value }
        switch holds {
        case true?:
            belowStreak = 0
            guard !firing else { return nil }
            firing = true
            sinceMillis = nowMillis
            return true
        case false?:
            guard firing else { return nil }
            belowStreak += 1
            guard belowStreak >= clearAfter else { return nil }
            firing = false
            belowStreak = 0
            return false
        case nil:
            return nil
        }
    }
}

/// A recursive-descent parser over the condition's characters; every error says what was
/// expected and where.
struct ConditionParser {
    enum Token: Equatable {
        case word(String)
        case number(Double, String)
        case comparison(AlertEvaluator.Comparison)
        case star

        var text: String {
            switch self {
            case .word(let w): w
            case .number(_, let t): t
            case .comparison(let c): c.rawValue
            case .star: "*"
            }
        }
    }

    let text: String
    private var tokens: [Token] = []
    private var position = 0

    init(text: String) { self.text = text }

    mutating func parse() throws(AlertRuleError) -> AlertEvaluator.Condition {
        tokens = try tokenize()
        guard !tokens.isEmpty else {
            throw fail(.invalidCondition, "empty; expected e.g. \"error_rate > 0.025\"")
        }
        guard case .word(let name) = next(), name != "baseline" else {
            throw fail(.invalidCondition, "expected a metric name first, e.g. \"error_rate > 0.025\"")
        }
        guard let metric = AlertEvaluator.Metric(name: name) else {
            throw fail(
                .unknownMetric,
                "unknown metric \"\(name)\"; known: "
                    + AlertEvaluator.Metric.allCases.map(\.rawValue).joined(separator: ", "))
        }
        guard case .comparison(let comparison) = next() else {
            throw fail(.invalidCondition, "expected a comparison (>, >=, <, <=, ==) after \"\(name)\"")
        }
        // number | number * baseline | baseline * number | baseline
        var threshold = 1.0
        var relative = false
        switch next() {
        case .number(let n, _)?:
            threshold = n
            if peek() == .star {
                position += 1
                guard next() == .word("baseline") else {
                    throw fail(.invalidCondition, "expected \"baseline\" after \"*\"")
                }
                relative = true
            }
        case .word("baseline")?:
            relative = true
            if peek() == .star {
                position += 1
                guard case .number(let n, _)? = next() else {
                    throw fail(.invalidCondition, "expected a number after \"baseline *\"")
                }
                threshold = n
            }
        case let token?:
            throw fail(.invalidCondition, "expected a number or \"<number> * baseline\", got \"\(token.text)\"")
        case nil:
            throw fail(
                .invalidCondition, "expected a number or \"<number> * baseline\" after \"\(comparison.rawValue)\"")
        }
        if let extra = peek() {
            throw fail(.invalidCondition, "unexpected \"\(extra.text)\" after the threshold")
        }
        guard threshold.isFinite else { throw fail(.invalidCondition, "the threshold must be finite") }
        if relative {
            guard metric.hasBaseline else {
                throw fail(
                    .invalidCondition,
                    "\(metric.rawValue) has no baseline; compare it with a number (baselines exist for "
                        + "error_rate, latency_avg_ms, latency_p99_ms)")
            }
            guard threshold > 0 else { throw fail(.invalidCondition, "the baseline factor must be positive") }
        } else if metric.isFraction && !(0...1).contains(threshold) {
            throw fail(
                .invalidCondition,
                "\(metric.rawValue) is a fraction from 0 to 1 (write 0.025 for 2.5 %), got \(AlertEvaluator.format(threshold))"
            )
        }
        return AlertEvaluator.Condition(
            metric: metric, comparison: comparison, threshold: threshold, relativeToBaseline: relative)
    }

    private mutating func next() -> Token? {
        guard position < tokens.count else { return nil }
        defer { position += 1 }
        return tokens[position]
    }

    private func peek() -> Token? { position < tokens.count ? tokens[position] : nil }

    private func fail(_ code: AlertRuleError.Code, _ message: String) -> AlertRuleError {
        AlertRuleError(code, field: "condition", text: text, message)
    }

    private func tokenize() throws(AlertRuleError) -> [Token] {
        let chars = Array(text)
        var tokens: [Token] = []
        var i = 0
        func isWordStart(_ c: Character) -> Bool { c.isASCII && (c.isLetter || c == "_") }
        func isNumberChar(_ c: Character) -> Bool { c.isASCII && (c.isNumber || c == "." || c == "e" || c == "E") }
        while i < chars.count {
            let c = chars[i]
            if c.isWhitespace {
                i += 1
            } else if isWordStart(c) {
                var j = i
                while j < chars.count, isWordStart(chars[j]) || (chars[j].isASCII && chars[j].isNumber) { j += 1 }
                tokens.append(.word(String(chars[i..<j]).lowercased()))
                i = j
            } else if (c.isASCII && c.isNumber) || c == "."
                || (c == "-" && i + 1 < chars.count && chars[i + 1].isNumber)
            {
                var j = i + 1
                while j < chars.count,
                    isNumberChar(chars[j]) || ((chars[j] == "-" || chars[j] == "+") && "eE".contains(chars[j - 1]))
                {
                    j += 1
                }
                let literal = String(chars[i..<j])
                guard let value = Double(literal) else {
                    throw fail(.invalidCondition, "\"\(literal)\" is not a number")
                }
                tokens.append(.number(value, literal))
                i = j
            } else if c == "*" {
                tokens.append(.star)
                i += 1
            } else if "<>=!".contains(c) {
                let two = i + 1 < chars.count ? String(chars[i...(i + 1)]) : String(c)
                if let op = AlertEvaluator.Comparison(rawValue: two) {
                    tokens.append(.comparison(op))
                    i += 2
                } else if let op = AlertEvaluator.Comparison(rawValue: String(c)) {
                    tokens.append(.comparison(op))
                    i += 1
                } else if c == "=" {
                    throw fail(.invalidCondition, "use \"==\" to test equality")
                } else {
                    throw fail(.invalidCondition, "unsupported operator \"\(two)\"; use >, >=, <, <= or ==")
                }
            } else {
                throw fail(
                    .invalidCondition,
                    "unexpected \"\(c)\" at position \(i + 1); expected \"<metric> <op> <number>\" or "
                        + "\"<metric> <op> <number> * baseline\"")
            }
        }
        return tokens
    }
}

extension AlertEvaluator {
    /// Integers without a fraction, other values rounded to 4 decimals.
    static func format(_ x: Double) -> String {
        guard x.isFinite, abs(x) < 1e15 else { return String(x) }
        let rounded = (x * 10_000).rounded() / 10_000
        return rounded == rounded.rounded() ? String(Int64(rounded)) : String(rounded)
    }
}

import EventLog

extension AlertEvaluator {
    /// What the rules are evaluated against: per scope and subject (a key id, a provider, a node
    /// or `cluster`), the metric values, their baselines, and a note added to transitions.
    ///
    /// A subject present with no value for a metric leaves alerts on that metric as they are
    /// (not enough evidence); a subject absent counts as "condition not holding".
    public struct Snapshot: Sendable, Equatable {
        public var values: [Scope: [String: [Metric: Double]]] = [:]
        public var baselines: [Scope: [String: [Metric: Double]]] = [:]
        public var notes: [Scope: [String: String]] = [:]

        public init() {}

        /// Marks `subject` present in `scope`, with no values yet.
        public mutating func add(_ scope: Scope, _ subject: String) {
            values[scope, default: [:]][subject, default: [:]] = values[scope]?[subject] ?? [:]
        }

        /// Sets a value (nil: the subject is present but the value is unknown).
        public mutating func set(_ metric: Metric, _ value: Double?, _ scope: Scope, _ subject: String) {
            add(scope, subject)
            values[scope]![subject]![metric] = value
        }

        public mutating func setBaseline(_ metric: Metric, _ value: Double?, _ scope: Scope, _ subject: String) {
            baselines[scope, default: [:]][subject, default: [:]][metric] = value
        }
    }
}

extension AlertEvaluator {
    /// The rule of the `alert.fired` events recording the weight controller's temporary circuit
    /// breaks; such an event's `value` is the end of the break (Unix ms).
    public static let temporaryBreakRule = "temporary_circuit_break"

    /// Whether an alert holds now: it says firing and, for a temporary break, its end is still
    /// ahead (the clear may not be written yet).
    public static func isActive(_ key: AlertKey, _ alert: AlertFired, nowMillis: UInt64) -> Bool {
        guard alert.firing else { return false }
        return key.rule != temporaryBreakRule || UInt64(max(0, alert.value)) > nowMillis
    }
}

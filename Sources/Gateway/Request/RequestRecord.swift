import EventLog

/// What one request did, for its `usage.recorded` event and metrics.
struct RequestRecord: Sendable {
    /// The virtual key the request ran under, nil when the API is open.
    var virtualKey: String?
    /// Admissions holding an estimate against a budget, released when the request ends.
    var budgetHolds: [UInt64] = []
    var target: ModelTarget?
    /// The limit rules of `target` (its key's and its provider/model's), as admitted.
    var targetRules: [LimitRule] = []
    var status = 0
    var outcome = UsageOutcome.success
    var usage = Usage()
    var upstreamTime: Duration = .zero
    /// The last attempt failed and its `usage.recorded` is written already; the request's own
    /// record would count that failure twice.
    var failedAttemptRecorded = false
    /// The serving attempt's own latency (to the response head for streams): what the key
    /// performance view judges a key by, without earlier attempts, backoff or limiter waits.
    var attemptLatency: Duration?
}

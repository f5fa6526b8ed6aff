import EventLog

/// One limit: requests and/or tokens per window of a limit key (`vk:team-a`, `pk:gpt-4-key-1`,
/// `pm:openai/gpt-4o-mini`).
public struct LimitRule: Sendable, Hashable {
    public enum Mode: String, Sendable, Hashable {
        case fixed, sliding
    }

    public var key: String
    public var requestsPerWindow: UInt64?
    public var tokensPerWindow: UInt64?
    public var windowMillis: UInt64
    public var mode: Mode
    /// The key's spend budget (`budget`): the key is the account its spend is counted under.
    public var budget: BudgetLimit?

    public init(
        key: String, requestsPerWindow: UInt64?, tokensPerWindow: UInt64?, windowMillis: UInt64 = 60_000,
        mode: Mode = .fixed, budget: BudgetLimit? = nil
    ) {
        self.key = key
        self.requestsPerWindow = requestsPerWindow
        self.tokensPerWindow = tokensPerWindow
        self.windowMillis = windowMillis
        self.mode = mode
        self.budget = budget
    }
}

/// The replicated counts the limiter reads: every origin's admissions and tokens per limit key
/// and fixed window, as the views hold them.
public protocol PeerCounts {
    func peerRequests(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64
    func ownRequests(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64
    func peerTokens(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64
    func ownTokens(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64
    /// Priced spend of `account` in micro-USD over `[start, end)` (whole UTC days; `[0, .max)`
    /// for all time), from other origins and from this node.
    func peerSpend(account: String, start: UInt64, end: UInt64) -> UInt64
    func ownSpend(account: String, start: UInt64, end: UInt64) -> UInt64
}

extension PeerCounts {
    public func peerSpend(account: String, start: UInt64, end: UInt64) -> UInt64 { 0 }
    public func ownSpend(account: String, start: UInt64, end: UInt64) -> UInt64 { 0 }
}

/// A limit's figures for the `x-ratelimit-*` headers.
public struct LimitStatus: Sendable, Equatable {
    public var limit: UInt64
    public var remaining: UInt64
    /// Milliseconds until one more request (or token) is available again.
    public var resetMillis: UInt64
    /// For a budget: when its period ends (Unix ms); nil for a budget without a period.
    public var resetAtMillis: UInt64? = nil
}

/// Why a request was refused.
public struct RateLimitRejection: Sendable, Equatable {
    public enum Unit: String, Sendable {
        case requests, tokens
        /// Micro-USD of a budget; `status.resetMillis` is `.max` for a budget without a period.
        case budget
    }

    public var rule: LimitRule
    public var unit: Unit
    public var status: LimitStatus

    /// Whole seconds for `Retry-After` (at least 1).
    public var retryAfterSeconds: UInt64 { max(1, (status.resetMillis + 999) / 1000) }
}

public enum AdmissionDecision: Sendable {
    /// Counted; `seq` is confirmed later with `confirm(through:)`. `windows` are the counters
    /// charged, for the `ratelimit.increment` event.
    case admitted(seq: UInt64, windows: [(key: String, windowStart: UInt64)])
    /// A limit is reached.
    case rejected(RateLimitRejection)
    /// Below the limit, but this node holds its whole share of the headroom in admissions peers
    /// have not confirmed yet: try again after the next confirmation.
    case awaitConfirmation(RateLimitRejection)
}

/// Cluster-wide rate limits, exact per node and bounded across nodes (DESIGN §4 "Limits").
///
/// A counter's value is `K = own + peers`: this node's exact in-memory count (seeded from its
/// own origin's count in the views the first time the counter is touched, so a restart keeps
/// it) plus the other origins' counts as replicated. `K < limit` admits on a single node.
///
/// With N live nodes, a node also holds at most `ceil((limit − K) / N)` *unconfirmed*
/// admissions (not yet acknowledged by every live peer). Peers' unseen admissions are all
/// unconfirmed, and each node's unconfirmed count is at most its share of a headroom that only
/// shrinks as counts replicate; so the sum of what nodes admitted without seeing each other stays
/// within the headroom, plus at most one per node from the rounding up: the cluster admits at
/// most `limit + N − 1` per window. A partitioned peer never confirms, which keeps each side to
/// its share. Windows are fixed; `sliding` weights the previous window by its remaining overlap.
///
/// Tokens are known only when a request finishes: a token limit refuses new requests once the
/// window's tokens reached it, and can be overshot by the tokens of requests in flight.
public struct ClusterLimiter: Sendable {
    struct CounterID: Hashable {
        var key: String
        var windowStart: UInt64
        var windowMillis: UInt64
    }

    struct Counter {
        var own: UInt64
        var ownTokens: UInt64
    }

    private var counters: [CounterID: Counter] = [:]
    /// Admissions not yet confirmed, per counter.
    private var unconfirmed = UnconfirmedLedgers<CounterID>()
    private var budgets = BudgetCounters()
    private var nextSeq: UInt64 = 1
    private var admissionsSincePrune = 0

    public init() {}

    /// Counters held (for tests and metrics).
    public var counterCount: Int { counters.count }

    /// Admits one request under `rules`. `estimateMicros` is what the request may cost, held
    /// against every budget among the rules until `release(seq:)`; `knownNodes` above
    /// `liveNodes` means a partition, during which budgets keep to this side's share.
    public mutating func admit(
        rules: [LimitRule], nowMillis: UInt64, liveNodes: Int, knownNodes: Int = 0, estimateMicros: UInt64 = 0,
        counts: some PeerCounts
    )
        -> AdmissionDecision
    {
        let live = UInt64(max(1, liveNodes))
        let known = max(live, UInt64(max(0, knownNodes)))
        for rule in rules {
            if let budget = rule.budget,
                let refusal = budgets.check(
                    rule, budget, estimate: estimateMicros, nowMillis: nowMillis, live: live, known: known,
                    counts: counts)
            {
                return refusal
            }
            let start = nowMillis / rule.windowMillis * rule.windowMillis
            if let tokenLimit = rule.tokensPerWindow {
                let used = tokensUsed(rule, nowMillis: nowMillis, counts: counts)
                if used >= Double(tokenLimit) {
                    return .rejected(
                        RateLimitRejection(
                            rule: rule, unit: .tokens,
                            status: status(limit: tokenLimit, used: used, rule: rule, nowMillis: nowMillis) {
                                self.tokens(rule.key, $0, rule.windowMillis, counts)
                            }))
                }
            }
            guard let limit = rule.requestsPerWindow else { continue }
            let k = requestsCounted(rule, nowMillis: nowMillis, counts: counts)
            if k + 1 > Double(limit) {
                return .rejected(
                    RateLimitRejection(
                        rule: rule, unit: .requests,
                        status: status(limit: limit, used: k, rule: rule, nowMillis: nowMillis) {
                            self.requests(rule.key, $0, rule.windowMillis, counts)
                        }))
            }
            if live > 1 {
                let share = ((Double(limit) - k) / Double(live)).rounded(.up)
                let id = CounterID(key: rule.key, windowStart: start, windowMillis: rule.windowMillis)
                if Double(unconfirmed.total(id) + 1) > share {
                    return .awaitConfirmation(
                        RateLimitRejection(
                            rule: rule, unit: .requests,
                            status: LimitStatus(
                                limit: limit, remaining: UInt64(max(0, Double(limit) - k)), resetMillis: 1)))
                }
            }
        }
        let seq = nextSeq
        nextSeq += 1
        var windows: [(key: String, windowStart: UInt64)] = []
        for rule in rules where rule.requestsPerWindow != nil || rule.tokensPerWindow != nil {
            let start = nowMillis / rule.windowMillis * rule.windowMillis
            let id = CounterID(key: rule.key, windowStart: start, windowMillis: rule.windowMillis)
            touch(id, counts)
            counters[id]!.own += 1
            if live > 1 {
                unconfirmed.append(id, seq: seq, 1)
            }
            windows.append((rule.key, start))
        }
        for rule in rules {
            guard let budget = rule.budget else { continue }
            budgets.hold(rule.key, budget, estimate: estimateMicros, seq: seq, nowMillis: nowMillis, counts: counts)
        }
        admissionsSincePrune += 1
        if admissionsSincePrune >= 1024 { prune(nowMillis: nowMillis) }
        return .admitted(seq: seq, windows: windows)
    }

    /// The admission `seq` finished: what it held against budgets is released.
    public mutating func release(seq: UInt64) {
        budgets.release(seq: seq)
    }

    /// Charges a finished request's cost to the budgets among `rules`. Returns the sequence
    /// number its `usage.recorded` event carries when peers must confirm it (more than one
    /// node known), nil otherwise.
    public mutating func recordSpend(
        rules: [LimitRule], micros: UInt64, nowMillis: UInt64, liveNodes: Int, knownNodes: Int = 0,
        counts: some PeerCounts
    ) -> UInt64? {
        let tracked = max(liveNodes, knownNodes) > 1
        let charged = rules.filter { $0.budget != nil }
        guard micros > 0, !charged.isEmpty else { return nil }
        let seq = nextSeq
        nextSeq += 1
        for rule in charged {
            budgets.charge(
                rule.key, rule.budget!, micros: micros, seq: tracked ? seq : nil, nowMillis: nowMillis, counts: counts)
        }
        return tracked ? seq : nil
    }

    /// What is left of a budget now, for headers and metrics.
    public mutating func budgetStatus(rule: LimitRule, nowMillis: UInt64, counts: some PeerCounts) -> LimitStatus? {
        guard let budget = rule.budget else { return nil }
        return budgets.status(rule.key, budget, nowMillis: nowMillis, counts: counts)
    }

    /// Every admission up to `seq` is now known to every live peer.
    public mutating func confirm(through seq: UInt64) {
        budgets.confirm(through: seq)
        unconfirmed.confirm(through: seq)
    }

    /// Charges a finished request's tokens to its limit keys' current windows.
    public mutating func recordTokens(rules: [LimitRule], tokens: UInt64, nowMillis: UInt64, counts: some PeerCounts) {
        for rule in rules {
            let start = nowMillis / rule.windowMillis * rule.windowMillis
            let id = CounterID(key: rule.key, windowStart: start, windowMillis: rule.windowMillis)
            touch(id, counts)
            counters[id]!.ownTokens += tokens
        }
    }

    /// The figures of one rule's request limit (or token limit when it has no request limit).
    public mutating func status(
        rule: LimitRule, nowMillis: UInt64, liveNodes: Int, counts: some PeerCounts
    )
        -> LimitStatus?
    {
        if let limit = rule.requestsPerWindow {
            let k = requestsCounted(rule, nowMillis: nowMillis, counts: counts)
            return status(limit: limit, used: k, rule: rule, nowMillis: nowMillis) {
                self.requests(rule.key, $0, rule.windowMillis, counts)
            }
        }
        if let limit = rule.tokensPerWindow {
            let used = tokensUsed(rule, nowMillis: nowMillis, counts: counts)
            return status(limit: limit, used: used, rule: rule, nowMillis: nowMillis) {
                self.tokens(rule.key, $0, rule.windowMillis, counts)
            }
        }
        return nil
    }

    /// Drops counters no window can read any more (older than the previous window).
    public mutating func prune(nowMillis: UInt64) {
        admissionsSincePrune = 0
        counters = counters.filter { id, _ in id.windowStart + 2 * id.windowMillis > nowMillis }
        unconfirmed.keep { counters[$0] != nil }
        budgets.prune(nowMillis: nowMillis)
    }

    // MARK: Counting

    private mutating func touch(_ id: CounterID, _ counts: some PeerCounts) {
        guard counters[id] == nil else { return }
        counters[id] = Counter(
            own: counts.ownRequests(key: id.key, windowStart: id.windowStart, windowMillis: id.windowMillis),
            ownTokens: counts.ownTokens(key: id.key, windowStart: id.windowStart, windowMillis: id.windowMillis))
    }

    private func requests(_ key: String, _ start: UInt64, _ window: UInt64, _ counts: some PeerCounts) -> UInt64 {
        let id = CounterID(key: key, windowStart: start, windowMillis: window)
        let own = counters[id]?.own ?? counts.ownRequests(key: key, windowStart: start, windowMillis: window)
        return own + counts.peerRequests(key: key, windowStart: start, windowMillis: window)
    }

    private func tokens(_ key: String, _ start: UInt64, _ window: UInt64, _ counts: some PeerCounts) -> UInt64 {
        let id = CounterID(key: key, windowStart: start, windowMillis: window)
        let own = counters[id]?.ownTokens ?? counts.ownTokens(key: key, windowStart: start, windowMillis: window)
        return own + counts.peerTokens(key: key, windowStart: start, windowMillis: window)
    }

    private func requestsCounted(_ rule: LimitRule, nowMillis: UInt64, counts: some PeerCounts) -> Double {
        weighted(rule, nowMillis: nowMillis) { requests(rule.key, $0, rule.windowMillis, counts) }
    }

    private func tokensUsed(_ rule: LimitRule, nowMillis: UInt64, counts: some PeerCounts) -> Double {
        weighted(rule, nowMillis: nowMillis) { tokens(rule.key, $0, rule.windowMillis, counts) }
    }

    /// The current window's count, plus for sliding windows the previous one's scaled by how
    /// much of it the last `window` milliseconds still cover.
    private func weighted(_ rule: LimitRule, nowMillis: UInt64, _ value: (UInt64) -> UInt64) -> Double {
        let w = rule.windowMillis
        let start = nowMillis / w * w
        var total = Double(value(start))
        if rule.mode == .sliding, start >= w {
            let overlap = 1 - Double(nowMillis - start) / Double(w)
            total += Double(value(start - w)) * overlap
        }
        return total
    }

    private func status(
        limit: UInt64, used: Double, rule: LimitRule, nowMillis: UInt64, _ value: (UInt64) -> UInt64
    ) -> LimitStatus {
        let w = rule.windowMillis
        let start = nowMillis / w * w
        let remaining = UInt64(max(0, (Double(limit) - used).rounded(.down)))
        var reset = start + w - nowMillis
        if rule.mode == .sliding, start >= w {
            let current = Double(value(start))
            let previous = Double(value(start - w))
            if current + 1 <= Double(limit), previous > 0 {
                // When the previous window's weight has decayed enough for one more.
                let needed = 1 - (Double(limit) - 1 - current) / previous
                let at = start + UInt64(max(0, needed) * Double(w))
                reset = at > nowMillis ? at - nowMillis : 0
            }
        }
        return LimitStatus(limit: limit, remaining: remaining, resetMillis: reset)
    }
}

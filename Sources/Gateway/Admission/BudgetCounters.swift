/// Spend against budgets as the limiter holds it, per account and period: this node's exact
/// spend (seeded from its own origin in the views, then counted in memory), what its admitted
/// requests in flight may still cost, and its spend that peers have not confirmed yet.
///
/// A request is admitted while the account's spend in the period (this node's plus the peers'
/// as replicated) plus the estimates in flight plus its own estimate stays within the budget.
/// With several live nodes a node also keeps what it holds unconfirmed (its estimates in
/// flight and its spend peers have not acknowledged) within `ceil(headroom / live)`, as the
/// request limiter does with admissions: nodes that have not seen each other's spend together
/// stay within the headroom they saw. The overshoot is therefore bounded by what the requests
/// in flight when the budget was reached cost beyond their estimates.
///
/// During a partition (fewer live nodes than known), each side keeps to its share of the
/// headroom at the moment the partition was first seen: `live / known` of it.
struct BudgetCounters: Sendable {
    struct ID: Hashable {
        var account: String
        var start: UInt64
        var end: UInt64
    }

    struct Counter {
        var own: UInt64
        var inFlight: UInt64 = 0
        /// The cluster's spend in the period when this node first saw the current partition.
        var partitionBaseline: UInt64?
    }

    private var counters: [ID: Counter] = [:]
    /// Spend peers have not acknowledged, per counter.
    private var unconfirmed = UnconfirmedLedgers<ID>()
    private var holds: [UInt64: [(id: ID, micros: UInt64)]] = [:]

    var counterCount: Int { counters.count }

    private func id(_ account: String, _ budget: BudgetLimit, _ nowMillis: UInt64) -> ID {
        let window = budget.period.window(containing: nowMillis)
        return ID(account: account, start: window.start, end: window.end)
    }

    private mutating func touch(_ id: ID, _ counts: some PeerCounts) {
        guard counters[id] == nil else { return }
        counters[id] = Counter(own: counts.ownSpend(account: id.account, start: id.start, end: id.end))
    }

    private func spent(_ id: ID, _ counts: some PeerCounts) -> UInt64 {
        (counters[id]?.own ?? 0) &+ counts.peerSpend(account: id.account, start: id.start, end: id.end)
    }

    private static func status(_ budget: BudgetLimit, used: UInt64, id: ID, nowMillis: UInt64) -> LimitStatus {
        LimitStatus(
            limit: budget.maxMicros, remaining: budget.maxMicros > used ? budget.maxMicros - used : 0,
            resetMillis: id.end == .max ? .max : id.end - nowMillis, resetAtMillis: id.end == .max ? nil : id.end)
    }

    /// Nil when `rule`'s budget admits a request estimated at `estimate`.
    mutating func check(
        _ rule: LimitRule, _ budget: BudgetLimit, estimate: UInt64, nowMillis: UInt64, live: UInt64, known: UInt64,
        counts: some PeerCounts
    ) -> AdmissionDecision? {
        let id = id(rule.key, budget, nowMillis)
        touch(id, counts)
        let spent = spent(id, counts)
        var limit = budget.maxMicros
        if known > live {
            let baseline = counters[id]!.partitionBaseline ?? spent
            counters[id]!.partitionBaseline = baseline
            if limit > baseline { limit = baseline + (limit - baseline) * live / known }
        } else {
            counters[id]!.partitionBaseline = nil
        }
        let counter = counters[id]!
        let used = spent &+ counter.inFlight
        let status = Self.status(budget, used: used, id: id, nowMillis: nowMillis)
        if used >= limit || estimate > limit - used {
            return .rejected(RateLimitRejection(rule: rule, unit: .budget, status: status))
        }
        guard live > 1 else { return nil }
        let headroom = limit > spent ? limit - spent : 0
        let share = (headroom + live - 1) / live
        let held = counter.inFlight + unconfirmed.total(id)
        if held > 0 && held + estimate > share {
            var waiting = status
            waiting.resetMillis = 1
            return .awaitConfirmation(RateLimitRejection(rule: rule, unit: .budget, status: waiting))
        }
        return nil
    }

    /// Holds `estimate` against the budget for admission `seq`.
    mutating func hold(
        _ account: String, _ budget: BudgetLimit, estimate: UInt64, seq: UInt64, nowMillis: UInt64,
        counts: some PeerCounts
    ) {
        let id = id(account, budget, nowMillis)
        touch(id, counts)
        counters[id]!.inFlight += estimate
        holds[seq, default: []].append((id, estimate))
    }

    mutating func release(seq: UInt64) {
        guard let held = holds.removeValue(forKey: seq) else { return }
        for (id, micros) in held where counters[id] != nil {
            counters[id]!.inFlight -= min(micros, counters[id]!.inFlight)
        }
    }

    /// Charges spend to the account's current period; `seq` set, peers must confirm it.
    mutating func charge(
        _ account: String, _ budget: BudgetLimit, micros: UInt64, seq: UInt64?, nowMillis: UInt64,
        counts: some PeerCounts
    ) {
        let id = id(account, budget, nowMillis)
        touch(id, counts)
        counters[id]!.own &+= micros
        if let seq { unconfirmed.append(id, seq: seq, micros) }
    }

    mutating func confirm(through seq: UInt64) {
        unconfirmed.confirm(through: seq)
    }

    mutating func status(
        _ account: String, _ budget: BudgetLimit, nowMillis: UInt64, counts: some PeerCounts
    ) -> LimitStatus {
        let id = id(account, budget, nowMillis)
        touch(id, counts)
        return Self.status(budget, used: spent(id, counts) &+ counters[id]!.inFlight, id: id, nowMillis: nowMillis)
    }

    /// Drops the periods that ended.
    mutating func prune(nowMillis: UInt64) {
        counters = counters.filter { $0.key.end > nowMillis }
        unconfirmed.keep { counters[$0] != nil }
    }
}

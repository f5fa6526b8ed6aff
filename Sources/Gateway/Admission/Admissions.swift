import EventLog
import Synchronization

/// Peer and own counts from the views, for the limiter.
struct ViewCounts: PeerCounts {
    let view: ViewState
    let local: NodeID

    func counts(_ key: String, windowStart: UInt64, windowMillis: UInt64, tokens: Bool) -> OriginCounts? {
        let counter = CounterKey(limitKey: key, windowMillis: UInt32(windowMillis), windowStartMillis: windowStart)
        return tokens ? view.tokenCounters[counter] : view.limitCounters[counter]
    }

    func peerRequests(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64 {
        guard let c = counts(key, windowStart: windowStart, windowMillis: windowMillis, tokens: false) else { return 0 }
        return c.total - c.count(for: local)
    }

    func ownRequests(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64 {
        counts(key, windowStart: windowStart, windowMillis: windowMillis, tokens: false)?.count(for: local) ?? 0
    }

    func peerTokens(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64 {
        guard let c = counts(key, windowStart: windowStart, windowMillis: windowMillis, tokens: true) else { return 0 }
        return c.total - c.count(for: local)
    }

    func ownTokens(key: String, windowStart: UInt64, windowMillis: UInt64) -> UInt64 {
        counts(key, windowStart: windowStart, windowMillis: windowMillis, tokens: true)?.count(for: local) ?? 0
    }

    /// The spend counters of `[start, end)`: all time, or the days in it.
    private func spend(_ account: String, start: UInt64, end: UInt64, _ value: (OriginCounts) -> UInt64) -> UInt64 {
        if start == 0 && end == .max { return view.spend[ViewState.spendTotalKey(account)].map(value) ?? 0 }
        var total: UInt64 = 0
        var day = start
        while day < end {
            if let c = view.spend[ViewState.spendKey(account, dayStartMillis: day)] { total &+= value(c) }
            day += ViewState.dayMillis
        }
        return total
    }

    func peerSpend(account: String, start: UInt64, end: UInt64) -> UInt64 {
        spend(account, start: start, end: end) { $0.total - $0.count(for: local) }
    }

    func ownSpend(account: String, start: UInt64, end: UInt64) -> UInt64 {
        spend(account, start: start, end: end) { $0.count(for: local) }
    }
}

/// The limiter and the admissions awaiting confirmation, shared with the event recorder.
final class Admissions: Sendable {
    let limiter = Mutex(ClusterLimiter())
    private let pending = Mutex(PendingConfirmations())
    /// Signalled whenever admissions are confirmed: requests waiting for headroom retry then.
    let confirmed = ChangeSignal()

    /// A committed batch of admissions (up to limiter sequence `seq`) that peers must acknowledge.
    func awaitConfirmation(event: HLCTimestamp, seq: UInt64) {
        pending.withLock { $0.append(event: event, seq: seq) }
    }

    var isAwaiting: Bool { !pending.withLock { $0.isEmpty } }

    /// Confirms what the cluster's live peers acknowledged (everything, alone).
    func confirmAcknowledged(by cluster: any GatewayCluster) {
        guard isAwaiting else { return }
        let acknowledged = cluster.liveNodeCount <= 1 ? .max : cluster.ownEventsAcknowledgedThrough()
        if let acknowledged { confirm(acknowledged: acknowledged) }
    }

    /// Confirms the batches whose events every live peer holds through `acknowledged`.
    func confirm(acknowledged: HLCTimestamp) {
        if let seq = pending.withLock({ $0.confirm(through: acknowledged) }) { confirm(seq: seq) }
    }

    /// Confirms the admissions through limiter sequence `seq`.
    func confirm(seq: UInt64) {
        limiter.withLock { $0.confirm(through: seq) }
        confirmed.signal()
    }
}
